"""Cross-process file locks through their folder's descriptor, naming their holder (as apt's), removed on release."""

from __future__ import annotations

import contextlib
import errno
import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from mdl.errors import InterruptedByUserError, LocalFSError, LockTimeoutError, UnsafePathError
from mdl.redact import printable
from mdl.store import confined

if TYPE_CHECKING:
    from filelock import BaseFileLock

POLL = 0.2  # seconds between tries while another run holds a lock (Ctrl-C is noticed in between)


@dataclass
class _Held:
    lock: BaseFileLock
    dir_fd: int  # the lock's folder, open while it is held: the lock's path goes through it
    name: str
    remove: bool  # mdl's own lock files go with their release; huggingface_hub's stay, as it leaves them

    def release(self) -> None:
        try:
            if self.remove:  # while still held: a run waiting on this file finds it unlinked and opens anew
                with contextlib.suppress(OSError):
                    os.unlink(self.name, dir_fd=self.dir_fd)
            self.lock.release()
        finally:
            os.close(self.dir_fd)


@dataclass
class HeldLocks(contextlib.AbstractContextManager["HeldLocks"]):
    """File locks held together, released together (in reverse order); ``with`` releases them after the block."""

    locks: list[_Held]

    def __exit__(self, *_: object) -> None:
        self.release()

    def release(self, *, keep: int = 0) -> None:
        """Release the locks but the first ``keep`` (1: our own per-file lock stays, the blob lock goes), last first."""
        while len(self.locks) > keep:
            self.locks.pop().release()


def _write_holder(fd: int) -> None:
    """``pid <n>, mdl <command>, since <time>`` (no arguments: they may hold URLs with secrets)."""
    command = next((a for a in sys.argv[1:] if not a.startswith("-")), "")
    since = datetime.now().astimezone().strftime("%Y-%m-%d %H:%M:%S %z")
    line = f"pid {os.getpid()}, mdl {printable(command)[:40]}".rstrip() + f", since {since}\n"
    with contextlib.suppress(OSError):  # a lock works without its note
        os.ftruncate(fd, 0)
        os.pwrite(fd, line.encode(), 0)


def holder_of(root: Path, where: Path) -> str:
    try:
        text = confined.read_bytes(root, where, limit=512).decode("utf-8", "replace")
    except OSError:
        return ""
    return printable(text.strip().splitlines()[0]) if text.strip() else ""


def acquire_locks(
    root: Path,
    paths: Sequence[Path],
    *,
    label: str,
    timeout: float,
    on_wait: Callable[[str], None] | None = None,
    cancel: threading.Event | None = None,
) -> HeldLocks:
    """Take locks at ``paths`` in order within one ``timeout``; ``on_wait(holder)`` once if another run holds any."""
    held = HeldLocks([])
    deadline = time.monotonic() + timeout
    try:
        for index, where in enumerate(paths):
            waited = False
            # the first is our own per-file lock, the second huggingface_hub's blob lock
            while (taken := _take(root, where, waited=waited, deadline=deadline, own=index == 0)) is None:
                if cancel is not None and cancel.is_set():
                    raise InterruptedByUserError(f"{label}: interrupted while waiting for a lock")
                if waited and time.monotonic() >= deadline:
                    holder = holder_of(root, where)
                    held_by = f"{holder}; " if holder else ""
                    raise LockTimeoutError(
                        f"{label}: another mdl run holds the lock {where} ({held_by}waited {timeout:g}s)",
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
    """The lock at ``where`` if no run holds it now, else None (clean-up never waits)."""
    try:
        lock, dir_fd = _open_lock(root, where)
    except FileNotFoundError:
        return None
    try:
        lock.acquire(timeout=0)
    except OSError:  # filelock's Timeout is a TimeoutError
        os.close(dir_fd)
        return None
    return HeldLocks([_Held(lock, dir_fd, where.name, remove=True)])


def _open_lock(root: Path, where: Path) -> tuple[BaseFileLock, int]:
    from filelock import FileLock

    dir_fd = confined.open_dir(root, where.parent)
    through = Path(f"/proc/self/fd/{dir_fd}")  # the lock's path through its folder's descriptor (filelock takes paths)
    path = through / where.name if through.is_dir() else where
    return FileLock(path, thread_local=False, on_acquired=_write_holder), dir_fd


def _take(root: Path, where: Path, *, waited: bool, deadline: float, own: bool) -> _Held | None:
    """The lock at ``where`` (at once, or after a poll once ``waited``), None while another run holds it."""
    from filelock import Timeout

    while True:
        try:
            lock, dir_fd = _open_lock(root, where)
        except OSError as exc:
            raise LocalFSError(f"cannot create {where.parent}: {exc.strerror or exc}") from exc
        try:
            lock.acquire(timeout=min(POLL, max(0.0, deadline - time.monotonic())) if waited else 0)
            return _Held(lock, dir_fd, where.name, remove=own)
        except FileNotFoundError:
            os.close(dir_fd)  # its folder went (emptied and removed by a get): walk to it anew
        except Timeout:
            os.close(dir_fd)
            return None
        except OSError as exc:  # not a lock mdl can take: never followed, never replaced
            os.close(dir_fd)
            if exc.errno == errno.ELOOP:
                raise UnsafePathError(f"{where} is a symbolic link; mdl never follows links inside {root}") from None
            raise LocalFSError(f"cannot lock {where}: {exc.strerror or exc}") from None
        except BaseException:
            os.close(dir_fd)
            raise
