"""A trusted hash for every range of a file, and the check of each range as it lands.

A ``RangeTrust`` cuts a file into ranges, each with a digest hanging from a root bound to what the
user pinned, never to the answer it checks (``kind``: ``lock`` — the part list pinned beside
``catalog.lock``, keyed by the pinned sha256 and size; ``signature`` — the shards of a signature
the user's trust verified, naming the pinned sha256; ``xet`` — the Xet file hash with the CAS's
chunk hashes, only when this machine verified that hash whole with the pinned sha256). A
``RangeCheck``
listens to a fetch (it is the job's ``Landing``): each range whose bytes all landed is read back and
checked on one thread beside the fetch; what verified is told on (to a fill's publisher) and may be
read (``read``: the one way a range leaves before the whole file verified, checked again as read);
what failed is fetched again alone. The whole-file hash still decides the install; when it refuses
bytes whose ranges left already, the check is refuted (``refute``): nothing more leaves, and the
ranges that left are told (``released_wrong``) so the endpoint refuses the object and says so.

With no trust there is no check: the fetch runs as before (no thread, no read back).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import mmap
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from queue import Empty, SimpleQueue

from mdl.background import Background
from mdl.transfer.job import Landing, RangeTrust

log = logging.getLogger("mdl.transfer")

MiB = 1024 * 1024
# ranges a fetch re-fetches alone, in rounds, before the whole-file hash decides (a source that
# keeps sending a wrong range is the source's fault: the file is then refused, as before)
REFETCH_ROUNDS = 2
# bytes held at once across the process (engine rule 5: it stays < 250 MB): by the checks of every
# fetch (files fetched at once share it), and by the ranges being served (``reading``)
CHECK_BUDGET = 32 * MiB
READ_BUDGET = 48 * MiB
MAX_SPAN = CHECK_BUDGET  # bytes of a range a check holds: a trust with bigger ones is not used


def fits(trust: RangeTrust) -> bool:
    """Whether each range of ``trust`` can be checked within the budget (a model signature's
    1 GB shards cannot: such a file is checked whole, as before)."""
    return all(end - start <= MAX_SPAN for start, end in trust.spans)


def refetch_limit(ranges: int) -> int:
    """Ranges that may fail in one fetch and be fetched again alone: past it, the file itself is
    another (changed upstream) or the trust is wrong, and the whole file's hash decides."""
    return max(2, ranges // 8)


@dataclass(frozen=True)
class Digests:
    """Ranges with one digest each (``algorithm``: ``blake3`` or a ``hashlib`` name)."""

    kind: str
    spans: tuple[tuple[int, int], ...]
    digests: tuple[bytes, ...]
    algorithm: str = "blake3"

    @classmethod
    def fixed(
        cls, kind: str, size: int, part: int, digests: Sequence[bytes], algorithm: str = "blake3"
    ) -> Digests:
        """Ranges of ``part`` bytes (the last shorter); ValueError unless one digest each."""
        if part <= 0 or size <= 0 or len(digests) != -(-size // part):
            raise ValueError(f"{len(digests)} digests for {size} bytes in parts of {part}")
        spans = tuple((s, min(s + part, size)) for s in range(0, size, part))
        return cls(kind, spans, tuple(digests), algorithm)

    def holds(self, index: int, data: memoryview) -> bool:
        return hmac.compare_digest(digest(data, self.algorithm), self.digests[index])


def digest(data: bytes | memoryview, algorithm: str = "blake3") -> bytes:
    if algorithm == "blake3":
        import blake3  # (loaded by a fetch that checks ranges only: not on every command's path)

        return blake3.blake3(data).digest()
    return hashlib.new(algorithm, data).digest()


def part_digests(
    fd: int,
    size: int,
    part: int,
    *,
    stop: threading.Event | None = None,
    whole: Callable[[memoryview], object] | None = None,
) -> list[bytes]:
    """The blake3 of each ``part`` bytes of the file open at ``fd`` (read at most one part at a
    time; ``whole`` is fed every part in order: the file's own hash, from the same read); OSError
    when it is shorter than ``size``."""
    buffer = bytearray(min(part, max(1, size)))
    found: list[bytes] = []
    for start in range(0, size, part):
        if stop is not None and stop.is_set():
            raise InterruptedError("stopped")
        view = _read_into(fd, memoryview(buffer)[: min(part, size - start)], start)
        found.append(digest(view))
        if whole is not None:
            whole(view)
    return found


def _read_into(fd: int, view: memoryview, offset: int) -> memoryview:
    got = 0
    while got < len(view):
        n = os.preadv(fd, [view[got:]], offset + got)
        if n <= 0:
            raise OSError(f"the file ends before byte {offset + len(view)}")
        got += n
    return view


def merged(ranges: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """``ranges`` sorted, the touching and overlapping ones joined."""
    out: list[tuple[int, int]] = []
    for start, end in sorted(ranges):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(end, out[-1][1]))
        else:
            out.append((start, end))
    return out


def without(ranges: Sequence[tuple[int, int]], start: int, end: int) -> list[tuple[int, int]]:
    """``ranges`` with ``[start, end)`` cut out."""
    cut = [(a, min(b, start)) for a, b in ranges] + [(max(a, end), b) for a, b in ranges]
    return merged([(a, b) for a, b in cut if a < b])


def covered(span: tuple[int, int], ranges: Sequence[tuple[int, int]]) -> bool:
    return any(start <= span[0] and span[1] <= end for start, end in ranges)


def touching(spans: Sequence[tuple[int, int]], start: int, end: int) -> range:
    """The indexes of ``spans`` (in order, tiling) that share a byte with ``[start, end)``."""
    lo, hi = 0, len(spans)
    while lo < hi:  # the first span ending after start
        mid = (lo + hi) // 2
        if spans[mid][1] <= start:
            lo = mid + 1
        else:
            hi = mid
    first = last = lo
    while last < len(spans) and spans[last][0] < end:
        last += 1
    return range(first, last)


class _Budget:
    """Bytes held by readers at once, at most ``most`` (no reader asks more: ``MAX_SPAN``), each
    reader's buffer a piece of one region of ``most`` bytes mapped once, at the first read, and
    reused: never a fresh buffer per read, which glibc keeps in each thread's arena once freed
    (150 reads on as many threads held 400-650 MiB for a budget of 48). Its pages stay resident
    once touched: the most held at once, never more than ``most``."""

    def __init__(self, most: int) -> None:
        self._most = most
        self._region: memoryview | None = None
        self._spans = [(0, most)]  # the free pieces of the region, in order
        self._free = threading.Condition()

    @contextmanager
    def buffer(
        self, size: int, cancel: threading.Event, until: float | None = None
    ) -> Iterator[memoryview | None]:
        """A buffer of ``size`` bytes while the ``with`` lasts (its bytes are another reader's
        after it); None when ``cancel`` is set or ``until`` (monotonic) passes while it waits for
        room. ValueError when ``size`` is over the budget."""
        if not 0 < size <= self._most:
            raise ValueError(f"a buffer of {size} bytes in a budget of {self._most}")
        with self._free:
            start = self._room(size, cancel, until)
            if self._region is None:  # private: a child forked meanwhile never shares it
                flags = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS
                self._region = memoryview(mmap.mmap(-1, self._most, flags=flags))
            region = self._region
        if start is None:
            yield None
            return
        try:
            yield region[start : start + size]
        finally:
            with self._free:
                self._spans = merged([*self._spans, (start, start + size)])
                self._free.notify_all()

    def _room(self, size: int, cancel: threading.Event, until: float | None) -> int | None:
        """(Under the lock) The start of a free piece of ``size`` bytes, taken once there is one
        (the first that fits); None when ``cancel`` is set or ``until`` passes first."""
        while True:
            for index, (start, end) in enumerate(self._spans):
                if end - start >= size:
                    rest = [(start + size, end)] if end > start + size else []
                    self._spans[index : index + 1] = rest
                    return start
            left = None if until is None else until - time.monotonic()
            if cancel.is_set() or (left is not None and left <= 0):
                return None
            self._free.wait(0.1 if left is None else min(0.1, left))


# the bytes held by every fetch's checks at once, and by every range being served, apart (a slow
# reader of a served range never holds up the checks that release the next)
_CHECKS = _Budget(CHECK_BUDGET)
_BUDGET = _Budget(READ_BUDGET)
# the checks running in this process, by ``.part`` path: what ``mdl serve --pull`` reads from
_LIVE: dict[Path, RangeCheck] = {}
_LIVE_LOCK = threading.Lock()


def live(part_path: Path) -> RangeCheck | None:
    """The check running for the file whose ``.part`` is ``part_path`` (in this process), if any."""
    with _LIVE_LOCK:
        return _LIVE.get(part_path)


class _Wrong:
    """The files whose ranges left before their whole-file hash refused them, by ``.part`` path:
    each with the ranges that left and when it was told (a count); never forgotten in the process
    (a loader read those bytes)."""

    def __init__(self) -> None:
        self.told = 0
        self.files: dict[Path, tuple[int, tuple[tuple[int, int], ...]]] = {}

    def tell(self, part_path: Path, spans: tuple[tuple[int, int], ...]) -> None:
        with _LIVE_LOCK:
            self.told += 1
            self.files[part_path] = (self.told, spans)


_WRONG = _Wrong()


def wrong_mark() -> int:
    """A mark of what was told so far: ``released_wrong(part_path, since=mark)`` answers only what
    is told after it (a server hears what happens in its own life)."""
    with _LIVE_LOCK:
        return _WRONG.told


def released_wrong(part_path: Path, *, since: int = 0) -> tuple[tuple[int, int], ...]:
    """The ranges of the file whose ``.part`` is ``part_path`` that left before its whole-file hash
    refused them (told after ``since``); () when none."""
    with _LIVE_LOCK:
        told, spans = _WRONG.files.get(part_path, (0, ()))
    return spans if told > since else ()


class RangeCheck:
    """One fetch's check of each range (a ``Landing``): told what lands and what is taken back,
    it reads each range back once all of it landed and checks it on its own thread; ``then``
    (a fill's publisher) is told only what verified. ``settle`` waits for every check and says
    which ranges failed; ``refetching`` forgets them (their bytes come again)."""

    def __init__(
        self,
        trust: RangeTrust,
        fd: int,
        part_path: Path,
        *,
        then: Landing | None = None,
        label: str = "",
    ) -> None:
        if not fits(trust):
            raise ValueError(f"{label}: a range of its trust is over {MAX_SPAN} bytes")
        # its own descriptor of the file, open while anyone holds the check (an answer still
        # being sent from it when the fetch ends and closes its own)
        self.fd = os.dup(fd)
        weakref.finalize(self, os.close, self.fd)
        self.trust, self.part_path, self.then, self.label = trust, part_path, then, label
        self.spans = tuple(trust.spans)
        self.verified: set[int] = set()
        self.bad: set[int] = set()
        self._refetched: set[int] = set()  # ranges fetched again alone, this fetch
        self.refetched_bytes = 0
        self._lock = threading.Condition()
        self._told: SimpleQueue[tuple[bool, int, int] | None] = SimpleQueue()
        self._backs = 0  # take-backs told: a check read while it was n counts only if it still is
        self._queued = 0  # tellings not yet applied by the checker
        self._landed: list[tuple[int, int]] = []
        self._pending: set[int] = set()  # ranges whose bytes all landed, not checked yet
        self._released: set[int] = set()  # ranges whose bytes left (``reading``)
        self.refuted = False  # the whole file's hash refused it: nothing more leaves
        self._checker = Background(f"mdl-ranges:{label}", self._check_landed, join=None)

    # -- the fetch's side (``Landing``) --------------------------------------------------------
    def landed(self, start: int, end: int) -> None:
        with self._lock:
            self._queued += 1
        self._told.put((True, start, end))

    def taken_back(self, start: int, end: int) -> None:
        with self._lock:  # (under the engine's lock, before the bytes change: brief)
            self._backs += 1
            for index in touching(self.spans, start, end):
                self.verified.discard(index)
                self.bad.discard(index)
                self._pending.discard(index)
            self._queued += 1
        self._told.put((False, start, end))
        if self.then is not None:
            self.then.taken_back(start, end)

    def __enter__(self) -> RangeCheck:
        with _LIVE_LOCK:
            _LIVE[self.part_path] = self
        self._checker.start()
        return self

    def __exit__(self, *exc: object) -> None:
        with _LIVE_LOCK:
            if _LIVE.get(self.part_path) is self:
                del _LIVE[self.part_path]
        self._told.put(None)
        self._checker.stop()

    # -- the checker ---------------------------------------------------------------------------
    def _check_landed(self, stop: threading.Event) -> None:
        """The checker: what was told applied in order, then each range whose bytes all landed
        checked, until the fetch ends (what is still to check then is checked first)."""
        ended = False
        while not stop.is_set():
            with self._lock:
                idle = not self._pending
            if idle and ended:
                return
            told = self._news(wait=idle)
            ended = ended or (bool(told) and told[-1] is None)
            with self._lock:
                for is_landed, start, end in filter(None, told):
                    self._apply(is_landed, start, end)
                    self._queued -= 1
                ready = sorted(self._pending)
                backs = self._backs
            for index in ready:
                if stop.is_set() or self._backs != backs:
                    break  # taken back meanwhile: the news first
                self._check(index, backs, stop)
            with self._lock:
                # waiters hear news only: a range checked, or nothing left to check (a loader's
                # hundreds of waiting reads are not woken for every MiB told)
                if ready or not (self._pending or self._queued):
                    self._lock.notify_all()

    def _news(self, *, wait: bool) -> list[tuple[bool, int, int] | None]:
        """Every telling queued (waiting for one when ``wait``: nothing left to check)."""
        told: list[tuple[bool, int, int] | None] = []
        try:
            told.append(self._told.get(timeout=None) if wait else self._told.get_nowait())
            while told[-1] is not None:
                told.append(self._told.get_nowait())
        except Empty:
            pass
        return told

    def _apply(self, is_landed: bool, start: int, end: int) -> None:
        if not is_landed:  # (a landing told before it, applied before it, is undone here)
            self._landed = without(self._landed, start, end)
            for index in touching(self.spans, start, end):
                self._pending.discard(index)
                self.verified.discard(index)
            return
        self._landed = merged([*self._landed, (start, end)])
        for index in touching(self.spans, start, end):
            if index not in self.verified and covered(self.spans[index], self._landed):
                self._pending.add(index)

    def _check(self, index: int, backs: int, stop: threading.Event) -> None:
        start, end = self.spans[index]
        with _CHECKS.buffer(end - start, stop) as held:
            if held is None:
                return
            try:
                good = self.trust.holds(index, _read_into(self.fd, held, start))
            except Exception as exc:  # not proved: refused (the whole file's hash decides)
                log.debug("%s: range %d not checked: %s", self.label, index, exc, exc_info=True)
                good = False
        with self._lock:
            if self._backs != backs or index not in self._pending:
                return  # its bytes were taken back meanwhile: checked again once they land
            self._pending.discard(index)
            (self.verified if good else self.bad).add(index)
            if good and self.then is not None:  # under the lock: never after a take-back of it
                self.then.landed(start, end)
        if not good:
            log.info(
                "%s: bytes %d-%d failed their %s hash", self.label, start, end - 1, self.trust.kind
            )

    # -- what the fetch and the endpoint ask ---------------------------------------------------
    def settle(self, cancel: threading.Event) -> list[tuple[int, int]]:
        """Wait until every range that landed is checked (or ``cancel``); the spans that failed."""
        with self._lock:
            while (self._queued or self._pending) and not cancel.is_set():
                if not self._checker.alive:
                    break
                self._lock.wait(0.1)
            return [self.spans[i] for i in sorted(self.bad)]

    def refetching(self, spans: Sequence[tuple[int, int]]) -> None:
        """``spans`` (failed) are fetched again: no longer counted bad (their take-back is told
        by the engine as it forgets them)."""
        with self._lock:
            for span in spans:
                self.bad.discard(self.spans.index(span))
            self._refetched.update(self.spans.index(span) for span in spans)
            self.refetched_bytes += sum(end - start for start, end in spans)

    @property
    def refetched(self) -> int:
        """The ranges fetched again alone (each once, whatever the rounds)."""
        return len(self._refetched)

    def verified_spans(self) -> list[tuple[int, int]]:
        with self._lock:
            return merged([self.spans[i] for i in self.verified])

    def vouch(self, index: int, data: memoryview) -> bool:
        """Range ``index`` checked on ``data``, the bytes the caller wrote there itself before
        this check began (a head fetched ahead of its file's fetch): verified when they hold."""
        good = self.trust.holds(index, data)
        if good:
            with self._lock:
                self.verified.add(index)
        return good

    def checked_more(self, timeout: float) -> None:
        """Return once the checker ended a round (more may have verified), or after ``timeout``
        seconds: a reader waiting on a range hears it verify."""
        with self._lock:
            self._lock.wait(timeout)

    @contextmanager
    def reading(
        self, start: int, end: int, cancel: threading.Event, until: float | None = None
    ) -> Iterator[memoryview | None]:
        """Bytes ``[start, end)`` while the ``with`` lasts, if every range they touch verified:
        each range is checked again on the very bytes read, so nothing unverified ever leaves;
        None otherwise (also when the read budget has no room by ``until``, monotonic). The bytes
        held count against the process's read budget till the end."""
        indexes = touching(self.spans, start, end)
        with self._lock:
            known = bool(indexes) and all(i in self.verified for i in indexes)
        if not known or start >= end or self.refuted:
            yield None
            return
        first, last = self.spans[indexes[0]][0], self.spans[indexes[-1]][1]
        if last - first > READ_BUDGET:  # more than may be held: it waits for the whole file
            yield None
            return
        with _BUDGET.buffer(last - first, cancel, until) as held:
            view = self._checked(held, indexes, first) if held is not None else None
            with self._lock:  # (under the lock ``refute`` takes: a range left is one it tells)
                if view is not None and not self.refuted:
                    self._released.update(indexes)
                else:
                    view = None
            yield None if view is None else view[start - first : end - first]

    def refute(self, why: str) -> tuple[tuple[int, int], ...]:
        """The whole file's hash refused the bytes this check verified (``why``): nothing more
        leaves (an answer sending its ranges is cut at the next one), and the ranges that left
        already are told (``released_wrong``: the endpoint then refuses the object) and said;
        returns them."""
        with self._lock:
            self.refuted = True
            spans = tuple(merged([self.spans[i] for i in self._released]))
        if spans:
            _WRONG.tell(self.part_path, spans)
            shown = ", ".join(f"{start}-{end - 1}" for start, end in spans)
            log.warning(
                "%s: bytes %s left verified by its %s hash before the whole file did, then %s:"
                " a reader (a loader, a fill's follower) may have taken wrong bytes there",
                self.label,
                shown,
                self.trust.kind,
                why,
            )
        return spans

    def _checked(self, view: memoryview, indexes: range, first: int) -> memoryview | None:
        try:
            _read_into(self.fd, view, first)
        except OSError:
            return None
        for i in indexes:
            s, e = self.spans[i]
            if not self.trust.holds(i, view[s - first : e - first]):
                return None
        return view
