"""A file's byte ranges, the pool of streams that works through them (stealing tails), and their
rate cap.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

MiB = 1024 * 1024
SPLIT_THRESHOLD = 32 * MiB  # files at least this big are fetched as parallel ranges
MIN_PIECE = 4 * MiB  # no first range is smaller: below this a request costs more than its bytes
# Bytes landed ahead of the hash kept in memory till it reaches them (hasher.Hasher: copies, a
# stream's chunk is a view of a buffer it reuses), at most this much and no further ahead. The
# streams take pieces in file order, each this much over the streams, so what they land is within
# it: the hash is fed from memory and ends with the last byte; what lands past it is read back
# (64 MiB: 4 MiB pieces for 16 streams, a request each costing 10 % more CPU on a 2 GiB get) ...
KEEP_AHEAD = 128 * MiB
MAX_PIECES = 1024  # ... but a file is cut into no more (its resume record stays small)
# a stolen tail is at least this big (and at least what a request's round trip costs)
MIN_STEAL = 2 * MiB
STEAL_ALIGN = 64 * 1024  # split points fall on page-friendly offsets
FIRST_WINDOW = 32 * MiB  # a stream's first request asks for at most this much of its piece
WINDOW_SECONDS = 2.0  # later requests ask for about this many seconds of the stream's own rate
# ... and at least this many times the time to first byte (a request costs <5%)
WINDOW_ROUND_TRIPS = 20
ASSUMED_RATE = 10 * MiB  # bytes/s a stream is assumed to move before its first request has told


class StreamStopped(Exception):
    """A sibling stream failed; this one ends without an error of its own."""


class Piece:
    """A range of the file one stream fetches at a time, and how far it got; itself alone (the
    streams share one, never a copy). (A plain class: a dataclass's generated methods were compiled
    at every start, issue 90.)"""

    __slots__ = ("answered", "asked", "begun", "done", "end", "rate", "start")

    def __init__(self, start: int, end: int | None, done: int = 0, *, asked: int = 0) -> None:
        self.start = start
        self.end = end  # None: unknown size, read to EOF
        self.done = done
        self.asked = asked  # end of the range requested so far: never stolen
        self.rate = 0.0  # bytes/s of this piece's last request (0: none yet)
        self.answered = 0  # body bytes of this piece's last answer (0: none this run)
        self.begun = False  # an answer for it arrived: no stream reads on into it now

    @property
    def complete(self) -> bool:
        return self.end is not None and self.start + self.done >= self.end

    @property
    def left(self) -> int:
        return 0 if self.end is None else max(0, self.end - self.start - self.done)


def plan_pieces(size: int | None, *, connections: int, split_threshold: int) -> list[Piece]:
    """Pieces in file order, taken from the front by the streams: ``KEEP_AHEAD`` over the streams
    each (at least ``MIN_PIECE``, fewer than ``MAX_PIECES``, no more than one per stream when that
    is smaller, whole rounds of the streams, one round for a file of two); a stream that finds
    none left steals a tail."""
    if size is None or connections <= 1 or size < split_threshold:  # unknown size: read to EOF
        return [Piece(0, size)]
    piece = max(MIN_PIECE, KEEP_AHEAD // connections)
    least = max(MIN_PIECE, -(-size // MAX_PIECES), min(piece, size // connections))
    count = max(1, size // least)  # (evened out: no short last piece)
    if count > connections:  # whole rounds: no stream fetches a last piece while the others idle
        count -= count % connections
    if count <= 2 * connections:  # one round, not two: a far server's round trip between them
        count = min(count, connections)  # costs more than reading back a few hundred MiB
    piece = -(-size // count)
    piece = -(-piece // STEAL_ALIGN) * STEAL_ALIGN
    return [Piece(start, min(start + piece, size)) for start in range(0, size, piece)]


def window(piece: Piece, offset: int, ttfb: float) -> int:
    """Where the next request ends: short enough that no steal cuts one short, long enough to
    dwarf its round trip.
    """
    assert piece.end is not None
    # no rate yet: a guess
    rate, least = (piece.rate, MIN_PIECE) if piece.rate > 0 else (ASSUMED_RATE, FIRST_WINDOW)
    span = max(least, int(rate * max(WINDOW_SECONDS, WINDOW_ROUND_TRIPS * ttfb)))
    if piece.end - (offset + span) < span // 2:  # no short request for a remainder: take it along
        return piece.end
    return offset + span


def stealable(piece: Piece) -> int:
    return (
        0 if piece.end is None else max(0, piece.end - max(piece.asked, piece.start + piece.done))
    )


def split_largest(pieces: list[Piece], *, least: int) -> Piece | None:
    """The unasked tail cut off the piece with most left (each side keeps ``least``) and
    inserted, or None; locked.
    """
    if not (candidates := [p for p in pieces if stealable(p) >= 2 * max(least, MIN_STEAL)]):
        return None
    victim = max(candidates, key=lambda p: p.left)
    assert victim.end is not None
    frontier = victim.start + victim.done
    cut = max(victim.asked, frontier + victim.left // 2)
    cut = max(victim.asked, frontier + least, cut - cut % STEAL_ALIGN)
    if victim.end - cut < least:
        return None
    tail = Piece(cut, victim.end)
    victim.end = cut
    pieces.insert(pieces.index(victim) + 1, tail)
    return tail


def spread(pieces: list[Piece], *, connections: int, least: int) -> None:
    while sum(1 for p in pieces if not p.complete) < connections:
        if split_largest(pieces, least=least) is None:
            return


def run_pieces(
    todo: list[Piece],
    run_piece: Callable[[Piece, Callable[[], None]], None],
    *,
    connections: int,
    name: str,
    stopped: Callable[[], bool],
    on_failure: Callable[[], None],
    steal: Callable[[], Piece | None] | None = None,
    workers: int | None = None,
    overlap: bool = False,
) -> None:
    """Work through ``todo`` in order with up to ``connections`` streams (an idle one asks
    ``steal``); the first failure calls ``on_failure`` (which must end the others) and is raised
    once all have ended. ``workers``: the streams, when not one per piece of ``todo`` (``steal``
    hands them their pieces). ``overlap``: a stream's next piece is asked for before its current
    one ends (``run_piece`` calls its second argument about a round trip before the end: another
    stream then takes the next piece), so no round trip between two pieces idles."""
    queue = list(todo)
    queue_lock = threading.Lock()
    workers = max(1, min(connections, len(todo))) if workers is None else workers
    slots = threading.Semaphore(workers)  # streams reading a piece not near its end

    def worker() -> None:
        while not stopped():
            if not slots.acquire(timeout=0.1):
                continue  # (stop heard between tries)
            release = _once(slots.release)
            try:
                with queue_lock:
                    piece = queue.pop(0) if queue else None
                if piece is None and (steal is None or (piece := steal()) is None):
                    return
                run_piece(piece, release if overlap else lambda: None)
            except StreamStopped:
                return
            finally:
                release()

    # (here: the probe that goes before any download needs none of it)
    from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait

    threads = 2 * workers if overlap else workers
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix=name) as pool:
        futures = [pool.submit(worker) for _ in range(threads)]
        finished, _ = wait(futures, return_when=FIRST_EXCEPTION)
        failure = next((f.exception() for f in finished if f.exception() is not None), None)
        if failure is not None:
            on_failure()
            raise failure  # once the others have ended: leaving the pool waits for them


def _once(call: Callable[[], None]) -> Callable[[], None]:
    """``call`` the first time only, from whichever thread."""
    lock, done = threading.Lock(), [False]

    def once() -> None:
        with lock:
            if done[0]:
                return
            done[0] = True
        call()

    return once


class RateLimiter:
    """A token bucket capping the total throughput of every stream (``--limit-rate``)."""

    def __init__(self, rate: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self._clock = clock
        self._lock = threading.Lock()
        self._next_free = clock()

    @property
    def chunk(self) -> int:
        """The most a stream reads at once under the cap (each read is paid after it lands): an
        eighth of a second's, not a MiB (8 streams' first MiB were 17 times a 500K cap's first
        second)."""
        return max(16 * 1024, min(1 << 20, self.rate // 8))

    def consume(self, nbytes: int, cancel: threading.Event) -> None:
        with self._lock:
            now = self._clock()
            # a burst of at most 0.25 s: idling banks no more credit
            self._next_free = max(now - 0.25, self._next_free) + nbytes / self.rate
            delay = self._next_free - now
        if delay > 0:
            cancel.wait(delay)
