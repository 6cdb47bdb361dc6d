"""The file's hashes over its contiguous prefix, fed from memory: a chunk landing at the hash's
frontier is hashed by its stream, one landing a little ahead of it is kept (a copy, ``KEEP_AHEAD``
at most) till a thread of its own (``following``) reaches it; only what overflowed is read back from
the ``.part`` (counted: ``read_back``). And the whole file's checks at the end. Both engines use it
(the plain-HTTP streams, Xet's terms)."""

from __future__ import annotations

import contextlib
import hashlib
import heapq
import math
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from mdl.errors import LocalFSError
from mdl.transfer.job import HashMismatch, TransferJob
from mdl.transfer.scheduling import KEEP_AHEAD, MiB
from mdl.wait import Wait

if TYPE_CHECKING:
    from _hashlib import HASH as Hash  # (the type hashlib's constructors return)

    from mdl.signing.statement import (
        SignedFile,  # (a signed pull's: made by what checks signatures)
    )

HASH_BLOCK = 8 * MiB  # the hashing thread is woken when a piece completes or fills a block this big
# bytes read back per step, so a stream at the frontier never waits long for the lock
READ_BACK = 1 * MiB
# A stream about to land bytes past what the hash keeps in memory (``KEEP_AHEAD``) waits for the
# hash while it moves (a machine short of CPU: the streams yield to the hash instead of making it
# read their bytes back); once it has not moved for this long (a gap before the frontier holds it:
# a stalled or slow stream), the stream goes on and its bytes are read back.
HELD = 0.5
SLAB = 1 * MiB  # a kept chunk's copy is made in one this big (a raw body's chunk: body.FILL)
# what every file's hasher keeps at once, at most (a pull fetches up to 4 big files at once)
KEEP_TOTAL = 2 * KEEP_AHEAD


def held(data: memoryview) -> int:
    """The memory a kept chunk holds: its slab's, else its own bytes'."""
    return len(data.obj) if isinstance(data.obj, bytearray) else len(data)


class _Kept:
    """The bytes one hasher keeps, counted in the process's total too (``KEEP_TOTAL``); given
    back when hashed, dropped, or when the hasher is dropped with some left (a failed attempt)."""

    total = 0
    lock = threading.Lock()

    def __init__(self) -> None:
        self.bytes = 0

    def take(self, count: int) -> bool:
        with _Kept.lock:
            if _Kept.total + count > KEEP_TOTAL:
                return False
            _Kept.total += count
        self.bytes += count
        return True

    def give(self, count: int) -> None:
        with _Kept.lock:
            _Kept.total -= count
        self.bytes -= count

    def release(self) -> None:
        self.give(self.bytes)


# the hashes' state kept every this many bytes: bytes claimed no more (a take-back, a dropped piece)
# are hashed again from the last mark before them, not from the file's first byte
MARK_EVERY = 64 * MiB


class Hasher:
    """Hashes of the file's contiguous prefix: offered from memory at the frontier, else read
    back (``catch_up``).
    """

    def __init__(
        self, fd: int, size: int | None, *, git: bool, signed: SignedFile | None = None
    ) -> None:
        self.fd, self.size, self.git, self.signed = fd, size, git, signed
        self.lock = threading.Lock()
        self._buffer: bytearray | None = None
        self.read_back = 0  # bytes hashed from the file, not from memory (every attempt's)
        # bumped by unclaim: a catch-up begun before it stops instead of hashing old bytes
        self.epoch = 0
        self._marks: list[tuple[int, Hash, Hash | None]] = []
        # the chunks kept ahead (offset: bytes), their offsets (a heap: the next one the read-back
        # stops at) and their size; under ``_keeping`` (a stream keeps a chunk without waiting
        # for a hashing step, which holds ``lock``)
        self._kept: dict[int, memoryview] = {}
        self._kept_at: list[int] = []
        self._account = _Kept()
        weakref.finalize(self, self._account.release)
        self._keeping = threading.Lock()
        self._slabs: list[bytearray] = []  # free ones (``_copy``)
        # streams waiting for the hash to reach a position (``room``): (position, ·, told)
        self._waiters: list[tuple[int, int, threading.Event]] = []
        self._rewind(0)

    @property
    def kept(self) -> int:
        """Bytes kept ahead of the hash, not hashed yet."""
        return self._account.bytes

    def _rewind(self, start: int) -> None:
        """The hashes as they were at the last mark at or before ``start`` (at byte 0: new)."""
        marks = [mark for mark in self._marks if mark[0] <= start]  # (none at byte 0)
        if marks:
            self.position, sha256, sha1 = marks[-1]
            self.sha256, self.sha1 = sha256.copy(), None if sha1 is None else sha1.copy()
        else:
            self.position, self.sha256 = 0, hashlib.sha256()
            self.sha1 = (
                hashlib.sha1(b"blob %d\0" % self.size)
                if self.git and self.size is not None
                else None
            )
            self.check = self.signed.check_apart() if self.signed is not None else None
        # (a signed check apart keeps no marks: it cannot be copied, it starts over)
        self._marks = marks
        self.moved = time.monotonic()  # when the hash last moved (``room``)
        self._next_mark = self.position + MARK_EVERY if self.check is None else math.inf

    def unclaim(self, start: int) -> None:
        """The bytes from ``start`` on are claimed no more (a take-back): hashed past it, it goes
        back to its last mark before ``start``; a catch-up under way stops (its limit may lie past
        ``start``)."""
        with self.lock:
            self.epoch += 1
            if self.position > start:
                self._rewind(start)
            with self._keeping:  # the bytes kept from ``start`` on may be written anew
                kept = {at: data[: max(0, start - at)] for at, data in self._kept.items()}
                self._kept = {at: data for at, data in kept.items() if len(data)}
                self._kept_at = sorted(self._kept)
                self._account.give(self.kept - sum(map(held, self._kept.values())))

    def _update(self, data: memoryview) -> None:
        self.sha256.update(data)
        if self.sha1 is not None:
            self.sha1.update(data)
        if self.check is not None:
            self.check.update(data)
        self.position += len(data)
        self.moved = time.monotonic()
        if self.position >= self._next_mark:
            self._marks.append(
                (self.position, self.sha256.copy(), None if self.sha1 is None else self.sha1.copy())
            )
            self._next_mark = self.position + MARK_EVERY
        if self._waiters and self._waiters[0][0] <= self.position:
            with self._keeping:  # each stream told once the hash reached what it waits for
                while self._waiters and self._waiters[0][0] <= self.position:
                    heapq.heappop(self._waiters)[2].set()

    def room(
        self, end: int, landed: Callable[[], int], cancel: threading.Event, *, ahead: int = 0
    ) -> None:
        """Return once the bytes up to ``end`` lie within what the hash keeps ahead of it (or
        within ``ahead`` of it, if more: how far the streams' pieces reach). Only a hash short of
        CPU is waited for: one that has the bytes before (``landed``: the contiguous prefix) and
        moves; a gap before them (a slower stream, a swarm's order), a hash that has not moved
        for ``HELD`` seconds or ``cancel`` ends the wait (the bytes are read back)."""
        need = end - max(KEEP_AHEAD, ahead)
        if need <= self.position or self._held() or landed() < need:
            return
        told = threading.Event()
        with self._keeping:
            heapq.heappush(self._waiters, (need, id(told), told))
        wait = Wait(cancel=cancel)
        # (looked at again: the hash may have moved before the wait was listed)
        while need > self.position and not self._held() and wait.pause(0.1, told):
            pass

    def _held(self) -> bool:
        return time.monotonic() - self.moved >= HELD

    def offer(self, offset: int, data: bytes | memoryview) -> None:
        """Bytes written at ``offset``, about to be claimed: hashed at the frontier (with the
        bytes kept right after them), kept a little ahead of it, else left to the read-back (a
        take-back drops what was kept and rewinds the hash, as for what was hashed)."""
        # Looked at without the lock first (the frontier's stream or the hashing thread holds it
        # while it hashes); a position read as it moves keeps the bytes, or leaves them to the
        # read-back.
        if offset <= self.position < offset + len(data):
            with self.lock:
                hashed = offset <= self.position < offset + len(data)
                if hashed:
                    self._update(memoryview(data)[self.position - offset :])
                    self._hash_kept()
            if hashed:
                self._drain()  # (bytes kept at the frontier since it last looked)
                return
        if offset > self.position and offset + len(data) - self.position <= KEEP_AHEAD:
            self._keep(offset, self._copy(data))  # (the copy outside the lock)

    def _copy(self, data: bytes | memoryview) -> memoryview:
        """``data`` to keep: itself if it cannot change, else a copy in a slab of the free ones
        (fresh memory costs a page fault every 4 KiB: 0.2 CPU-s a GiB here)."""
        if isinstance(data, bytes):
            return memoryview(data)
        if not SLAB // 4 <= len(data) <= SLAB:
            return memoryview(bytes(data))
        try:
            slab = self._slabs.pop()
        except IndexError:
            slab = bytearray(SLAB)
        slab[: len(data)] = data
        return memoryview(slab)[: len(data)]

    def _free(self, data: memoryview) -> None:
        slab = data.obj
        data.release()
        if isinstance(slab, bytearray) and len(self._slabs) < KEEP_AHEAD // SLAB:
            self._slabs.append(slab)

    def _keep(self, offset: int, data: memoryview) -> None:
        cost = held(data)
        with self._keeping:
            # (no two kept chunks overlap: each offset's bytes are offered once a claim)
            fits = self.kept + cost <= KEEP_AHEAD and offset not in self._kept
            if not (fits and self._account.take(cost)):
                self._free(data)
                return
            self._kept[offset] = data
            heapq.heappush(self._kept_at, offset)
        self._drain()  # the frontier may have reached it meanwhile

    def _drain(self) -> None:
        """Hash the bytes kept at the frontier if the hash is idle (one hashing looks again once
        it lets go: this), not left for the hashing thread, which a busy process starves."""
        while self.position in self._kept and self.lock.acquire(blocking=False):
            try:
                self._hash_kept()
            finally:
                self.lock.release()

    def _hash_kept(self) -> None:
        """Hash the bytes kept at the frontier, and the bytes kept after them; locked."""
        while True:
            with self._keeping:
                if (data := self._kept.pop(self.position, None)) is None:
                    return
                self._account.give(held(data))
            self._update(data)
            self._free(data)

    def close(self) -> None:
        """The attempt ended: what is kept and the free slabs let go, the process's total given
        back (not left to the collector: a state lives till a full collection)."""
        with self.lock, self._keeping:
            self._kept.clear()
            self._kept_at.clear()
            self._slabs.clear()
            self._account.release()

    def _next_kept(self) -> float:
        """Where the next bytes kept ahead begin (a read-back stops there); locked."""
        with self._keeping:
            while self._kept_at and (
                (at := self._kept_at[0]) < self.position or at not in self._kept
            ):
                heapq.heappop(self._kept_at)  # hashed; or passed by a read-back: let go
                if (data := self._kept.pop(at, None)) is not None:
                    self._account.give(held(data))
            return self._kept_at[0] if self._kept_at else math.inf

    def catch_up(self, limit: int, *, epoch: int | None = None) -> None:
        """Hash bytes [position, limit): those kept from memory, the others read back from the
        file; stops if unclaimed since ``epoch`` (``limit`` may be stale).
        """
        epoch = self.epoch if epoch is None else epoch
        while True:
            with self.lock:
                self._hash_kept()
                if self.position >= limit or self.epoch != epoch:
                    return
                if self._buffer is None:
                    self._buffer = bytearray(min(READ_BACK, max(1, limit - self.position)))
                if (until := min(limit, self._next_kept())) <= self.position:
                    continue  # (kept at the frontier meanwhile)
                view = memoryview(self._buffer)[: int(until) - self.position]
                if (got := os.preadv(self.fd, [view], self.position)) <= 0:
                    raise LocalFSError(f"could not read back {self.position} bytes while hashing")
                self._update(view[:got])
                self.read_back += got

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
                    # read with the frontier: an unclaim is made under the same lock
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
        digests), or None; with ``--no-verify`` (not ``job.verify``) too: its caller keeps them."""
        ident = job.identity
        if ident.size is not None and job.size_pinned and size != ident.size:
            return HashMismatch("size", f"{ident.size} bytes", f"{size} bytes")
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
