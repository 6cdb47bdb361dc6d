"""Writing the deterministic zip: to a file (via ``.partial``), to stdout that is a regular file, or to a pipe.

Seekable output takes one read of each source: zipfile writes each local header, streams the data while sha256
and CRC-32 are computed (in two threads), then seeks back to fill in the header; the manifest at the front is
written with placeholder hashes and filled in last, so the archive's own sha256 needs a second read (of the
archive, not the sources). A pipe cannot be rewound: every source is hashed first (sha256 and CRC-32), then
written with :class:`~mdl.archive.zipstream.StreamZipWriter`, stored entries with sizes and CRC in their local
headers.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
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
from typing import IO, Any, BinaryIO, Protocol

from mdl.archive.names import MANIFEST_NAME
from mdl.archive.zipstream import StreamZipWriter
from mdl.errors import IntegrityError, LocalFSError, MdlError, NoSpaceError
from mdl.progress import Progress
from mdl.store import not_a_file, not_a_file_error

# 1 MiB chunks: big enough that per-chunk Python overhead vanishes, small enough to stay in L2/L3
# while sha256 (one core) and crc32+write (the other) read the same buffer. See bench/README-pack.md.
CHUNK_SIZE = 1 << 20
ENTRY_OVERHEAD = 30 + 46 + 20 + 28 + 16  # local + central headers, zip64 extras, data descriptor
_DOS_MIN, _DOS_MAX = (1980, 1, 1, 0, 0, 0), (2107, 12, 31, 23, 59, 58)
_LOCAL_HEADER = struct.Struct("<4s22sHH")  # signature, fixed fields, name length, extra length
Stamp = tuple[int, int, int, int, int, int]


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


@dataclass(frozen=True)
class Contents:
    """What one archive holds: its top-level folder, the manifest's fields, the files, the empty folders."""

    stem: str
    meta: dict[str, Any]
    files: list[SourceFile]
    folders: list[str]
    epoch: int | None  # SOURCE_DATE_EPOCH

    def manifest(self, hashes: dict[str, str]) -> bytes:
        """The manifest; unknown hashes are zeros of the same length so it can be filled in place later."""
        listed = [
            {"path": f.arcname, "size": f.size, "sha256": hashes.get(f.arcname, "0" * 64), "role": f.role}
            for f in self.files
        ]
        doc = {**self.meta, "files": listed}
        return (json.dumps(doc, indent=2, ensure_ascii=False, allow_nan=False) + "\n").encode("utf-8")


class _Sink(Protocol):
    def write(self, data: memoryview, /) -> int: ...


def zip_date_time(source_date_epoch: int | None) -> Stamp:
    """The fixed entry timestamp: 1980-01-01, or SOURCE_DATE_EPOCH clamped to what DOS dates can hold."""
    if source_date_epoch is None:
        return _DOS_MIN
    stamp = tuple(time.gmtime(max(source_date_epoch, 0))[:6])
    return max(_DOS_MIN, min(_DOS_MAX, (stamp[0], stamp[1], stamp[2], stamp[3], stamp[4], stamp[5])))


def entry_info(name: str, date_time: Stamp, size: int = 0, deflate: bool = False) -> zipfile.ZipInfo:
    """A ZipInfo that depends on nothing but its arguments; a folder (``name`` ends with "/") as ``zip -r`` has it."""
    info = zipfile.ZipInfo(name, date_time)
    info.create_system = 3  # Unix, so external_attr carries the mode
    folder = (stat.S_IFDIR | 0o755) << 16 | 0x10  # and the MS-DOS directory bit
    info.external_attr = folder if name.endswith("/") else (stat.S_IFREG | 0o644) << 16
    info.compress_type = zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED
    # Known up front so zipfile picks ZIP64 when the entry *starts*: it switches at 2 GiB, and a
    # too-small guess breaks the archive after 2 GiB have been written.
    info.file_size = size
    info.CRC = 0
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
    """Copies a file in chunks to a sink while a second thread sha256-hashes the same chunk: hashlib and zlib.crc32
    release the GIL on large buffers, and two buffers alternate so the next read overlaps the hashing."""

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
    date_time: Stamp,
    copier: HashingCopier,
    progress: Progress,
    force_zip64: bool = False,
) -> dict[str, str]:
    """Write every source as ``top/arcname``; return sha256 per arcname. ``force_zip64``: ZIP64 headers always."""
    hashes: dict[str, str] = {}
    for src in sources:
        info = entry_info(f"{top}/{src.arcname}", date_time, src.size, src.deflate)
        progress.start(src.arcname, label=src.arcname, total=src.size, path=src.arcname)
        # info.file_size is set, so zipfile writes ZIP64 headers exactly when the size needs them.
        with archive.open(info, "w", force_zip64=force_zip64) as entry:
            hashes[src.arcname] = copier.copy(src, entry, progress, src.arcname)
        progress.finish(src.arcname, ok=True)
    return hashes


def rewrite_stored_entry(fh: IO[bytes], info: zipfile.ZipInfo, data: bytes) -> None:
    """Overwrite a stored entry's bytes in place (same length) and fix its CRC in both headers: how the manifest
    comes first yet carries the hashes of the files after it."""
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


def check_space(folder: Path, needed: int) -> None:
    """Fail before writing when the archive cannot fit (exit 7)."""
    usage = os.statvfs(folder)
    free = usage.f_bavail * usage.f_frsize
    if free < needed:
        raise NoSpaceError(f"not enough space in {folder}: the archive needs {needed} bytes, {free} are free")


def local_fs_error(exc: OSError, what: str) -> LocalFSError:
    """An OSError while writing ``what`` as exit 7 (no space gets its own kind)."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return NoSpaceError(f"no space left while writing {what}")
    return LocalFSError(f"cannot write {what}: {exc.strerror}")


def _write_seekable(fh: IO[bytes], contents: Contents, progress: Progress) -> dict[str, str]:
    """The whole archive at ``fh``'s position, one read of each source, then the empty folders; sha256 per file."""
    placeholder, stem, stamp = contents.manifest({}), contents.stem, zip_date_time(contents.epoch)
    with HashingCopier() as copier, zipfile.ZipFile(fh, "w") as archive:
        manifest = entry_info(f"{stem}/{MANIFEST_NAME}", stamp, len(placeholder))
        archive.writestr(manifest, placeholder)  # first, small, stored, never ZIP64
        hashes = write_entries(
            archive, top=stem, sources=contents.files, date_time=stamp, copier=copier, progress=progress
        )
        for name in contents.folders:
            archive.mkdir(entry_info(f"{stem}/{name}", stamp))
        rewrite_stored_entry(fh, manifest, contents.manifest(hashes))
    return hashes


def _digest_from(fd: int, start: int, progress: Progress, name: str) -> tuple[str, int]:
    """The archive's own sha256, read back once it is written: a batch of its own (gigabytes take a while)."""
    end = os.lseek(fd, 0, os.SEEK_END)
    os.lseek(fd, start, os.SEEK_SET)
    key = f"sha256:{name}"
    progress.begin(total_bytes=end - start, files=1)
    progress.start(key, label=f"checksumming {name}", total=end - start)
    with HashingCopier() as copier:
        found = copier.digest_fd(fd, partial(progress.advance, key))
    progress.finish(key, ok=True)
    return found


def write_file_archive(target: Path, contents: Contents, progress: Progress) -> tuple[int, str, dict[str, str]]:
    """Write ``target`` via ``target.partial`` and rename; return its size, sha256 and the files' sha256."""
    partial_path = target.with_name(target.name + ".partial")
    kind = not_a_file(partial_path)  # lstat: a FIFO there would take the archive and never give it back
    if kind is not None:
        raise not_a_file_error(partial_path, kind, hint="remove it: the archive is written there, then renamed")
    flags = os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(partial_path, flags, 0o644)
    except OSError as exc:
        raise local_fs_error(exc, str(partial_path)) from exc
    try:
        with os.fdopen(fd, "w+b") as fh:
            hashes = _write_seekable(fh, contents, progress)
            fh.flush()
            os.fsync(fh.fileno())  # durable before the rename makes it visible under its final name
            digest, size = _digest_from(fh.fileno(), 0, progress, target.name)
        partial_path.replace(target)
    except OSError as exc:
        partial_path.unlink(missing_ok=True)
        raise local_fs_error(exc, str(target)) from exc
    except BaseException:
        partial_path.unlink(missing_ok=True)
        raise
    return size, digest, hashes


def stdout_file(stdout: BinaryIO) -> tuple[int, str | None] | None:
    """(descriptor, path) when stdout is a regular file, else None (a pipe, a terminal, a socket)."""
    try:
        fileno = stdout.fileno()
    except (AttributeError, OSError, ValueError):
        return None
    if not stat.S_ISREG(os.fstat(fileno).st_mode):
        return None
    try:
        return fileno, str(Path(f"/proc/self/fd/{fileno}").readlink())
    except OSError:
        return fileno, None


def _reopen_for_update(fileno: int) -> int | None:
    """A read-write descriptor on the same regular file as ``fileno`` (not in append mode), or None."""
    if fcntl.fcntl(fileno, fcntl.F_GETFL) & os.O_APPEND:
        return None  # every write would land at the end: patching headers in place is impossible
    try:
        fd = os.open(f"/proc/self/fd/{fileno}", os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return None
    mine, theirs = os.fstat(fd), os.fstat(fileno)
    if (mine.st_dev, mine.st_ino) != (theirs.st_dev, theirs.st_ino):
        os.close(fd)
        return None
    return fd


def write_stdout_archive(out: BinaryIO, contents: Contents, progress: Progress) -> tuple[int, str, dict[str, str]]:
    """Write to stdout: in one pass when it is a regular file we can update, else hashing first; the archive's size
    and sha256, and the files' sha256."""
    out.flush()
    found = stdout_file(out)
    fd = _reopen_for_update(found[0]) if found is not None else None
    if found is None or fd is None:
        return _write_pipe(out, contents, progress)
    progress.begin(total_bytes=sum(f.size for f in contents.files), files=len(contents.files))
    start = os.lseek(found[0], 0, os.SEEK_CUR)
    with os.fdopen(fd, "w+b") as fh:
        fh.seek(start)
        hashes = _write_seekable(fh, contents, progress)
        fh.flush()
        end = fh.tell()
        digest, size = _digest_from(fh.fileno(), start, progress, Path(found[1]).name if found[1] else "stdout")
    os.lseek(found[0], end, os.SEEK_SET)  # what the caller writes next goes after the archive
    return size, digest, hashes


def _write_pipe(out: IO[bytes], contents: Contents, progress: Progress) -> tuple[int, str, dict[str, str]]:
    """Hash every source (sha256 for the manifest, CRC-32 for the stored headers), then stream the archive."""
    writer, stem, files = StreamZipWriter(out, zip_date_time(contents.epoch)), contents.stem, contents.files
    total = sum(f.size for f in files)
    with HashingCopier() as copier:
        progress.begin(total_bytes=total, files=len(files))  # two batches: every file is hashed, then written
        sums = hash_sources(files, copier, progress)
        hashes = {name: sha for name, (sha, _) in sums.items()}
        manifest = contents.manifest(hashes)
        writer.start(f"{stem}/{MANIFEST_NAME}", size=len(manifest), crc=zlib.crc32(manifest), deflate=False)
        writer.write(manifest)
        writer.end()
        progress.begin(total_bytes=total, files=len(files))
        for src in files:
            progress.start(src.arcname, label=src.arcname, total=src.size, path=src.arcname)
            crc = None if src.deflate else sums[src.arcname][1]
            writer.start(f"{stem}/{src.arcname}", size=src.size, crc=crc, deflate=src.deflate)
            copier.copy(src, writer, progress, src.arcname, expected=hashes[src.arcname])
            writer.end()
            progress.finish(src.arcname, ok=True)
        for folder in contents.folders:
            writer.add_folder(f"{stem}/{folder}")
        writer.close()
    out.flush()
    return writer.size, writer.digest.hexdigest(), hashes
