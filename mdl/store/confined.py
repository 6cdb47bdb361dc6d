"""Files under a root mdl owns, never through a link: the root (the user's choice) may be a link;
below it every folder is opened relative to the one above with ``O_NOFOLLOW``
(``mdl.folderwalk.open_dir``, which also refuses a folder another user made where anyone may write)
and every open, rename and unlink is relative to its folder's descriptor, so a link planted below
the root, even while mdl runs, is refused (exit 2). An existing file of mdl's state is trusted only
if mdl made it (engine rule 14, checked in ``not_own``, the one place): a regular file with one
link, the running user's (to read: or root's, as ssh's ``StrictModes``), the same inode when opened
as when looked at."""

# (annotations here are evaluated, not postponed: typing compiles each string annotation of a
# NamedTuple's fields at every start)
import contextlib
import errno
import os
import re
import stat as st
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple

from mdl.errors import LocalFSError, UnsafePathError, UsageError
from mdl.folderwalk import open_dir
from mdl.paths import ASIDE_SUFFIX, FRESH_TRIES
from mdl.store.filesystem import kind_of, not_a_file_error
from mdl.units import human_size

NO_LINK = os.O_NOFOLLOW | os.O_CLOEXEC


@contextlib.contextmanager
def folder(root: Path, path: Path, *, create: bool = True) -> Iterator[int]:
    """A descriptor of the folder ``path`` inside ``root`` (``open_dir``'s walk and link policy),
    for the block; while ``reused`` runs, the one already opened for it, if it is still there."""
    with _sharing(start=False) as kept:
        if kept is not None:
            yield kept.get(root, path, create=create)
            return
    fd = open_dir(root, path, create=create)
    try:
        yield fd
    finally:
        os.close(fd)


def own_folder(root: Path, path: Path) -> int:
    """A descriptor of the folder ``path`` inside ``root`` that the caller keeps and closes (a held
    lock's folder): while ``reused`` runs, a duplicate of the one already opened for it (one
    ``lstat`` and a ``dup``, not an ``open`` of every folder on the way), else ``open_dir``'s."""
    with _sharing(start=False) as kept:
        if kept is not None:
            return os.dup(kept.get(root, path, create=True))
    return open_dir(root, path)


class _Folders:
    """Folders opened once for a stretch of work (a pull's files), by (root, path): each file's
    walk below the root costs one ``lstat`` of the path, not an ``open`` and a ``close`` of every
    folder on the way. The descriptor is used only while the path still names the folder it was
    opened on (its ``st_dev``/``st_ino``; a folder moved or removed since is walked to anew), and
    it was reached without a link, as every walk's is. One that no longer fits is kept open till
    the end: another thread may be using it (a closed number is soon another file's)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: dict[tuple[Path, Path], tuple[int, int, int]] = {}  # fd, st_dev, st_ino
        self._retired: list[int] = []

    def get(self, root: Path, path: Path, *, create: bool) -> int:
        key = (root, path)
        with self._lock:
            kept = self._open.get(key)
        if kept is not None:
            fd, dev, ino = kept
            with contextlib.suppress(OSError):
                now = path.lstat()
                if (now.st_dev, now.st_ino) == (dev, ino):
                    return fd
        fd = open_dir(root, path, create=create)
        found = os.fstat(fd)
        with self._lock:
            if (old := self._open.get(key)) is not None:
                self._retired.append(old[0])
            self._open[key] = (fd, found.st_dev, found.st_ino)
        return fd

    def close(self) -> None:
        with self._lock:
            fds = [fd for fd, _, _ in self._open.values()] + self._retired
            self._open, self._retired = {}, []
        for fd in fds:
            os.close(fd)


_reused: _Folders | None = None
_users = 0  # blocks inside ``reused`` now, in any thread: the folders close with the last
_users_lock = threading.Lock()


@contextlib.contextmanager
def reused() -> Iterator[None]:
    """Folders opened once for the block (``_Folders``), in every thread; blocks at once (nested,
    or two pulls of one process: the API's) share them, closed when the last ends (closed with
    the first, the other's descriptors would be gone under it, or another file's)."""
    with _sharing(start=True):
        yield


@contextlib.contextmanager
def _sharing(*, start: bool) -> Iterator["_Folders | None"]:
    """The folders ``reused`` keeps (made if ``start`` and there are none), counted as in use for
    the block: a look at one folder outside any ``reused`` block (another command of the process,
    a thread of its own) holds them open as a block does, or the last block's end would close the
    descriptor it was handed, soon another file's (a record read through it failed EBADF)."""
    global _reused, _users
    with _users_lock:
        if _reused is None and start:
            _reused = _Folders()
        kept = _reused
        _users += kept is not None
    try:
        yield kept
    finally:
        if kept is not None:
            with _users_lock:
                _users -= 1
                last = _users == 0
                if last:
                    _reused = None
            if last:
                kept.close()


def not_own(found: os.stat_result, *, reading: bool = False) -> str | None:
    """Why an entry where mdl keeps its state is not one mdl made (its ``lstat`` or ``fstat``), None
    if it may be: mdl makes regular files with one link, owned by the running user. Another name of
    a hard link, or another user's file, may be an outside file: never trusted, written, truncated
    or renamed through. ``reading``: root's files are trusted too, as ssh's ``StrictModes`` trusts
    them (only root makes one; a pull as root, then a probe as ``nobody``)."""
    if st.S_ISLNK(found.st_mode):
        return "a symbolic link"
    if (kind := kind_of(found)) is not None:
        return kind
    if found.st_nlink > 1:  # (0: an open file removed since, which no name leads to)
        return f"a hard link ({found.st_nlink} names for one file)"
    if found.st_uid != os.geteuid() and not (reading and found.st_uid == 0):
        return f"another user's file (uid {found.st_uid})"
    return None


class ForeignEntryError(PermissionError):
    """An entry where mdl keeps its state that mdl did not make (an OSError: whoever reads it as a
    record treats it as an unreadable one, set aside and written anew by an atomic rename, never
    through it)."""

    def __init__(self, path: Path, why: str) -> None:
        super().__init__(
            errno.EPERM,
            f"{path} is {why}, not a file mdl made: it is never trusted or written through",
        )
        self.path, self.why = path, why
        # a link (symbolic or hard) or another user's file, as opposed to no file at all (a folder,
        # a FIFO, ...)
        self.linked = why == "a symbolic link" or why.startswith(("a hard link", "another user"))

    def refusal(self) -> UnsafePathError:
        """The refusal (exit 2) where the entry would have to be used as it is."""
        hint = "remove it (`mdl clean` removes mdl's partial downloads and lock files)"
        return UnsafePathError(str(self.strerror), hint=hint)


def open_entry(dir_fd: int, path: Path, flags: int, mode: int = 0o644) -> int:
    """Open the entry ``path.name`` of the folder ``dir_fd`` never following a link: a new file is
    made fresh (``O_EXCL``); an existing one only if ``not_own`` finds it mdl's, by ``lstat`` and
    again by ``fstat`` of what was opened (the same ``st_dev``/``st_ino``), and only then truncated
    if ``O_TRUNC`` asks. ForeignEntryError (an OSError) names anything else; FileNotFoundError
    without ``O_CREAT``."""
    for _ in range(FRESH_TRIES):
        try:
            before = os.stat(path.name, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            if not flags & os.O_CREAT:
                raise
            fd = _open_fresh(dir_fd, path, flags, mode)
        else:
            fd = _open_existing(dir_fd, path, flags, before)
        if fd is not None:
            return fd
    raise FileNotFoundError(
        errno.ENOENT, "it keeps being removed and made while mdl opens it", str(path)
    )


def _open_fresh(dir_fd: int, path: Path, flags: int, mode: int) -> int | None:
    """A new file, made fresh (``O_EXCL``); None when another run made it since we looked."""
    try:
        return os.open(path.name, flags | os.O_EXCL | NO_LINK, mode, dir_fd=dir_fd)
    except FileExistsError:
        if flags & os.O_EXCL:
            raise
        return None  # made by another run since we looked: look at it


def _open_existing(dir_fd: int, path: Path, flags: int, before: os.stat_result) -> int | None:
    """The existing entry ``before`` (its ``lstat``) opened, if mdl's own; None when it was removed
    or replaced since we looked."""
    if flags & os.O_EXCL:
        raise FileExistsError(errno.EEXIST, "File exists", str(path))
    if (why := not_own(before, reading=_reading(flags))) is not None:
        raise ForeignEntryError(path, why)
    # O_NONBLOCK: a FIFO put there since the lstat must not hang the run (it then fails the fstat
    # check).
    plain = flags & ~(os.O_CREAT | os.O_EXCL | os.O_TRUNC)
    try:
        fd = os.open(path.name, plain | NO_LINK | os.O_NONBLOCK, dir_fd=dir_fd)
    except FileNotFoundError:
        return None  # removed since we looked (a run released its lock): look again
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ForeignEntryError(path, "a symbolic link") from None
        raise
    return _held_to(fd, path, flags, before)


def _held_to(fd: int, path: Path, flags: int, before: os.stat_result) -> int | None:
    """``fd`` if it is the entry looked at (``before``) and mdl's own (truncated if ``O_TRUNC``
    asks); None, closed, when it was removed or replaced since."""
    try:
        found = os.fstat(fd)
        now, then = (found.st_dev, found.st_ino), (before.st_dev, before.st_ino)
        if found.st_nlink == 0 or now != then:
            # removed, or replaced, since we looked (another run released its lock): look again
            os.close(fd)
            return None
        if (why := not_own(found, reading=_reading(flags))) is not None:
            raise ForeignEntryError(path, why)
        if flags & os.O_TRUNC:
            os.ftruncate(fd, 0)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _reading(flags: int) -> bool:
    return flags & os.O_ACCMODE == os.O_RDONLY


def open_file(root: Path, path: Path, flags: int, mode: int = 0o644) -> int:
    """Open ``path`` (inside ``root``) with ``flags``, never following a link, its own name
    included; an existing file only if mdl made it (``open_entry``), else UnsafePathError (exit 2)
    naming it: never written through."""
    for attempt in range(FRESH_TRIES):
        with folder(root, path.parent, create=bool(flags & os.O_CREAT)) as dir_fd:
            try:
                return open_entry(dir_fd, path, flags, mode)
            except ForeignEntryError as exc:
                if exc.why == "a symbolic link":
                    raise UnsafePathError(
                        f"{path} is a symbolic link; mdl never follows links inside {root}"
                    ) from None
                if not exc.linked:
                    raise  # a folder, a FIFO, ...: the OSError it is, as the caller says (exit 7)
                raise exc.refusal() from None
            except FileNotFoundError:
                if (
                    not flags & os.O_CREAT
                    or os.fstat(dir_fd).st_nlink
                    or attempt == FRESH_TRIES - 1
                ):
                    raise
    raise AssertionError("unreachable")


def read_bytes(root: Path, path: Path, *, limit: int, head: bool = False) -> bytes:
    """The whole of a file of mdl's state inside ``root`` (``head``: its first ``limit`` bytes),
    never through a link, never blocking (a FIFO or device is never opened). ForeignEntryError (an
    OSError, as for an unreadable file) names an entry mdl did not make (``not_own``); a file over
    ``limit`` bytes is UsageError (exit 2) naming it and the limit, checked before a byte is read,
    never cut short into something that fails to parse."""
    with (
        folder(root, path.parent, create=False) as dir_fd,
        os.fdopen(open_entry(dir_fd, path, os.O_RDONLY), "rb") as handle,
    ):
        size = os.fstat(handle.fileno()).st_size
        # +1: it grew since
        data = b"" if size > limit and not head else handle.read(limit if head else limit + 1)
    if not head and max(size, len(data)) > limit:
        raise UsageError(
            f"{path} is {human_size(max(size, len(data)))}, more than the {human_size(limit)} mdl"
            " reads of one of its own files: it is not one mdl wrote",
            hint="remove it: mdl checks again what it described",
        )
    return data


def write_atomic(root: Path, path: Path, data: bytes, *, mode: int = 0o666) -> None:
    """Write ``data`` beside ``path`` and rename it over, never through a link: readers see old
    or new, never half. ``mode`` (less the umask) is the new file's: 0o600 keeps it the user's.
    """
    # threads of one run may write one file
    tmp = f"{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp"
    for attempt in range(FRESH_TRIES):
        with folder(root, path.parent) as dir_fd:
            try:  # made fresh: nothing at a random name is written through
                fd = os.open(
                    tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | NO_LINK, mode, dir_fd=dir_fd
                )
            except FileNotFoundError:
                if os.fstat(dir_fd).st_nlink or attempt == FRESH_TRIES - 1:
                    raise
                continue
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(data)
                os.rename(tmp, path.name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
            except OSError as exc:
                with contextlib.suppress(OSError):
                    os.unlink(tmp, dir_fd=dir_fd)
                # a folder where the file goes
                if exc.errno in (errno.EISDIR, errno.ENOTEMPTY, errno.EEXIST):
                    raise OSError(exc.errno, f"{path} is a folder, not a file") from None
                raise
            return


def unlink(root: Path, path: Path, *more: Path) -> None:
    """Remove the entry ``path`` (then each of ``more``) if it is there (a link itself, never its
    target; a folder never). Entries of one folder are removed through one walk to it (a partial
    and its resume record)."""
    paths = (path, *more)
    for parent in dict.fromkeys(one.parent for one in paths):
        with contextlib.suppress(FileNotFoundError), folder(root, parent, create=False) as dir_fd:
            for one in paths:
                if one.parent == parent:
                    _unlink_entry(dir_fd, one)


def _unlink_entry(dir_fd: int, path: Path) -> None:
    try:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path.name, dir_fd=dir_fd)
    except IsADirectoryError:
        raise not_a_file_error(path, "a folder") from None


def rename(root: Path, source: Path, target: Path, *, written: os.stat_result) -> None:
    """Move the file mdl wrote and checked (``written``: its ``fstat``, on the descriptor its bytes
    went through) from ``source`` to ``target`` inside ``root``, creating the target's folders; no
    link followed. Only that file is moved (engine rule 14): a file at ``source`` mdl did not make
    (``not_own``: a hard link's other name) or another file than ``written`` is refused,
    UnsafePathError (exit 2) naming it; and ``target`` is looked at again after the rename, as
    whoever may write the source's folder can swap the name between the two: a file swapped in is
    moved back out (or removed), never left at the final name."""
    with folder(root, source.parent, create=False) as src_fd, folder(root, target.parent) as dst_fd:
        moved = os.stat(source.name, dir_fd=src_fd, follow_symlinks=False)
        if (why := not_own(moved)) is not None:
            raise ForeignEntryError(source, why).refusal()
        if not _same_file(moved, written):
            raise _swapped(source)
        found = None
        with contextlib.suppress(FileNotFoundError):
            found = os.stat(target.name, dir_fd=dst_fd, follow_symlinks=False)
        if found is not None and st.S_ISDIR(found.st_mode):
            raise not_a_file_error(target, "a folder")
        os.rename(source.name, target.name, src_dir_fd=src_fd, dst_dir_fd=dst_fd)
        if not _same_file(os.stat(target.name, dir_fd=dst_fd, follow_symlinks=False), written):
            try:
                os.rename(target.name, source.name, src_dir_fd=dst_fd, dst_dir_fd=src_fd)
            except OSError:  # its folder's writer can make that fail: off the final name anyway
                os.unlink(target.name, dir_fd=dst_fd)
            raise _swapped(source)


def _same_file(found: os.stat_result, written: os.stat_result) -> bool:
    return (found.st_dev, found.st_ino) == (written.st_dev, written.st_ino)


def _swapped(source: Path) -> UnsafePathError:
    return UnsafePathError(
        f"{source} is no longer the file mdl wrote and checked (another was put in its place):"
        " it is not moved into place",
        hint=f"someone else may write {source.parent}: choose a destination only you can write",
    )


def rmdir_empty(root: Path, path: Path) -> None:
    """Remove the folder ``path`` inside ``root`` if it is empty (a link there is left alone)."""
    with (
        contextlib.suppress(OSError, UnsafePathError, LocalFSError),
        folder(root, path.parent, create=False) as dir_fd,
    ):
        found = os.stat(path.name, dir_fd=dir_fd, follow_symlinks=False)
        if st.S_ISDIR(found.st_mode):
            os.rmdir(path.name, dir_fd=dir_fd)


def entries(root: Path, path: Path) -> list[tuple[str, os.stat_result]]:
    """The entries of the folder ``path`` inside ``root`` with their ``lstat``, sorted; none when
    it is missing.
    """
    try:
        with folder(root, path, create=False) as dir_fd:
            found: list[tuple[str, os.stat_result]] = []
            for name in sorted(os.listdir(dir_fd)):  # noqa: PTH208 (a descriptor: no Path for it)
                with contextlib.suppress(FileNotFoundError):
                    found.append((name, os.stat(name, dir_fd=dir_fd, follow_symlinks=False)))
            return found
    except FileNotFoundError:
        return []


def symlink(root: Path, target: str, path: Path) -> None:
    """Make ``path`` a symlink to ``target``, atomically replacing what is there (never following
    it).
    """
    tmp = f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.mdl-tmp"
    with folder(root, path.parent) as dir_fd:
        os.symlink(target, tmp, dir_fd=dir_fd)
        try:
            os.rename(tmp, path.name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=dir_fd)
            raise


# unlink_checked's private name: ``.<the name's first 64 characters>.<12 hex>.mdl-prune``; the
# pattern finds one a killed prune left (store.prune), its ``start`` the name's first characters
ASIDE_KEEPS = 64
ASIDE_NAME = rf"(?s)\.(?P<start>.{{1,{ASIDE_KEEPS}}})\.[0-9a-f]{{12}}{re.escape(ASIDE_SUFFIX)}"


class Removal(NamedTuple):
    """What :func:`unlink_checked` did: ``removed`` the entry (``found``: its ``lstat``, taken once
    it was set aside), or kept it: put back, or (``kept_at``) left under its set-aside name when
    another entry took its name."""

    removed: bool
    found: os.stat_result | None = None
    kept_at: Path | None = None


def unlink_checked(root: Path, path: Path, approve: Callable[[os.stat_result], bool]) -> Removal:
    """Remove the entry ``path`` only if the object removed is one ``approve`` accepts (by its
    ``lstat``: the inode and the size and mtime a caller checked). The entry is first renamed to a
    private name (atomic: whatever is renamed over ``path`` from then on is left alone) and judged
    there, where no other program renames; one judged otherwise goes back to ``path``, never over an
    entry that took the name meanwhile (``link``: no-replace)."""
    aside = f".{path.name[:ASIDE_KEEPS]}.{os.urandom(6).hex()}{ASIDE_SUFFIX}"
    with folder(root, path.parent, create=False) as dir_fd:
        try:
            os.rename(path.name, aside, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except FileNotFoundError:
            return Removal(removed=False)
        try:
            found = os.stat(aside, dir_fd=dir_fd, follow_symlinks=False)
            if (st.S_ISREG(found.st_mode) or st.S_ISLNK(found.st_mode)) and approve(found):
                os.unlink(aside, dir_fd=dir_fd)
                return Removal(removed=True, found=found)
        # an error, a Ctrl-C, a failing judge: the object goes back before anything else
        except BaseException:
            _put_back(dir_fd, aside, path.name)
            raise
        if _put_back(dir_fd, aside, path.name):
            return Removal(removed=False, found=found)
        return Removal(removed=False, found=found, kept_at=path.parent / aside)


def put_back(root: Path, aside: Path, name: str) -> bool:
    """Give the entry ``aside`` (an :func:`unlink_checked` left by a killed run) the ``name`` in
    its folder again, never over an entry that has it; False: the name is taken."""
    with folder(root, aside.parent, create=False) as dir_fd:
        return _put_back(dir_fd, aside.name, name)


def _put_back(dir_fd: int, aside: str, name: str) -> bool:
    """Give the set-aside entry its name again, never over an entry that took it meanwhile; False:
    it keeps ``aside``. A name, never the object: a link back and the private name dropped (a rename
    would replace)."""
    try:
        os.link(aside, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd, follow_symlinks=False)
    except FileExistsError:
        return False
    # no hard link here (a folder, a filesystem without them): renamed back if the name is free
    except OSError:
        try:
            os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            os.rename(aside, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
            return True
        return False
    os.unlink(aside, dir_fd=dir_fd)
    return True
