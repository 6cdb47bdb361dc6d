"""The one walk to a folder by descriptor (``open_dir``): each folder opened relative to the one
above it, under one link policy and one owner rule, for the store (nothing below the destination
followed) and the fleet's shared folder."""

import contextlib
import errno
import os
import stat as st
from pathlib import Path

from mdl.errors import LocalFSError, UnsafePathError
from mdl.paths import FRESH_TRIES

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
# A folder mdl makes (the umask takes from it): never one anyone may write, whatever the umask
# (umask 000 made a model's folder 0777, where anyone may swap the files it vouches for); a
# group's, as the umask says (a team's shared destination, umask 002)
PRIVATE = 0o775


def open_dir(root: Path, folder: Path, *, create: bool = True, shared: bool = False) -> int:
    """A descriptor of ``folder`` inside ``root`` (the user's choice: it may be a link), walked to
    one name at a time, each folder opened relative to the one above: a folder is made (``create``)
    and opened where it was looked at, never through a link swapped in meanwhile; one that exists
    costs one open. The link policy: no link below ``root`` is followed (UnsafePathError, exit 2,
    names it); ``shared`` (a folder the fleet shares): one root or this user made is (the kernel's
    ``protected_symlinks`` rule), and a folder made takes its parent's permission bits, not the
    umask, never sticky (one machine's user renames over another's leases). Not ``shared``, the
    root, a folder above it or one below it that another user made where anyone may write is
    refused (``refuse_planted``). A file on the way is LocalFSError (exit 7); a folder outside
    ``root`` or through ``..`` UnsafePathError; a missing one (not ``create``) FileNotFoundError."""
    try:
        fd = os.open(root, _DIR)
    except OSError:
        if not create:
            raise
        try:
            make_folders(root)
        except OSError as exc:
            raise LocalFSError(f"cannot create {root}: {exc.strerror or exc}") from exc
        fd = os.open(root, _DIR)
    try:
        # each folder held to the one above it, the root and the folders above it too (names the
        # user chose, folders whoever came first made); a shared folder's are the fleet's
        here = None if shared else os.fstat(fd)
        if here is not None:
            refuse_planted_above(root, here, dir_fd=fd)
        # (``parts`` of a path are kept once made: cheaper than relative_to, on every file's walks)
        above, parts = root.parts, folder.parts
        below = parts[len(above) :]
        # (a root of no parts, ".", is the prefix of any path: an absolute folder is never in it)
        outside = parts[: len(above)] != above or folder.is_absolute() != root.is_absolute()
        if outside or ".." in below:
            raise UnsafePathError(f"{folder} is not inside {root}")
        for depth in range(1, len(below) + 1):
            child = _open_child(fd, below[:depth], root, create, shared=shared)
            os.close(fd)
            fd = child
            if here is not None:
                found = os.fstat(fd)
                refuse_planted(root.joinpath(*below[:depth]), here, found)
                here = found
    except BaseException:
        os.close(fd)
        raise
    return fd


def _open_child(fd: int, names: tuple[str, ...], root: Path, create: bool, *, shared: bool) -> int:
    """The folder ``names[-1]`` in the folder ``fd`` (``root`` / ``names[:-1]``; made when missing
    and ``create``), under ``open_dir``'s link policy."""
    name, made = names[-1], False
    for attempt in range(FRESH_TRIES):
        try:
            child = os.open(name, _DIR | os.O_NOFOLLOW, dir_fd=fd)
        except FileNotFoundError:
            if not create or attempt == FRESH_TRIES - 1:
                raise  # (removed again each time since made: give up)
            with contextlib.suppress(FileExistsError):  # made by another run since: opened next
                os.mkdir(name, 0o700 if shared else PRIVATE, dir_fd=fd)
                made = True
            continue
        except OSError as exc:
            if exc.errno not in (errno.ELOOP, errno.ENOTDIR):  # a link (ENOTDIR: O_DIRECTORY's)
                raise
            return _through_link(fd, names, root, shared=shared)
        if made and shared:
            with contextlib.suppress(OSError):  # a mount with fixed modes (CIFS, some FUSE)
                os.fchmod(child, st.S_IMODE(os.fstat(fd).st_mode) & ~st.S_ISVTX)
        return child
    raise AssertionError("unreachable")


def _through_link(fd: int, names: tuple[str, ...], root: Path, *, shared: bool) -> int:
    """The folder a link at ``names[-1]`` leads to, if the link policy follows it; else refused."""
    found, path = None, root.joinpath(*names)
    with contextlib.suppress(OSError):
        found = os.stat(names[-1], dir_fd=fd, follow_symlinks=False)
    if found is None or not st.S_ISLNK(found.st_mode):
        raise LocalFSError(f"{path} is not a folder") from None
    if not shared:
        why = f"a symbolic link; mdl never follows links inside {root}"
    elif found.st_uid not in (0, os.geteuid()):
        why = (
            f"a link uid {found.st_uid} made: mdl follows only root's or its own links in a"
            " shared folder"
        )
    else:
        return os.open(names[-1], _DIR, dir_fd=fd)
    raise UnsafePathError(f"{path} is {why}") from None


def refuse_planted(path: Path, above: os.stat_result, found: os.stat_result) -> None:
    """UnsafePathError (exit 2) when the folder ``path`` (``found``, in the folder ``above``) may
    hold what another user likes: in a folder anyone may write (``/tmp``, a 1777 share), one that
    neither this user, root nor that folder's owner made was made by whoever came first, who may
    replace any file mdl installs or vouches for in it, keeping its size and time (the kernel's
    ``protected_regular`` rule, for folders). A group's shared folder (one of this user's groups
    may write it, nobody else) trusts its group, as its modes say: only a member could make it
    that group's."""
    if not above.st_mode & st.S_IWOTH or found.st_uid in (0, os.geteuid(), above.st_uid):
        return
    shared_by_group = found.st_mode & (st.S_IWGRP | st.S_IWOTH) == st.S_IWGRP
    if shared_by_group and found.st_gid in _groups():
        return
    raise UnsafePathError(
        f"{path} is a folder {named_user(found.st_uid)} made where anyone may write: mdl keeps and"
        " trusts nothing in another user's folder there",
        hint="ask its owner (or root) to remove it, or use a destination of your own (a folder"
        " you make, or your group's)",
    )


# the roots found no planted folder above, by path and identity: walked up once a process
_judged: set[tuple[str, int, int]] = set()
_MOST_LEVELS = 2048  # folders above a root judged at most (PATH_MAX 4096: "../" each, fewer)


def refuse_planted_above(root: Path, here: os.stat_result, *, dir_fd: int | None = None) -> None:
    """``refuse_planted`` for the root (``here``, open as ``dir_fd`` or named by its path) and
    every folder above it up to ``/``: a destination below a folder a co-tenant made in ``/tmp``
    is that co-tenant's to swap, however deep (ssh's ``StrictModes`` walks the whole path too): a
    ``stat`` a level, once a process for a root (by its path and identity)."""
    key = (str(root), here.st_dev, here.st_ino)
    if key in _judged:
        return
    shown, up = root.absolute(), ".."
    for _ in range(_MOST_LEVELS):
        try:
            above = os.stat(up, dir_fd=dir_fd) if dir_fd is not None else (root / up).stat()
        except OSError:  # (a folder above this user may not search: nothing more to judge)
            break
        if (above.st_dev, above.st_ino) == (here.st_dev, here.st_ino):  # "/" is its own parent
            break
        refuse_planted(shown, above, here)
        here, shown, up = above, shown.parent, f"{up}/.."
    _judged.add(key)


def _groups() -> set[int]:
    return {os.getegid(), *os.getgroups()}


def make_folders(path: Path) -> None:
    """``path`` and the folders above it that are missing, each made ``PRIVATE`` (``mkdir -p``
    gives the ones above the umask's mode alone: 0777 under umask 000)."""
    missing = []
    while not path.exists() and path != path.parent:
        missing.append(path)
        path = path.parent
    for folder in reversed(missing):
        with contextlib.suppress(FileExistsError):  # (another run made it meanwhile)
            folder.mkdir(PRIVATE)


def named_user(uid: int) -> str:
    """``nobody (uid 65534)``, or ``uid 12345`` for a user this system does not name."""
    import pwd  # (only to say whose something is)

    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"
