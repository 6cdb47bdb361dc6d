"""Displays of the core's events but the rich one (bars.py): the counts they share (rates, times
left), their base (each event folded into the counts once, then shown), plain lines and JSON events.
"""

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
from mdl.units import human_duration, human_rate, human_size, plural

PROGRESS_EVERY = 1.0  # seconds: at most one JSON progress event per file this often
WINDOW = 5.0  # seconds: the rate follows what the link does now, not the average since the start
_NEVER = 100 * 3600.0  # seconds: a time left beyond 100 hours is a stall, not an estimate
# seconds of bytes flowing before a time left is shown: the first frames' rate is of the first small
# files, and read over GiB to come it said ``47:22:4`` (an estimate that means nothing is left out)
SETTLED = 3.0
_FOLD = 0.05  # seconds: bytes are folded in at most this often, so a 64 KiB chunk costs no math.exp


class RateMeter:
    """An exponentially weighted rate over ~``WINDOW`` seconds (not thread-safe: displays hold their
    lock). Bytes and time are weighted alike, so the first seconds read as the plain average, not a
    value climbing from zero, and a stall decays to 0; time counts from the first bytes (the wait
    for them is latency, not speed)."""

    def __init__(self, now: float) -> None:
        self._last, self._bytes, self._time = now, 0.0, 0.0  # weighted bytes and seconds
        self._pending, self._flowing, self._began = 0, False, now

    def add(self, nbytes: int, now: float) -> None:
        """Count ``nbytes`` arriving at ``now``; bytes thrown away (negative counts) did cross
        the link.
        """
        if not self._flowing:
            # the clock starts at the first bytes, which came over an unknown part of the wait
            if nbytes > 0:
                self._flowing, self._last, self._began = True, now, now
            return
        self._pending += max(nbytes, 0)
        if now - self._last >= _FOLD:
            self._fold(now)

    def _fold(self, now: float) -> None:
        elapsed = now - self._last
        # bytes counted at the instant of the last fold: no interval to spread them over
        if elapsed <= 0:
            self._bytes, self._pending = self._bytes + self._pending, 0
            return
        decay = math.exp(-elapsed / WINDOW)
        weight = WINDOW * (1 - decay)  # the weighted length of the interval the bytes arrived over
        # The bytes are spread over that interval, as the time is: a steady rate reads exactly as
        # itself.
        self._bytes = self._bytes * decay + self._pending * weight / elapsed
        self._time = self._time * decay + weight
        self._pending, self._last = 0, now

    def rate(self, now: float) -> float | None:
        """Bytes per second around ``now``; None before a fifth of a second has been seen (too
        noisy to show).
        """
        if not self._flowing:
            return None
        self._fold(now)
        return None if self._time < 0.2 else max(self._bytes / self._time, 0.0)

    def settled(self, now: float) -> bool:
        """Whether bytes have flowed for SETTLED seconds: a time left from its rate means
        something."""
        return self._flowing and now - self._began >= SETTLED


def seconds_left(remaining: int | None, rate: float | None) -> float | None:
    """``remaining`` bytes at ``rate``; None when either is unknown or nothing moves."""
    if remaining is None or rate is None or rate <= 0:
        return None
    left = max(remaining, 0) / rate
    return left if left < _NEVER else None


def total_seconds_left(
    remaining: int | None, rate: float | None, files: Iterable[float | None]
) -> float | None:
    """The batch's time left: its bytes over the aggregate rate, never less than a file's own
    (finished files still weigh in the smoothed aggregate: the total must not promise less than the
    throttled file it waits for)."""
    return max((s for s in (seconds_left(remaining, rate), *files) if s is not None), default=None)


@dataclass(eq=False, repr=False)
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
    # bytes present before this run (a resume): not part of the speed
    initial: int = field(init=False)
    meter: RateMeter = field(init=False)
    shown: float = field(init=False)  # when a display last wrote a line for it

    def __post_init__(self) -> None:
        self.initial, self.meter, self.shown = self.completed, RateMeter(self.started), self.started

    def seconds_left(self, now: float) -> float | None:
        if self.total is None or self.waiting is not None or not self.meter.settled(now):
            return None
        return seconds_left(self.total - self.completed, self.meter.rate(now))


class Tally:
    """The counts every display shows, kept from the events; not thread-safe (the display holds
    its lock).
    """

    def __init__(self) -> None:
        self.items: dict[str, Item] = {}
        self.files = 0  # items in the current batch
        self.done = 0  # items of the batch finished (ok or not)
        self.failed = 0  # ... of them, not ok
        self.total: int | None = None  # bytes the batch has to move
        self.moved = 0  # bytes moved since the batch began
        self.meter: RateMeter | None = None  # all bytes, all items

    def apply(self, event: Event, now: float) -> Item | None:
        """Fold ``event`` into the counts; returns the item it is about (a wait's only if its
        message is news).
        """
        kind = event.kind
        if kind == "advance":  # (first: most events are bytes)
            return self._advance(event, now)
        if kind == "begin" and event.files > 0:  # (an empty batch changes nothing)
            self.files, self.done, self.total, self.moved = event.files, 0, event.total, 0
            self.failed = 0
        elif kind == "start":  # a retry of the same key replaces it
            self.meter = self.meter or RateMeter(now)
            self.items.pop(event.key, None)
            item = Item(event.label, event.total, now, event.completed, event.model, event.path)
            self.items[event.key] = item
            return item
        elif kind == "waiting" and event.key:  # a lock taken before its start gets the item a row
            item = self.items.setdefault(event.key, Item(event.key, None, now))
            if item.waiting != event.message:
                item.waiting, item.waiting_since = event.message, now
                return item
        elif kind == "finish":
            self.done += 1
            self.failed += not event.ok
            return self.items.pop(event.key, None)
        return None

    def _advance(self, event: Event, now: float) -> Item | None:
        """Bytes moved: the batch's and their item's."""
        self.moved += event.nbytes
        if self.meter is not None:
            self.meter.add(event.nbytes, now)
        found = self.items.get(event.key)
        if found is None:
            return None
        # the wait is over: measure from now
        if found.waiting is not None and event.nbytes > 0:
            found.waiting, found.meter = None, RateMeter(now)
        found.completed += event.nbytes
        found.meter.add(event.nbytes, now)
        return found

    def rate(self, now: float) -> float | None:
        return None if self.meter is None else self.meter.rate(now)

    def seconds_left(self, now: float) -> float | None:
        if self.meter is None or not self.meter.settled(now):
            return None
        remaining = None if self.total is None else self.total - self.moved
        if remaining is None and any(item.total is None for item in self.items.values()):
            # a file of unknown size still streams: the slowest known file only bounds the end
            return None
        return total_seconds_left(
            remaining, self.rate(now), [i.seconds_left(now) for i in self.items.values()]
        )


def said_alone(event: Event) -> bool:
    """Whether the event is a line of its own: a note, or a wait of the whole run (key "")."""
    return event.kind == "note" or (event.kind == "waiting" and not event.key)


class Reporter(Progress, AbstractContextManager["Reporter"]):
    """A display of the core's events: each folded into the counts, then shown, under one lock
    (workers emit at once); closed when the run ends. This base shows nothing (``-q`` is
    ``cli.run.Silent``, which folds nothing either)."""

    def __init__(
        self, *, clock: Callable[[], float] = time.monotonic, secrets: Secrets | None = None
    ) -> None:
        # Re-entrant: the rich display redraws from inside console.print, which runs under this
        # lock.
        self._lock = threading.RLock()
        self.transferred = 0  # bytes advanced so far, over all items
        self._clock, self._secrets, self._tally = clock, secrets, Tally()

    def _safe(self, text: str) -> str:
        return safe_text(text, secrets=self._secrets)

    def emit(self, event: Event) -> None:
        with self._lock:
            now = self._clock()
            self.transferred += event.nbytes
            self.show(event, self._tally.apply(event, now), now)

    def show(self, event: Event, item: Item | None, now: float) -> None:
        """Show one event, already counted; ``item`` is what :meth:`Tally.apply` returned (under
        the lock).
        """

    def close(self) -> None:
        """Stop the display; safe to call more than once."""

    def __exit__(self, *_: object) -> None:
        self.close()


class PlainReporter(Reporter):
    """Lines for cron, CI and pipes, each stamped (UTC, pid: :func:`stamped`): start (or resuming),
    a progress line per interval, done."""

    def __init__(
        self,
        *,
        stream: TextIO,
        wallclock: Callable[[], datetime] | None,
        interval: float,
        **common: Any,
    ) -> None:
        super().__init__(**common)
        self._stream, self._interval = stamped(stream, wallclock=wallclock), interval
        self._noted = ""  # the last note: a retry's wait on its row says it again, not here

    def _write(self, text: str | None) -> None:
        if text is None:  # the event says nothing
            return
        self._stream.write(f"{self._safe(text)}\n")
        self._stream.flush()

    def show(self, event: Event, item: Item | None, now: float) -> None:
        kind = event.kind
        if said_alone(event):
            self._write(event.message)
            self._noted = event.message
        elif kind == "begin":
            self._write(_begin_line(event))
        elif kind == "start":
            self._write(_start_line(event))
        elif kind == "finish":
            self._write(_done_line(event, item, now))
        elif item is None:  # a wait already said, or bytes of an item never started
            return
        elif kind == "waiting" and self._noted != f"{item.label}: {event.message}":
            self._write(f"{item.label} waiting: {event.message}")  # (said once per message)
        elif kind == "advance":
            self._write(self._progress_line(item, now))

    def _progress_line(self, item: Item, now: float) -> str | None:
        """An item's progress, once per interval."""
        if now - item.shown < self._interval:
            return None
        # A complete item gets its done line next; a "100%" line just before it would be noise.
        if item.total is not None and item.completed >= item.total:
            return None
        item.shown = now
        return _progress_text(item, item.meter.rate(now))


def _begin_line(event: Event) -> str | None:
    """``begin 3 files, 1.60 GiB`` (an empty batch says nothing)."""
    if event.files <= 0:
        return None
    size = "" if event.total is None else f", {human_size(event.total)}"
    return f"begin {plural(event.files, 'file')}{size}"


def _start_line(event: Event) -> str:
    """``start m/a.bin (265 MiB)``, or ``resuming …`` with bytes present."""
    if event.completed:
        return resuming(event)
    size = "size unknown" if event.total is None else human_size(event.total)
    return f"start {event.label} ({size})"


def _done_line(event: Event, item: Item | None, now: float) -> str | None:
    """``done m/a.bin 265 MiB in 7s (38.2 MiB/s)``; a failure is left to the final report."""
    if not event.ok:
        return None
    text = f"done {event.key}" if item is None else f"done {item.label} {_took(item, now)}"
    return f"{text}: {event.message}" if event.message else text


def _took(item: Item, now: float) -> str:
    """``265 MiB in 7s (38.2 MiB/s)``: an item's bytes and time, and its speed when it moved
    bytes."""
    elapsed = now - item.started
    text = f"{human_size(item.completed)} in {human_duration(elapsed)}"
    if elapsed > 0 and item.completed > item.initial:
        text += f" ({human_rate((item.completed - item.initial) / elapsed)})"
    return text


def resuming(event: Event) -> str:
    """What a display says of a start with bytes present: ``resuming m/a.bin at 600 MiB of 1.60
    GiB``.
    """
    return f"resuming {event.label} at {human_size(event.completed)} of {human_size(event.total)}"


def _progress_text(item: Item, rate: float | None) -> str:
    """``label 45% 120 MiB/265 MiB 38.2 MiB/s ETA 4s``, leaving out what is unknown."""
    done = human_size(item.completed)
    shown = (
        f"{100 * item.completed // item.total}% {done}/{human_size(item.total)}"
        if item.total
        else done
    )
    parts = [item.label, shown, human_rate(rate)]
    if item.total and rate and item.completed < item.total:
        parts.append(f"ETA {human_duration(math.ceil((item.total - item.completed) / rate))}")
    return " ".join(parts)


class RunWaits(PlainReporter):
    """``--no-progress``: no progress, but a wait said on a line of its own (the Hub's rate limit,
    a wait before a retry) is one, as a cron log needs (-q: none)."""

    def show(self, event: Event, item: Item | None, now: float) -> None:
        if event.kind == "waiting" and not event.key:
            self._write(event.message)


class JsonReporter(Reporter):
    """``--progress json``: ``start``, ``progress`` (once a second per file at most: bytes, size,
    smoothed rate), ``waiting``, ``note``, ``finish`` (bytes, seconds) and ``error`` events, through
    the run's :class:`EventStream`."""

    def __init__(self, events: EventStream, *, clock: Callable[[], float]) -> None:
        super().__init__(clock=clock)
        self._events = events

    def _emit(self, kind: str, item: Item, /, **fields: Any) -> None:
        self._events.emit(kind, model=item.model, path=item.path, label=item.label, **fields)

    def show(self, event: Event, item: Item | None, now: float) -> None:
        kind = event.kind
        # (the batch's counts are the stream's to say: the items are this display's)
        if kind == "begin":
            self._events.begin(files=event.files, total=event.total)
        elif said_alone(event):
            self._events.info(event.message)
        elif kind == "finish":
            self._finish(event, item or Item(event.key, None, now), now)
        elif item is None:  # a wait already said, or bytes of an item never started
            return
        elif kind == "start":
            self._emit("start", item, total=event.total, completed=event.completed)
        elif kind == "waiting":
            self._emit("waiting", item, message=event.message)
        elif now - item.shown >= PROGRESS_EVERY:  # advance
            item.shown, rate = now, item.meter.rate(now)
            rounded = None if rate is None else round(rate)
            self._emit("progress", item, bytes=item.completed, total=item.total, rate=rounded)

    def _finish(self, event: Event, item: Item, now: float) -> None:
        """An item's ``finish`` (bytes, seconds), or its ``error``."""
        if event.ok:
            self._emit("finish", item, bytes=item.completed, seconds=round(now - item.started, 3))
        else:
            message = event.message or "failed"
            self._events.error(message, model=item.model, path=item.path, label=item.label)
