"""The file's hashes over its contiguous prefix, fed from memory in file order (a chunk landed
ahead of the prefix held, within a window, till the prefix reaches it), else read back from the
``.part`` by a thread of its own (``following``); and the whole file's checks at the end.
Both engines use it (the plain-HTTP streams, Xet's terms)."""

from __future__ import annotations

import contextlib
import hashlib
import heapq
import math
import mmap
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from mdl.errors import LocalFSError
from mdl.transfer.context import Ledger
from mdl.transfer.job import HashMismatch, TransferJob
from mdl.transfer.scheduling import HASH_WINDOW, MiB

if TYPE_CHECKING:
    from mdl.signing.statement import (
        SignedFile,  # (a signed pull's: made by what checks signatures)
    )

HASH_BLOCK = 8 * MiB  # the hashing thread is woken when a piece completes or fills a block this big
# bytes read back per step, so a stream at the frontier never waits long for the lock
READ_BACK = 1 * MiB
WINDOW = HASH_WINDOW  # bytes past the prefix held in memory: the rest read back (``scheduling``)
# seconds a stream waits for the prefix before it fetches bytes past the window (then read back)
WINDOW_WAIT = 1.0


class Hasher:
    """Hashes of the file's contiguous prefix, fed in file order from memory: a chunk at the
    frontier hashed from the stream's own buffer, one landed within ``WINDOW`` past it held (a
    copy) till the prefix reaches it; else read back (``catch_up``, counted in the ledger).
    """

    def __init__(
        self,
        fd: int,
        size: int | None,
        *,
        git: bool,
        signed: SignedFile | None = None,
        ledger: Ledger | None = None,
    ) -> None:
        self.fd, self.size, self.git, self.signed = fd, size, git, signed
        self.ledger = ledger or Ledger()  # where the bytes read back are counted
        self.lock = threading.Lock()  # held while hashing: the hashes and ``position`` move
        self._buffer: bytearray | None = None
        # chunks landed past the frontier, by start (a heap of them) to end; their bytes are in a
        # ring of the window's size, byte ``i`` of the file at ``i % WINDOW`` (made at the first)
        self._held: dict[int, int] = {}
        self._starts: list[int] = []
        self.window, self._ring = min(WINDOW, size or WINDOW) or 1, memoryview(b"")
        self._held_lock = threading.Lock()  # (the held chunks and ``position``: never waits long)
        self.held = self.most_held = 0  # bytes held now, and at most
        self._moved = threading.Condition()  # the prefix reached ``_wanted`` (``reach``)
        self._wanted: float = math.inf
        # bumped by reset: a catch-up begun before it stops instead of hashing old bytes
        self.epoch = 0
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self._reset()

    def _reset(self) -> None:
        self.epoch += 1
        self.sha256 = hashlib.sha256()
        self.sha1 = (
            hashlib.sha1(b"blob %d\0" % self.size) if self.git and self.size is not None else None
        )
        self.check = self.signed.check_apart() if self.signed is not None else None
        with self._held_lock:
            self.position = 0
            self._drop_held(0)

    def unclaim(self, start: int) -> None:
        """The bytes from ``start`` on are claimed no more (a take-back): hashed past it, it starts
        over; a catch-up under way stops (its limit may lie past ``start``), and no chunk held from
        past it is hashed."""
        with self.lock:
            if self.position > start:
                self._reset()
                return
            self.epoch += 1
            with self._held_lock:
                self._drop_held(start)

    def _drop_held(self, start: int) -> None:
        """Forget the held chunks that reach past ``start`` (under ``_held_lock``)."""
        for at, end in list(self._held.items()):
            if end > start:
                del self._held[at]
                self.held -= end - at
        self._starts = sorted(self._held)

    def _update(self, data: memoryview) -> None:
        self.sha256.update(data)
        if self.sha1 is not None:
            self.sha1.update(data)
        if self.check is not None:
            self.check.update(data)
        with self._held_lock:
            self.position += len(data)
        if self.position >= self._wanted:
            with self._moved:
                self._wanted = math.inf
                self._moved.notify_all()

    def reach(self, upto: int, stopped: Callable[[], bool]) -> None:
        """Wait till the prefix hashed reaches ``upto`` (a stream about to fetch bytes past the
        window), ``WINDOW_WAIT`` at most, hearing ``stopped``: past it, what it fetches beyond the
        window is read back."""
        deadline = time.monotonic() + WINDOW_WAIT
        with self._moved:
            while self.position < upto and not stopped():
                if (left := deadline - time.monotonic()) <= 0:
                    return
                self._wanted = min(self._wanted, upto)
                self._moved.wait(min(0.1, left))

    def offer(self, offset: int, data: bytes | memoryview) -> None:
        """Bytes ``[offset, offset + len(data))`` as written: hashed now if they are the
        frontier's and nobody else hashes, else held within the window (a copy: ``data`` may be a
        reused buffer); then the held chunks the prefix reached are hashed, unless another thread
        hashes (it takes them)."""
        if not self._at_frontier(offset, data):
            self._hold(offset, data)
        self._drain()

    def _at_frontier(self, offset: int, data: bytes | memoryview) -> bool:
        if offset != self.position or not self.lock.acquire(blocking=False):
            return False
        try:
            if offset == self.position:  # (looked at without the lock first)
                self._update(memoryview(data))
                return True
            return False
        finally:
            self.lock.release()

    def _hold(self, offset: int, data: bytes | memoryview) -> None:
        """The part of ``data`` within the window copied into the ring (off the lock: its place
        is this chunk's alone, the window's bytes before it hashed), then held."""
        with self._held_lock:
            start = max(offset, self.position)
            end = min(offset + len(data), self.position + self.window)
            if start >= end or start in self._held:  # hashed, past the window, or held
                return
            epoch, slots = self.epoch, self._slots(start, end)
        source = memoryview(data)[start - offset : end - offset]
        for into, part in slots:
            into[:] = source[part]
        with self._held_lock:
            if self.epoch != epoch or start in self._held:  # taken back meanwhile
                return
            self._held[start] = end
            heapq.heappush(self._starts, start)
            self.held += end - start
            self.most_held = max(self.most_held, self.held)

    def _slots(self, start: int, end: int) -> list[tuple[memoryview, slice]]:
        """Where the file's bytes ``[start, end)`` (within a window) lie in the ring: one or two
        views, each with the part of those bytes it holds."""
        if not self._ring:
            # (anonymous pages: memory only as the window fills)
            self._ring = memoryview(mmap.mmap(-1, self.window, flags=mmap.MAP_PRIVATE))
        at, count = start % self.window, end - start
        first = min(count, self.window - at)
        slots = [(self._ring[at : at + first], slice(0, first))]
        return slots + [(self._ring[: count - first], slice(first, count))] * (first < count)

    def _drain(self) -> None:
        """Hash the held chunks the prefix has reached, unless another thread hashes (it takes
        them: whoever lets go of the lock looks again)."""
        while self.position in self._held and self.lock.acquire(blocking=False):
            try:
                self._hash_held()
            finally:
                self.lock.release()

    def _hash_held(self) -> None:
        """The held chunks at the frontier hashed, in order (under ``lock``)."""
        while True:
            with self._held_lock:
                # a chunk the prefix went past (offered twice, over other bounds) is left: read
                while self._starts and self._starts[0] < self.position:
                    start = heapq.heappop(self._starts)
                    self.held -= self._held.pop(start) - start
                if not self._starts or (start := self._starts[0]) != self.position:
                    return
                end = self._held.pop(heapq.heappop(self._starts))
                self.held -= end - start
            for view, _ in self._slots(start, end):
                self._update(view)

    def catch_up(self, limit: int, *, epoch: int | None = None) -> None:
        """Hash bytes [position, limit): held ones from memory, the rest read back from the file
        (counted); stops if reset since ``epoch`` (``limit`` may be stale).
        """
        epoch = self.epoch if epoch is None else epoch
        try:
            while True:
                with self.lock:
                    if self.epoch != epoch:
                        return
                    self._hash_held()
                    if self.position >= limit:
                        return
                    self._read_back(limit)
        finally:
            self._drain()  # (chunks held while it held the lock)

    def _read_back(self, limit: int) -> None:
        """Bytes from ``position`` up to ``limit`` or the next held chunk (at most ``READ_BACK``)
        read from the file and hashed (under ``lock``)."""
        with self._held_lock:
            upto = min(limit, self._starts[0] if self._starts else limit)
        if upto <= self.position:  # a chunk was held at the frontier meanwhile: hashed next
            return
        if self._buffer is None:
            self._buffer = bytearray(min(READ_BACK, max(1, limit - self.position)))
        view = memoryview(self._buffer)[: upto - self.position]
        if (got := os.preadv(self.fd, [view], self.position)) <= 0:
            raise LocalFSError(f"could not read back {self.position} bytes while hashing")
        self.ledger.add("read_back", got)
        self._update(view[:got])

    @contextlib.contextmanager
    def following(
        self,
        lock: threading.Condition,
        contiguous: Callable[[], int],
        *,
        name: str,
        each: Callable[[], None] | None = None,
    ) -> Iterator[None]:
        """A thread hashing the prefix as it grows (writers notify ``lock`` when it may have, and
        ``contiguous`` is read under it), read back where no stream offered it from memory; ``each``
        called at every turn (at least every half second); a failure is raised at the end."""
        done = threading.Event()

        def follow() -> None:
            while True:
                with lock:
                    if contiguous() <= self.position and not done.is_set():
                        lock.wait(0.5)
                    target = contiguous()
                    # read with the frontier: a reset is made under the same lock
                    epoch = self.epoch
                if target > self.position:
                    self.catch_up(target, epoch=epoch)
                elif done.is_set():
                    return
                if each is not None:
                    each()

        from concurrent.futures import ThreadPoolExecutor  # (not before the first download)

        with ThreadPoolExecutor(1, thread_name_prefix=name) as pool:
            running = pool.submit(follow)
            try:
                yield
            finally:
                done.set()
                with lock:
                    lock.notify_all()  # it may be waiting for more
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
