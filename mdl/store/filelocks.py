"""Cross-process file locks through their folder's descriptor, naming their holder (as apt's),
removed on release: ``flock`` (as filelock and huggingface_hub take it) on a file mdl opens itself,
never truncating or writing a file mdl did not make (``confined.not_own``): such a lock file of
mdl's own is set aside once this run holds it."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import sys
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path

from mdl.errors import (
    InterruptedByUserError,
    LocalFSError,
    LockTimeoutError,
    MdlError,
    UnsafePathError,
)
from mdl.redact import printable
from mdl.store import confined
from mdl.wait import Wait
from mdl.writes import write_at

log = logging.getLogger("mdl.store")

POLL = 0.2  # seconds between tries while another run holds a lock (Ctrl-C is noticed in between)
_RETRY = 0.05  # seconds between two tries of a lock within one poll (as filelock's interval)
# a flock held by another open file (EWOULDBLOCK is EAGAIN on Linux; some filesystems say EACCES)
_CONTENDED = frozenset({errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES})
# times a lock's folder may go (emptied by a get) while we walk to it, before we give up
_VANISHED = 100


class _Held:
    """One lock held. (Plain classes here, not dataclasses: their code generation is a start's
    largest leaf, and every get takes a lock.)"""

    __slots__ = ("dir_fd", "fd", "name", "remove")

    def __init__(self, fd: int, dir_fd: int, name: str, *, remove: bool) -> None:
        self.fd = fd  # the lock file, open and locked
        # the lock's folder, open while it is held: the lock's path goes through it
        self.dir_fd = dir_fd
        self.name = name
        # mdl's own lock files go with their release; huggingface_hub's stay, as it leaves them
        self.remove = remove

    def release(self) -> None:
        try:
            # While still held: a run waiting on this file finds it unlinked and opens anew (only
            # ours is unlinked).
            with contextlib.suppress(OSError):
                if self.remove and _still_named(self.fd, self.dir_fd, self.name):
                    # Its holder's note goes first: dropping a file that still holds bytes costs
                    # ext4 1-4 ms more (300 locks: a second at a pull's end), an empty one ~10 us.
                    with contextlib.suppress(OSError):
                        os.ftruncate(self.fd, 0)
                    os.unlink(self.name, dir_fd=self.dir_fd)
            with contextlib.suppress(OSError):
                fcntl.flock(self.fd, fcntl.LOCK_UN)
        finally:
            os.close(self.fd)
            os.close(self.dir_fd)


class HeldLocks(contextlib.AbstractContextManager["HeldLocks"]):
    """File locks held together, released together (in reverse order); ``with`` releases them
    after the block.
    """

    def __init__(self, locks: list[_Held]) -> None:
        self.locks = locks

    def __exit__(self, *_: object) -> None:
        self.release()

    def release(self, *, keep: int = 0) -> None:
        """Release the locks but the first ``keep`` (1: our own per-file lock stays, the blob
        lock goes), last first.
        """
        while len(self.locks) > keep:
            self.locks.pop().release()


def flock_once(fd: int) -> bool:
    """One try at the exclusive lock of ``fd``: a ``flock``, as filelock and huggingface_hub take
    it, so their locks and ours agree (False while another open file holds it).
    """
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in _CONTENDED:
            return False
        raise
    return True


def _still_named(fd: int, dir_fd: int, name: str) -> bool:
    """Whether ``name`` is still the file ``fd`` has open (a run releasing a lock unlinks it
    while holding it).
    """
    try:
        now = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (now.st_dev, now.st_ino) == (held.st_dev, held.st_ino)


def _write_holder(fd: int) -> None:
    """``pid <n>, mdl <command>, since <time>`` (no arguments: they may hold URLs with secrets)."""
    command = next((a for a in sys.argv[1:] if not a.startswith("-")), "")
    since = datetime.now().astimezone().strftime("%Y-%m-%d %H:%M:%S %z")
    line = f"pid {os.getpid()}, mdl {printable(command)[:40]}".rstrip() + f", since {since}\n"
    with contextlib.suppress(OSError):  # a lock works without its note
        os.ftruncate(fd, 0)
        write_at(fd, line.encode(), 0)


def holder_of(root: Path, where: Path) -> str:
    try:
        text = confined.read_bytes(root, where, limit=512, head=True).decode("utf-8", "replace")
    except OSError:
        return ""
    return printable(text.strip().splitlines()[0]) if text.strip() else ""


def acquire_locks(
    root: Path,
    paths: Sequence[Path],
    *,
    label: str,
    wait: Wait,
    on_wait: Callable[[str], None] | None = None,
) -> HeldLocks:
    """Take locks at ``paths`` in order within one ``wait`` (its cancel heard between two
    polls); ``on_wait(holder)`` once if another run holds any.
    """
    held = HeldLocks([])
    try:
        for index, where in enumerate(paths):
            waited = False
            # the first is our own per-file lock, the second huggingface_hub's blob lock
            while (
                taken := _take(root, where, wait.child(POLL if waited else 0.0), own=index == 0)
            ) is None:
                if wait.cancel.is_set():
                    raise InterruptedByUserError(f"{label}: interrupted while waiting for a lock")
                if waited and wait.over:
                    holder = holder_of(root, where)
                    held_by = f"{holder}; " if holder else ""
                    raise LockTimeoutError(
                        f"{label}: another mdl run holds the lock {where} ({held_by}waited"
                        f" {wait.seconds:g}s)",
                        hint="raise --lock-timeout, or check that process",
                    )
                if on_wait is not None:  # once, however many of the locks we wait for
                    on_wait(holder_of(root, where))
                    on_wait = None
                waited = True
            held.locks.append(taken)
    except BaseException:
        held.release()
        raise
    return held


def try_lock(root: Path, where: Path) -> HeldLocks | None:
    """The lock at ``where`` if no run holds it now, else None (clean-up never waits, nor takes a
    lock file that is a link or no file: it leaves what that lock guards alone)."""
    try:
        taken = _take(root, where, Wait(0.0), own=True)
    except (OSError, MdlError):
        return None
    return HeldLocks([taken]) if taken is not None else None


def _open_lock(dir_fd: int, where: Path, *, own: bool) -> tuple[int, bool]:
    """The lock file at ``where`` opened (made fresh if missing), and whether it may be written
    (mdl made it).
    """
    try:
        return (
            confined.open_entry(dir_fd, where, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666),
            True,
        )
    except confined.ForeignEntryError as exc:
        if exc.why == "a symbolic link":
            raise OSError(errno.ELOOP, exc.why) from None
        if not exc.linked:  # a FIFO, a folder: no lock at all
            raise LocalFSError(f"cannot lock {where}: it is {exc.why}, not a file") from None
    # Another name of a hard link, or another user's file: locked read-only (a flock writes
    # nothing), never written. huggingface_hub's own lock (``own`` False) is only ever locked; one
    # of mdl's is set aside once held.
    try:
        return (
            os.open(
                where.name,
                os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                dir_fd=dir_fd,
            ),
            False,
        )
    except OSError as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise confined.ForeignEntryError(
            where, f"a lock file mdl cannot use ({exc.strerror})"
        ).refusal() from None


def _take(root: Path, where: Path, poll: Wait, *, own: bool) -> _Held | None:
    """The lock at ``where`` (tried till ``poll`` is over, once at least), None while another run
    holds it. A lock file of mdl's own that mdl did not make is set aside once held (unlinked, as a
    release does: a waiting run opens anew) and made fresh; its other name keeps its bytes."""
    vanished = 0
    while True:
        try:
            dir_fd = confined.own_folder(root, where.parent)
        except OSError as exc:
            raise LocalFSError(f"cannot create {where.parent}: {exc.strerror or exc}") from exc
        try:
            held = _try(dir_fd, where, own=own)
        except FileNotFoundError:
            os.close(dir_fd)
            vanished += 1  # its folder went (emptied and removed by a get): walk to it anew
            if vanished > _VANISHED:
                raise LocalFSError(f"cannot lock {where}: its folder keeps being removed") from None
            continue
        except OSError as exc:  # not a lock mdl can take: never followed, never replaced
            os.close(dir_fd)
            raise _refused(root, where, exc) from None
        except BaseException:
            os.close(dir_fd)
            raise
        if held is not None:
            return held
        os.close(dir_fd)
        if not poll.pause(_RETRY):
            return None


def _refused(root: Path, where: Path, exc: OSError) -> MdlError:
    """Why the lock at ``where`` is not one mdl can take."""
    if exc.errno == errno.ELOOP:
        return UnsafePathError(f"{where} is a symbolic link; mdl never follows links inside {root}")
    return LocalFSError(f"cannot lock {where}: {exc.strerror or exc}")


def _try(dir_fd: int, where: Path, *, own: bool) -> _Held | None:
    """One try at the lock in ``dir_fd`` (which the lock keeps when taken); None while another
    run holds it.
    """
    while True:
        fd, writable = _open_lock(dir_fd, where, own=own)
        try:
            if not flock_once(fd):
                os.close(fd)
                return None
            if not _still_named(fd, dir_fd, where.name):
                # released (unlinked) since we opened it: the flock won goes with it; open anew
                os.close(fd)
                continue
            if writable or not own:  # huggingface_hub's lock is only locked, never written
                if writable and own:
                    _write_holder(fd)
                return _Held(fd, dir_fd, where.name, remove=own)
            # (None: made fresh by another run since we looked; opened again, for writing)
            if (why := confined.not_own(os.fstat(fd))) is not None:
                log.warning("%s: set aside a lock file mdl did not make (it is %s)", where, why)
                with contextlib.suppress(FileNotFoundError):
                    # held: no run is between its open and its lock of it
                    os.unlink(where.name, dir_fd=dir_fd)
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)  # and made fresh at once
