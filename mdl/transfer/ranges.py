"""A trusted hash for every range of a file, and the check of each range as it lands.

A ``RangeTrust`` cuts a file into ranges, each with a digest hanging from a root bound to what the
user pinned, never to the answer it checks (``kind``: ``lock`` — the part list pinned beside
``catalog.lock``, keyed by the pinned sha256 and size; ``signature`` — the shards of a signature
the user's trust verified, naming the pinned sha256; ``xet`` — the Xet file hash with the CAS's
chunk hashes, only when this machine verified that hash whole with the pinned sha256). A
``RangeCheck`` listens to a fetch (it is the fetch's ``Landing``, on the one "what landed" machine,
``Landings``): each range whose bytes all landed is read back and checked on one thread beside the
fetch; what verified is told on (to a fill's publisher) and may be read (``reading``: the one way a
range leaves before the whole file verified: the asked bytes, with no take-back since, never
hashed again); what failed is fetched again alone. The whole-file hash still decides the install;
when it refuses bytes whose ranges left already, the check is refuted (``Releases.refuted``):
nothing more leaves, and the ranges that left are kept (``Releases.wrong``) so the endpoint
refuses the object and says so. ``Releases``: a pull's checks, found by the ``.part`` they fill,
and the memory they hold; no module-level state.

With no trust there is no check: the fetch runs as before (no thread, no read back).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import mmap
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from queue import Empty, SimpleQueue
from typing import NamedTuple, Self

from mdl.background import Background
from mdl.transfer.job import Landing, RangeTrust
from mdl.wait import Wait

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
KEPT = 8  # checks of files verified whole, serving on past their fetches (``keep``)


def fits(trust: RangeTrust) -> bool:
    """Whether each range of ``trust`` can be checked within the budget (a model signature's
    1 GB shards cannot: such a file is checked whole, as before)."""
    return all(end - start <= MAX_SPAN for start, end in trust.spans)


def refetch_limit(ranges: int) -> int:
    """Ranges that may fail in one fetch and be fetched again alone: past it, the file itself is
    another (changed upstream) or the trust is wrong, and the whole file's hash decides."""
    return max(2, ranges // 8)


class Digests(NamedTuple):
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
    fd: int, size: int, part: int, *, whole: Callable[[memoryview], object] | None = None
) -> list[bytes]:
    """The blake3 of each ``part`` bytes of the file open at ``fd`` (read at most one part at a
    time; ``whole`` is fed every part in order: the file's own hash, from the same read); OSError
    when it is shorter than ``size``."""
    buffer = bytearray(min(part, max(1, size)))
    found: list[bytes] = []
    for start in range(0, size, part):
        view = _read_into(fd, memoryview(buffer)[: min(part, size - start)], start)
        found.append(digest(view))
        if whole is not None:
            whole(view)
    return found


def _stamp(fd: int) -> tuple[int, int] | None:
    """What the store trusts a verified file by (its size and mtime), read off ``fd``; None: not
    read."""
    try:
        found = os.fstat(fd)
    except OSError:
        return None
    return found.st_size, found.st_mtime_ns


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
    def buffer(self, size: int, wait: Wait) -> Iterator[memoryview | None]:
        """A buffer of ``size`` bytes while the ``with`` lasts (its bytes are another reader's
        after it); None when ``wait`` is over (cancelled, or out of time) while it waits for
        room. ValueError when ``size`` is over the budget."""
        if not 0 < size <= self._most:
            raise ValueError(f"a buffer of {size} bytes in a budget of {self._most}")
        with self._free:
            start = self._room(size, wait)
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

    def _room(self, size: int, wait: Wait) -> int | None:
        """(Under the lock) The start of a free piece of ``size`` bytes, taken once there is one
        (the first that fits); None when ``wait`` is over first."""
        while True:
            for index, (start, end) in enumerate(self._spans):
                if end - start >= size:
                    rest = [(start + size, end)] if end > start + size else []
                    self._spans[index : index + 1] = rest
                    return start
            if not wait.pause(0.1, self._free):
                return None


class Landings:
    """THE one "what landed" machine of a fetch's listener (a ``Landing``): what the engine tells
    queued in order and applied on one thread (landed bytes merged, taken-back ones cut out), and
    each of ``spans`` whose bytes all landed since its last take-back handed to ``act(index,
    epoch)`` on that thread, which says whether it is done with it (else it is handed again at the
    next news). ``epoch``: the take-backs told so far; a span acted on while it was n counts only
    if it still is. ``forget(indexes)`` hears, under the engine's lock and before
    the bytes change, which spans a take-back touches. ``__exit__`` (the fetch's end) stops the
    thread: what is not done by then is the owner's (a check ``settle``s first; a publisher sends
    the rest from the verified file)."""

    def __init__(
        self,
        spans: Sequence[tuple[int, int]],
        act: Callable[[int, int, threading.Event], bool],
        *,
        name: str,
        forget: Callable[[range], None] = lambda _: None,
        join: float | None = None,
    ) -> None:
        self.spans = tuple(spans)
        self._on_ready, self._on_back = act, forget
        self.changed = threading.Condition()  # told each round that acted, and when all is done
        self._told: SimpleQueue[tuple[bool, int, int] | None] = SimpleQueue()
        self.epoch = 0
        self._queued = 0  # tellings not yet applied
        self._have: list[tuple[int, int]] = []
        self._pending: set[int] = set()  # spans whose bytes all landed, not done yet
        self._worker = Background(name, self._run, join=join)

    def landed(self, start: int, end: int, *, proved: bool = False) -> None:
        with self.changed:
            self._queued += 1
        self._told.put((True, start, end))

    def taken_back(self, start: int, end: int) -> None:
        with self.changed:  # (under the engine's lock, before the bytes change: brief)
            self.epoch += 1
            touched = touching(self.spans, start, end)
            self._pending.difference_update(touched)
            self._on_back(touched)
            self._queued += 1
        self._told.put((False, start, end))

    def busy(self) -> bool:
        """Tellings not applied yet, or spans landed and not done (call under ``changed``)."""
        return bool(self._queued or self._pending)

    def drain(self, cancel: threading.Event) -> None:
        """Wait until all that was told is applied and every span that landed is done (or
        ``cancel``, or the thread ended)."""
        with self.changed:
            while self.busy() and not cancel.is_set() and self._worker.alive:
                self.changed.wait(0.1)

    def __enter__(self) -> Self:
        self._worker.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._told.put(None)
        self._worker.stop()

    def _run(self, stop: threading.Event) -> None:
        ended = False
        while not stop.is_set():
            with self.changed:
                idle = not self._pending
            if idle and ended:
                return
            told = self._news(wait=idle)
            ended = ended or (bool(told) and told[-1] is None)
            with self.changed:
                for is_landed, start, end in filter(None, told):
                    self._apply(is_landed, start, end)
                    self._queued -= 1
                ready, epoch = sorted(self._pending), self.epoch
            done = []
            for index in ready:
                if stop.is_set() or self.epoch != epoch:
                    break  # taken back meanwhile: the news first
                if self._on_ready(index, epoch, stop):
                    done.append(index)
            with self.changed:
                self._pending.difference_update(done)
                # waiters hear news only: a span done, or nothing left (a loader's hundreds of
                # waiting reads are not woken for every MiB told)
                if done or not self.busy():
                    self.changed.notify_all()

    def _news(self, *, wait: bool) -> list[tuple[bool, int, int] | None]:
        """Every telling queued (waiting for one when ``wait``: nothing left to act on)."""
        told: list[tuple[bool, int, int] | None] = []
        with suppress(Empty):
            told.append(self._told.get() if wait else self._told.get_nowait())
            while told[-1] is not None:
                told.append(self._told.get_nowait())
        return told

    def _apply(self, is_landed: bool, start: int, end: int) -> None:
        if not is_landed:  # (a landing told before it, applied before it, is undone here)
            self._have = without(self._have, start, end)
            self._pending.difference_update(touching(self.spans, start, end))
            return
        self._have = merged([*self._have, (start, end)])
        for index in touching(self.spans, start, end):
            if covered(self.spans[index], self._have):
                self._pending.add(index)


class RangeCheck(Landings):
    """One fetch's check of each range (a ``Landing`` on ``Landings``, which hands it each range
    whose bytes all landed): it reads them back and checks them on that thread; ``then`` (a fill's
    publisher) is told only what verified. ``settle`` waits for every check and says which ranges
    failed; ``refetching`` forgets them (their bytes come again). Its own descriptor of the file
    stays open while anyone holds a share (``share``/``unshare``: the fetch holds one from
    ``__enter__`` to ``__exit__``, each answer sending its bytes another)."""

    def __init__(
        self,
        trust: RangeTrust,
        fd: int,
        part_path: Path,
        releases: Releases,
        *,
        then: Landing | None = None,
        label: str = "",
    ) -> None:
        if not fits(trust):
            raise ValueError(f"{label}: a range of its trust is over {MAX_SPAN} bytes")
        self._budgets = releases  # (the memory its checks and reads hold: the pull's)
        self.fd = os.dup(fd)
        self._shares = 1  # the fetch's
        self.trust, self.part_path, self.then, self.label = trust, part_path, then, label
        self.verified: set[int] = set()
        self.bad: set[int] = set()
        # the ranges fetched again alone, this fetch (each once, whatever the rounds)
        self.refetched: set[int] = set()
        self._released: set[int] = set()  # ranges whose bytes left (``reading``)
        self.refuted = False  # the whole file's hash refused it: nothing more leaves
        # ranges landed ``proved`` (their writer checked them whole first): taken as verified
        # once, not read back and hashed again
        self._proved: set[int] = set()
        super().__init__(trust.spans, self._check, name=f"mdl-ranges:{label}", forget=self._forget)
        self._lock = self.changed

    # -- the fetch's side (``Landing``) --------------------------------------------------------
    def landed(self, start: int, end: int, *, proved: bool = False) -> None:
        if proved:  # (the ranges wholly inside: the ones its writer's check covered)
            spans = self.spans
            inside = [
                i for i in touching(spans, start, end) if start <= spans[i][0] < spans[i][1] <= end
            ]
            with self._lock:
                self._proved.update(inside)
        super().landed(start, end)

    def taken_back(self, start: int, end: int) -> None:
        super().taken_back(start, end)
        if self.then is not None:
            self.then.taken_back(start, end)

    def _forget(self, indexes: range) -> None:
        self.verified.difference_update(indexes)
        self.bad.difference_update(indexes)
        self._proved.difference_update(indexes)

    def __exit__(self, *exc: object) -> None:
        super().__exit__()
        self.unshare()

    def share(self) -> bool:
        """One more holder of the check's descriptor (False: it is closed already)."""
        with self._lock:
            if self._shares == 0:
                return False
            self._shares += 1
            return True

    def unshare(self) -> None:
        """A holder is done: the descriptor closes with the last."""
        with self._lock:
            self._shares -= 1
            last = self._shares == 0
        if last:
            os.close(self.fd)

    # -- the checker (on the ``Landings`` thread) ------------------------------------------------
    def _check(self, index: int, epoch: int, stop: threading.Event) -> bool:
        start, end = self.spans[index]
        with self._lock:
            proved = index in self._proved
            self._proved.discard(index)
        good = True if proved else self._read_back(index, stop)
        if good is None:
            return False
        with self._lock:
            if self.epoch != epoch:
                return False  # its bytes were taken back meanwhile: checked again once they land
            (self.verified if good else self.bad).add(index)
            (self.bad if good else self.verified).discard(index)  # (its bytes landed again)
            if good and self.then is not None:  # under the lock: never after a take-back of it
                self.then.landed(start, end)
        if not good:
            log.info(
                "%s: bytes %d-%d failed their %s hash", self.label, start, end - 1, self.trust.kind
            )
        return True

    def _read_back(self, index: int, stop: threading.Event) -> bool | None:
        """Whether range ``index`` read back from the file holds its hash; None: no room to read
        it (checked at the next news)."""
        start, end = self.spans[index]
        with self._budgets.checks.buffer(end - start, Wait(cancel=stop)) as held:
            if held is None:
                return None
            try:
                return self.trust.holds(index, _read_into(self.fd, held, start))
            except Exception as exc:  # not proved: refused (the whole file's hash decides)
                log.debug("%s: range %d not checked: %s", self.label, index, exc, exc_info=True)
                return False

    # -- what the fetch and the endpoint ask ---------------------------------------------------
    def settle(self, cancel: threading.Event) -> list[tuple[int, int]]:
        """Wait until every range that landed is checked (or ``cancel``); the spans that failed."""
        self.drain(cancel)
        with self._lock:
            return [self.spans[i] for i in sorted(self.bad)]

    def refetching(self, spans: Sequence[tuple[int, int]]) -> None:
        """``spans`` (failed) are fetched again: no longer counted bad (their take-back is told
        by the engine as it forgets them)."""
        with self._lock:
            for span in spans:
                self.bad.discard(self.spans.index(span))
            self.refetched.update(self.spans.index(span) for span in spans)

    def verified_spans(self) -> list[tuple[int, int]]:
        with self._lock:
            return merged([self.spans[i] for i in self.verified])

    def windows(self, start: int, end: int, wait: Wait, verified: Wait) -> Iterator[memoryview]:
        """Bytes ``[start, end)`` a range at a time, once every range they touch verified
        (waited for while ``verified`` lasts: each round of checks is heard), each as
        ``reading`` gives it; ends early when one does not leave (taken back, refuted, no room
        to read it while ``wait`` lasts)."""
        indexes = touching(self.spans, start, end)
        with self._lock:
            while not all(i in self.verified for i in indexes):
                if not verified.pause(verified.left(), self._lock):
                    return
        for index in indexes:
            first, last = self.spans[index]
            with self.reading(max(first, start), min(last, end), wait) as view:
                if view is None:
                    return
                yield view

    @contextmanager
    def reading(self, start: int, end: int, wait: Wait) -> Iterator[memoryview | None]:
        """Bytes ``[start, end)`` while the ``with`` lasts, if every range they touch verified and
        none of its bytes was taken back from before the read to its end (the take-back epoch
        compared): the bytes the check hashed, read once more, never hashed again; None otherwise
        (also when the read budget has no room while ``wait`` lasts). The bytes held count
        against the process's read budget till the end."""
        indexes = touching(self.spans, start, end)
        with self._lock:
            known = bool(indexes) and all(i in self.verified for i in indexes) and self._shares
            epoch = self.epoch
        if not known or not 0 < end - start <= READ_BUDGET or self.refuted:
            yield None
            return
        with self._budgets.reads.buffer(end - start, wait) as view:
            try:
                view = None if view is None else _read_into(self.fd, view, start)
            except OSError:
                view = None
            with self._lock:  # (under the lock ``refuted`` takes: a range left is one it tells)
                if view is not None and self.epoch == epoch and not self.refuted:
                    self._released.update(indexes)
                else:
                    view = None
            yield view


class Releases:
    """The range checks of the fetches one pull runs, by the ``.part`` each fills: where who
    reads a file before it verified (the endpoint) finds its check, where the ranges that left
    before their file's hash refused them are kept (``wrong``), and the memory the checks and the
    reads hold (``checks``, ``reads``: apart, so a slow reader of a served range never holds up
    the checks that release the next; engine rule 5 bounds them). Owned by the pull (a serving
    one's is ``Demand``'s, made before it and handed to the endpoint), handed to its fetches
    beside their jobs (``JobContext``); a fetch registers its check for its run (``holding``), a
    fetch paused after its head included."""

    def __init__(self) -> None:
        self.checks, self.reads = _Budget(CHECK_BUDGET), _Budget(READ_BUDGET)
        self._lock = threading.Lock()
        self._checks: dict[Path, RangeCheck] = {}
        # (``keep``; oldest first): each with the sha256 it verified whole as, and its file's size
        # and mtime then
        self._kept: dict[Path, tuple[RangeCheck, tuple[str, tuple[int, int] | None]]] = {}
        self._wrong: dict[Path, tuple[tuple[int, int], ...]] = {}

    @contextmanager
    def holding(self, check: RangeCheck) -> Iterator[RangeCheck]:
        """``check`` found by its ``.part`` while the ``with`` lasts (it runs, ``__enter__``ed)."""
        self.forget(check.part_path)  # (a check kept of an earlier fetch of it)
        with self._lock:
            self._checks[check.part_path] = check
        try:
            yield check
        finally:
            with self._lock:
                if self._checks.get(check.part_path) is check:
                    del self._checks[check.part_path]

    def share(self, part_path: Path, sha256: str | None = None) -> RangeCheck | None:
        """The check filling ``part_path`` (or kept of it, if it verified whole as ``sha256``) with
        a share taken (``unshare`` when done), if any."""
        with self._lock:
            check = self._checks.get(part_path)
            kept = self._kept.get(part_path) if check is None else None
        check = kept[0] if kept is not None else check
        if check is None or not check.share():
            return None
        if kept is not None and (sha256, _stamp(check.fd)) != kept[1]:
            # Another version asked (its ``.part`` is the same path: another process may fetch
            # it now), or the file written since it verified (the store's test, size and mtime,
            # refuses it too): not this check's bytes.
            check.unshare()
            self.forget(part_path, check)
            return None
        return check

    def keep(self, check: RangeCheck, sha256: str | None) -> None:
        """``check``'s file verified whole as ``sha256``: its ranges go on leaving through it
        (``share``) past its fetch's end (its record is written meanwhile, and the file served
        whole), so a read never waits between the two; till ``forget`` (the pull's end), KEPT
        later ones are kept, or the file's size or mtime changes (``share``)."""
        if sha256 is None or not check.share():
            return
        kept = (check, (sha256, _stamp(check.fd)))
        self.forget(check.part_path)  # (one kept of it before: let go, not lost)
        with self._lock:
            self._kept[check.part_path] = kept
            old = list(self._kept)[:-KEPT]
        for part_path in old:
            self.forget(part_path)

    def forget(self, part_path: Path | None = None, check: RangeCheck | None = None) -> None:
        """The check kept of ``part_path`` (None: every one; ``check``: if it is that one) let
        go."""
        with self._lock:
            gone = [self._kept.pop(p)[0] for p in ([part_path] if part_path else list(self._kept))
                    if p in self._kept and check in (None, self._kept[p][0])]  # fmt: skip
        for one in gone:
            one.unshare()

    def refuted(self, check: RangeCheck, why: str) -> None:
        """The whole file's hash refused the bytes ``check`` verified (``why``): nothing more
        leaves (an answer sending its ranges is cut at the next one), and the ranges that left
        already are said and kept (``wrong``: the endpoint then refuses the object)."""
        with check._lock:
            check.refuted = True
            spans = tuple(merged([check.spans[i] for i in check._released]))
        if not spans:
            return
        with self._lock:
            self._wrong[check.part_path] = spans
        log.warning(
            "%s: bytes %s left verified by its %s hash before the whole file did, then %s:"
            " a reader (a loader, a fill's follower) may have taken wrong bytes there",
            check.label,
            ", ".join(f"{start}-{end - 1}" for start, end in spans),
            check.trust.kind,
            why,
        )

    def wrong(self, part_path: Path) -> tuple[tuple[int, int], ...]:
        """The ranges of the file filling ``part_path`` that left before its whole-file hash
        refused them (never forgotten: a loader read those bytes); () when none."""
        with self._lock:
            return self._wrong.get(part_path, ())
