"""Filesystem helpers of the store: lstat, hashing, durable renames and free space (atomic
writes: confined).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import stat as st
import threading
from collections.abc import Callable
from pathlib import Path

from mdl.errors import LocalFSError, NoSpaceError
from mdl.paths import kind_of as kind_of  # re-exported: the store says what is in the way of a file
from mdl.paths import quoted, shown_path

PATH_MAX = 4096  # bytes, with the terminating NUL, on Linux
# What the filesystem says about a *name* (too long, not encodable, something in the way): a problem
# of that one path, for that file or model to fail with exit 7 while the rest of the run goes on.
NAME_ERRNOS = frozenset(
    {errno.ENAMETOOLONG, errno.EILSEQ, errno.EISDIR, errno.ENOTDIR, errno.ELOOP, errno.EINVAL}
)
# What ``--force`` may replace where a user's file goes (get's targets, pack's output): an entry no
# program reads as a file. A folder is never replaced, nor a device (``-o /dev/null`` must not
# unlink the device node).
REPLACEABLE = frozenset({"a FIFO", "a socket"})


def refuse_no_room(folder: Path, needed: int, what: str) -> None:
    """Fail before writing ``what`` into ``folder`` (exit 7): a read-only filesystem is said as one,
    and fewer free bytes than ``needed`` (at most what ``what`` takes) as no space; a filesystem
    that counts no blocks (/proc, /sys) has no free space to compare: its write says what fails."""
    try:
        fs = os.statvfs(folder)
    except OSError as exc:
        raise LocalFSError(f"cannot write {what} in {quoted(folder)}: {exc.strerror}") from exc
    if fs.f_flag & os.ST_RDONLY:
        raise LocalFSError(f"cannot write {what} in {quoted(folder)}: a read-only filesystem")
    if fs.f_blocks and (free := fs.f_bavail * fs.f_frsize) < needed:
        raise NoSpaceError(
            f"not enough space in {quoted(folder)}: {what} needs up to {needed} bytes, {free} are"
            " free"
        )


def stat_file(path: Path) -> os.stat_result | None:
    """``lstat`` of a destination file, or None if absent; a name the filesystem refuses is
    LocalFSError.
    """
    try:
        return path.lstat()
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        if exc.errno not in NAME_ERRNOS:
            raise
        raise LocalFSError(f"cannot look at {shown_path(path)}: {exc.strerror or exc}") from None


def not_a_file(path: Path) -> str | None:
    """What is at ``path`` instead of a file (``kind_of`` of its ``lstat``: a FIFO is never
    opened).
    """
    found = stat_file(path)
    return None if found is None else kind_of(found)


def not_a_file_error(
    path: Path, kind: str, *, where: str = "", hint: str | None = None
) -> LocalFSError:
    return LocalFSError(f"{where}{shown_path(path)} is {kind}, not a file", hint=hint)


def fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (POSIX: the directory entry is data too)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class DirSyncs:
    """Folders with new entries, each fsynced once per flush (before the record naming them), not
    once per file.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._folders: set[Path] = set()

    def add(self, folder: Path) -> None:
        with self._lock:
            self._folders.add(folder)

    def flush(self) -> None:
        with self._lock:
            folders, self._folders = self._folders, set()
        for folder in sorted(folders):
            with contextlib.suppress(FileNotFoundError, NotADirectoryError):
                fsync_dir(folder)


def hash_file(
    path: Path,
    *,
    git: bool = False,
    block: int = 8 * 1024 * 1024,
    on_bytes: Callable[[int], None] | None = None,
) -> tuple[int, str, str | None]:
    """(size, sha256, git blob sha1 if asked) of a local file, read once; ``on_bytes(n)`` hears
    each block.
    """
    # A FIFO, socket or device where a file was expected is refused before it is opened (it could
    # block or act); O_NONBLOCK and fstat: one put there since must not hang the run either.
    if (kind := kind_of(path.stat())) is not None:
        raise OSError(errno.EINVAL, f"it is {kind}, not a file", str(path))
    return hash_descriptor(
        os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC),
        path,
        git=git,
        block=block,
        on_bytes=on_bytes,
    )


def hash_descriptor(
    fd: int,
    path: Path,
    *,
    git: bool = False,
    block: int = 8 * 1024 * 1024,
    on_bytes: Callable[[int], None] | None = None,
) -> tuple[int, str, str | None]:
    """:func:`hash_file` of a file already opened (``fd``, closed here; ``path`` names it in
    errors): one opened where no link is followed (:mod:`mdl.store.confined`) is hashed as it is,
    never opened again by name."""
    sha = hashlib.sha256()
    with os.fdopen(fd, "rb", buffering=0) as handle:
        found = os.fstat(fd)
        if not st.S_ISREG(found.st_mode):
            raise OSError(errno.EINVAL, "it is not a regular file", str(path))
        sha1 = hashlib.sha1(b"blob %d\0" % found.st_size) if git else None
        buffer = bytearray(block)
        view = memoryview(buffer)
        total = 0
        while got := handle.readinto(buffer):
            sha.update(view[:got])
            if sha1 is not None:
                sha1.update(view[:got])
            total += got
            if on_bytes is not None:
                on_bytes(got)
    return total, sha.hexdigest(), sha1.hexdigest() if sha1 is not None else None


def nearest_existing(path: Path) -> tuple[Path, os.stat_result] | None:
    """``path`` or its nearest parent that exists, with its ``stat`` (links followed); None when
    none does.
    """
    while True:
        try:
            return path, path.stat()
        # not there yet (or a file on the way): look higher up
        except (FileNotFoundError, NotADirectoryError):
            if path == path.parent:
                return None
            path = path.parent


def creatable_problem(path: Path, fine: set[Path] | None = None) -> str | None:
    """Why a file cannot be created at ``path``, or None; looks only, creates nothing. ``fine``:
    folders already found fit to create a file in (the files of one plan share a few: each is
    walked up from once, not once per file); ``path``'s is added when it is."""
    if len(os.fsencode(path)) >= PATH_MAX:
        return f"the path is longer than {PATH_MAX - 1} bytes"
    if not_a_file(path) == "a folder":
        return f"{shown_path(path)} is a folder, not a file"
    if fine is not None and path.parent in fine:
        return None
    try:
        if (existing := nearest_existing(path.parent)) is None:
            return f"none of the folders above {shown_path(path)} exists"
    except OSError as exc:
        return f"cannot look at {shown_path(exc.filename or path.parent)}: {exc.strerror or exc}"
    folder, found = existing
    if not st.S_ISDIR(found.st_mode):
        return f"{shown_path(folder)} is {kind_of(found) or 'a file'}, not a folder"
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"{shown_path(folder)} is not writable"
    if fine is not None:
        fine.add(path.parent)
    return None
