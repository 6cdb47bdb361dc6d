"""Writing the deterministic zip: to a file (via ``.partial``), to stdout that is a regular file, or
to a pipe, the same bytes whichever it is (:class:`StreamZipWriter` writes them all).

Seekable output: each entry is written while sha256 and CRC-32 are computed (two threads), one read
of each source; a stored entry's CRC-32 and the manifest at the front are filled in at the end. A
pipe cannot be rewound: every source is hashed first, then the same entries are streamed. Stored
entries carry their size and CRC-32 in their local headers (Java's ZipInputStream reads no *stored*
entry with a data descriptor), deflated ones a descriptor. An entry that only *starts* past 4 GiB
stays ZIP32, since Java reads an 8-byte descriptor only for big entries: stream-zip makes such
entries ZIP64, which is why it is not used (bench/README-pack.md)."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import stat
import struct
import time
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import IO, Any, BinaryIO, Protocol

from mdl.archive.zipread import MANIFEST_NAME
from mdl.errors import IntegrityError, LocalFSError, MdlError, UsageError, disk_error
from mdl.folderwalk import make_folders
from mdl.paths import opened, quoted, shown_name
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


def local_fs_error(exc: OSError, what: str) -> LocalFSError:
    """An OSError while writing ``what`` as exit 7 (no space gets its own kind)."""
    return disk_error(
        exc,
        full=f"no space left while writing {what}",
        other=f"cannot write {what}: {exc.strerror}",
    )


def _write_entries(
    writer: StreamZipWriter,
    contents: Contents,
    manifest: bytes,
    progress: Progress,
    copy: Callable[[SourceFile, StreamZipWriter], str],
    sign: Callable[[dict[str, str]], bytes | None],
) -> tuple[dict[str, str], bytes | None]:
    """Every entry in its order, the same in a file as in a pipe: the manifest, the files (each
    ``copy`` into the writer, which returns its sha256), model.sig (``sign`` of their digests), the
    empty folders. The files' sha256 and the signature."""
    stem = contents.stem
    writer.stored(f"{stem}/{MANIFEST_NAME}", manifest)  # first, small, stored, never ZIP64
    hashes: dict[str, str] = {}
    for src in contents.files:
        progress.start(src.arcname, label=src.arcname, total=src.size, path=src.arcname)
        writer.start(f"{stem}/{src.arcname}", size=src.size, deflate=src.deflate)
        hashes[src.arcname] = copy(src, writer)
        writer.end()
        progress.finish(src.arcname, ok=True)
    if (signature := sign(hashes)) is not None:
        writer.stored(f"{stem}/{SIGNATURE_FILE}", signature)
    for folder in contents.folders:
        writer.stored(f"{stem}/{folder}", attr=_FOLDER_ATTR)
    return hashes, signature


def _final_manifest(contents: Contents, hashes: dict[str, str], signature: bytes | None) -> bytes:
    """The manifest with the files' hashes, as long as its placeholder (spaces before its last
    newline fill the room a signature's size had): the same bytes whether written first or patched
    in."""
    data, room = contents.manifest(hashes, signature), len(contents.manifest({}))
    return data[:-1] + b" " * (room - len(data)) + data[-1:]


def _write_seekable(
    fh: IO[bytes], contents: Contents, progress: Progress, name: str
) -> tuple[int, str, dict[str, str]]:
    """The whole archive from ``fh``'s position in one read of each file, then read back for its
    own sha256: its size, sha256 and the files'."""
    writer = StreamZipWriter(fh, zip_date_time(contents.epoch), seekable=True)
    with HashingCopier() as copier:
        hashes, signature = _write_entries(
            writer,
            contents,
            contents.manifest({}),
            progress,
            lambda src, sink: copier.copy(src, sink, progress, src.arcname),
            contents.signed,
        )
        # The manifest comes first yet carries the files' hashes: patched in place (the hashes'
        # zeros were as long, the signature's size had room).
        writer.rewrite(0, _final_manifest(contents, hashes, signature))
        writer.close()
        fh.flush()
        end, fd, key = fh.tell(), fh.fileno(), f"sha256:{name}"
        os.lseek(fd, writer.base, os.SEEK_SET)
        progress.begin(total_bytes=writer.size, files=1)
        progress.start(key, label=f"checksumming {name}", total=writer.size)
        digest, size = copier.digest_fd(fd, partial(progress.advance, key))
        progress.finish(key, ok=True)
    fh.seek(end)
    return size, digest, hashes


# what link(2) says on a filesystem that has no hard links
NO_LINKS = (errno.EPERM, errno.EOPNOTSUPP, errno.ENOSYS, errno.EMLINK)


def write_file_archive(
    target: Path, contents: Contents, progress: Progress, *, force: bool = False
) -> tuple[int, str, dict[str, str]]:
    """Write ``target`` via ``target.partial`` (held: another pack of the same ``-o`` is exit 7)
    and put it in place: renamed over what is there with ``force``, else linked, never over an
    archive another run put there meanwhile (exit 2); return its size, sha256 and the files'
    sha256.
    """
    try:
        make_folders(target.parent)  # (never one anyone may write, whatever the umask)
    except OSError as exc:
        raise local_fs_error(exc, shown_name(target.parent)) from exc
    files = contents.files
    refuse_no_room(target.parent, contents.most_bytes(), "the archive")
    progress.begin(total_bytes=sum(f.size for f in files), files=len(files))
    partial_path = target.with_name(target.name + ".partial")
    fd = _held_partial(partial_path)
    try:
        with os.fdopen(fd, "w+b") as fh:
            size, digest, hashes = _write_seekable(fh, contents, progress, target.name)
            os.fsync(fh.fileno())  # durable before the rename makes it visible under its final name
            if not _still_named(partial_path, fh.fileno()):
                raise _another_pack(partial_path)  # (it took the name before this run held it)
            _put_in_place(partial_path, target, force=force)  # (while it is held)
    except BaseException as exc:
        if not isinstance(exc, _TakenError):  # (the name is the other run's now)
            partial_path.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise local_fs_error(exc, shown_name(target)) from exc
        raise
    return size, digest, hashes


class _TakenError(LocalFSError):
    """Another pack of the same ``-o`` holds its partial (exit 7)."""


def _another_pack(path: Path) -> _TakenError:
    return _TakenError(
        f"{shown_name(path)}: another mdl pack is writing this archive",
        hint="let it finish, or write the archive elsewhere (-o)",
    )


def _still_named(path: Path, fd: int) -> bool:
    """Whether ``path`` still names the file open at ``fd``."""
    try:
        at, held = os.lstat(path), os.fstat(fd)
    except FileNotFoundError:
        return False
    return (at.st_dev, at.st_ino) == (held.st_dev, held.st_ino)


def _held_partial(path: Path) -> int:
    """``path`` opened fresh for this run and held (``flock``) until it is in place. Made fresh
    (engine rule 14): what is at the name (a killed pack's leftover, or another name of an outside
    file planted there) loses only its name, never its bytes; nothing is written through it. One
    another pack holds is never taken: its run is exit 7, named."""
    # lstat: a FIFO there would take the archive for good
    if (kind := not_a_file(path)) is not None:
        raise not_a_file_error(
            path, kind, hint="remove it: the archive is written there, then renamed"
        )
    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        if _held_by_another(path):
            raise _another_pack(path)
        path.unlink(missing_ok=True)
        fd = os.open(path, flags, 0o644)
    except FileExistsError as exc:  # another pack made it since the look above
        raise _another_pack(path) from exc
    except OSError as exc:
        raise local_fs_error(exc, shown_name(path)) from exc
    # held: blocking, as another run's look (_held_by_another) holds it for an instant only; a
    # Ctrl-C is heard while it waits
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def _held_by_another(path: Path) -> bool:
    """Whether a pack holds ``path`` (its partial) now; a leftover no run holds is not."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except (FileNotFoundError, PermissionError):
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # (its lock, if taken, with it)
    return False


def _put_in_place(partial_path: Path, target: Path, *, force: bool) -> None:
    """The written archive at ``target``: renamed over what is there with ``force``; else linked,
    which no archive put there since the run began survives unseen (exit 2, as at the start)."""
    if force:
        partial_path.replace(target)
        return
    try:
        os.link(partial_path, target, follow_symlinks=False)
    except FileExistsError as exc:
        raise UsageError(
            f"{quoted(target)} already exists: another run put an archive there while this one"
            " packed",
            hint="use --force to replace it",
        ) from exc
    except OSError as exc:  # a filesystem without links (FAT, some FUSE): the look, then the rename
        if exc.errno not in NO_LINKS or os.path.lexists(target):
            raise
        partial_path.replace(target)
        return
    partial_path.unlink()


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
    files = contents.files
    total = sum(f.size for f in files)
    hashes: dict[str, str] = {}
    with HashingCopier() as copier:
        # two batches: every file is hashed, then written
        progress.begin(total_bytes=total, files=len(files))
        for src in files:
            key, sink = "hash:" + src.arcname, _CrcSink()
            progress.start(key, label=f"hashing {src.arcname}", total=src.size, path=src.arcname)
            hashes[src.arcname] = copier.copy(src, sink, progress, key)
            writer.crcs[f"{contents.stem}/{src.arcname}"] = sink.crc
            progress.finish(key, ok=True)
        signature = contents.signed(hashes)  # (hashes gains its sha256)
        progress.begin(total_bytes=total, files=len(files))
        _write_entries(
            writer,
            contents,
            _final_manifest(contents, hashes, signature),
            progress,
            lambda src, sink: copier.copy(
                src, sink, progress, src.arcname, expected=hashes[src.arcname]
            ),
            lambda _: signature,
        )
        writer.close()
    out.flush()
    return writer.size, writer.digest.hexdigest(), hashes


def _mark(value: int) -> int:
    return _MARK if value >= ZIP64_FROM else value


@dataclass
class _Entry:
    """One entry as its headers say it (sizes and CRC-32 known at its end)."""

    name: bytes
    shown: str
    flags: int
    method: int
    attr: int
    offset: int  # of its local header, from the archive's start
    size: int
    zip64: bool  # in its local header
    crc: int | None  # None: computed while it is written
    compressed: int = 0

    @property
    def local_extra(self) -> bytes:
        """The local header's ZIP64 field: a deflated entry's sizes follow it, in its descriptor."""
        known = (0, 0) if self.method else (self.size, self.size)
        return struct.pack("<HHQQ", 1, 16, *known) if self.zip64 else b""


class StreamZipWriter:
    """Writes entries in order (start, write, end; close), keeping the size and sha256 of its
    output. ``seekable``: a stored entry's CRC-32 unknown at its start is computed as it is written
    and patched into its local header, and :meth:`rewrite` fills an entry in again; the bytes are
    those a pipe gets, whose CRC-32s are known from a hashing pass (``crcs``)."""

    def __init__(self, out: IO[bytes], date_time: Stamp, *, seekable: bool = False) -> None:
        year, month, day, hour, minute, second = date_time
        self._stamp = (
            hour << 11 | minute << 5 | second // 2,
            (year - 1980) << 9 | month << 5 | day,
        )
        self._out, self.size, self.digest = out, 0, hashlib.sha256()
        self._seekable, self.base = seekable, out.tell() if seekable else 0
        self.crcs: dict[str, int] = {}  # an entry's CRC-32 by name, from a hashing pass
        self._entries: list[_Entry] = []
        self._count = self._running = self._data_start = 0
        self._squeezer: Any = None

    def _raw(self, data: bytes | memoryview) -> None:
        if data:
            self._out.write(data)
            if not self._seekable:  # (a seekable output is read back once it is patched)
                self.digest.update(data)
            self.size += len(data)

    def _common(
        self, entry: _Entry, version: int, crc: int, sizes: tuple[int, int], extra: bytes
    ) -> bytes:
        """What a local header and a central record share (APPNOTE 4.3.7, 4.3.12)."""
        name = entry.name
        return _COMMON.pack(
            version, entry.flags, entry.method, *self._stamp, crc, *sizes, len(name), len(extra)
        )

    def _local(self, entry: _Entry) -> bytes:
        known = (0, 0) if entry.method else (entry.size, entry.size)
        sizes = (_MARK, _MARK) if entry.zip64 else known
        crc = 0 if entry.method or entry.crc is None else entry.crc
        version = 45 if entry.zip64 else 20
        extra = entry.local_extra
        return b"PK\x03\x04" + self._common(entry, version, crc, sizes, extra) + entry.name + extra

    def start(
        self, name: str, *, size: int, deflate: bool, attr: int = _FILE_ATTR, crc: int | None = None
    ) -> None:
        """Begin an entry of ``size`` bytes, its CRC-32 ``crc`` (else from ``crcs``; unknown only
        on a seekable output)."""
        crc = self.crcs.get(name) if crc is None else crc
        if crc is None and not self._seekable:
            raise MdlError(f"internal: no CRC-32 for {quoted(name)} before streaming it")
        encoded = name.encode("utf-8")
        flags = (0 if encoded.isascii() else _UTF8) | (_DESCRIPTOR if deflate else 0)
        # zlib's deflateBound: the most deflate can grow incompressible data. Only then ZIP64,
        # because Java reads an 8-byte descriptor only when the real sizes need it, whatever the
        # local header says.
        zip64 = (deflate_bound(size) if deflate else size) >= ZIP64_FROM
        entry = _Entry(encoded, name, flags, 8 if deflate else 0, attr, self.size, size, zip64, crc)
        self._entries.append(entry)
        self._count = self._running = 0
        self._squeezer = (
            zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -15) if deflate else None
        )
        self._raw(self._local(entry))
        self._data_start = self.size

    def write(self, data: bytes | memoryview, /) -> int:
        self._count += len(data)
        if self._entries[-1].crc is None:
            self._running = zlib.crc32(data, self._running)
        self._raw(self._squeezer.compress(data) if self._squeezer is not None else data)
        return len(data)

    def end(self) -> None:
        """Finish the current entry: its CRC-32 patched in (stored, seekable) or its descriptor
        (deflated)."""
        entry = self._entries[-1]
        # the header (stored) or the central record already says the size
        if self._count != entry.size:
            raise MdlError(
                f"internal: {quoted(entry.shown)} got {self._count} bytes, its header says"
                f" {entry.size}"
            )
        self._raw(self._squeezer.flush() if self._squeezer is not None else b"")
        entry.compressed = self.size - self._data_start
        if entry.crc is None:
            entry.crc = self._running
            if not entry.method:
                self._patch(entry.offset + 14, struct.pack("<L", entry.crc))
        if entry.method:
            if not entry.zip64 and entry.compressed >= _MARK:
                raise MdlError(
                    f"internal: {quoted(entry.shown)} deflated to more than 4 GiB without ZIP64"
                )
            layout = "<4sLQQ" if entry.zip64 else "<4sLLL"
            self._raw(struct.pack(layout, b"PK\x07\x08", entry.crc, entry.compressed, entry.size))

    def _patch(self, offset: int, data: bytes) -> None:
        """Write ``data`` at ``offset`` (from the archive's start) and come back to its end."""
        self._out.seek(self.base + offset)
        self._out.write(data)
        self._out.seek(self.base + self.size)

    def rewrite(self, index: int, data: bytes) -> None:
        """Entry ``index`` (stored, written already) filled in with ``data`` of its very length."""
        entry = self._entries[index]
        if not self._seekable or entry.method or len(data) != entry.size:
            raise MdlError(f"internal: cannot rewrite {quoted(entry.shown)} in place")
        entry.crc = zlib.crc32(data)
        self._patch(entry.offset + 14, struct.pack("<L", entry.crc))
        self._patch(entry.offset + 30 + len(entry.name) + len(entry.local_extra), data)

    def stored(self, name: str, data: bytes = b"", *, attr: int = _FILE_ATTR) -> None:
        """A whole small entry, stored: the manifest, model.sig, or a folder (no data)."""
        self.start(name, size=len(data), deflate=False, attr=attr, crc=zlib.crc32(data))
        self.write(data)
        self.end()

    def _central(self, entry: _Entry) -> bytes:
        values = (entry.size, entry.compressed, entry.offset)
        extra = b"".join(struct.pack("<Q", v) for v in values if v >= ZIP64_FROM)
        extra, version = (
            (struct.pack("<HH", 1, len(extra)) + extra, 45)
            if extra
            else (b"", 45 if entry.zip64 else 20)
        )
        usize, csize, offset = map(_mark, values)
        # comment length, disk, internal attributes
        tail = struct.pack("<HHHLL", 0, 0, 0, entry.attr, offset)
        crc = entry.crc or 0
        common = self._common(entry, version, crc, (csize, usize), extra)
        return b"PK\x01\x02" + bytes([version, 3]) + common + tail + entry.name + extra

    def close(self) -> None:
        """The central directory and end records (ZIP64 ones when counts or offsets need them)."""
        start = self.size
        self._raw(b"".join(map(self._central, self._entries)))
        size, count = self.size - start, len(self._entries)
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
