"""The file's hashes over its contiguous prefix, fed from memory in file order: while a thread of
its own follows the file (``following``), the streams hand it what they land (``offer``) within a
window past the hashed prefix, and it reads back from the ``.part`` only what no stream handed it
(a resumed prefix, bytes that landed past the window), counted (``read_back``); and the whole
file's checks at the end. Both engines use it (the plain-HTTP streams, Xet's terms)."""

from __future__ import annotations

import contextlib
import hashlib
import heapq
import itertools
import os
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from mdl.errors import LocalFSError
from mdl.transfer.job import HashMismatch, TransferJob
from mdl.transfer.scheduling import MiB

if TYPE_CHECKING:
    from mdl.signing.statement import (
        SignedFile,  # (a signed pull's: made by what checks signatures)
    )

# bytes past the hashed prefix whose chunks the streams hand over are kept in memory till hashed
# (at most this much memory): what lands further on is read back from the disk once it is reached
WINDOW = 64 * MiB
# bytes read back per step, so a stream at the frontier never waits long for the lock
READ_BACK = 1 * MiB
IDLE = 0.05  # seconds the following thread waits for a chunk before it looks at the disk again


class Hasher:
    """Hashes of the file's contiguous prefix: handed over from memory, else read back
    (``catch_up``)."""

    def __init__(
        self, fd: int, size: int | None, *, git: bool, signed: SignedFile | None = None
    ) -> None:
        self.fd, self.size, self.git, self.signed = fd, size, git, signed
        self.lock = threading.Lock()  # the hashes and the position (held while hashing)
        # Chunks handed over past the position, by offset (their own lock: a stream handing one
        # over never waits for a hash); told when one comes (``following``'s thread waits on it)
        self._ahead: list[tuple[int, int, bytes]] = []
        self._came = threading.Condition()
        self._order = itertools.count()  # (two chunks at one offset are never compared)
        self._follower = False  # a thread follows the file: chunks are handed over, not hashed
        self._buffer: bytearray | None = None
        self.read_back = 0  # bytes hashed from the disk, not from memory (a bench counts them)
        # bumped by a reset or a take-back: a catch-up or a chunk taken before it hashes nothing
        self.epoch = 0
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self._restart()

    def _restart(self) -> None:
        self.epoch += 1
        self.sha256 = hashlib.sha256()
        self.sha1 = (
            hashlib.sha1(b"blob %d\0" % self.size) if self.git and self.size is not None else None
        )
        self.check = self.signed.check_apart() if self.signed is not None else None
        self.position = 0
        with self._came:
            self._ahead = []

    def unclaim(self, start: int, end: int) -> None:
        """Bytes ``[start, end)`` are claimed no more (a take-back): hashed past ``start``, it
        starts over; else what was handed over of them is dropped, and a catch-up or a chunk under
        way stops (it may reach past ``start``)."""
        with self.lock:
            if self.position > start:
                self._restart()
                return
            self.epoch += 1
            with self._came:
                kept = [c for c in self._ahead if c[0] + len(c[2]) <= start or c[0] >= end]
                heapq.heapify(kept)
                self._ahead = kept

    def _update(self, data: memoryview) -> None:
        self.sha256.update(data)
        if self.sha1 is not None:
            self.sha1.update(data)
        if self.check is not None:
            self.check.update(data)
        self.position += len(data)

    def offer(self, offset: int, data: bytes | memoryview) -> None:
        """Bytes that landed at ``offset`` (a view valid only now): kept for the following thread
        when within ``WINDOW`` of the position, else left to be read back; hashed now when no
        thread follows and they reach past the position."""
        end = offset + len(data)
        # (read without the lock: a position read as it moves leaves the bytes to the read-back)
        if end <= self.position:
            return
        if not self._follower:
            with self.lock:
                if offset <= self.position < end:
                    self._update(memoryview(data)[self.position - offset :])
            return
        if end <= self.position + WINDOW:
            kept = data if isinstance(data, bytes) else bytes(data)
            with self._came:
                heapq.heappush(self._ahead, (offset, next(self._order), kept))
                if offset <= self.position:  # (it waits for the chunk at the position only)
                    self._came.notify()

    def catch_up(self, limit: int, *, epoch: int | None = None) -> None:
        """Hash bytes [position, limit) from the file; stops if reset since ``epoch`` (``limit``
        may be stale).
        """
        epoch = self.epoch if epoch is None else epoch
        while True:
            with self.lock:
                if self.position >= limit or self.epoch != epoch:
                    return
                if self._buffer is None:
                    self._buffer = bytearray(min(READ_BACK, max(1, limit - self.position)))
                view = memoryview(self._buffer)[: limit - self.position]
                if (got := os.preadv(self.fd, [view], self.position)) <= 0:
                    raise LocalFSError(f"could not read back {self.position} bytes while hashing")
                self._update(view[:got])
                self.read_back += got

    def _step(self, claimed: Callable[[], int]) -> bool:
        """Hash what comes next in file order: a chunk handed over, else the bytes on disk up to
        the next one (or the end of the ``claimed`` prefix); False: nothing is there to hash yet."""
        epoch, at = self.epoch, self.position
        with self._came:
            while self._ahead and self._ahead[0][0] + len(self._ahead[0][2]) <= at:
                heapq.heappop(self._ahead)  # (already hashed: read back meanwhile)
            chunk = heapq.heappop(self._ahead) if self._ahead and self._ahead[0][0] <= at else None
            upto = self._ahead[0][0] if self._ahead else None
        if chunk is not None:
            offset, _, data = chunk
            with self.lock:
                if self.epoch == epoch and offset <= self.position < offset + len(data):
                    self._update(memoryview(data)[self.position - offset :])
            return True
        upto = claimed() if upto is None else min(upto, claimed())
        if upto <= at:
            return False
        self.catch_up(upto, epoch=epoch)
        return True

    @contextlib.contextmanager
    def following(
        self,
        lock: threading.Condition,
        contiguous: Callable[[], int],
        *,
        name: str,
        each: Callable[[], None] | None = None,
    ) -> Iterator[None]:
        """A thread of its own hashing the prefix as it grows, in file order: the chunks handed
        over, else read back up to ``contiguous`` (the bytes claimed, read under ``lock``); never
        one of the streams, so it never waits behind them. ``each`` is called at every turn (at
        least every ``IDLE`` seconds); a failure is raised at the end."""
        done = threading.Event()

        def claimed() -> int:
            with lock:
                return contiguous()

        def follow() -> None:
            while True:
                finished = done.is_set()  # (before the claimed prefix is read: then it is the last)
                if not self._step(claimed):
                    if finished:
                        return
                    with self._came:  # (a chunk at the position is not waited for)
                        if not (self._ahead and self._ahead[0][0] <= self.position):
                            self._came.wait(IDLE)
                if each is not None:
                    each()

        from concurrent.futures import ThreadPoolExecutor  # (not before the first download)

        self._follower = True
        with ThreadPoolExecutor(1, thread_name_prefix=name) as pool:
            running = pool.submit(follow)
            try:
                yield
            finally:
                done.set()
                with self._came:
                    self._came.notify()  # it may be waiting for more
        self._follower = False
        with self._came:
            self._ahead = []  # (none a claim reached: no stream lands any more)
        running.result()

    def mismatch(self, job: TransferJob, size: int) -> HashMismatch | None:
        """Why the bytes hashed are not ``job``'s file (size, sha256, git blob id, a signature's
        digests), or None."""
        ident = job.identity
        if ident.size is not None and job.size_pinned and size != ident.size:
            return HashMismatch("size", f"{ident.size} bytes", f"{size} bytes")
        if not job.verify:
            return None
        if ident.sha256 and (got := self.sha256.hexdigest()) != ident.sha256:
            return HashMismatch("sha256", ident.sha256, got)
        if (
            ident.git_oid
            and self.sha1 is not None
            and (got := self.sha1.hexdigest()) != ident.git_oid
        ):
            return HashMismatch("git blob id", ident.git_oid, got)
        if self.check is not None and (bad := self.check.mismatch()) is not None:
            return HashMismatch(*bad)
        return None
