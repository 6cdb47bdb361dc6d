"""``file://`` shared folders (NFS, Lustre, a mounted volume) as a store: read through the transport
the run's HTTP client mounts for ``file://`` (mdl.transfer.files), written with exclusive creates
(``link``) and compare-and-swap under a lock; ``FolderStore`` is the registry's store.

A store URI is ``file:///abs/path`` (or ``file://localhost/abs/path``, RFC 8089) whose path is the
file's own, not percent-encoded: values fill a template as they are, as S3 keys do.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from urllib.parse import quote

from mdl.buckets.protocol import Listed, Seen, StoredObject
from mdl.errors import LocalFSError, MdlError, NoSpaceError, NotFoundError, UsageError
from mdl.redact import Secrets, printable, safe_text

SCHEME = "file://"
LOCAL_HOST = "localhost"
# mdl's own files in a mirror folder (temp files, the clock, the lock): never objects
OWN_PREFIX = ".mdl-"
TEMP_PREFIX = ".mdl-tmp-"
CLOCK_NAME = ".mdl-clock"
LOCK_NAME = ".mdl-lock"
CHUNK = 1 << 20  # bytes copied at a time


def parse_file_uri(uri: str) -> tuple[str, str]:
    """``file:///abs/path`` → (its authority as given, the absolute path); refused (exit 2): a
    host other than this machine, a relative path, an empty, ``.`` or ``..`` segment, a folder
    (trailing ``/``), a control character. A filled template's values cannot climb out of its
    fixed folder: its literal text is the URI's start and no segment may go up."""
    shown = safe_text(uri)
    if not uri.startswith(SCHEME):
        raise UsageError(f"{shown}: expected file:///abs/path")
    authority, slash, rest = uri[len(SCHEME) :].partition("/")
    if authority.lower() not in ("", LOCAL_HOST) or not slash:
        raise UsageError(
            f"{shown}: a shared folder is a path on this machine: file:///abs/path (three slashes)"
        )
    path = "/" + rest
    if printable(path) != path or "\0" in path:
        raise UsageError(f"{shown}: a control character in the path")
    if path.endswith("/"):
        raise UsageError(f"{shown}: names a folder, not a file")
    if any(seg in ("", ".", "..") for seg in rest.split("/")):
        raise UsageError(f"{shown}: an empty, '.' or '..' segment in the path")
    return authority, path


def file_url(path: str) -> str:
    """The GET URL the run's client serves from ``path``: httpx2 reads ``file:///x`` as a relative
    URL (no host), so the host is named."""
    return f"{SCHEME}{LOCAL_HOST}{quote(os.fsencode(path), safe='/')}"


def file_etag(st: os.stat_result) -> str:
    """A version tag that changes with every write: every write is a new file linked or renamed
    into place (a new inode), and its time and size say the rest."""
    return f"{st.st_ino:x}-{st.st_mtime_ns:x}-{st.st_size:x}"


def local_error(exc: OSError, path: Path | str, *, what: str) -> MdlError:
    """A failure of the folder as ours (exit 7), naming the path."""
    said = f"{what} {safe_text(str(path))}: {exc.strerror or exc}"
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return NoSpaceError(said)
    return LocalFSError(said)


# --- writes: exclusive creates, compare-and-swap under a lock ------------------------------------

# A POSIX lock (fcntl) is what NFS implements itself (NLM, NFSv4 locks; Linux NFS emulates flock
# with it, some clients keep flock local) and a dead holder's is released by the server. It is the
# process's, not the thread's: threads of one process take a stripe of these first.
_STRIPES = tuple(threading.Lock() for _ in range(64))


@contextmanager
def folder_locked(folder: Path) -> Iterator[None]:
    """The folder's lock (``.mdl-lock`` in it) held: a compare and the write that follows it are
    one step for every process and thread of every machine that takes it."""
    lock_path = folder / LOCK_NAME
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
    except OSError as exc:
        raise local_error(exc, lock_path, what="cannot open the lock") from exc
    try:
        st = os.fstat(fd)  # one stripe per lock file, however its folder was named
        with _STRIPES[hash((st.st_dev, st.st_ino)) % len(_STRIPES)]:
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX)
            except OSError as exc:  # ENOLCK: a share mounted with nolock
                raise local_error(exc, lock_path, what="cannot lock") from exc
            try:
                yield
            finally:
                with suppress(OSError):  # closing the file releases it in any case
                    fcntl.lockf(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _fresh_stat(path: Path) -> os.stat_result | None:
    """The file's attributes as the server has them now (an NFS open revalidates its cache: close-
    to-open consistency, where a ``stat`` may answer from it); None: no such file."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        raise local_error(exc, path, what="cannot read") from exc
    try:
        st = os.fstat(fd)
    finally:
        os.close(fd)
    return st if stat.S_ISREG(st.st_mode) else None


def _fsync_folder(folder: Path) -> None:
    """A new name in ``folder`` survives a crash (the file's own bytes were synced before)."""
    with suppress(OSError):  # some filesystems cannot open or sync a folder: the bytes are safe
        fd = os.open(folder, os.O_RDONLY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class FolderWriter:
    """A shared folder, writable: every write is a new file beside its target, synced, then
    linked (create: exclusive, as ``link`` refuses an existing name, on NFS too, where ``O_EXCL``
    was not always) or renamed over it (replace, under the folder's lock after comparing the
    version). The store's clock is a file's mtime, which the file server sets."""

    def __init__(self) -> None:
        self._last_folder: Path | None = None

    def head(self, uri: str) -> Seen | None:
        """The object, or None."""
        path = self._path(uri)
        st = _fresh_stat(path)
        return None if st is None else self._seen(st, path.parent)

    def read(self, uri: str) -> tuple[bytes, Seen] | None:
        """A small object's bytes and what its ``stat`` says."""
        path = self._path(uri)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            raise local_error(exc, path, what="cannot read") from exc
        with open(fd, "rb") as file:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                return None
            try:
                data = file.read()
            except OSError as exc:
                raise local_error(exc, path, what="cannot read") from exc
        return data, self._seen(st, path.parent)

    def create(self, uri: str, data: bytes) -> Seen | None:
        """``data`` as the object only if there is none (None: one is there)."""
        path = self._path(uri)
        folder = self._folder_of(path)
        with self._temp(folder) as (fd, temp):
            self._write(fd, temp, data)
            if not self._link(temp, path):
                return None
            st = os.fstat(fd)
        _fsync_folder(folder)
        return self._seen(st, folder)

    def replace(self, uri: str, data: bytes, *, etag: str) -> Seen | None:
        """``data`` over version ``etag`` only (None: it changed or is gone)."""
        path = self._path(uri)
        folder = path.parent
        if not folder.is_dir():
            return None
        with self._temp(folder) as (fd, temp):
            self._write(fd, temp, data)  # before the lock: it is held for a compare and a rename
            with folder_locked(folder):
                current = _fresh_stat(path)
                if current is None or file_etag(current) != etag:
                    return None
                try:
                    temp.replace(path)
                except OSError as exc:
                    raise local_error(exc, path, what="cannot write") from exc
            st = os.fstat(fd)
        _fsync_folder(folder)
        return self._seen(st, folder)

    def delete(self, uri: str, *, etag: str | None = None) -> bool:
        """Remove the object (only version ``etag`` when given); False: not there, or changed."""
        path = self._path(uri)
        folder = path.parent
        if not folder.is_dir():
            return False
        with folder_locked(folder):
            current = _fresh_stat(path)
            if current is None or (etag is not None and file_etag(current) != etag):
                return False
            try:
                path.unlink()
            except FileNotFoundError:
                return False
            except OSError as exc:
                raise local_error(exc, path, what="cannot remove") from exc
        return True

    def upload(self, uri: str, path: Path, *, size: int, sha256: str) -> bool:
        """A verified local file copied in whole, only if the object is not there (False: it is;
        never replaced). The folder keeps no checksum: readers verify, as for every mirror."""
        target = self._path(uri)
        folder = self._folder_of(target)
        with self._temp(folder) as (fd, temp):
            try:
                with open(path, "rb") as source:
                    copied = _copy(source.fileno(), fd)
                os.fsync(fd)
            except OSError as exc:
                raise local_error(exc, temp, what="cannot copy into") from exc
            if copied != size:
                raise LocalFSError(
                    f"cannot copy {safe_text(str(path))} into the folder: {copied} bytes, not"
                    f" the {size} verified (it changed since)"
                )
            if not self._link(temp, target):
                return False
        _fsync_folder(folder)
        return True

    def listing(self, prefix: str) -> Iterator[Listed]:
        """Every object whose URI starts with ``prefix``, in name order; mdl's own files (temp
        files, the clock, the lock) are not objects, a linked folder is not walked into."""
        authority, wanted = _prefix_path(prefix)
        start = Path(wanted if wanted.endswith("/") else wanted.rsplit("/", 1)[0] or "/")
        for path, st in _walk(start):
            if str(path).startswith(wanted):
                yield Listed(f"{SCHEME}{authority}{path}", st.st_size, st.st_mtime_ns / 1e9)

    def now(self) -> float:
        """The folder's clock: a fresh mtime of its ``.mdl-clock`` (the folder last named)."""
        if self._last_folder is None:
            raise LocalFSError("the shared folder's clock was asked before any object was named")
        return self._clock(self._last_folder)

    # --- helpers

    def _path(self, uri: str) -> Path:
        path = Path(parse_file_uri(uri)[1])
        self._last_folder = path.parent
        return path

    def _seen(self, st: os.stat_result, folder: Path) -> Seen:
        return Seen(
            file_etag(st), st.st_size, st.st_mtime_ns / 1e9, now=self._clock(_existing(folder))
        )

    def _clock(self, folder: Path) -> float:
        """Touch ``.mdl-clock`` in ``folder`` and read its mtime: a file server sets it by its own
        clock (NFS: ``utime`` without times is set to the server's time)."""
        clock = folder / CLOCK_NAME
        try:
            fd = os.open(clock, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o666)
            try:
                os.utime(fd)
                return os.fstat(fd).st_mtime_ns / 1e9
            finally:
                os.close(fd)
        except OSError as exc:
            raise local_error(exc, clock, what="cannot read the folder's clock") from exc

    def _folder_of(self, path: Path) -> Path:
        """The object's folder, made if it is not there."""
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise local_error(exc, path.parent, what="cannot make the folder") from exc
        return path.parent

    @contextmanager
    def _temp(self, folder: Path) -> Iterator[tuple[int, Path]]:
        """A new file of our own in ``folder``, removed however the write ends (Ctrl-C too)."""
        temp = folder / f"{TEMP_PREFIX}{uuid.uuid4().hex}"
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
        except OSError as exc:
            raise local_error(exc, temp, what="cannot write in") from exc
        try:
            yield fd, temp
        finally:
            os.close(fd)
            temp.unlink(missing_ok=True)

    def _write(self, fd: int, temp: Path, data: bytes) -> None:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        except OSError as exc:
            raise local_error(exc, temp, what="cannot write") from exc

    def _link(self, temp: Path, path: Path) -> bool:
        """``temp`` under the name ``path``, only if that name is free (False: it is taken)."""
        try:
            path.hardlink_to(temp)
        except FileExistsError:
            return False
        except OSError as exc:
            raise local_error(
                exc, path, what="cannot create (the folder must allow hard links)"
            ) from exc
        return True


def _prefix_path(prefix: str) -> tuple[str, str]:
    """A listing's ``file:///abs/pre`` → (its authority, ``/abs/pre``); as an object URI is
    checked, but it may name a folder or end inside a name."""
    authority, slash, rest = prefix.removeprefix(SCHEME).partition("/")
    if not prefix.startswith(SCHEME) or authority.lower() not in ("", LOCAL_HOST) or not slash:
        raise UsageError(f"{safe_text(prefix)}: expected file:///abs/path")
    if any(seg in ("", ".", "..") for seg in rest.split("/")[:-1]) or printable(rest) != rest:
        raise UsageError(f"{safe_text(prefix)}: an empty, '.' or '..' segment in the path")
    return authority, "/" + rest


def _existing(folder: Path) -> Path:
    """``folder``, or its nearest ancestor that exists (a clock for a name not written yet)."""
    while not folder.is_dir() and folder != folder.parent:
        folder = folder.parent
    return folder


def _copy(source: int, target: int) -> int:
    """Every byte of ``source`` into ``target``: in the kernel (NFS 4.2: on the server) where it
    can, else through a buffer."""
    copied = 0
    while True:
        try:
            got = os.copy_file_range(source, target, CHUNK * 64)
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL):
                raise
            break
        if not got:
            return copied
        copied += got
    while chunk := os.read(source, CHUNK):  # from where the kernel's copy stopped
        view = memoryview(chunk)
        while view:
            view = view[os.write(target, view) :]
        copied += len(chunk)
    return copied


def _walk(folder: Path) -> Iterator[tuple[Path, os.stat_result]]:
    """Regular files under ``folder`` in name order, with their ``stat`` (links followed to
    files, never into folders: no cycles)."""
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except (FileNotFoundError, NotADirectoryError):
        return
    except OSError as exc:
        raise local_error(exc, folder, what="cannot list") from exc
    for entry in entries:
        if entry.name.startswith(OWN_PREFIX):
            continue
        path = folder / entry.name
        try:
            if entry.is_dir(follow_symlinks=False):
                yield from _walk(path)
            elif entry.is_file():
                yield path, entry.stat()
        except FileNotFoundError:  # removed while listed
            continue


# --- the store -----------------------------------------------------------------------------------


class FolderSigner:
    """``file://`` URIs as URLs the run's client serves (nothing to sign: a path is its own
    permission)."""

    def presign(self, uri: str) -> str:
        """``file://localhost/<path, percent-encoded>`` for ``uri`` (a bad path refused)."""
        return file_url(parse_file_uri(uri)[1])


class FolderStore:
    """``file://`` for the registry: a folder on this machine, shared by the fleet."""

    scheme = "file"
    takes_endpoint = False  # the path says where it is
    quotes_values = False  # paths are paths: the signer encodes them for the URL

    def check_template(self, template: str, *, where: str) -> None:
        """A ``file:///abs/path/{model}/{path}`` mirror names an absolute folder on this machine,
        without ``.``, ``..`` or empty segments in its fixed part."""
        authority, slash, rest = template[len(SCHEME) :].partition("/")
        if authority.lower() not in ("", LOCAL_HOST) or not slash:
            raise UsageError(
                f"{where}: {template!r} names host {authority!r}: a shared folder is an absolute"
                " path on this machine (three slashes: file:///abs/path/{model}/{path})"
            )
        fixed = rest.split("{", 1)[0]
        segments = fixed.split("/")[:-1]  # the last one is filled in part, or empty
        if any(seg in ("", ".", "..") for seg in segments) or printable(fixed) != fixed:
            raise UsageError(
                f"{where}: {template!r}: its folder has an empty, '.' or '..' segment or a control"
                " character (file:///abs/path/{model}/{path})"
            )

    def one_off(self, uri: str, *, secrets: Secrets | None) -> StoredObject:
        """A ``file://`` argument of ``mdl get``: the file's size, read through the transport."""
        path = parse_file_uri(uri)[1]
        shown = safe_text(uri)
        try:
            st = Path(path).stat()
        except (FileNotFoundError, NotADirectoryError):
            raise NotFoundError(f"{shown}: no such file") from None
        except OSError as exc:
            raise local_error(exc, path, what="cannot read") from exc
        if stat.S_ISDIR(st.st_mode):
            raise UsageError(f"{shown}: names a folder, not a file")
        name = path.rsplit("/", 1)[-1]
        return StoredObject(name, file_url(path), st.st_size, None, where=shown)

    def signer(self, *, endpoint: str | None, secrets: Secrets | None) -> FolderSigner:
        """The run's ``file://`` URLs."""
        return FolderSigner()

    def reason(self, text: str | None, status: int | None) -> str | None:
        """The transport's own words for a failed read (``not in the folder``)."""
        if status is None or not text:
            return None
        return safe_text(text, limit=200)

    def is_down(self, said: str) -> bool:
        """Never as a whole: a folder's failures are per file (an unmounted share reads as an
        empty folder)."""
        return False

    def writer(self, *, endpoint: str | None, secrets: Secrets | None) -> FolderWriter:
        """The folder, writable (exclusive creates, compare-and-swap under its lock)."""
        return FolderWriter()
