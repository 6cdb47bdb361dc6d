"""``file://`` shared folders (NFS, Lustre, a mounted volume) as a store: read through the transport
the run's HTTP client mounts for ``file://`` (mdl.transfer._files), written with exclusive creates
(``link``), the one write every share keeps atomic (no lock: per-client locks are silent on FUSE and
NFS ``nolock``); ``FolderStore`` is the registry's store.

A store URI is ``file:///abs/path`` (or ``file://localhost/abs/path``, RFC 8089) whose path is the
file's own, not percent-encoded: values fill a template as they are, as S3 keys do.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import stat
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import replace
from itertools import islice
from pathlib import Path
from urllib.parse import quote, unquote

from mdl.buckets import names
from mdl.buckets.protocol import LEGACY_MARK, Listed, Seen, StoredObject, authorship, mark_text
from mdl.errors import IntegrityError, LocalFSError, MdlError, NotFoundError, UsageError, disk_error
from mdl.folderwalk import open_dir
from mdl.paths import kind_of, nearest_folder, opened
from mdl.redact import Secrets, printable, safe_text
from mdl.writes import write_all

log = logging.getLogger(__name__)

SCHEME = "file://"
LOCAL_HOST = "localhost"
CHUNK = 1 << 20  # bytes copied at a time
MARK_BYTES = 512  # the most of a mark read: a version tag and ``mark_text`` are far shorter


def parse_file_uri(uri: str, *, encoded: bool = False) -> tuple[str, str]:
    """``file:///abs/path`` → (its authority as given, the absolute path); refused (exit 2): a
    host other than this machine, a relative path, an empty, ``.`` or ``..`` segment, a folder
    (trailing ``/``), a control character. A filled template's values cannot climb out of its
    fixed folder: its literal text is the URI's start and no segment may go up. ``encoded``: a
    file URL as people write one (``mdl get``'s), percent-encoded as RFC 8089 has it and as curl
    and urllib read it (``a%20b`` is ``a b``; a ``%`` without two hex digits is a ``%``), decoded
    before it is checked; else a store URI mdl filled, its path as it is."""
    if not uri.startswith(SCHEME):
        raise UsageError(f"{uri}: expected file:///abs/path")
    authority, slash, rest = uri[len(SCHEME) :].partition("/")
    if authority.lower() not in ("", LOCAL_HOST) or not slash:
        raise UsageError(
            f"{uri}: a shared folder is a path on this machine: file:///abs/path (three slashes)"
        )
    if encoded:  # the bytes of a name, as os.fsdecode reads them (a name need not be UTF-8)
        rest = unquote(rest, errors="surrogateescape")
    path = "/" + rest
    if printable(path) != path or "\0" in path:
        raise UsageError(f"{uri}: a control character in the path")
    if path.endswith("/"):
        raise UsageError(f"{uri}: names a folder, not a file")
    if any(seg in ("", ".", "..") for seg in rest.split("/")):
        raise UsageError(f"{uri}: an empty, '.' or '..' segment in the path")
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
    said = f"{what} {path}: {exc.strerror or exc}"
    return disk_error(exc, full=said, other=said)


# --- writes: exclusive creates ------------------------------------------------------------------

# Every write walks to its folder from ``/`` one name at a time (``mdl.folderwalk.open_dir``,
# shared: a link root or this user made is followed, a folder made is as shared as its parent) and
# then works relative to that folder's descriptor.
_NEW = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC


def _shared(fd: int, folder: int) -> None:
    """A file we made as shared as its folder: its read and write bits (a clock or a lock every
    machine's user opens for writing, an object every one reads)."""
    st = os.fstat(fd)
    wanted = stat.S_IMODE(os.fstat(folder).st_mode) & 0o666
    if st.st_uid == os.geteuid() and stat.S_IMODE(st.st_mode) != wanted:
        with suppress(OSError):  # a mount with fixed modes (CIFS, some FUSE): as it is
            os.fchmod(fd, wanted)


def _fresh_stat(name: str, folder: int) -> os.stat_result | None:
    """The attributes of the file ``name`` in ``folder`` as the server has them now (an NFS open
    revalidates its cache: close-to-open consistency, where a ``stat`` may answer from it); None:
    no such file, or not a file (a link is never followed, a FIFO never waited on)."""
    try:
        with opened(name, dir_fd=folder) as (_, st):
            return st if stat.S_ISREG(st.st_mode) else None
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENXIO):
            return None  # a link or a socket where the object goes: no object of ours
        raise local_error(exc, name, what="cannot read") from exc


class FolderWriter:
    """A shared folder, writable: every write is a new file beside its target, synced, then
    linked (create: exclusive, as ``link`` refuses an existing name, on NFS too, where ``O_EXCL``
    was not always) or renamed over it (replace, after comparing the version: two steps, for what
    one writer owns). A version is what the name shows after the write (sshfs numbers a file anew
    across a link). Nothing is read through a link. The store's clock is a file's mtime, which the
    file server sets (sshfs: the client sets it)."""

    def __init__(self) -> None:
        self._last_folder: Path | None = None

    def head(self, uri: str) -> Seen | None:
        """The object, or None. Nothing is written (a reader may not be allowed to)."""
        path = self._path(uri)
        with _folder(path, create=False) as folder:
            st = None if folder is None else _fresh_stat(path.name, folder)
        return None if st is None else _seen(st)

    def read(self, uri: str, *, limit: int, aged: bool = True) -> tuple[bytes, Seen] | None:
        """A small object's first ``limit`` + 1 bytes at most (a lease's) and what its ``stat``
        says, ``now`` by the folder's clock: the one read that judges an age, and only a machine
        that fills (writes) asks it. A link, a folder, a FIFO there: None (never followed, never
        waited on)."""
        path = self._path(uri)
        with _folder(path, create=False) as folder:
            if folder is None:
                return None
            try:
                with opened(path.name, dir_fd=folder) as (fd, st):
                    if not stat.S_ISREG(st.st_mode):
                        return None
                    data = os.read(fd, limit + 1)
            except (FileNotFoundError, NotADirectoryError):
                return None
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.EISDIR, errno.ENXIO):
                    return None  # a link, a folder, a socket: no object of ours
                raise local_error(exc, path, what="cannot read") from exc
        return data, replace(_seen(st), now=self._clock(path.parent)) if aged else _seen(st)

    def create(self, uri: str, data: bytes, *, side: str | None = None) -> Seen | None:
        """``data`` as the object only if there is none (None: one is there); ``side``: marked as
        ``upload`` marks (``_marking``)."""
        path = self._path(uri)
        with _folder(path, create=True) as folder:
            assert folder is not None  # made
            with _temp(folder, path) as (fd, temp):
                _write(fd, path, data)
                if not _link(folder, temp, path):
                    return None
            _fsync_folder(folder)
            return _marking(uri, data, side, _shown(folder, path))

    def replace(self, uri: str, data: bytes, *, etag: str, side: str | None = None) -> Seen | None:
        """``data`` over version ``etag`` only (None: it changed or is gone); ``side``: marked."""
        path = self._path(uri)
        with _folder(path, create=False) as folder:
            if folder is None:
                return None
            with _temp(folder, path) as (fd, temp):
                _write(fd, path, data)
                current = _fresh_stat(path.name, folder)
                if current is None or file_etag(current) != etag:
                    return None
                _replace(temp, path, folder)
            _fsync_folder(folder)
            return _marking(uri, data, side, _shown(folder, path))

    def delete(self, uri: str, *, etag: str | None = None) -> bool:
        """Remove the object (only version ``etag`` when given); False: not there, or changed.
        With ``etag`` the file is first renamed aside (one atomic step) and its version checked
        there: what another writer put at the name since the look stays, and a version that is not
        ``etag`` goes back (unless a newer one took the name meanwhile: it was replaced)."""
        path = self._path(uri)
        with _folder(path, create=False) as folder:
            if folder is None:
                return False
            current = _fresh_stat(path.name, folder)
            if current is None or (etag is not None and file_etag(current) != etag):
                return False
            gone = path.name if etag is None else names.Temp.fresh(path.name).uri
            try:
                if etag is not None:
                    os.rename(path.name, gone, src_dir_fd=folder, dst_dir_fd=folder)
                    moved = _fresh_stat(gone, folder)
                    if moved is None or file_etag(moved) != etag:
                        with suppress(FileExistsError):
                            os.link(gone, path.name, src_dir_fd=folder, dst_dir_fd=folder)
                        os.unlink(gone, dir_fd=folder)
                        return False
                os.unlink(gone, dir_fd=folder)
            except FileNotFoundError:
                return False
            except OSError as exc:
                raise local_error(exc, path, what="cannot remove") from exc
        _tidy(path)
        if (part := names.Part.parse(uri)) is not None:  # its mark (``create``'s) with it
            self.delete(names.Mark.of(uri, root=part.folder).uri)
        elif names.Claim.parse(uri) is not None:
            # its folder's clock with it (one per part), made again when a claim there is read
            self.delete(names.Clock.of(uri.rpartition("/")[0] + "/").uri)
        return True

    def upload(
        self,
        uri: str,
        path: Path,
        *,
        size: int,
        sha256: str,
        root: str,
        overwrite: bool = False,
        sent: Callable[[int], None] | None = None,
        side: str = "",
    ) -> bool:
        """A verified local file copied in whole, only if the object is not there (False: it is;
        never replaced) unless ``overwrite``, then marked as mdl's: its version (``file_etag``)
        and ``mark_text`` (``side``: whose) in the file ``names.Mark.of(uri, root=root)``. Readers
        verify (no checksum kept). ``sent`` hears each chunk: what it raises stops the copy."""
        target = self._path(uri)
        with _folder(target, create=True) as folder:
            assert folder is not None  # made
            with _temp(folder, target) as (fd, temp):
                try:
                    with open(path, "rb") as source:
                        copied = _copy(source.fileno(), fd, sent or (lambda _: None))
                    os.fsync(fd)
                except OSError as exc:
                    raise local_error(exc, target.parent / temp, what="cannot copy into") from exc
                # the check covers the bytes written, read back, not the file they came from
                if copied != size or _sha256_of(fd) != sha256:
                    raise IntegrityError(
                        f"cannot copy {path} into the folder: the copy is not the"
                        f" {size} bytes verified (the file changed since)"
                    )
                if sent is not None:
                    sent(0)  # the last word before the object is whole: it may stop it
                if overwrite:
                    _replace(temp, target, folder)
                elif not _link(folder, temp, target):
                    return False
                said = mark_text(_below(uri, root), sha256=sha256, size=size, side=side)
                version = f"{file_etag(os.fstat(fd))}\n{said}".encode()
            _fsync_folder(folder)
        # after the object: a write killed between the two leaves it unmarked, kept by prune
        _write_mark(uri, root, version)
        return True

    def assemble(self, uri: str, parts: Sequence[str], path: Path, **_: object) -> bool | None:
        """None: a folder has no server-side concatenation (joining the parts would read them
        back over the share); the caller copies the local file in (``upload``)."""
        return None

    def holds(self, uri: str, path: Path, *, size: int, sha256: str) -> bool:
        """Whether the object is ``size`` bytes whose SHA-256 is ``sha256``, the file read (a folder
        keeps no checksum; a mark says only that mdl wrote some version). None there, a link, a
        FIFO, a folder: not (never followed, never waited on)."""
        target = self._path(uri)
        with _folder(target, create=False) as folder:
            st = None if folder is None else _fresh_stat(target.name, folder)
            if folder is None or st is None or st.st_size != size:
                return False
            try:
                with opened(target.name, dir_fd=folder) as (fd, st):
                    return stat.S_ISREG(st.st_mode) and _sha256_of(fd) == sha256
            except OSError as exc:
                raise local_error(exc, target, what="cannot read") from exc

    def owned(self, uri: str, *, root: str) -> Seen | None:
        """The object, with mdl's mark as ``_marked`` reads its mark file if the object's owner
        wrote it (a mark another user planted never makes prune remove what they did not write)."""
        path = self._path(uri)
        with _folder(path, create=False) as folder:
            st = None if folder is None else _fresh_stat(path.name, folder)
        if st is None:
            return None
        said = _mark(Path(parse_file_uri(names.Mark.of(uri, root=root).uri)[1]), owner=st.st_uid)
        return _marked(_seen(st), said, where=_below(uri, root))

    def listing(self, prefix: str, *, most: int | None = None) -> Iterator[Listed]:
        """Every object whose URI starts with ``prefix``, in name order; mdl's own files (temp
        files, its namespace, the clock: ``names.own_entry``) are not objects, a linked folder is
        not walked into. ``most``: no more entries than that are read of any one folder (a folder
        another user filled with names costs no more than that)."""
        yield from self._listed(prefix, temps=False, most=most)

    def abandoned(self, prefix: str, *, before: float, remove: bool) -> list[Listed]:
        """mdl's temp files under ``prefix``: a write under way, or one killed midway (``kill
        -9``); those last written before ``before`` removed when ``remove`` (one already gone is
        left out)."""
        found = list(self._listed(prefix, temps=True))
        return [
            item for item in found if not remove or item.modified >= before or self.delete(item.uri)
        ]

    def now(self) -> float:
        """The folder's clock: a fresh mtime of its ``names.Clock`` (of the folder last named)."""
        if self._last_folder is None:
            raise LocalFSError("the shared folder's clock was asked before any object was named")
        return self._clock(self._last_folder)

    # --- helpers

    def _path(self, uri: str) -> Path:
        path = Path(parse_file_uri(uri)[1])
        self._last_folder = path.parent
        return path

    def _listed(self, prefix: str, *, temps: bool, most: int | None = None) -> Iterator[Listed]:
        authority, wanted = _prefix_path(prefix)
        start = Path(wanted if wanted.endswith("/") else wanted.rsplit("/", 1)[0] or "/")
        self._last_folder = nearest_folder(start)  # now() after a listing (prune) reads its clock
        for path, st in _walk(start, temps=temps, most=most):
            if str(path).startswith(wanted):
                yield Listed(f"{SCHEME}{authority}{path}", st.st_size, st.st_mtime_ns / 1e9)

    def _clock(self, folder: Path) -> float:
        """Touch ``folder``'s clock (``names.Clock.of``: in mdl's namespace) and read its mtime:
        a file server sets it by its own clock (NFS: ``utime`` without times is set to the
        server's time; sshfs: the client's). A clock this user cannot touch is exit 7 naming it:
        an age it cannot judge never lets it take a lease over."""
        clock = Path(names.Clock.of(f"{str(folder).rstrip('/')}/").uri)
        try:
            with _folder(clock, create=True) as where:
                assert where is not None  # made
                fd = os.open(clock.name, _NEW, 0o600, dir_fd=where)
                try:
                    _shared(fd, where)
                    os.utime(fd)
                    return os.fstat(fd).st_mtime_ns / 1e9
                finally:
                    os.close(fd)
        except OSError as exc:
            raise local_error(exc, clock, what="cannot read the folder's clock") from exc


@contextmanager
def _folder(path: Path, *, create: bool) -> Iterator[int | None]:
    """The object's folder, open (made when ``create``); None: not there. A link on the way is
    followed only if root or this user made it, for every folder of the path (the template's
    fixed folder is not known here): another user of the share cannot send our writes elsewhere
    (exit 2)."""
    fd = None
    try:
        fd = open_dir(Path("/"), path.parent, create=create, shared=True)
    except OSError as exc:
        if create or not isinstance(exc, FileNotFoundError):
            what = "cannot make the folder" if create else "cannot open the folder"
            raise local_error(exc, path.parent, what=what) from exc
    try:
        yield fd
    finally:
        if fd is not None:
            os.close(fd)


@contextmanager
def _temp(folder: int, path: Path) -> Iterator[tuple[int, str]]:
    """A new file of our own beside ``path`` (in ``folder``), as shared as its folder; removed
    however the write ends (Ctrl-C too)."""
    temp = names.Temp.fresh(path.name).uri
    try:
        fd = os.open(temp, _NEW | os.O_EXCL, 0o600, dir_fd=folder)
    except OSError as exc:
        raise local_error(exc, path.parent / temp, what="cannot write in") from exc
    try:
        _shared(fd, folder)
        yield fd, temp
    except OSError as exc:
        raise local_error(exc, path.parent / temp, what="cannot write") from exc
    finally:
        os.close(fd)
        with suppress(FileNotFoundError):
            os.unlink(temp, dir_fd=folder)


def _shown(folder: int, path: Path) -> Seen:
    """What the name shows now: the version a later compare sees (sshfs gives a file a new
    inode number across a link)."""
    st = _fresh_stat(path.name, folder)
    if st is None:
        raise LocalFSError(f"{path} vanished as it was written")
    return _seen(st)


def _marking(uri: str, data: bytes, side: str | None, seen: Seen) -> Seen:
    """The object just written (``seen``) marked as mdl's when ``side`` is given and it is a
    fill's part, bound to its name below the mirror's folder."""
    if side is not None and (part := names.Part.parse(uri)) is not None:
        sha256 = hashlib.sha256(data).hexdigest()
        said = mark_text(_below(uri, part.folder), sha256=sha256, size=len(data), side=side)
        try:
            _write_mark(uri, part.folder, f"{seen.etag}\n{said}".encode())
        except MdlError as exc:  # the part stands unmarked: prune judges it by name and age
            log.info("%s: not marked: %s", uri, exc.message)
    return seen


def _write_mark(uri: str, root: str, version: bytes) -> None:
    """The mark file of ``uri`` (``names.Mark.of``) says ``version``, replaced whole."""
    mark = Path(parse_file_uri(names.Mark.of(uri, root=root).uri)[1])
    with _folder(mark, create=True) as folder:
        assert folder is not None  # made
        with _temp(folder, mark) as (fd, temp):
            _write(fd, mark, version)
            _replace(temp, mark, folder)


def _write(fd: int, path: Path, data: bytes) -> None:
    try:
        write_all(fd, data)
        os.fsync(fd)
    except OSError as exc:
        raise local_error(exc, path, what="cannot write") from exc


def _seen(st: os.stat_result) -> Seen:
    """What a ``stat`` says; ``now`` is its own mtime (a lower bound of the server's clock, an age
    of 0): only ``read`` asks the folder's clock, to judge a lease's age."""
    modified = st.st_mtime_ns / 1e9
    return Seen(file_etag(st), st.st_size, modified, modified)


def _link(folder: int, temp: str, path: Path) -> bool:
    """``temp`` under the name ``path`` (both in ``folder``), only if that name is free (False: it
    is taken)."""
    try:
        os.link(temp, path.name, src_dir_fd=folder, dst_dir_fd=folder, follow_symlinks=False)
    except FileExistsError:
        return False
    except OSError as exc:
        raise local_error(
            exc, path, what="cannot create (the folder must allow hard links)"
        ) from exc
    return True


def _replace(temp: str, path: Path, folder: int) -> None:
    """``temp`` under the name ``path`` (both in ``folder``), over what is there."""
    try:
        os.replace(temp, path.name, src_dir_fd=folder, dst_dir_fd=folder)
    except OSError as exc:
        raise local_error(exc, path, what="cannot write") from exc


def _fsync_folder(folder: int) -> None:
    """A new name in ``folder`` survives a crash (the file's own bytes were synced before)."""
    with suppress(OSError):  # some filesystems cannot sync a folder: the bytes are safe
        os.fsync(folder)


def _prefix_path(prefix: str) -> tuple[str, str]:
    """A listing's ``file:///abs/pre`` → (its authority, ``/abs/pre``); as an object URI is
    checked, but it may name a folder or end inside a name."""
    authority, slash, rest = prefix.removeprefix(SCHEME).partition("/")
    if not prefix.startswith(SCHEME) or authority.lower() not in ("", LOCAL_HOST) or not slash:
        raise UsageError(f"{prefix}: expected file:///abs/path")
    if any(seg in ("", ".", "..") for seg in rest.split("/")[:-1]) or printable(rest) != rest:
        raise UsageError(f"{prefix}: an empty, '.' or '..' segment in the path")
    return authority, "/" + rest


def _copy(source: int, target: int, sent: Callable[[int], None]) -> int:
    """Every byte of ``source`` into ``target``: in the kernel (NFS 4.2: on the server) where it
    can, else through a buffer; ``sent`` told each chunk's bytes."""
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
        sent(got)
    while chunk := os.read(source, CHUNK):  # from where the kernel's copy stopped
        write_all(target, chunk)
        copied += len(chunk)
        sent(len(chunk))
    return copied


def _walk(
    folder: Path, *, temps: bool = False, most: int | None = None
) -> Iterator[tuple[Path, os.stat_result]]:
    """Regular files under ``folder`` in name order, with their ``stat`` (links followed to
    files, never into folders: no cycles): the objects, or (``temps``) mdl's temp files. A tree of
    any depth (another user's, in a shared folder) is walked without recursion; a folder too deep
    for a path is not an object's (none can be named there). ``most``: the entries read of each
    folder."""
    stack = [iter(_entries(folder, most))]
    while stack:
        entry = next(stack[-1], None)
        if entry is None:
            stack.pop()
            continue
        temp = names.Temp.parse(entry.name) is not None
        if names.own_entry(entry.name) and not temp:
            continue
        try:
            if entry.is_dir(follow_symlinks=False):
                stack.append(iter(_entries(Path(entry.path), most)))
            elif temp == temps and entry.is_file():
                yield Path(entry.path), entry.stat()
        except FileNotFoundError:  # removed while listed
            continue


def _entries(folder: Path, most: int | None = None) -> list[os.DirEntry[str]]:
    """A folder's entries (the first ``most`` read, when given) in name order ([]: gone, not a
    folder, or its path too long)."""
    try:
        with os.scandir(folder) as found:
            return sorted(islice(found, most), key=lambda e: e.name)
    except (FileNotFoundError, NotADirectoryError):
        return []
    except OSError as exc:
        if exc.errno == errno.ENAMETOOLONG:
            return []
        raise local_error(exc, folder, what="cannot list") from exc


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
        # the last segment is filled in part, or empty
        if (
            any(seg in ("", ".", "..") for seg in fixed.split("/")[:-1])
            or printable(fixed) != fixed
        ):
            raise UsageError(
                f"{where}: {template!r}: its folder has an empty, '.' or '..' segment or a control"
                " character (file:///abs/path/{model}/{path})"
            )

    def one_off(self, uri: str, *, secrets: Secrets | None) -> StoredObject:
        """A ``file://`` argument of ``mdl get``: the file's size, read through the transport."""
        path = parse_file_uri(uri, encoded=True)[1]
        shown = safe_text(uri)
        try:
            st = Path(path).stat()  # (a stat: a FIFO is never opened, so never waited on)
        except (FileNotFoundError, NotADirectoryError):
            raise NotFoundError(f"{shown}: no such file") from None
        except OSError as exc:
            raise local_error(exc, path, what="cannot read") from exc
        if (kind := kind_of(st)) is not None:  # bad input, as a folder is: never "HTTP 404"
            raise UsageError(f"{shown}: names {kind}, not a regular file")
        name = path.rsplit("/", 1)[-1]
        # a link given here is the user's, followed as curl does (the transport follows none)
        return StoredObject(
            name, file_url(str(Path(path).resolve())), st.st_size, None, where=shown
        )

    def signer(self, *, endpoint: str | None, secrets: Secrets | None) -> FolderSigner:
        """The run's ``file://`` URLs."""
        return FolderSigner()

    def reason(self, text: str | None, status: int | None) -> str | None:
        """The transport's own words for a failed read (``not in the folder``)."""
        return safe_text(text, limit=200) if status is not None and text else None

    def is_down(self, said: str) -> bool:
        """Never as a whole: a folder's failures are per file (an unmounted share reads as an
        empty folder)."""
        return False

    def writer(
        self, *, endpoint: str | None, secrets: Secrets | None, parts: int = 4
    ) -> FolderWriter:
        """The folder, writable (exclusive creates)."""
        return FolderWriter()


def _sha256_of(fd: int) -> str:
    """The SHA-256 of what an open file holds, read from its start (through a duplicate, which
    shares the offset: the file is not written after this)."""
    with os.fdopen(os.dup(fd), "rb") as copy:
        copy.seek(0)
        return hashlib.file_digest(copy, "sha256").hexdigest()


def _tidy(removed: Path) -> None:
    """The folders a removed part of a fill (or its mark) leaves empty, removed up to
    ``names.emptied_up_to``: a share keeps no empty folder per file version a fleet ever filled. A
    folder not empty (another set, a part just published) stays: ``rmdir`` removes only empty
    ones."""
    if (up_to := names.emptied_up_to(str(removed))) is None:
        return
    top = Path(up_to)
    folder = removed.parent
    while folder != top and top in folder.parents:
        try:
            folder.rmdir()
        except OSError:
            return
        folder = folder.parent


def _below(uri: str, root: str) -> str:
    """Where a mark binds an object: its path below the mirror's folder (a share is mounted at
    other paths on other machines)."""
    return uri.removeprefix(names.folder_of(root))


def _mark(mark: Path, *, owner: int) -> bytes:
    """What the mark file ``mark`` says, if ``owner`` wrote it; b"": none, another user's, or
    none this user can read (walked to as every path: no other user's link followed)."""
    with suppress(OSError, MdlError), _folder(mark, create=False) as folder:
        if folder is not None:
            with opened(mark.name, dir_fd=folder) as (fd, said):
                if stat.S_ISREG(said.st_mode) and said.st_uid == owner:
                    return os.read(fd, MARK_BYTES)
    return b""


def _marked(found: Seen, text: bytes, *, where: str) -> Seen:
    """The object with mdl's mark when its mark file's ``text`` names this very version (its
    ``file_etag``: a ``cp -a`` is another file) and ``authorship`` reads the rest for ``where``
    (a mark of mdl 0.6 and before: the version alone, bound to the file all the same)."""
    version, _, said = text.decode(errors="replace").partition("\n")
    if version != found.etag:
        return found
    return replace(
        found, mark=authorship(said or LEGACY_MARK, where=where, size=found.size, old=not said)
    )
