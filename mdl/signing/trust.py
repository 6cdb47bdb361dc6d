"""Whom a model's signature must come from: one public key, a certificate chain, or a sigstore identity."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from mdl.errors import UsageError
from mdl.paths import url_basename

SIGNATURE_FILE = "model.sig"  # the name model_signing's own CLI writes and publishers ship


@dataclass(frozen=True)
class Trust:
    """A ``[models.NAME.signature]`` table, its paths resolved against the catalog's folder: exactly one of
    ``key``, ``certificates`` or ``identity`` + ``issuer``; ``file`` is where the signature is (a path in the model,
    or a URL)."""

    key: Path | None = None
    certificates: tuple[Path, ...] = ()
    identity: str | None = None
    issuer: str | None = None
    file: str = SIGNATURE_FILE

    @property
    def kind(self) -> str:
        return "key" if self.key is not None else "certificates" if self.certificates else "identity"

    @property
    def file_is_url(self) -> bool:
        return self.file.startswith(("http://", "https://"))

    @property
    def installed_as(self) -> str:
        """Its path in the model folder: as the repo has it, or a URL's last path segment (never its query: a
        presigned URL's signature or a token)."""
        return url_basename(self.file, where="signature.file") if self.file_is_url else self.file

    def fingerprint(self) -> str:
        """A digest of everything this trust decides by: the key's or certificates' bytes, or the identity and
        issuer (OSError when a file cannot be read). Another key at the same path is another trust."""
        digest = hashlib.sha256(self.kind.encode())
        for path in (self.key,) if self.key is not None else self.certificates:
            digest.update(b"\0" + path.read_bytes())
        digest.update(f"\0{self.identity}\0{self.issuer}".encode())
        return digest.hexdigest()

    def by(self) -> str:
        """Who signed what verifies with it, as ``list``/``show`` say it: the key's id (the sha256 of its PEM, as
        model_signing's bundles hint it), the chain's first certificate's file, or the sigstore identity."""
        if self.key is not None:
            return f"key {key_id(self.key)[:16]}"
        if self.certificates:
            return f"certificate chain {self.certificates[0].name}"
        return f"{self.identity} ({self.issuer})"


def key_id(path: Path) -> str:
    """The public key's id as model_signing writes it in a bundle (sha256 of its SubjectPublicKeyInfo PEM);
    UsageError (exit 2) naming the file when it cannot be read or is not an EC public key in PEM."""
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except OSError as exc:
        raise UsageError(f"signature key {path}: cannot read it: {exc.strerror or exc}") from None
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise UsageError(f"signature key {path}: not a PEM public key") from None
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise UsageError(f"signature key {path}: not an elliptic-curve key (model signing keys are ECDSA)") from None
    pem = key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(pem).hexdigest()
