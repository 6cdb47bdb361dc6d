"""Whom a signature must come from (:class:`Trust`), what a verified one says (each signed file's
digests), and the checks that hold a file to them.

The default serialisation (``files`` with sha256) names the very digest mdl computes while it
downloads: such a file is checked for free, by pinning its sha256. Any other (``shards``, BLAKE2 or
BLAKE3) is hashed as it says by a :class:`Check` fed the bytes in order as they arrive
(mdl.transfer's Hasher), or read once from disk (verify)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path, PurePosixPath
from typing import NamedTuple, Protocol

from mdl.errors import IntegrityError, UsageError
from mdl.paths import path_problem, read_small_file, url_basename
from mdl.redact import printable

# model_signing leaves these out unless told
GIT_PATHS = (".git", ".gitattributes", ".github", ".gitignore")
# a serialisation's hash_type → the name of each item's digest (and of the hash mdl computes)
ALGORITHMS = {"sha256": "sha256", "blake2": "blake2b", "blake2b": "blake2b", "blake3": "blake3"}
# each digest's size in bytes: a signed digest of another size (an empty one) is no digest of any
# bytes, and must never read as "not pinned" (an empty sha256 is false wherever mdl pins)
DIGEST_BYTES = {"sha256": 32, "blake2b": 64, "blake3": 32}
READ_SIZE = 1 << 20
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
SIGNATURE_FILE = "model.sig"  # the name model_signing's own CLI writes and publishers ship
# a PEM key or certificate chain is a few KiB: a bigger file is not one (nor /dev/zero)
MAX_KEY_BYTES = 1 << 20


class Digest(Protocol):
    def update(self, data: bytes | memoryview, /) -> object: ...
    def hexdigest(self) -> str: ...


def git_path(path: str) -> bool:
    """Whether ``path`` is git's (``.gitattributes``, ``.git/…``): model_signing leaves those out of
    every signature, and mdl never installs them from a signed model."""
    return skipped_by_signature(path, ())


def skipped_by_signature(path: str, ignore_paths: Iterable[str]) -> bool:
    """Whether a signature leaves ``path`` out: it is one of ``ignore_paths`` (or below one), or
    git's.
    """
    parts = PurePosixPath(path).parts
    for ignored in (*ignore_paths, *GIT_PATHS):
        below = PurePosixPath(ignored).parts
        if below and parts[: len(below)] == below:
            return True
    return False


def new_digest(algorithm: str) -> Digest:
    # model_signing's "blake2" is BLAKE2b with its default 64-byte digest
    if algorithm in ("sha256", "blake2b"):
        return hashlib.new(algorithm)
    if algorithm == "blake3":
        from blake3 import blake3  # installed with model_signing (mdl[sign])

        return blake3()
    raise IntegrityError(f"unsupported digest algorithm {algorithm!r}")


class SignedFile(NamedTuple):
    """One file's signed digests: one ``(0, size, hex)`` for ``files``, one per shard for
    ``shards``.
    """

    path: str
    algorithm: str
    # (start, end, hex digest); end None: to the end of the file
    pieces: tuple[tuple[int, int | None, str], ...]
    sharded: bool = False

    @property
    def sha256(self) -> str | None:
        """The signed sha256 when it is the whole file's (the default serialisation): checked for
        free.
        """
        if self.algorithm == "sha256" and not self.sharded and len(self.pieces) == 1:
            return self.pieces[0][2]
        return None

    @property
    def key(self) -> str:
        """One string naming exactly what was signed (kept in the file's record once checked)."""
        joined = hashlib.sha256(
            ";".join(f"{s}:{e}:{d}" for s, e, d in self.pieces).encode()
        ).hexdigest()
        return (
            f"{self.algorithm}:{self.pieces[0][2]}"
            if not self.sharded
            else f"shards-{self.algorithm}:{joined}"
        )

    @property
    def size(self) -> int | None:
        """The file's size when the shards say it (the last shard's end)."""
        return self.pieces[-1][1] if self.sharded else None

    def check(self) -> Check:
        return Check(self)

    def check_apart(self) -> Check | None:
        """The check to run beside the sha256 mdl computes anyway (shards, BLAKE2/3), or None:
        that sha256 is it.
        """
        return Check(self) if self.sha256 is None else None

    @property
    def recorded(self) -> str | None:
        """What a file's record keeps once its bytes were held to these digests: the key when they
        are not its sha256 (which the record holds anyway)."""
        return self.key if self.sha256 is None else None

    def check_path(self, path: Path) -> None:
        """Read ``path`` once and hold it to the signed digests (IntegrityError naming the file
        otherwise).
        """
        check = self.check()
        with path.open("rb") as handle:
            while chunk := handle.read(READ_SIZE):
                check.update(chunk)
        if (bad := check.mismatch()) is not None:
            raise IntegrityError(
                f"{self.path}: {bad[0]} mismatch: the signature says {bad[1]}, the file has"
                f" {bad[2]}"
            )


class Check:
    """The signed digests of one file, computed from its bytes fed in order (shards are cut as
    they pass).
    """

    def __init__(self, signed: SignedFile) -> None:
        self.signed, self.position = signed, 0
        # the digests of the pieces hashed so far: the next one is pieces[len(got)]
        self.got: list[str] = []
        self.digest = new_digest(signed.algorithm)

    def update(self, data: bytes | memoryview) -> None:
        view, pieces = memoryview(data), self.signed.pieces
        while len(view):
            end = (
                pieces[len(self.got)][1]
                if len(self.got) < len(pieces) and self.signed.sharded
                else None
            )
            take = len(view) if end is None else min(len(view), end - self.position)
            self.digest.update(view[:take])
            self.position += take
            view = view[take:]
            if self.position == end:
                self._close_piece()

    def _close_piece(self) -> None:
        self.got.append(self.digest.hexdigest())
        self.digest = new_digest(self.signed.algorithm)

    def mismatch(self) -> tuple[str, str, str] | None:
        """(what, expected, got) when the bytes fed are not the signed file; None when they are."""
        pieces, kind = self.signed.pieces, f"signed {self.signed.algorithm}"
        if not self.signed.sharded:
            got = self.digest.hexdigest()
            return None if got == pieces[0][2] else (kind, pieces[0][2], got)
        if (index := len(self.got)) < len(pieces) and (
            self.position > pieces[index][0] or pieces[index][1] == 0
        ):
            # a short last shard (the file ended inside it), or an empty file's one shard
            self._close_piece()
        if len(self.got) != len(pieces) or self.position != pieces[-1][1]:
            return ("signed size", f"{pieces[-1][1]} bytes", f"{self.position} bytes")
        for (start, end, want), got in zip(pieces, self.got, strict=True):
            if got != want:
                return (f"{kind} of bytes {start}-{end}", want, got)
        return None


@dataclass(frozen=True)
class SignedManifest:
    """A signature's statement, verified: the files it signs, how, and the paths its signer left
    out.
    """

    method: str  # "files" or "shards"
    algorithm: str
    files: Mapping[str, SignedFile]
    ignore_paths: tuple[str, ...] = ()
    model_name: str = ""
    by: str = ""  # who signed it, as list/show say it (filled by the trust that verified it)
    extra: dict[str, str] = field(default_factory=dict, compare=False)

    @property
    def free(self) -> bool:
        """Whether every file's check is a sha256 mdl computes anyway (the default
        serialisation).
        """
        return self.method == "files" and self.algorithm == "sha256"

    def file(self, path: str, size: int | None) -> SignedFile | None:
        """What the signature says of ``path`` (``size`` bytes, if known): its digests, or None when
        it does not sign it. Sharded signatures list no shard for an empty file, and model_signing
        takes one as signed: so does mdl (held to be empty)."""
        found = self.files.get(path)
        if found is None and self.method == "shards" and size == 0:
            return SignedFile(path, "sha256", ((0, None, EMPTY_SHA256),))
        return found

    def to_json(self) -> dict[str, object]:
        """The statement as mdl keeps it once verified (``from_json`` reads it back, checked like
        any input).
        """
        return {
            "method": self.method,
            "algorithm": self.algorithm,
            "ignore_paths": list(self.ignore_paths),
            "model_name": self.model_name,
            "files": {
                path: [list(piece) for piece in one.pieces]
                for path, one in sorted(self.files.items())
            },
        }

    @classmethod
    def from_json(cls, doc: object) -> SignedManifest:
        """A kept statement; ValueError when it is not one ``to_json`` wrote (then the signature
        is verified again).
        """
        keys = ("method", "algorithm", "ignore_paths", "model_name", "files")
        if not isinstance(doc, dict) or set(doc) != set(keys):
            raise ValueError("not a kept statement")
        method, algorithm, ignored, name, files = (doc[key] for key in keys)
        if not _kept_header(method, algorithm, ignored, name) or not isinstance(files, dict):
            raise ValueError("not a kept statement")
        kept = {path: _kept_file(path, pieces, algorithm, method) for path, pieces in files.items()}
        return cls(method, algorithm, kept, tuple(ignored), name)

    def ignores(self, path: str) -> bool:
        """Whether the signer left ``path`` out on purpose (its ``ignore_paths``, or the git files
        model_signing always leaves out): such a file is not the model's, and is not installed from
        a signed source."""
        return skipped_by_signature(path, self.ignore_paths)

    def covers(self, path: str, size: int | None, sha256: str | None) -> bool:
        """Whether this signature covers the file ``path`` (as it names it) pinned at ``size``
        bytes and ``sha256``: named in it with that sha256 (and, sharded, that size), or left out
        by its signer (not the model's: never installed from a signed source). A signature of
        other digests (shards, BLAKE2/3) is held to by the bytes when they are fetched: without
        them, being named (and the shards' size) is all that can be checked."""
        one = self.file(path, size)
        if one is None:
            return self.ignores(path)
        if one.sha256 is not None and one.sha256 != sha256:
            return False
        return one.size is None or one.size == size


def _kept_header(method: object, algorithm: object, ignored: object, name: object) -> bool:
    """Whether a kept statement's fields besides its files are as ``to_json`` writes them."""
    return (
        method in ("files", "shards")
        and algorithm in ALGORITHMS.values()
        and isinstance(name, str)
        and isinstance(ignored, list)
        and all(isinstance(p, str) for p in ignored)
    )


def _kept_file(path: object, pieces: object, algorithm: str, method: str) -> SignedFile:
    """One kept file's digests; ValueError unless they are as ``to_json`` writes them."""
    if not isinstance(path, str) or not isinstance(pieces, list) or not pieces:
        raise ValueError("not a kept statement")
    if not all(map(_kept_piece, pieces)):
        raise ValueError("not a kept statement")
    # each digest of its algorithm's size, as a verified statement's are (never an empty one)
    if not all(_is_hex(piece[2], 2 * DIGEST_BYTES[algorithm]) for piece in pieces):
        raise ValueError("not a kept statement")
    return SignedFile(path, algorithm, tuple(map(tuple, pieces)), sharded=method == "shards")


def _is_hex(text: str, length: int) -> bool:
    return len(text) == length and all(c in "0123456789abcdef" for c in text)


def _kept_piece(piece: object) -> bool:
    """Whether ``piece`` is a ``[start, end or null, hex digest]`` list, as ``to_json`` writes
    one.
    """
    match piece:
        case [int(), int() | None, str()]:
            return isinstance(piece, list)
    return False


def manifest_from_items(
    items: Iterable[tuple[str, str, bytes]],
    *,
    method: str,
    algorithm: str,
    shard_size: float | None = None,
    ignore_paths: Iterable[str] = (),
    model_name: str = "",
) -> SignedManifest:
    """Our view of a manifest from its ``(identifier, algorithm, digest)`` items (a shard is
    ``path:start:end``).
    """
    if algorithm not in ALGORITHMS:
        raise IntegrityError(
            f"the signature uses digest algorithm {algorithm!r}, which mdl does not know"
        )
    if method not in ("files", "shards"):
        raise IntegrityError(
            f"the signature uses serialisation {method!r}, which mdl does not know"
        )
    size = _shard_size(shard_size) if method == "shards" else None
    named = ALGORITHMS[algorithm] + (f"-sharded-{size}" if size is not None else "")
    pieces = _pieces(items, named, DIGEST_BYTES[ALGORITHMS[algorithm]], sharded=size is not None)
    files = {
        path: _signed_file(path, parts, ALGORITHMS[algorithm], size)
        for path, parts in pieces.items()
    }
    return SignedManifest(method, ALGORITHMS[algorithm], files, tuple(ignore_paths), model_name)


def _shard_size(value: float | None) -> int:
    """The shard size of a sharded signature, a whole positive number of bytes (a JSON number:
    protobuf's Struct reads every number as a float)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1 << 62:
        raise IntegrityError(
            f"the signature's shard size {value!r} is not a positive number of bytes"
        )
    if value != int(value):
        raise IntegrityError(f"the signature's shard size {value!r} is not a whole number of bytes")
    return int(value)


_Piece = tuple[int, int | None, str]  # start, end (None: the whole file), hex digest


def _pieces(
    items: Iterable[tuple[str, str, bytes]], named: str, length: int, *, sharded: bool
) -> dict[str, list[_Piece]]:
    """The items' digests by path (a file's one, or a sharded file's shards), each of the digest
    algorithm ``named``, ``length`` bytes."""
    pieces: dict[str, list[_Piece]] = {}
    for identifier, item_algorithm, value in items:
        if item_algorithm != named:
            raise IntegrityError(
                f"the signature mixes digest algorithms ({item_algorithm} and {named})"
            )
        if len(value) != length:
            raise IntegrityError(
                f"the signature's {named} digest of '{printable(identifier, limit=120)}' is"
                f" {len(value)} bytes, not {length}"
            )
        if sharded:
            path, start, end = identifier.rsplit(":", 2)
            piece: _Piece = (int(start), int(end), value.hex())
        else:
            path, piece = identifier, (0, None, value.hex())
        pieces.setdefault(path, []).append(piece)
    return pieces


def _signed_file(
    path: str, parts: list[_Piece], algorithm: str, shard_size: int | None
) -> SignedFile:
    """One signed file, its path a model's and its pieces whole: one digest, or shards of
    ``shard_size`` end to end."""
    # no folder holds it: the official tool fails it too
    problem = path_problem(path)
    if problem is not None:
        raise IntegrityError(
            f"the signature names '{printable(path, limit=120)}', not a model's file: {problem}"
        )
    parts.sort()
    if shard_size is not None:
        _check_shards(path, parts, shard_size)
    elif len(parts) != 1:
        raise IntegrityError(f"the signature names {path!r} twice")
    return SignedFile(path, algorithm, tuple(parts), sharded=shard_size is not None)


def _check_shards(path: str, parts: list[_Piece], shard_size: int) -> None:
    """The shards of ``path`` (sorted) cover it end to end, each ``shard_size`` long but the
    last."""
    ends = [0, *(end for _, end, _ in parts)][:-1]
    lengths = [e - s if e is not None else -1 for s, e, _ in parts]
    whole = all(n == shard_size for n in lengths[:-1]) and 0 <= lengths[-1] <= shard_size
    starts = [start for start, _, _ in parts]
    if starts != ends or not whole or (lengths[-1] == 0 and len(parts) > 1):
        raise IntegrityError(f"the signature's shards of {path!r} do not cover it end to end")


@dataclass(frozen=True)
class Trust:
    """A ``[models.NAME.signature]`` table, its paths resolved against the catalog's folder: exactly
    one of ``key``, ``certificates`` or ``identity`` + ``issuer``; ``file`` is where the signature
    is (a path in the model, or a URL)."""

    key: Path | None = None
    certificates: tuple[Path, ...] = ()
    identity: str | None = None
    issuer: str | None = None
    file: str = SIGNATURE_FILE

    @property
    def kind(self) -> str:
        return (
            "key" if self.key is not None else "certificates" if self.certificates else "identity"
        )

    @property
    def file_is_url(self) -> bool:
        return self.file.startswith(("http://", "https://"))

    @property
    def installed_as(self) -> str:
        """Its path in the model folder: as the repo has it, or a URL's last path segment (never its
        query: a presigned URL's signature or a token)."""
        return url_basename(self.file, where="signature.file") if self.file_is_url else self.file

    @cached_property
    def material(self) -> tuple[bytes, ...]:
        """The key's or each certificate's bytes, read once for the run (a small regular file each:
        a FIFO or device is refused, never waited on or read without end): what the fingerprint
        digests, ``by`` names and the signature is verified with are the same bytes. OSError naming
        the file when one cannot be read."""
        return tuple(read_small_file(path, limit=MAX_KEY_BYTES) for path in self.paths)

    @property
    def paths(self) -> tuple[Path, ...]:
        """The files this trust reads: its key, or its certificate chain (none for a sigstore
        identity).
        """
        return (self.key,) if self.key is not None else self.certificates

    def fingerprint(self) -> str:
        """A digest of everything this trust decides by: the key's or certificates' bytes, or the
        identity and issuer (OSError when a file cannot be read). Another key at the same path is
        another trust."""
        digest = hashlib.sha256(self.kind.encode())
        for data in self.material:
            digest.update(b"\0" + data)
        digest.update(f"\0{self.identity}\0{self.issuer}".encode())
        return digest.hexdigest()

    def by(self) -> str:
        """Who signed what verifies with it, as ``list``/``show`` say it: the key's id (the sha256
        of its PEM, as model_signing's bundles hint it), the chain's first certificate's file, or
        the sigstore identity."""
        if self.key is not None:
            try:
                data = self.material[0]
            except OSError as exc:
                raise UsageError(
                    f"signature key {self.key}: cannot read it: {exc.strerror or exc}"
                ) from None
            return f"key {pem_key_id(data, self.key)[:16]}"
        if self.certificates:
            return f"certificate chain {self.certificates[0].name}"
        return f"{self.identity} ({self.issuer})"


def key_id(path: Path) -> str:
    """The public key's id as model_signing writes it in a bundle (sha256 of its
    SubjectPublicKeyInfo PEM); UsageError (exit 2) naming the file when it cannot be read or is not
    an EC public key in PEM."""
    try:
        data = read_small_file(path, limit=MAX_KEY_BYTES)
    except OSError as exc:
        raise UsageError(f"signature key {path}: cannot read it: {exc.strerror or exc}") from None
    return pem_key_id(data, path)


def pem_key_id(data: bytes, path: Path) -> str:
    """``key_id`` of a key's bytes (read from ``path``, which errors name)."""
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise UsageError(f"signature key {path}: not a PEM public key") from None
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise UsageError(
            f"signature key {path}: not an elliptic-curve key (model signing keys are ECDSA)"
        ) from None
    pem = key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(pem).hexdigest()
