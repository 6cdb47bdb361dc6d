"""A signature made with a key, verified with `cryptography` alone: what model_signing's key
verifier checks, without importing model_signing (its package loads sigstore's keyless client,
TUF, Rekor, Fulcio and pyOpenSSL for any check: ~0.4 CPU-s a key check never uses).

model_signing's ``sign key`` writes a sigstore bundle (JSON) whose DSSE envelope holds the in-toto
statement and one ECDSA signature over its DSSE pre-authentication encoding, and the key's SHA-256
hint. This module accepts a bundle only when every check passes, exactly as the library would:
a bundle of only what the signer writes (strict UTF-8), its media type, the hint equal to the
user's key (the trust chains to the key the user configured, never to one the bundle names), the
signature over the statement with that key, the statement's types, one subject whose digest is
that of the resources, a ``files`` serialisation with names the library keeps as they are.
Anything else (a bad signature included) is None: the library checks it then, and says what is
wrong, in the words and with the exit code as before."""

from __future__ import annotations

import base64
import hashlib
from pathlib import PurePosixPath
from typing import Any

from mdl.outsidejson import read_json
from mdl.signing.statement import SignedManifest, Trust, manifest_from_items

BUNDLE_MEDIA_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://model_signing/signature/v1.0"


def key_verified(data: bytes, trust: Trust) -> SignedManifest | None:
    """The statement ``data`` (a model.sig) signs with ``trust``'s key, when this module can tell
    it whole and it verifies; None otherwise (the library then decides)."""
    if trust.key is None:
        return None
    try:
        return _verified(data, trust.material[0])
    # Whatever this bundle is that the checks above do not take whole, a bad signature included:
    # model_signing checks it and says so, exactly as before.
    except Exception:  # noqa: BLE001
        return None


def _verified(data: bytes, material: bytes) -> SignedManifest | None:
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    # the library reads the file as strict UTF-8 text: no BOM, UTF-16/32 or lone surrogate
    bundle: Any = read_json(data, source="the signature", limit=len(data))
    key = serialization.load_pem_public_key(material)
    # the curves model_signing takes, each with the digest it signs with
    curves: dict[str, hashes.HashAlgorithm] = {
        "secp256r1": hashes.SHA256(),
        "secp384r1": hashes.SHA384(),
        "secp521r1": hashes.SHA512(),
    }
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name not in curves:
        return None
    pem = key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    envelope = bundle["dsseEnvelope"]
    if (
        not _written_by_signer(bundle)
        or bundle["mediaType"] != BUNDLE_MEDIA_TYPE
        or bundle["verificationMaterial"]["publicKey"]["hint"] != hashlib.sha256(pem).hexdigest()
        or envelope["payloadType"] != PAYLOAD_TYPE
        or len(envelope["signatures"]) != 1
    ):
        return None
    payload = base64.b64decode(envelope["payload"], validate=True)
    signature = base64.b64decode(envelope["signatures"][0]["sig"], validate=True)
    # DSSE's pre-authentication encoding (DSSE v1.0 protocol), of the in-toto payload type
    signed = b"DSSEv1 %d %s %d " % (len(PAYLOAD_TYPE), PAYLOAD_TYPE.encode(), len(payload))
    # InvalidSignature: the library tries it again (and its pre-1.0 encoding), and refuses it
    key.verify(signature, signed + payload, ec.ECDSA(curves[key.curve.name]))
    return _manifest(read_json(payload, source="the signed statement", limit=len(payload)))


def _written_by_signer(bundle: Any) -> bool:
    """Whether the bundle holds only what model_signing's key signer writes: the library's bundle
    model refuses an unknown field, a second kind of verification material or of content, or a
    field of another type (a tlog entry, a timestamp, a key id that is not a string)."""
    material, envelope = bundle["verificationMaterial"], bundle["dsseEnvelope"]
    [signature] = envelope["signatures"]
    return (
        bundle.keys() == {"mediaType", "verificationMaterial", "dsseEnvelope"}
        and material.keys() <= {"publicKey", "tlogEntries"}
        and material.get("tlogEntries", []) == []
        and material["publicKey"].keys() == {"hint"}
        and envelope.keys() == {"payload", "payloadType", "signatures"}
        and signature.keys() <= {"sig", "keyid"}
        and isinstance(signature.get("keyid", ""), str)
    )


def _manifest(statement: Any) -> SignedManifest | None:
    """The manifest of a verified statement, as the library reads it (dsse_payload_to_manifest);
    None when it is not one read here whole."""
    if statement["_type"] != STATEMENT_TYPE or statement["predicateType"] != PREDICATE_TYPE:
        return None
    [subject] = statement["subject"]
    predicate = statement["predicate"]
    args = predicate["serialization"]
    items = _items(predicate["resources"])
    if items is None or not _plain_files(args) or not isinstance(subject["name"], str):
        return None
    root = hashlib.sha256(b"".join(digest for _, _, digest in items)).hexdigest()
    if root != subject["digest"]["sha256"] or len({n for n, _, _ in items}) != len(items):
        return None
    return manifest_from_items(
        sorted(items, key=lambda item: PurePosixPath(item[0])),
        method="files",
        algorithm=args["hash_type"],
        ignore_paths=tuple(args.get("ignore_paths", [])),
        model_name=subject["name"],
    )


def _plain_files(args: Any) -> bool:
    """Whether the serialisation is ``files`` with every argument the library requires, of its
    type."""
    ignored = args.get("ignore_paths", [])
    return (
        args["method"] == "files"
        and isinstance(args["hash_type"], str)
        and isinstance(args["allow_symlinks"], bool)
        and isinstance(ignored, list)
        and all(isinstance(p, str) for p in ignored)
    )


def _items(resources: Any) -> list[tuple[str, str, bytes]] | None:
    """Each resource's (name, algorithm, digest); None when one is not read here whole."""
    items = []
    for resource in resources:
        name, algorithm, digest = resource["name"], resource["algorithm"], resource["digest"]
        if not all(isinstance(v, str) for v in (name, algorithm, digest)):
            return None
        # the library keeps each name as a path says it: only names it keeps as they are
        if str(PurePosixPath(name)) != name:
            return None
        items.append((name, algorithm, bytes.fromhex(digest)))
    return items
