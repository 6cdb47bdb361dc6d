"""``catalog.lock.parts``: the part hashes of locked files, beside the lock and as trusted as it.

Each entry is keyed by a file's sha256 (so it names bytes, not a model or a path: an entry no lock
line pins is harmless) and holds its size, its part size and the BLAKE3 of each part, base64 of the
32-byte digests end to end. ``mdl lock`` writes it with the lock (sorted, no timestamps); a pull
that takes a file's pins from the lock checks each part of it as it lands against these. mdl 0.6
never reads this file (it refuses unknown keys in the lock itself), so a fleet upgrades a machine
at a time. Read strictly: anything unexpected is one CatalogError naming the file.
"""

from __future__ import annotations

import binascii
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from mdl import partsize
from mdl.errors import CatalogError
from mdl.lockfile.ondisk import bytes_document, read_data, toml_document, write_changed
from mdl.paths import SHA256_HEX
from mdl.redact import printable

if TYPE_CHECKING:  # blake3 and the range checks load only for a pull that uses them
    from mdl.transfer.ranges import Digests

PARTS_VERSION = 1
SUFFIX = ".parts"  # catalog.lock → catalog.lock.parts
DIGEST_BYTES = 32  # a BLAKE3 digest
# 9,000 parts of 32 bytes (base64: 384 KB) for the biggest files; ~13 KB for a 5 GB shard
MAX_PARTS_BYTES = 64 << 20
_ONE = "a part-hashes file"
_KEYS = {"size", "part", "blake3"}
_HEADER = (
    "# catalog.lock.parts: the part hashes of the files catalog.lock pins, by sha256, written by"
    " `mdl lock`\n# with it. Commit them together; do not edit it by hand (mdl 0.6 ignores it).\n"
)


def parts_beside(lock: Path) -> Path:
    """Where the part hashes of the lock at ``lock`` are."""
    return lock.with_name(lock.name + SUFFIX)


class PartHashes(NamedTuple):
    """One file's part hashes: ``size`` bytes in parts of ``part`` (the last shorter), one BLAKE3
    digest each."""

    size: int
    part: int
    digests: tuple[bytes, ...]

    def trust(self) -> Digests:
        """The range trust these hashes make (kind ``lock``)."""
        from mdl.transfer.ranges import Digests

        return Digests.fixed("lock", self.size, self.part, self.digests)


def trust_for(parts: Mapping[str, PartHashes], sha256: str, size: int) -> Digests | None:
    """The range trust of the file whose pinned bytes are ``sha256`` and ``size`` long, if the
    part hashes hold one for exactly those bytes (never another file's)."""
    found = parts.get(sha256)
    return found.trust() if found is not None and found.size == size else None


def hashed(
    fd: int, size: int, *, on_bytes: Callable[[int], object] | None = None
) -> tuple[PartHashes, str]:
    """The part hashes of the ``size``-byte file open at ``fd`` (at mdl's part size for it) and its
    sha256, from one read (``on_bytes``: told each part's length; OSError when it is shorter)."""
    import hashlib

    from mdl.transfer.ranges import part_digests

    whole = hashlib.sha256()

    def feed(view: memoryview) -> None:
        whole.update(view)
        if on_bytes is not None:
            on_bytes(len(view))

    part = partsize.part_size(size)
    digests = part_digests(fd, size, part, whole=feed)
    return PartHashes(size, part, tuple(digests)), whole.hexdigest()


def read_parts(path: Path) -> dict[str, PartHashes]:
    """The part hashes at ``path`` ({} when there is no file); CatalogError naming it when it is
    bad, too big, not a file or a link (never followed: mdl writes it as a file)."""
    data = read_data(path, limit=MAX_PARTS_BYTES, what="it", one=_ONE)
    return {} if data is None else _entries(bytes_document(data, path), source=str(path))


def parse_parts(text: str, *, source: str = "catalog.lock.parts") -> dict[str, PartHashes]:
    """The entries of a part-hashes document; CatalogError naming ``source`` and the key for
    anything it does not expect (and for nothing else)."""
    return _entries(toml_document(text, source=source), source=source)


def _entries(document: dict[str, Any], *, source: str) -> dict[str, PartHashes]:
    """The entries a parsed document holds, every one checked."""
    version = document.get("version")
    if type(version) is int and version > PARTS_VERSION:
        raise CatalogError(f"{source}: version {version} is newer than this mdl understands")
    if type(version) is not int or version != PARTS_VERSION:
        raise CatalogError(f"{source}: version: must be {PARTS_VERSION}")
    if unknown := sorted(set(document) - {"version", "files"}):
        raise CatalogError(f"{source}: {unknown[0]}: not a key of this file")
    files = document.get("files", {})
    if not isinstance(files, dict):
        raise CatalogError(f"{source}: files: must be a table")
    return {
        sha256: _entry(sha256, doc, f"{source}: files.{printable(sha256, limit=80)}")
        for sha256, doc in files.items()
    }


def _entry(sha256: str, doc: Any, where: str) -> PartHashes:
    """One file's entry, every field checked."""
    if not SHA256_HEX.fullmatch(sha256):
        raise CatalogError(f"{where}: not a sha256 (64 lowercase hex digits)")
    if not isinstance(doc, dict) or set(doc) != _KEYS:
        raise CatalogError(f"{where}: must hold exactly {', '.join(sorted(_KEYS))}")
    size, part, encoded = doc["size"], doc["part"], doc["blake3"]
    for key, value in (("size", size), ("part", part)):
        if type(value) is not int or not 0 < value < 1 << 63:
            raise CatalogError(f"{where}.{key}: must be a whole number of bytes above 0")
    count = -(-size // part)
    if count > partsize.MOST_PARTS:
        raise CatalogError(
            f"{where}.part: {count} parts, more than the {partsize.MOST_PARTS} a file has"
        )
    return PartHashes(size, part, _digests(encoded, count, f"{where}.blake3"))


def _digests(encoded: object, count: int, where: str) -> tuple[bytes, ...]:
    """The ``count`` digests an entry's ``blake3`` holds: base64 of them end to end, no more."""
    try:
        raw = binascii.a2b_base64(encoded, strict_mode=True) if isinstance(encoded, str) else None
    except (binascii.Error, ValueError):
        raw = None
    if raw is None or len(raw) != count * DIGEST_BYTES:
        raise CatalogError(f"{where}: must be base64 of {count} digests of {DIGEST_BYTES} bytes")
    return tuple(raw[i : i + DIGEST_BYTES] for i in range(0, len(raw), DIGEST_BYTES))


def dump_parts(parts: Mapping[str, PartHashes]) -> str:
    """The document: byte-identical for the same entries (sorted by sha256, one line each)."""
    lines = [_HEADER, f"version = {PARTS_VERSION}\n", "\n[files]\n"]
    for sha256 in sorted(parts):
        one = parts[sha256]
        encoded = binascii.b2a_base64(b"".join(one.digests), newline=False).decode("ascii")
        lines.append(
            f'{sha256} = {{ size = {one.size}, part = {one.part}, blake3 = "{encoded}" }}\n'
        )
    return "".join(lines)


def write_parts(path: Path, parts: Mapping[str, PartHashes]) -> bool:
    """Write the part hashes atomically unless the file already holds exactly this text (or there
    are none and there is no file); True when it changed."""
    data = dump_parts(parts).encode()
    limit = MAX_PARTS_BYTES
    return write_changed(path, data, limit=limit, what="it", one=_ONE, create=bool(parts))


def kept(parts: Mapping[str, PartHashes], pinned: Mapping[str, int]) -> dict[str, PartHashes]:
    """The entries of ``parts`` for bytes still pinned (``pinned``: sha256 → size)."""
    return {sha256: one for sha256, one in parts.items() if pinned.get(sha256) == one.size}
