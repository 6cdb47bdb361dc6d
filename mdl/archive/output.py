"""Where a pack's bytes go: a file (via ``.partial``), stdout that is a regular file, or a pipe.

Seekable output is written in one pass over the sources: zipfile writes each local header, streams the
data while sha256 and CRC-32 are computed, then seeks back to fill in the header; the manifest at the
front is written with placeholder hashes and filled in last. Only the archive's own sha256 needs a
second read (of the archive, not the sources): it covers the manifest, which changes last.
A pipe cannot be rewound, so every source is hashed first (sha256 and CRC-32), then written with
:class:`~mdl.archive.zipstream.StreamZipWriter`: stored entries carry sizes and CRC in their local headers.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import stat
import zipfile
import zlib
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import IO, Any, BinaryIO

from mdl.archive.names import MANIFEST_NAME
from mdl.archive.zipstream import StreamZipWriter
from mdl.archive.zipwriter import (
    HashingCopier,
    SourceFile,
    entry_info,
    folder_info,
    hash_sources,
    rewrite_stored_entry,
    write_entries,
    zip_date_time,
)
from mdl.errors import LocalFSError, NoSpaceError
from mdl.progress import Progress
from mdl.store import not_a_file, not_a_file_error


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
        manifest = entry_info(f"{stem}/{MANIFEST_NAME}", size=len(placeholder), date_time=stamp, deflate=False)
        archive.writestr(manifest, placeholder)  # first, small, stored, never ZIP64
        hashes = write_entries(
            archive, top=stem, sources=contents.files, date_time=stamp, copier=copier, progress=progress
        )
        for name in contents.folders:
            archive.mkdir(folder_info(f"{stem}/{name}", date_time=stamp))
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
