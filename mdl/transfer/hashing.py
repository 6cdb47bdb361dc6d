"""sha256 (and the git blob id) of a file as it fills: from memory at the frontier, else read back; the check."""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager

from mdl.errors import LocalFSError
from mdl.transfer.job import HashMismatch, TransferJob
from mdl.transfer.scheduling import MiB

HASH_BLOCK = 8 * MiB  # the hashing thread is woken when a piece completes or fills a block this big
READ_BACK = 1 * MiB  # bytes read back per step, so a stream at the frontier never waits long for the lock


class Hasher:
    """Hashes of the file's contiguous prefix: offered from memory at the frontier, else read back (``catch_up``)."""

    def __init__(self, fd: int, size: int | None, *, git: bool) -> None:
        self.fd = fd
        self.size = size
        self.git = git
        self.lock = threading.Lock()
        self._buffer: bytearray | None = None
        self.epoch = 0  # bumped by reset: a catch-up begun before it stops instead of hashing old bytes
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.epoch += 1
            self.sha256 = hashlib.sha256()
            self.sha1 = hashlib.sha1() if self.git and self.size is not None else None
            if self.sha1 is not None:
                self.sha1.update(b"blob %d\0" % (self.size or 0))
            self.position = 0

    def _update(self, data: memoryview) -> None:
        self.sha256.update(data)
        if self.sha1 is not None:
            self.sha1.update(data)
        self.position += len(data)

    def offer(self, offset: int, data: bytes | memoryview) -> None:
        end = offset + len(data)
        with self.lock:
            if offset <= self.position < end:
                self._update(memoryview(data)[self.position - offset :])

    def catch_up(self, limit: int, *, epoch: int | None = None) -> None:
        """Hash bytes [position, limit) from the file; stops if reset since ``epoch`` (``limit`` may be stale)."""
        if epoch is None:
            with self.lock:
                epoch = self.epoch
        while True:
            with self.lock:
                if self.position >= limit or self.epoch != epoch:
                    return
                if self._buffer is None:
                    self._buffer = bytearray(min(READ_BACK, max(1, limit - self.position)))
                view = memoryview(self._buffer)
                want = min(len(view), limit - self.position)
                got = os.preadv(self.fd, [view[:want]], self.position)
                if got <= 0:
                    raise LocalFSError(f"could not read back {self.position} bytes while hashing")
                self._update(view[:got])


@contextmanager
def alongside(loop: Callable[[threading.Event], None], *, name: str, wake: Callable[[], None]) -> Iterator[None]:
    """Run ``loop(done)`` in a thread while the block runs; then set ``done``, ``wake``, join, raise what it raised."""
    done = threading.Event()
    failure: list[BaseException] = []

    def run() -> None:
        try:
            loop(done)
        except BaseException as exc:  # noqa: BLE001 - raised in the caller's thread below
            failure.append(exc)

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        wake()
        thread.join()
    if failure:
        raise failure[0]


def hashing_alongside(
    hasher: Hasher, lock: threading.Condition, contiguous: Callable[[], int], *, name: str
) -> AbstractContextManager[None]:
    """Hash while the body runs; writers notify ``lock`` when ``contiguous()`` may have grown."""

    def hash_loop(done: threading.Event) -> None:
        while True:
            with lock:
                while contiguous() <= hasher.position and not done.is_set():
                    lock.wait(0.5)
                target = contiguous()
                epoch = hasher.epoch  # read with the frontier: a reset is made under the same lock
            if target > hasher.position:
                hasher.catch_up(target, epoch=epoch)
            elif done.is_set():
                return

    def wake() -> None:
        with lock:
            lock.notify_all()

    return alongside(hash_loop, name=name, wake=wake)


def verify(job: TransferJob, *, size: int, hasher: Hasher) -> None:
    ident = job.identity
    if ident.size is not None and job.size_pinned and size != ident.size:
        raise HashMismatch("size", f"{ident.size} bytes", f"{size} bytes")
    if not job.verify:
        return
    if ident.sha256 and hasher.sha256.hexdigest() != ident.sha256:
        raise HashMismatch("sha256", ident.sha256, hasher.sha256.hexdigest())
    if ident.git_oid and hasher.sha1 is not None and hasher.sha1.hexdigest() != ident.git_oid:
        raise HashMismatch("git blob id", ident.git_oid, hasher.sha1.hexdigest())
