"""The chunks landed ahead of the hash, kept in memory till it reaches them (``hasher.Hasher``):
copies in reused slabs (a stream's chunk is a view of a buffer it reuses), at most ``KEEP_AHEAD``
a file and ``KEEP_TOTAL`` for every file fetched at once, counted by the memory they hold."""

from __future__ import annotations

import heapq
import math
import threading

from mdl.transfer.scheduling import KEEP_AHEAD, MiB

SLAB = 1 * MiB  # a kept chunk's copy is made in one this big (a raw body's chunk: body.FILL)
# what every file's hasher keeps at once, at most (a pull fetches up to 4 big files at once)
KEEP_TOTAL = 2 * KEEP_AHEAD


def held(data: memoryview) -> int:
    """The memory a kept chunk holds: its slab's, else its own bytes'."""
    return len(data.obj) if isinstance(data.obj, bytearray) else len(data)


class _Account:
    """The bytes one file keeps, counted in the process's total too (``KEEP_TOTAL``)."""

    total = 0
    lock = threading.Lock()

    def __init__(self) -> None:
        self.bytes = 0

    def take(self, count: int) -> bool:
        with _Account.lock:
            if _Account.total + count > KEEP_TOTAL:
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
    (a stream keeps a chunk without waiting for a hashing step)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._kept: dict[int, memoryview] = {}
        self._at: list[int] = []
        self._account = _Account()
        self._slabs: list[bytearray] = []  # free ones

    @property
    def memory(self) -> int:
        """The memory the kept chunks hold."""
        return self._account.bytes

    def __contains__(self, offset: int) -> bool:
        return offset in self._kept

    def copy(self, data: bytes | memoryview) -> memoryview:
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

    def free(self, data: memoryview) -> None:
        """A chunk hashed or not kept: its slab to the free ones."""
        slab = data.obj
        data.release()
        if isinstance(slab, bytearray) and len(self._slabs) < KEEP_AHEAD // SLAB:
            self._slabs.append(slab)

    def put(self, offset: int, data: memoryview) -> bool:
        """Keep ``data`` (a ``copy``) at ``offset`` if there is room (else freed): whether kept."""
        cost = held(data)
        with self.lock:
            fits = self.memory + cost <= KEEP_AHEAD and offset not in self._kept
            if fits and self._account.take(cost):
                self._kept[offset] = data
                heapq.heappush(self._at, offset)
                return True
        self.free(data)
        return False

    def take(self, offset: int) -> memoryview | None:
        """The chunk kept at ``offset`` (no longer counted: ``free`` it once hashed), or None."""
        with self.lock:
            if (data := self._kept.pop(offset, None)) is not None:
                self._account.give(held(data))
            return data

    def next_after(self, position: int) -> float:
        """Where the first chunk kept at or after ``position`` begins (``math.inf``: none);
        those before it, passed by a read-back, let go."""
        with self.lock:
            while self._at and ((at := self._at[0]) < position or at not in self._kept):
                heapq.heappop(self._at)
                if (data := self._kept.pop(at, None)) is not None:
                    self._account.give(held(data))
            return self._at[0] if self._at else math.inf

    def cut(self, start: int) -> None:
        """Let go of the bytes kept from ``start`` on (they may be written anew)."""
        with self.lock:
            kept = {at: data[: max(0, start - at)] for at, data in self._kept.items()}
            self._kept = {at: data for at, data in kept.items() if len(data)}
            self._at = sorted(self._kept)
            self._account.give(self.memory - sum(map(held, self._kept.values())))

    def close(self) -> None:
        """Let go of every kept chunk and free slab; the process's total given back."""
        with self.lock:
            self._kept.clear()
            self._at.clear()
            self._slabs.clear()
            self._account.give(self.memory)
