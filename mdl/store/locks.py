"""Cross-process file locks (filelock): per-file locks polled so Ctrl-C is noticed, and per-record locks."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from mdl.errors import InterruptedByUserError, LocalFSError, LockTimeoutError

if TYPE_CHECKING:
    from filelock import BaseFileLock

RECORD_LOCK_TIMEOUT = 60  # seconds; a record is rewritten in milliseconds, so a longer wait means a stuck run


class HeldLocks:
    """File locks held together, released together (in reverse order)."""

    def __init__(self, locks: list[BaseFileLock]) -> None:
        self.locks = locks

    def release_shared(self) -> None:
        """Release all but our own per-file lock (the blob lock shared with huggingface_hub)."""
        while len(self.locks) > 1:
            self.locks.pop().release()

    def release(self) -> None:
        """Release every lock held."""
        while self.locks:
            self.locks.pop().release()


def acquire_locks(
    paths: Sequence[Path],
    *,
    label: str,
    timeout: float,
    on_wait: Callable[[], None] | None = None,
    cancel: threading.Event | None = None,
) -> HeldLocks:
    """Take the locks at ``paths`` in order within one ``timeout``; call ``on_wait()`` once if any is held.

    On any failure (timeout, Ctrl-C) the locks already taken are released before the error goes up.
    """
    held = HeldLocks([])
    deadline = time.monotonic() + timeout
    waited = False

    def wait_note() -> None:  # once, however many of the locks we wait for
        nonlocal waited
        if not waited and on_wait is not None:
            on_wait()
        waited = True

    try:
        for where in paths:
            held.locks.append(_acquire(where, label, deadline, timeout, wait_note, cancel))
    except BaseException:
        held.release()
        raise
    return held


@contextlib.contextmanager
def record_lock(where: Path, *, model: str) -> Iterator[None]:
    """Hold the lock guarding one model's record while it is read, changed and rewritten."""
    from filelock import FileLock, Timeout

    try:
        with FileLock(where, timeout=RECORD_LOCK_TIMEOUT):
            yield
    except Timeout:
        raise LockTimeoutError(
            f"{model}: could not lock its record within {RECORD_LOCK_TIMEOUT}s (another mdl run?)"
        ) from None


def _acquire(
    where: Path,
    label: str,
    deadline: float,
    timeout: float,
    on_wait: Callable[[], None],
    cancel: threading.Event | None,
) -> BaseFileLock:
    from filelock import FileLock, Timeout

    try:
        where.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LocalFSError(f"cannot create {where.parent}: {exc.strerror or exc}") from exc
    lock = FileLock(where, thread_local=False)
    waited = False
    while True:
        try:
            lock.acquire(timeout=0 if not waited else min(0.5, max(0.0, deadline - time.monotonic())))
            return lock
        except Timeout:
            if cancel is not None and cancel.is_set():
                raise InterruptedByUserError(f"{label}: interrupted while waiting for a lock") from None
            if waited and time.monotonic() >= deadline:
                raise LockTimeoutError(
                    f"{label}: another mdl run holds the lock {where} (waited {timeout:g}s)",
                    hint="raise --lock-timeout, or check for a stuck mdl process",
                ) from None
            if not waited:
                on_wait()
            waited = True
