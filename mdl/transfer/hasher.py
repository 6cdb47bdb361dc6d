"""The file's hashes over its contiguous prefix, fed from memory: a chunk landing at the hash's
frontier is hashed by its stream, one landing a little ahead of it is kept (``Ahead``: a copy,
``KEEP_AHEAD`` at most) till the hash reaches it; only what overflowed is read back from the
``.part``, by a thread of its own (``following``; counted: ``read_back``). And the whole file's
checks at the end. Both engines use it (the plain-HTTP streams, Xet's terms)."""

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
# hash while it moves at a stream's pace at least (a machine short of CPU: the streams yield to the
# hash instead of making it read their bytes back; a slower stream at the frontier is not waited
# for), and not once it has not moved for this long (a stalled stream holds it).
HELD = 0.5
PACE_EVERY = 0.25  # the hash's pace (bytes/s) measured over about this many seconds
SLAB = 1 * MiB  # a kept chunk's copy is made in one this big (a raw body's chunk: body.FILL)
# what every file's hasher keeps at once, at most (a pull fetches up to 4 big files at once)
KEEP_TOTAL = 2 * KEEP_AHEAD
# a file's memory at most: its window, and room for chunks that fill their slab in part
SLABS_MOST = KEEP_AHEAD * 5 // 4


def slab_of(data: memoryview) -> bytearray | None:
    """The slab a kept chunk's copy lies in (None: its own bytes)."""
    return data.obj if isinstance(data.obj, bytearray) else None


class _Account:
    """The memory one file's kept chunks and slabs hold, at most ``SLABS_MOST``, counted in the
    process's total too (``KEEP_TOTAL``)."""

    total = 0
    lock = threading.Lock()

    def __init__(self) -> None:
        self.bytes = 0

    def take(self, count: int) -> bool:
        with _Account.lock:
            if self.bytes + count > SLABS_MOST or _Account.total + count > KEEP_TOTAL:
                return False
            _Account.total += count
            self.bytes += count
        return True

    def give(self, count: int) -> None:
        with _Account.lock:
            _Account.total -= count
            self.bytes -= count


class Ahead:
    """One file's chunks kept ahead of its hash: by offset (none overlap: each offset's bytes are
    offered once a claim), their offsets in a heap (where a read-back stops), under their own lock
    (a stream keeps a chunk without waiting for a hashing step). A slab stays counted while it is
    free (it is what the process holds), till ``close``."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._kept: dict[int, memoryview] = {}
        self._at: list[int] = []
        self._account = _Account()
        self._slabs: list[bytearray] = []  # free ones

    @property
    def memory(self) -> int:
        """The memory the kept chunks and the free slabs hold."""
        return self._account.bytes

    def __contains__(self, offset: int) -> bool:
        return offset in self._kept

    def copy(self, data: bytes | memoryview) -> memoryview | None:
        """``data`` to keep: itself if it cannot change, else a copy in a free slab or a new one
        (fresh memory costs a page fault every 4 KiB: 0.2 CPU-s a GiB here); None: no room."""
        if isinstance(data, bytes):
            return memoryview(data)
        if not SLAB // 4 <= len(data) <= SLAB:
            return memoryview(bytes(data))
        try:
            slab = self._slabs.pop()
        except IndexError:
            if not self._account.take(SLAB):
                return None
            slab = bytearray(SLAB)
        slab[: len(data)] = data
        return memoryview(slab)[: len(data)]

    def free(self, data: memoryview) -> None:
        """A chunk hashed, not kept or let go: its slab back to the free ones (still counted),
        else its bytes no longer counted."""
        slab = slab_of(data)
        data.release()
        if slab is not None:
            self._slabs.append(slab)

    def put(self, offset: int, data: memoryview) -> bool:
        """Keep ``data`` (a ``copy``) at ``offset`` if there is room (else freed): whether kept."""
        with self.lock:
            own = slab_of(data) is None
            if offset not in self._kept and (not own or self._account.take(len(data))):
                self._kept[offset] = data
                heapq.heappush(self._at, offset)
                return True
        self.free(data)
        return False

    def take(self, offset: int) -> memoryview | None:
        """The chunk kept at ``offset`` (``free`` it once hashed), or None."""
        with self.lock:
            return self._let_go(self._kept.pop(offset, None))

    def _let_go(self, data: memoryview | None) -> memoryview | None:
        if data is not None and slab_of(data) is None:
            self._account.give(len(data))
        return data

    def next_after(self, position: int) -> float:
        """Where the first chunk kept at or after ``position`` begins (``math.inf``: none);
        those before it, passed by a read-back, let go."""
        with self.lock:
            while self._at and ((at := self._at[0]) < position or at not in self._kept):
                heapq.heappop(self._at)
                if (data := self._let_go(self._kept.pop(at, None))) is not None:
                    self.free(data)
            return self._at[0] if self._at else math.inf

    def cut(self, start: int) -> None:
        """Let go of the bytes kept from ``start`` on (they may be written anew)."""
        with self.lock:
            for at in [at for at in self._kept if at + len(self._kept[at]) > start]:
                data = self._kept.pop(at)
                if at < start:  # (its first bytes stay)
                    self._kept[at] = kept = data[: start - at]
                    if slab_of(data) is None:
                        self._account.give(len(data) - len(kept))
                    continue
                if (gone := self._let_go(data)) is not None:
                    self.free(gone)
            self._at = sorted(self._kept)

    def close(self) -> None:
        """Let go of every kept chunk and slab; the process's total given back."""
        with self.lock:
            self._kept.clear()
            self._at.clear()
            self._slabs.clear()
            self._account.give(self.memory)


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
        self.ahead = Ahead()  # the chunks kept ahead of the hash
        weakref.finalize(self, self.ahead.close)  # (given back if never closed)
        # streams waiting for the hash to reach a position (``room``): (position, ·, told)
        self._waiters: list[tuple[int, int, threading.Event]] = []
        self._rewind(0)

    @property
    def kept(self) -> int:
        """The memory the chunks kept ahead of the hash and its free slabs hold."""
        return self.ahead.memory

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
        self.moved = time.monotonic()  # when the hash last moved (``room``) ...
        self._paced, self.pace = (self.moved, self.position), 0.0  # ... and how fast
        self._next_mark = self.position + MARK_EVERY if self.check is None else math.inf

    def unclaim(self, start: int) -> None:
        """The bytes from ``start`` on are claimed no more (a take-back): hashed past it, it goes
        back to its last mark before ``start``; a catch-up under way stops (its limit may lie past
        ``start``)."""
        with self.lock:
            self.epoch += 1
            if self.position > start:
                self._rewind(start)
            self.ahead.cut(start)  # (the bytes kept from it on may be written anew)

    def _update(self, data: memoryview) -> None:
        self.sha256.update(data)
        if self.sha1 is not None:
            self.sha1.update(data)
        if self.check is not None:
            self.check.update(data)
        self.position += len(data)
        self.moved = time.monotonic()
        if self.moved - self._paced[0] >= PACE_EVERY:
            began, at = self._paced
            self.pace = (self.position - at) / (self.moved - began)
            self._paced = (self.moved, self.position)
        if self.position >= self._next_mark:
            self._marks.append(
                (self.position, self.sha256.copy(), None if self.sha1 is None else self.sha1.copy())
            )
            self._next_mark = self.position + MARK_EVERY
        if self._waiters and self._waiters[0][0] <= self.position:
            with self.ahead.lock:  # each stream told once the hash reached what it waits for
                while self._waiters and self._waiters[0][0] <= self.position:
                    heapq.heappop(self._waiters)[2].set()

    def room(
        self, end: int, pace: Callable[[], float], cancel: threading.Event, *, ahead: int = 0
    ) -> None:
        """Return once the bytes up to ``end`` lie within what the hash keeps ahead of it (or
        within ``ahead`` of it, if more: how far the streams' pieces reach). Only a hash that
        moves at least at a stream's ``pace`` (bytes/s, asked only then) is waited for: on a
        machine short of CPU the streams yield to it. A hash held by a slower stream at the
        frontier (or a swarm's order), or still for ``HELD`` seconds, or ``cancel`` ends the
        wait: the bytes are read back."""
        need = end - max(KEEP_AHEAD, ahead)
        if need <= self.position or not self._behind(pace):
            return
        told = threading.Event()
        with self.ahead.lock:
            heapq.heappush(self._waiters, (need, id(told), told))
        wait = Wait(cancel=cancel)
        # (looked at again: the hash may have moved before the wait was listed)
        while need > self.position and self._behind(pace) and wait.pause(0.1, told):
            pass

    def _behind(self, pace: Callable[[], float]) -> bool:
        """The hash is what holds the streams: it moved lately, at ``pace`` at least."""
        return time.monotonic() - self.moved < HELD and self.pace >= pace()

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
        near = offset > self.position and offset + len(data) - self.position <= KEEP_AHEAD
        kept = self.ahead.copy(data) if near else None  # (copied outside the lock)
        if kept is not None and self.ahead.put(offset, kept):
            self._drain()  # the frontier may have reached it meanwhile

    def _drain(self) -> None:
        """Hash the bytes kept at the frontier if the hash is idle (one hashing looks again once
        it lets go: this), not left for the hashing thread, which a busy process starves."""
        while self.position in self.ahead and self.lock.acquire(blocking=False):
            try:
                self._hash_kept()
            finally:
                self.lock.release()

    def _hash_kept(self) -> None:
        """Hash the bytes kept at the frontier, and the bytes kept after them; locked."""
        while (data := self.ahead.take(self.position)) is not None:
            self._update(data)
            self.ahead.free(data)

    def close(self) -> None:
        """The attempt ended (or paused): what is kept and the free slabs let go, the process's
        total given back (not left to the collector: a state lives till a full collection); it
        keeps working after, as new."""
        with self.lock:
            self.ahead.close()

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
                if (until := min(limit, self.ahead.next_after(self.position))) <= self.position:
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
