"""Displays but the rich one (bars.py): what they count (rates, times left), their base, plain lines, JSON events."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TextIO

from mdl.cli.render.console import EventStream, stamped
from mdl.progress import Event, Progress
from mdl.redact import Secrets, safe_text
from mdl.units import human_duration, human_rate, human_size

PROGRESS_EVERY = 1.0  # seconds: at most one JSON progress event per file this often
WINDOW = 5.0  # seconds: the rate follows what the link does now, not the average since the start
_NEVER = 100 * 3600.0  # seconds: a time left beyond 100 hours is a stall, not an estimate
_FOLD = 0.05  # seconds: bytes are folded in at most this often, so a 64 KiB chunk costs no math.exp


class RateMeter:
    """An exponentially weighted rate over ~``WINDOW`` seconds (not thread-safe: displays hold their lock). Bytes
    and time are weighted alike, so the first seconds read as the plain average, not a value climbing from zero, and
    a stall decays to 0; time counts from the first bytes (the wait for them is latency, not speed)."""

    def __init__(self, now: float) -> None:
        self._last = now
        self._bytes = 0.0  # weighted bytes
        self._time = 0.0  # weighted seconds
        self._pending, self._flowing = 0, False

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
        self._pending, self._last = 0, now

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
    """The batch's time left: its bytes over the aggregate rate, never less than a file's own (finished files still
    weigh in the smoothed aggregate: the total must not promise less than the throttled file it waits for)."""
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
        self.meter = self.meter or RateMeter(item.started)
        self.items.pop(key, None)
        self.items[key] = item

    def wait(self, key: str, message: str, now: float, *, label: str) -> tuple[Item, bool]:
        """Mark ``key`` as waiting for ``message`` (True if news); a lock taken before its start gets it a row."""
        item = self.items.setdefault(key, Item(label, None, now))
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

    def __init__(self, *, clock: Callable[[], float] = time.monotonic, secrets: Secrets | None = None) -> None:
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

    def __exit__(self, *_: object) -> None:
        self.close()


class PlainReporter(Reporter):
    """Lines for cron, CI and pipes, each stamped (UTC, pid: :func:`stamped`): start (or resuming), a progress line per
    interval, done."""

    def __init__(self, *, stream: TextIO, wallclock: Callable[[], datetime], interval: float, **common: Any) -> None:
        super().__init__(**common)
        self._stream, self._interval = stamped(stream, wallclock=wallclock), interval

    def _write(self, text: str) -> None:
        self._stream.write(f"{self._safe(text)}\n")
        self._stream.flush()

    def show(self, event: Event) -> None:
        now, key, total = self._clock(), event.key, event.total
        if event.kind == "begin" and event.files > 0:
            self._tally.begin(total_bytes=total, files=event.files)
            size = "" if total is None else f", {human_size(total)}"
            self._write(f"begin {event.files} file{'s' if event.files != 1 else ''}{size}")
        elif event.kind == "start":
            label = self._safe(event.label)
            self._tally.start(key, Item(label, total, now, event.completed, event.model, event.path))
            if event.completed:
                self._write(f"resuming {label} at {human_size(event.completed)} of {human_size(total)}")
            else:
                self._write(f"start {label} ({'size unknown' if total is None else human_size(total)})")
        elif event.kind == "waiting":
            item, news = self._tally.wait(key, event.message, now, label=self._safe(key))
            if news:
                self._write(f"{item.label} waiting: {event.message}")
        elif event.kind == "advance":
            found = self._tally.advance(key, event.nbytes, now)
            # A complete item gets its done line next; a "100%" line just before it would be noise.
            if found and now - found.shown >= self._interval and (found.total is None or found.completed < found.total):
                found.shown = now
                self._write(_progress_text(found, found.meter.rate(now)))
        elif event.kind == "finish":
            done = self._tally.finish(key)
            if not event.ok:  # left to the final report
                return
            text = f"done {done.label if done is not None else self._safe(key)}"
            if done is not None:
                elapsed = now - done.started
                text += f" {human_size(done.completed)} in {human_duration(elapsed)}"
                if elapsed > 0 and done.completed > done.initial:
                    text += f" ({human_rate((done.completed - done.initial) / elapsed)})"
            self._write(f"{text}: {self._safe(event.message)}" if event.message else text)
        elif event.kind == "note":
            self._write(event.message)


def _progress_text(item: Item, rate: float | None) -> str:
    """``label 45% 120 MiB/265 MiB 38.2 MiB/s ETA 4s``, leaving out what is unknown."""
    parts = [item.label]
    if item.total:
        parts += [f"{100 * item.completed // item.total}%", f"{human_size(item.completed)}/{human_size(item.total)}"]
    else:
        parts.append(human_size(item.completed))
    parts.append(human_rate(rate))
    if item.total and rate and item.completed < item.total:
        parts.append(f"ETA {human_duration(math.ceil((item.total - item.completed) / rate))}")
    return " ".join(parts)


class JsonReporter(Reporter):
    """``--progress json``: ``start``, ``progress`` (once a second per file at most: bytes, size, smoothed rate),
    ``waiting``, ``note``, ``finish`` (bytes, seconds) and ``error`` events, through the run's :class:`EventStream`."""

    def __init__(self, events: EventStream, *, clock: Callable[[], float]) -> None:
        super().__init__(clock=clock)
        self._events = events

    def _emit(self, kind: str, item: Item, /, **fields: Any) -> None:
        self._events.emit(kind, model=item.model, path=item.path, label=item.label, **fields)

    def show(self, event: Event) -> None:
        now, key = self._clock(), event.key
        if event.kind == "begin":  # (the batch's counts are the stream's to say: the items are this display's)
            self._events.begin(files=event.files, total=event.total)
        elif event.kind == "start":
            item = Item(event.label, event.total, now, event.completed, event.model, event.path)
            self._tally.start(key, item)
            self._emit("start", item, total=event.total, completed=event.completed)
        elif event.kind == "waiting":
            item, news = self._tally.wait(key, event.message, now, label=key)
            if news:
                self._emit("waiting", item, message=event.message)
        elif event.kind == "advance":
            found = self._tally.advance(key, event.nbytes, now)
            if found is not None and now - found.shown >= PROGRESS_EVERY:
                found.shown, rate = now, found.meter.rate(now)
                shown = None if rate is None else round(rate)
                self._emit("progress", found, bytes=found.completed, total=found.total, rate=shown)
        elif event.kind == "finish":
            item = self._tally.finish(key) or Item(key, None, now)
            if event.ok:
                self._emit("finish", item, bytes=item.completed, seconds=round(now - item.started, 3))
            else:
                self._events.error(
                    event.message or "failed", model=item.model or None, path=item.path, label=item.label
                )
        else:
            self._events.note(event.message)
