"""Files under a root mdl owns, never through a link: the root (the user's choice) may be a link; below it every
folder is opened relative to the one above with ``O_NOFOLLOW`` and every open, rename and unlink is relative to
its folder's descriptor, so a link planted below the root, even while mdl runs, is refused (exit 2)."""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat as st
from collections.abc import Iterator
from pathlib import Path

from mdl.errors import LocalFSError, UnsafePathError
from mdl.store.filesystem import kind_of, not_a_file_error

_NO_LINK = os.O_NOFOLLOW | os.O_CLOEXEC
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | _NO_LINK
_FRESH_TRIES = 3  # a folder another run removed (empty) between our walk and our create: walk again


def open_dir(root: Path, folder: Path, *, create: bool = True) -> int:
    """A descriptor of ``folder`` inside ``root``, no link below ``root`` followed; ``create`` makes the missing
    folders. UnsafePathError (exit 2) names a link on the way, LocalFSError (exit 7) a file where a folder must be."""
    if create:
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise LocalFSError(f"cannot create {root}: {exc.strerror or exc}") from exc
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    where = root
    try:
        parts = folder.relative_to(root).parts if folder.is_relative_to(root) else ("..",)
        if ".." in parts:
            raise UnsafePathError(f"{folder} is not inside {root}")
        for name in parts:
            where = where / name
            if create:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(name, 0o777, dir_fd=fd)
            try:
                child = os.open(name, _DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                    raise
                found = None
                with contextlib.suppress(OSError):
                    found = os.stat(name, dir_fd=fd, follow_symlinks=False)
                if found is not None and st.S_ISLNK(found.st_mode):
                    raise UnsafePathError(
                        f"{where} is a symbolic link; mdl never follows links inside {root}"
                    ) from None
                raise LocalFSError(f"{where} is not a folder") from None
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd


@contextlib.contextmanager
def folder(root: Path, path: Path, *, create: bool = True) -> Iterator[int]:
    fd = open_dir(root, path, create=create)
    try:
        yield fd
    finally:
        os.close(fd)


def open_file(root: Path, path: Path, flags: int, mode: int = 0o644) -> int:
    """Open ``path`` (inside ``root``) with ``flags``, never following a link, its own name included."""
    for attempt in range(_FRESH_TRIES):
        with folder(root, path.parent, create=bool(flags & os.O_CREAT)) as dir_fd:
            try:
                return os.open(path.name, flags | _NO_LINK, mode, dir_fd=dir_fd)
            except FileNotFoundError:
                if not flags & os.O_CREAT or os.fstat(dir_fd).st_nlink or attempt == _FRESH_TRIES - 1:
                    raise
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    raise UnsafePathError(f"{path} is a symbolic link; mdl never follows links inside {root}") from None
                raise
    raise AssertionError("unreachable")


def read_bytes(root: Path, path: Path, *, limit: int) -> bytes:
    """At most ``limit`` bytes of a regular file inside ``root``, never through a link; OSError naming what is
    there if not one (a FIFO or device is never opened: ``lstat`` first, then O_NONBLOCK and fstat)."""
    kind = None
    with contextlib.suppress(FileNotFoundError, NotADirectoryError):  # then the open says so
        kind = kind_of(path.lstat())
    if kind is not None:
        raise OSError(errno.EINVAL, f"{path} is {kind}, not a file")
    with os.fdopen(open_file(root, path, os.O_RDONLY | os.O_NONBLOCK), "rb") as handle:
        if not st.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise OSError(errno.EINVAL, f"{path} is not a regular file")
        return handle.read(limit)


def write_atomic(root: Path, path: Path, data: bytes) -> None:
    """Write ``data`` beside ``path`` and rename it over, never through a link: readers see old or new, never half."""
    tmp = f"{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"  # threads of one run may write one file
    for attempt in range(_FRESH_TRIES):
        with folder(root, path.parent) as dir_fd:
            try:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | _NO_LINK, 0o666, dir_fd=dir_fd)
            except FileNotFoundError:
                if os.fstat(dir_fd).st_nlink or attempt == _FRESH_TRIES - 1:
                    raise
                continue
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(data)
                os.rename(tmp, path.name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
            except OSError as exc:
                with contextlib.suppress(OSError):
                    os.unlink(tmp, dir_fd=dir_fd)
                if exc.errno in (errno.EISDIR, errno.ENOTEMPTY, errno.EEXIST):  # a folder where the file goes
                    raise OSError(exc.errno, f"{path} is a folder, not a file") from None
                raise
            return


def unlink(root: Path, path: Path) -> None:
    """Remove the entry ``path`` if it is there (a link itself, never its target; a folder never)."""
    try:
        with contextlib.suppress(FileNotFoundError), folder(root, path.parent, create=False) as dir_fd:
            os.unlink(path.name, dir_fd=dir_fd)
    except IsADirectoryError:
        raise not_a_file_error(path, "a folder") from None


def rename(root: Path, source: Path, target: Path) -> None:
    """Rename ``source`` to ``target`` inside ``root``, creating the target's folders; no link followed."""
    with folder(root, source.parent, create=False) as src_fd, folder(root, target.parent) as dst_fd:
        found = None
        with contextlib.suppress(FileNotFoundError):
            found = os.stat(target.name, dir_fd=dst_fd, follow_symlinks=False)
        if found is not None and st.S_ISDIR(found.st_mode):
            raise not_a_file_error(target, "a folder")
        os.rename(source.name, target.name, src_dir_fd=src_fd, dst_dir_fd=dst_fd)


def rmdir_empty(root: Path, path: Path) -> None:
    """Remove the folder ``path`` inside ``root`` if it is empty (a link there is left alone)."""
    with contextlib.suppress(OSError, UnsafePathError, LocalFSError), folder(root, path.parent, create=False) as dir_fd:
        found = os.stat(path.name, dir_fd=dir_fd, follow_symlinks=False)
        if st.S_ISDIR(found.st_mode):
            os.rmdir(path.name, dir_fd=dir_fd)


def entries(root: Path, path: Path) -> list[tuple[str, os.stat_result]]:
    """The entries of the folder ``path`` inside ``root`` with their ``lstat``, sorted; none when it is missing."""
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
    """Make ``path`` a symlink to ``target``, atomically replacing what is there (never following it)."""
    tmp = f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.mdl-tmp"
    with folder(root, path.parent) as dir_fd:
        os.symlink(target, tmp, dir_fd=dir_fd)
        try:
            os.rename(tmp, path.name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=dir_fd)
            raise
