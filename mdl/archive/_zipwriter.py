"""Writing the deterministic zip: to a file (via ``.partial``), to stdout that is a regular file, or
to a pipe.

Seekable output: zipfile writes each entry while sha256 and CRC-32 are computed (two threads), one
read of each source; the manifest at the front is filled in last. A pipe cannot be rewound: every
source is hashed first, then :class:`StreamZipWriter` writes stored entries with size and CRC-32 in
their local headers (Java's ZipInputStream reads no *stored* entry with a data descriptor), deflated
ones with a descriptor. An entry that only *starts* past 4 GiB stays ZIP32, since Java reads an
8-byte descriptor only for big entries: stream-zip makes such entries ZIP64, which is why it is not
used (bench/README-pack.md)."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import stat
import struct
import time
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import IO, Any, BinaryIO, Protocol

from mdl.archive.zipread import MANIFEST_NAME
from mdl.errors import IntegrityError, LocalFSError, MdlError, disk_error
from mdl.paths import opened, quoted
from mdl.progress import Progress
from mdl.signing.statement import SIGNATURE_FILE
from mdl.store.filesystem import not_a_file, not_a_file_error, refuse_no_room

# 1 MiB chunks: big enough that per-chunk Python overhead vanishes, small enough to stay in L2/L3
# while sha256 (one core) and crc32+write (the other) read the same buffer. See
# bench/README-pack.md.
CHUNK_SIZE = 1 << 20
# local + central headers, zip64 extras, data descriptor; and the end records (ZIP64's, its locator)
ENTRY_OVERHEAD, END_RECORDS = 30 + 46 + 20 + 28 + 24, 22 + 56 + 20
_DOS_MIN, _DOS_MAX = (1980, 1, 1, 0, 0, 0), (2107, 12, 31, 23, 59, 58)
Stamp = tuple[int, int, int, int, int, int]
_MARK = 0xFFFFFFFF  # "see the ZIP64 extra field"
ZIP64_FROM = 0xFFFFFFFF  # sizes and offsets from here on need ZIP64 fields (lowered in tests)
# and the MS-DOS directory bit, as zip -r
_FILE_ATTR, _FOLDER_ATTR = 0o100644 << 16, 0o040755 << 16 | 0x10
_DESCRIPTOR, _UTF8 = 0x08, 0x800
# what a local header and a central record share (APPNOTE 4.3.7, 4.3.12)
_COMMON = struct.Struct("<HHHHHLLLHH")
# Room the manifest keeps for its model.sig record's size, whose digits are known only once it is
# signed.
_SIZE_ROOM = 20


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
    """What one archive holds: its top-level folder, the manifest's fields, the files, the empty
    folders, and what signs them (``sign``: the files' sha256 by arcname → the bytes of model.sig,
    written after the files)."""

    stem: str
    meta: dict[str, Any]
    files: list[SourceFile]
    folders: list[str]
    epoch: int | None  # SOURCE_DATE_EPOCH
    sign: Callable[[dict[str, str]], bytes] | None = None

    def manifest(self, hashes: dict[str, str], signature: bytes | None = None) -> bytes:
        """The manifest, model.sig listed last like any file once signed; before (``signature``
        None), a placeholder as long as the final manifest can be: unknown hashes are zeros of the
        same length, and a signed archive's leaves room for the signature's size, so it can be
        filled in place later (padded with spaces to fit)."""
        listed = [
            {
                "path": f.arcname,
                "size": f.size,
                "sha256": hashes.get(f.arcname, "0" * 64),
                "role": f.role,
            }
            for f in self.files
        ]
        if self.sign is not None:
            sha256 = "0" * 64 if signature is None else hashlib.sha256(signature).hexdigest()
            size = 0 if signature is None else len(signature)
            listed.append(
                {"path": SIGNATURE_FILE, "size": size, "sha256": sha256, "role": "signature"}
            )
        text = json.dumps(
            {**self.meta, "files": listed}, indent=2, ensure_ascii=False, allow_nan=False
        )
        room = _SIZE_ROOM if self.sign is not None and signature is None else 0
        return (text + " " * room + "\n").encode("utf-8")

    def most_bytes(self) -> int:
        """The most the archive can take (a check of free space): the manifest, every file
        (deflated at most to zlib's bound), every folder, each with its headers, and the end
        records; model.sig is not known yet."""
        named = [
            (MANIFEST_NAME, len(self.manifest({}))),
            *((f.arcname, deflate_bound(f.size) if f.deflate else f.size) for f in self.files),
            *((folder, 0) for folder in self.folders),
        ]
        top = len(self.stem.encode()) + 1
        return END_RECORDS + sum(
            size + ENTRY_OVERHEAD + 2 * (top + len(name.encode())) for name, size in named
        )

    def signed(self, hashes: dict[str, str]) -> bytes | None:
        """model.sig over the files' ``hashes`` (which gain its own sha256), or None for an
        unsigned archive.
        """
        if self.sign is None:
            return None
        signature = self.sign(hashes)
        hashes[SIGNATURE_FILE] = hashlib.sha256(signature).hexdigest()
        return signature


class _Sink(Protocol):
    def write(self, data: memoryview, /) -> int: ...


def deflate_bound(size: int) -> int:
    """zlib's deflateBound: the most deflate can grow ``size`` incompressible bytes to."""
    return size + (size >> 12) + (size >> 14) + (size >> 25) + 13


def zip_date_time(source_date_epoch: int | None) -> Stamp:
    """The fixed entry timestamp: 1980-01-01, or SOURCE_DATE_EPOCH clamped to what DOS dates can
    hold.
    """
    if source_date_epoch is None:
        return _DOS_MIN
    stamp = tuple(time.gmtime(max(source_date_epoch, 0))[:6])
    return max(
        _DOS_MIN, min(_DOS_MAX, (stamp[0], stamp[1], stamp[2], stamp[3], stamp[4], stamp[5]))
    )


def entry_info(
    name: str, date_time: Stamp, size: int = 0, deflate: bool = False
) -> zipfile.ZipInfo:
    """A ZipInfo that depends on nothing but its arguments; a folder (``name`` ends with "/") as
    ``zip -r`` has it.
    """
    info = zipfile.ZipInfo(name, date_time)
    info.create_system = 3  # Unix, so external_attr carries the mode
    info.external_attr = _FOLDER_ATTR if name.endswith("/") else _FILE_ATTR
    info.compress_type = zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED
    # Known up front so zipfile picks ZIP64 when the entry *starts*: it switches at 2 GiB, and a
    # too-small guess breaks the archive after 2 GiB have been written.
    info.file_size = size
    info.CRC = 0
    return info


@contextlib.contextmanager
def open_unchanged(src: SourceFile) -> Iterator[int]:
    """``src`` opened (no link followed, no FIFO waited on) if it is the file that was chosen,
    closed on exit.
    """
    with contextlib.ExitStack() as stack:
        try:
            fd, st = stack.enter_context(opened(src.path))
        except OSError as exc:
            raise LocalFSError(f"cannot open {quoted(src.shown)}: {exc.strerror}") from exc
        if (st.st_dev, st.st_ino) != (src.device, src.inode) or not stat.S_ISREG(st.st_mode):
            raise IntegrityError(
                f"{quoted(src.shown)} was replaced while being packed; is the run still writing?"
            )
        if (st.st_size, st.st_mtime_ns) != (src.size, src.mtime_ns):
            raise IntegrityError(
                f"{quoted(src.shown)} changed while being packed; is the run still writing?"
            )
        if hasattr(os, "posix_fadvise"):
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
        yield fd


class HashingCopier(ThreadPoolExecutor):
    """Copies a file in chunks to a sink while its one thread sha256-hashes the same chunk: hashlib
    and zlib.crc32 release the GIL on large buffers, and two buffers alternate so the next read
    overlaps the hashing."""

    def __init__(self) -> None:
        super().__init__(max_workers=1, thread_name_prefix="mdl-sha256")
        self._buffers = (bytearray(CHUNK_SIZE), bytearray(CHUNK_SIZE))

    def digest_fd(
        self,
        fd: int,
        advance: Callable[[int], None],
        sink: _Sink | None = None,
        src: SourceFile | None = None,
    ) -> tuple[str, int]:
        """sha256 and length of ``fd`` from its offset, also written to ``sink``; reading past
        ``src``'s size fails.
        """
        digest = hashlib.sha256()
        pending: Future[None] | None = None
        total = turn = 0
        try:
            while count := os.readv(fd, [self._buffers[turn]]):
                total += count
                if src is not None and total > src.size:
                    raise IntegrityError(
                        f"{quoted(src.shown)} grew while being packed; is the run still writing?"
                    )
                view = memoryview(self._buffers[turn])[:count]
                job = self.submit(digest.update, view)
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

    def copy(
        self,
        src: SourceFile,
        sink: _Sink,
        progress: Progress,
        key: str,
        *,
        expected: str | None = None,
    ) -> str:
        """Stream ``src`` into ``sink`` as progress item ``key``; its sha256, which must be
        ``expected`` if given.
        """
        with open_unchanged(src) as fd:
            digest, total = self.digest_fd(fd, partial(progress.advance, key), sink, src)
            st = os.fstat(fd)
        if total != src.size or (st.st_size, st.st_mtime_ns) != (src.size, src.mtime_ns):
            raise IntegrityError(
                f"{quoted(src.shown)} changed while being packed; is the run still writing?"
            )
        if expected is not None and digest != expected:
            raise IntegrityError(
                f"{quoted(src.shown)} changed between hashing and packing; is the run still"
                " writing?"
            )
        return digest


class _CrcSink:
    """Discards bytes but keeps their CRC-32: the hashing pass before streaming to a pipe."""

    def __init__(self) -> None:
        self.crc = 0

    def write(self, data: memoryview, /) -> int:
        self.crc = zlib.crc32(data, self.crc)
        return len(data)


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
    """Write every source as ``top/arcname``; return sha256 per arcname. ``force_zip64``: ZIP64
    headers always.
    """
    hashes: dict[str, str] = {}
    for src in sources:
        info = entry_info(f"{top}/{src.arcname}", date_time, src.size, src.deflate)
        progress.start(src.arcname, label=src.arcname, total=src.size, path=src.arcname)
        with archive.open(info, "w", force_zip64=force_zip64) as entry:
            hashes[src.arcname] = copier.copy(src, entry, progress, src.arcname)
        progress.finish(src.arcname, ok=True)
    return hashes


def local_fs_error(exc: OSError, what: str) -> LocalFSError:
    """An OSError while writing ``what`` as exit 7 (no space gets its own kind)."""
    return disk_error(
        exc,
        full=f"no space left while writing {what}",
        other=f"cannot write {what}: {exc.strerror}",
    )


def _write_seekable(
    fh: IO[bytes], contents: Contents, progress: Progress, name: str
) -> tuple[int, str, dict[str, str]]:
    """The whole archive from ``fh``'s position, then read back for its own sha256: its size,
    sha256 and the files'.
    """
    placeholder, stem = contents.manifest({}), contents.stem
    stamp, start = zip_date_time(contents.epoch), fh.tell()
    with HashingCopier() as copier:
        with zipfile.ZipFile(fh, "w") as archive:
            manifest = entry_info(f"{stem}/{MANIFEST_NAME}", stamp, len(placeholder))
            archive.writestr(manifest, placeholder)  # first, small, stored, never ZIP64
            hashes = write_entries(
                archive,
                top=stem,
                sources=contents.files,
                date_time=stamp,
                copier=copier,
                progress=progress,
            )
            # after the files: it signs their digests
            if (signature := contents.signed(hashes)) is not None:
                archive.writestr(
                    entry_info(f"{stem}/{SIGNATURE_FILE}", stamp, len(signature)), signature
                )
            for folder in contents.folders:
                archive.mkdir(entry_info(f"{stem}/{folder}", stamp))
            # The manifest comes first yet carries the files' hashes: its bytes (the hashes' zeros
            # were as long, the signature's size had room) and CRC-32 patched in place, at the
            # offsets of APPNOTE 4.3.7.
            data, written = contents.manifest(hashes, signature), fh.tell()
            data = data[:-1] + b" " * (len(placeholder) - len(data)) + data[-1:]
            fh.seek(manifest.header_offset)
            header = fh.read(30)
            # never patch over another entry
            if len(data) != manifest.file_size or header[:4] != b"PK\x03\x04":
                raise MdlError(f"internal: cannot rewrite {quoted(manifest.filename)} in place")
            name_len, extra_len = struct.unpack("<HH", header[26:30])
            manifest.CRC = zlib.crc32(data)  # the central directory is written from this at close
            fh.seek(manifest.header_offset + 14)
            fh.write(struct.pack("<L", manifest.CRC))
            fh.seek(manifest.header_offset + 30 + name_len + extra_len)
            fh.write(data)
            fh.seek(written)
        fh.flush()
        end, fd, key = fh.tell(), fh.fileno(), f"sha256:{name}"
        length = os.lseek(fd, 0, os.SEEK_END) - start
        os.lseek(fd, start, os.SEEK_SET)
        progress.begin(total_bytes=length, files=1)
        progress.start(key, label=f"checksumming {name}", total=length)
        digest, size = copier.digest_fd(fd, partial(progress.advance, key))
        progress.finish(key, ok=True)
    fh.seek(end)
    return size, digest, hashes


def write_file_archive(
    target: Path, contents: Contents, progress: Progress
) -> tuple[int, str, dict[str, str]]:
    """Write ``target`` via ``target.partial`` and rename; return its size, sha256 and the files'
    sha256.
    """
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise local_fs_error(exc, quoted(target.parent)) from exc
    files = contents.files
    refuse_no_room(target.parent, contents.most_bytes(), "the archive")
    progress.begin(total_bytes=sum(f.size for f in files), files=len(files))
    partial_path = target.with_name(target.name + ".partial")
    # lstat: a FIFO there would take the archive for good
    if (kind := not_a_file(partial_path)) is not None:
        raise not_a_file_error(
            partial_path, kind, hint="remove it: the archive is written there, then renamed"
        )
    # Made fresh (engine rule 14): what is at the name (a killed pack's leftover, or another name of
    # an outside file planted there) loses only its name, never its bytes; nothing is written
    # through it.
    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        partial_path.unlink(missing_ok=True)
        fd = os.open(partial_path, flags, 0o644)
    except OSError as exc:
        raise local_fs_error(exc, quoted(partial_path)) from exc
    try:
        with os.fdopen(fd, "w+b") as fh:
            size, digest, hashes = _write_seekable(fh, contents, progress, target.name)
            os.fsync(fh.fileno())  # durable before the rename makes it visible under its final name
        partial_path.replace(target)
    except BaseException as exc:
        partial_path.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise local_fs_error(exc, quoted(target)) from exc
        raise
    return size, digest, hashes


def stdout_file(stdout: BinaryIO) -> tuple[int, str | None] | None:
    """(descriptor, path) when stdout is a regular file, else None (a pipe, a terminal, a
    socket).
    """
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


def write_stdout_archive(
    out: BinaryIO, contents: Contents, progress: Progress
) -> tuple[int, str, dict[str, str]]:
    """Write to stdout: in one pass when it is a regular file we can update, else hashing first."""
    try:  # the files are opened by open_unchanged, which raises our own errors
        out.flush()
        found, fd = stdout_file(out), None
        # A read-write descriptor on the same file, to patch headers in place: never in append mode
        # (every write would land at the end).
        if found is not None and not fcntl.fcntl(found[0], fcntl.F_GETFL) & os.O_APPEND:
            with contextlib.suppress(OSError):
                fd = os.open(f"/proc/self/fd/{found[0]}", os.O_RDWR | os.O_CLOEXEC)
            if fd is not None and not os.path.samestat(os.fstat(fd), os.fstat(found[0])):
                os.close(fd)
                fd = None
        if found is None or fd is None:
            return _write_pipe(out, contents, progress)
        progress.begin(total_bytes=sum(f.size for f in contents.files), files=len(contents.files))
        with os.fdopen(fd, "w+b") as fh:
            fh.seek(os.lseek(found[0], 0, os.SEEK_CUR))
            name = Path(found[1]).name if found[1] else "stdout"
            size, digest, hashes = _write_seekable(fh, contents, progress, name)
            # what the caller writes next goes after the archive
            os.lseek(found[0], fh.tell(), os.SEEK_SET)
        return size, digest, hashes
    except OSError as exc:
        raise local_fs_error(exc, "to stdout") from exc


def _write_pipe(
    out: IO[bytes], contents: Contents, progress: Progress
) -> tuple[int, str, dict[str, str]]:
    """Hash every source (sha256 for the manifest, CRC-32 for the stored headers), then stream
    the archive.
    """
    writer = StreamZipWriter(out, zip_date_time(contents.epoch))
    stem, files = contents.stem, contents.files
    total = sum(f.size for f in files)
    hashes: dict[str, str] = {}
    crcs: dict[str, int] = {}
    with HashingCopier() as copier:
        # two batches: every file is hashed, then written
        progress.begin(total_bytes=total, files=len(files))
        for src in files:
            key, sink = "hash:" + src.arcname, _CrcSink()
            progress.start(key, label=f"hashing {src.arcname}", total=src.size, path=src.arcname)
            hashes[src.arcname] = copier.copy(src, sink, progress, key)
            crcs[src.arcname] = sink.crc
            progress.finish(key, ok=True)
        signature = contents.signed(hashes)
        writer.stored(f"{stem}/{MANIFEST_NAME}", contents.manifest(hashes, signature))
        progress.begin(total_bytes=total, files=len(files))
        for src in files:
            progress.start(src.arcname, label=src.arcname, total=src.size, path=src.arcname)
            writer.start(
                f"{stem}/{src.arcname}", size=src.size, crc=crcs[src.arcname], deflate=src.deflate
            )
            copier.copy(src, writer, progress, src.arcname, expected=hashes[src.arcname])
            writer.end()
            progress.finish(src.arcname, ok=True)
        if signature is not None:
            writer.stored(f"{stem}/{SIGNATURE_FILE}", signature)
        for folder in contents.folders:
            writer.stored(f"{stem}/{folder}", attr=_FOLDER_ATTR)
        writer.close()
    out.flush()
    return writer.size, writer.digest.hexdigest(), hashes


def _mark(value: int) -> int:
    return _MARK if value >= ZIP64_FROM else value


class StreamZipWriter:
    """Writes entries in order (start, write, end; close), never seeking, keeping the size and
    sha256 of its output.
    """

    def __init__(self, out: IO[bytes], date_time: tuple[int, int, int, int, int, int]) -> None:
        year, month, day, hour, minute, second = date_time
        self._stamp = (
            hour << 11 | minute << 5 | second // 2,
            (year - 1980) << 9 | month << 5 | day,
        )
        self._out, self.size, self.digest = out, 0, hashlib.sha256()
        self._central: list[bytes] = []

    def _raw(self, data: bytes | memoryview) -> None:
        if data:
            self._out.write(data)
            self.digest.update(data)
            self.size += len(data)

    def _record(
        self,
        prefix: bytes,
        version: int,
        crc: int,
        sizes: tuple[int, int],
        extra: bytes,
        tail: bytes,
    ) -> bytes:
        common = _COMMON.pack(
            version,
            self._flags,
            self._method,
            *self._stamp,
            crc,
            *sizes,
            len(self._name),
            len(extra),
        )
        return prefix + common + tail + self._name + extra

    def start(
        self, name: str, *, size: int, crc: int, deflate: bool, attr: int = _FILE_ATTR
    ) -> None:
        """Begin an entry of ``size`` bytes and CRC-32 ``crc``, both known from the hashing pass."""
        self._shown, self._name, self._size, self._crc = name, name.encode("utf-8"), size, crc
        self._offset, self._attr, self._method, self._count = (
            self.size,
            attr,
            8 if deflate else 0,
            0,
        )
        self._flags = (0 if self._name.isascii() else _UTF8) | (_DESCRIPTOR if deflate else 0)
        self._squeezer = (
            zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -15) if deflate else None
        )
        # zlib's deflateBound: the most deflate can grow incompressible data. Only then ZIP64,
        # because Java reads an 8-byte descriptor only when the real sizes need it, whatever the
        # local header says.
        self._zip64 = (deflate_bound(size) if deflate else size) >= ZIP64_FROM
        # a deflated entry's sizes and CRC-32 follow it, in its descriptor
        known = (0, 0) if deflate else (size, size)
        extra = struct.pack("<HHQQ", 1, 16, *known) if self._zip64 else b""
        self._version = 45 if self._zip64 else 20
        sizes = (_MARK, _MARK) if self._zip64 else known
        self._raw(
            self._record(b"PK\x03\x04", self._version, 0 if deflate else crc, sizes, extra, b"")
        )
        self._data_start = self.size

    def write(self, data: bytes | memoryview, /) -> int:
        self._count += len(data)
        self._raw(self._squeezer.compress(data) if self._squeezer is not None else data)
        return len(data)

    def end(self) -> None:
        """Finish the current entry: its descriptor if deflated, its central record."""
        # the header (stored) or the central record already says the size
        if self._count != self._size:
            raise MdlError(
                f"internal: {quoted(self._shown)} got {self._count} bytes, its header says"
                f" {self._size}"
            )
        self._raw(self._squeezer.flush() if self._squeezer is not None else b"")
        compressed = self.size - self._data_start
        if self._squeezer is not None:
            if not self._zip64 and compressed >= _MARK:
                raise MdlError(
                    f"internal: {quoted(self._shown)} deflated to more than 4 GiB without ZIP64"
                )
            layout = "<4sLQQ" if self._zip64 else "<4sLLL"
            self._raw(struct.pack(layout, b"PK\x07\x08", self._crc, compressed, self._size))
        values = (self._size, compressed, self._offset)
        extra = b"".join(struct.pack("<Q", v) for v in values if v >= ZIP64_FROM)
        extra, version = (
            (struct.pack("<HH", 1, len(extra)) + extra, 45) if extra else (b"", self._version)
        )
        usize, csize, offset = map(_mark, values)
        # comment length, disk, internal attributes
        tail = struct.pack("<HHHLL", 0, 0, 0, self._attr, offset)
        self._central.append(
            self._record(
                b"PK\x01\x02" + bytes([version, 3]), version, self._crc, (csize, usize), extra, tail
            )
        )

    def stored(self, name: str, data: bytes = b"", *, attr: int = _FILE_ATTR) -> None:
        """A whole small entry, stored: the manifest, model.sig, or a folder (no data)."""
        self.start(name, size=len(data), crc=zlib.crc32(data), deflate=False, attr=attr)
        self.write(data)
        self.end()

    def close(self) -> None:
        """The central directory and end records (ZIP64 ones when counts or offsets need them)."""
        start = self.size
        self._raw(b"".join(self._central))
        size, count = self.size - start, len(self._central)
        # the ZIP64 end record, then its locator
        if count >= 0xFFFF or start >= ZIP64_FROM or size >= ZIP64_FROM:
            self._raw(
                struct.pack(
                    "<4sQHHLLQQQQ", b"PK\x06\x06", 44, 45, 45, 0, 0, count, count, size, start
                )
            )
            self._raw(struct.pack("<4sLQL", b"PK\x06\x07", 0, start + size, 1))
        count16 = min(count, 0xFFFF)
        self._raw(
            struct.pack(
                "<4sHHHHLLH", b"PK\x05\x06", 0, 0, count16, count16, _mark(size), _mark(start), 0
            )
        )
