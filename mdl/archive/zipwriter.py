"""Deterministic streaming zip writing: each source byte read once, hashed in a thread while it is written."""

from __future__ import annotations

import hashlib
import os
import stat
import struct
import time
import zipfile
import zlib
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import IO, Protocol

from mdl.errors import IntegrityError, LocalFSError, MdlError
from mdl.progress import Progress

# 1 MiB chunks: big enough that per-chunk Python overhead vanishes, small enough to stay in L2/L3
# while sha256 (one core) and crc32+write (the other) read the same buffer. See bench/README-pack.md.
CHUNK_SIZE = 1 << 20
ENTRY_OVERHEAD = 30 + 46 + 20 + 28 + 16  # local + central headers, zip64 extras, data descriptor
_DOS_MIN, _DOS_MAX = (1980, 1, 1, 0, 0, 0), (2107, 12, 31, 23, 59, 58)
_LOCAL_HEADER = struct.Struct("<4s22sHH")  # signature, fixed fields, name length, extra length


@dataclass(frozen=True)
class SourceFile:
    """A regular file chosen for the archive, with the identity it had when it was chosen."""

    arcname: str  # path inside the archive's top-level folder
    path: Path  # real path: no symlink left in it
    shown: str  # the name users know it by (relative to the run), for messages
    size: int
    mtime_ns: int
    device: int
    inode: int
    role: str
    deflate: bool


class _Sink(Protocol):
    """Where chunk bytes go (a zip entry, or nowhere when only hashing)."""

    def write(self, data: memoryview, /) -> int: ...


def zip_date_time(source_date_epoch: int | None) -> tuple[int, int, int, int, int, int]:
    """The fixed entry timestamp: 1980-01-01, or SOURCE_DATE_EPOCH clamped to what DOS dates can hold."""
    if source_date_epoch is None:
        return _DOS_MIN
    stamp = tuple(time.gmtime(max(source_date_epoch, 0))[:6])
    return max(_DOS_MIN, min(_DOS_MAX, (stamp[0], stamp[1], stamp[2], stamp[3], stamp[4], stamp[5])))


def entry_info(
    name: str, *, size: int, date_time: tuple[int, int, int, int, int, int], deflate: bool
) -> zipfile.ZipInfo:
    """A ZipInfo that depends on nothing but its arguments: same input, same bytes."""
    info = zipfile.ZipInfo(name, date_time)
    info.create_system = 3  # Unix, so external_attr carries the mode
    info.external_attr = (stat.S_IFREG | 0o644) << 16
    info.compress_type = zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED
    # Known up front so zipfile picks ZIP64 when the entry *starts*: it switches at 2 GiB, and a
    # too-small guess breaks the archive after 2 GiB have been written.
    info.file_size = size
    return info


def folder_info(name: str, *, date_time: tuple[int, int, int, int, int, int]) -> zipfile.ZipInfo:
    """An empty folder's entry (``name`` ends with "/"), as ``zip -r`` writes one: stored, no data, 0755."""
    info = zipfile.ZipInfo(name, date_time)
    info.create_system = 3
    info.external_attr = (stat.S_IFDIR | 0o755) << 16 | 0x10  # and the MS-DOS directory bit
    info.compress_type = zipfile.ZIP_STORED
    info.file_size = info.compress_size = info.CRC = 0
    return info


def open_unchanged(src: SourceFile) -> int:
    """Open ``src`` without following links or blocking on a FIFO, and check it is the file that was chosen."""
    try:
        fd = os.open(src.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise LocalFSError(f"cannot open '{src.shown}': {exc.strerror}") from exc
    st = os.fstat(fd)
    if (st.st_dev, st.st_ino) != (src.device, src.inode) or not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise IntegrityError(f"'{src.shown}' was replaced while being packed; is the run still writing?")
    if (st.st_size, st.st_mtime_ns) != (src.size, src.mtime_ns):
        os.close(fd)
        raise IntegrityError(f"'{src.shown}' changed while being packed; is the run still writing?")
    if hasattr(os, "posix_fadvise"):
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
    return fd


class HashingCopier:
    """Copies a file in chunks to a sink while a second thread sha256-hashes the same chunk.

    hashlib and zlib.crc32 release the GIL on large buffers, so the hash (one core) overlaps the crc32 + write
    (the other core); two buffers alternate so the next read can start while the previous chunk is hashed.
    """

    def __init__(self, chunk_size: int = CHUNK_SIZE) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mdl-sha256")
        self._buffers = (bytearray(chunk_size), bytearray(chunk_size))

    def __enter__(self) -> HashingCopier:
        return self

    def __exit__(self, *_: object) -> None:
        self._pool.shutdown(wait=True)

    def digest_fd(
        self, fd: int, advance: Callable[[int], None], sink: _Sink | None = None, src: SourceFile | None = None
    ) -> tuple[str, int]:
        """sha256 and length of everything from ``fd``'s offset on, written to ``sink`` too; ``advance(n)`` hears
        each block read. Reading past ``src``'s size fails: the file grew."""
        digest = hashlib.sha256()
        pending: Future[None] | None = None
        total = turn = 0
        try:
            while count := os.readv(fd, [self._buffers[turn]]):
                total += count
                if src is not None and total > src.size:
                    raise IntegrityError(f"'{src.shown}' grew while being packed; is the run still writing?")
                view = memoryview(self._buffers[turn])[:count]
                job = self._pool.submit(digest.update, view)
                if sink is not None:
                    sink.write(view)
                if pending is not None:
                    pending.result()
                pending = job
                turn ^= 1
                advance(count)
        finally:
            # Never hand a buffer back (or return) while the hash thread may still read it.
            if pending is not None:
                pending.result()
        return digest.hexdigest(), total

    def copy(self, src: SourceFile, sink: _Sink, progress: Progress, key: str, *, expected: str | None = None) -> str:
        """Stream ``src`` into ``sink`` as progress item ``key``; its sha256, which must be ``expected`` if given."""
        fd = open_unchanged(src)
        try:
            digest, total = self.digest_fd(fd, partial(progress.advance, key), sink, src)
            st = os.fstat(fd)
        finally:
            os.close(fd)
        if total != src.size or (st.st_size, st.st_mtime_ns) != (src.size, src.mtime_ns):
            raise IntegrityError(f"'{src.shown}' changed while being packed; is the run still writing?")
        if expected is not None and digest != expected:
            raise IntegrityError(f"'{src.shown}' changed between hashing and packing; is the run still writing?")
        return digest


class _CrcSink:
    """Discards bytes but keeps their CRC-32: the hashing pass before streaming to a pipe."""

    def __init__(self) -> None:
        self.crc = 0

    def write(self, data: memoryview, /) -> int:
        self.crc = zlib.crc32(data, self.crc)
        return len(data)


def hash_sources(
    sources: Iterable[SourceFile], copier: HashingCopier, progress: Progress
) -> dict[str, tuple[str, int]]:
    """(sha256, CRC-32) of each source, read once, without writing anything (for output that cannot be rewound)."""
    sums: dict[str, tuple[str, int]] = {}
    for src in sources:
        key = "hash:" + src.arcname
        progress.start(key, label=f"hashing {src.arcname}", total=src.size, path=src.arcname)
        sink = _CrcSink()
        sums[src.arcname] = (copier.copy(src, sink, progress, key), sink.crc)
        progress.finish(key, ok=True)
    return sums


def write_entries(
    archive: zipfile.ZipFile,
    *,
    top: str,
    sources: Iterable[SourceFile],
    date_time: tuple[int, int, int, int, int, int],
    copier: HashingCopier,
    progress: Progress,
    force_zip64: bool = False,
) -> dict[str, str]:
    """Write every source as ``top/arcname``; return sha256 per arcname. ``force_zip64``: ZIP64 headers always."""
    hashes: dict[str, str] = {}
    for src in sources:
        info = entry_info(f"{top}/{src.arcname}", size=src.size, date_time=date_time, deflate=src.deflate)
        progress.start(src.arcname, label=src.arcname, total=src.size, path=src.arcname)
        # info.file_size is set, so zipfile writes ZIP64 headers exactly when the size needs them.
        with archive.open(info, "w", force_zip64=force_zip64) as entry:
            hashes[src.arcname] = copier.copy(src, entry, progress, src.arcname)
        progress.finish(src.arcname, ok=True)
    return hashes


def rewrite_stored_entry(fh: IO[bytes], info: zipfile.ZipInfo, data: bytes) -> None:
    """Overwrite a stored entry's bytes in place (same length) and fix its CRC in both headers.

    This is how the manifest can come first yet carry hashes computed while the files after it were
    written: it is written with placeholder hashes of the same length, then filled in.
    """
    if info.compress_type != zipfile.ZIP_STORED or len(data) != info.file_size:
        raise MdlError(f"internal: cannot rewrite '{info.filename}' in place")
    end = fh.tell()
    fh.seek(info.header_offset)
    signature, _, name_len, extra_len = _LOCAL_HEADER.unpack(fh.read(_LOCAL_HEADER.size))
    if signature != b"PK\x03\x04":
        raise MdlError(f"internal: no local header for '{info.filename}'")
    crc = zlib.crc32(data)
    fh.seek(info.header_offset + 14)  # CRC-32 field of the local header (APPNOTE 4.3.7)
    fh.write(struct.pack("<L", crc))
    fh.seek(info.header_offset + _LOCAL_HEADER.size + name_len + extra_len)
    fh.write(data)
    info.CRC = crc  # the central directory is written from this at close
    fh.seek(end)
