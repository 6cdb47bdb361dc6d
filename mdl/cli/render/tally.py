"""What every display counts: items in flight, their smoothed rates and times left; the displays' base class."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from types import TracebackType

from mdl.progress import Event, Progress
from mdl.redact import safe_text

WINDOW = 5.0  # seconds: the rate follows what the link does now, not the average since the start
_NEVER = 100 * 3600.0  # seconds: a time left beyond 100 hours is a stall, not an estimate
_FOLD = 0.05  # seconds: bytes are folded in at most this often, so a 64 KiB chunk costs no math.exp


class RateMeter:
    """An exponentially weighted rate over ~``WINDOW`` seconds (not thread-safe: displays hold their lock).

    Bytes and time are weighted alike, so the first seconds read as the plain average rather than a value
    climbing from zero, and a stall decays to 0. Time counts from the first bytes: the wait for them (Hub call,
    redirect, connect) is latency, not speed.
    """

    def __init__(self, now: float) -> None:
        self._last = now
        self._bytes = 0.0  # weighted bytes
        self._time = 0.0  # weighted seconds
        self._pending = 0
        self._flowing = False

    def add(self, nbytes: int, now: float) -> None:
        """Count ``nbytes`` arriving at ``now``; bytes thrown away (negative counts) did cross the link."""
        if not self._flowing:
            if nbytes > 0:  # the clock starts at the first bytes, which came over an unknown part of the wait
                self._flowing, self._last = True, now
            return
        if nbytes > 0:
            self._pending += nbytes
        if now - self._last >= _FOLD:
            self._fold(now)

    def _fold(self, now: float) -> None:
        elapsed = now - self._last
        if elapsed <= 0:  # bytes counted at the instant of the last fold: no interval to spread them over
            self._bytes += self._pending
            self._pending = 0
            return
        decay = math.exp(-elapsed / WINDOW)
        weight = WINDOW * (1 - decay)  # the weighted length of the interval the bytes arrived over
        # The bytes are spread over that interval, as the time is: a steady rate reads exactly as itself.
        self._bytes = self._bytes * decay + self._pending * weight / elapsed
        self._time = self._time * decay + weight
        self._pending = 0
        self._last = now

    def rate(self, now: float) -> float | None:
        """Bytes per second around ``now``; None before a fifth of a second has been seen (too noisy to show)."""
        if not self._flowing:
            return None
        self._fold(now)
        return None if self._time < 0.2 else max(self._bytes / self._time, 0.0)


def seconds_left(remaining: int | None, rate: float | None) -> float | None:
    """``remaining`` bytes at ``rate``; None when either is unknown or nothing moves."""
    if remaining is None or rate is None or rate <= 0:
        return None
    left = max(remaining, 0) / rate
    return left if left < _NEVER else None


def total_seconds_left(remaining: int | None, rate: float | None, files: Iterable[float | None]) -> float | None:
    """The batch's time left: its remaining bytes over the aggregate rate, never less than the slowest file's
    (finished files still weigh in the smoothed aggregate: the total must not promise less than the throttled
    file it waits for). Files whose own time is unknown do not move the floor."""
    return max((s for s in (seconds_left(remaining, rate), *files) if s is not None), default=None)


@dataclass
class Item:
    """One item in flight (a file being fetched, hashed or written)."""

    label: str
    total: int | None
    started: float
    completed: int = 0
    model: str | None = None
    path: str | None = None
    waiting: str | None = None  # what it waits for (another run's lock), until bytes arrive
    waiting_since: float = 0.0
    initial: int = field(init=False)  # bytes present before this run (a resume): not part of the speed
    meter: RateMeter = field(init=False)
    shown: float = field(init=False)  # when a display last wrote a line for it

    def __post_init__(self) -> None:
        self.initial, self.meter, self.shown = self.completed, RateMeter(self.started), self.started

    def seconds_left(self, now: float) -> float | None:
        if self.total is None or self.waiting is not None:
            return None
        return seconds_left(self.total - self.completed, self.meter.rate(now))


class Tally:
    """Counts for one display; not thread-safe (the display holds its lock around every call)."""

    def __init__(self) -> None:
        self.items: dict[str, Item] = {}
        self.files = 0  # items in the current batch
        self.done = 0  # items of the batch finished (ok or not)
        self.total: int | None = None  # bytes the batch has to move
        self.moved = 0  # bytes moved since the batch began
        self.meter: RateMeter | None = None  # all bytes, all items

    def begin(self, *, total_bytes: int | None, files: int) -> None:
        self.files, self.done, self.total, self.moved = files, 0, total_bytes, 0

    def start(self, key: str, item: Item) -> None:
        """Track ``item``, replacing a retry of the same key."""
        if self.meter is None:
            self.meter = RateMeter(item.started)
        self.items.pop(key, None)
        self.items[key] = item

    def wait(self, key: str, message: str, now: float, *, label: str) -> tuple[Item, bool]:
        """Mark ``key`` as waiting for ``message`` (True if news); a lock taken before its start gets it a row."""
        item = self.items.get(key)
        if item is None:
            item = self.items[key] = Item(label, None, now)
        if item.waiting == message:
            return item, False
        item.waiting, item.waiting_since = message, now
        return item, True

    def advance(self, key: str, nbytes: int, now: float) -> Item | None:
        """Count ``nbytes`` for ``key`` and the batch; returns the item (None if unknown)."""
        self.moved += nbytes
        if self.meter is not None:
            self.meter.add(nbytes, now)
        item = self.items.get(key)
        if item is None:
            return None
        if item.waiting is not None and nbytes > 0:  # the wait is over: measure from now
            item.waiting, item.meter = None, RateMeter(now)
        item.completed += nbytes
        item.meter.add(nbytes, now)
        return item

    def finish(self, key: str) -> Item | None:
        self.done += 1
        return self.items.pop(key, None)

    def rate(self, now: float) -> float | None:
        return None if self.meter is None else self.meter.rate(now)

    def seconds_left(self, now: float) -> float | None:
        remaining = None if self.total is None else self.total - self.moved
        if remaining is None and any(item.total is None for item in self.items.values()):
            return None  # a file of unknown size still streams: the slowest known file only bounds the end
        return total_seconds_left(remaining, self.rate(now), [i.seconds_left(now) for i in self.items.values()])


class Reporter(Progress, AbstractContextManager["Reporter"]):
    """A display of the run's progress: thread-safe, closed when the run ends; this base shows nothing (-q)."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic, secrets: tuple[str, ...] = ()) -> None:
        # Re-entrant: the rich display redraws from inside console.print, which runs under this lock.
        self._lock = threading.RLock()
        self.transferred = 0  # bytes advanced so far, over all items
        self._clock, self._secrets, self._tally = clock, secrets, Tally()

    def _safe(self, text: str) -> str:
        return safe_text(text, secrets=self._secrets)

    def emit(self, event: Event) -> None:
        with self._lock:
            if event.kind == "advance":
                self.transferred += event.nbytes
            self.show(event)

    def show(self, event: Event) -> None:
        """Format one event (under the lock)."""

    def close(self) -> None:
        """Stop the display; safe to call more than once."""

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()
