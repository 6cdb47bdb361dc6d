"""The progress displays (rich bars in bars.py, plain lines, JSON events, none) and the choice between them."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Literal, TextIO, cast

from mdl.cli.render.console import no_color
from mdl.cli.render.stream import EventStream, utc
from mdl.cli.render.tally import Item, Reporter
from mdl.progress import Event
from mdl.units import human_duration, human_rate, human_size

ProgressMode = Literal["rich", "plain", "json", "none"]
PROGRESS_CHOICES = ("auto", "rich", "plain", "json", "none")
PROGRESS_EVERY = 1.0  # seconds: at most one JSON progress event per file this often


def choose_progress_mode(
    *,
    quiet: bool,
    no_progress: bool,
    json_output: bool,
    stderr_isatty: bool,
    environ: Mapping[str, str],
    requested: str | None = None,
) -> ProgressMode:
    """The display for ``--progress``: json wins even over -q and --no-progress (they silence what people read,
    not a program's channel); else they mean none; auto is rich on a terminal, plain lines off it or with
    TERM=dumb. ``json_output`` does not matter: progress goes to stderr."""
    del json_output
    choice = (requested or "auto").lower()
    if choice not in PROGRESS_CHOICES:
        raise ValueError(f"unknown progress mode {requested!r}")  # the option's choices keep users out of here
    if (quiet or no_progress) and choice != "json":
        return "none"
    if choice == "auto":
        return "plain" if not stderr_isatty or environ.get("TERM") == "dumb" else "rich"
    return cast(ProgressMode, choice)


def make_reporter(
    mode: ProgressMode,
    *,
    stream: TextIO,
    environ: Mapping[str, str],
    clock: Callable[[], float] = time.monotonic,
    wallclock: Callable[[], datetime] | None = None,
    interval: float = 5.0,
    secrets: tuple[str, ...] = (),
    events: EventStream | None = None,
) -> Reporter:
    """The display for ``mode`` on ``stream`` (a context manager); ``json`` writes through ``events``, the run's own."""
    if mode == "rich":
        from mdl.cli.render.bars import RichReporter

        return RichReporter(stream=stream, no_color=no_color(environ), clock=clock, secrets=secrets)
    if mode == "plain":
        stamp = wallclock or (lambda: datetime.now(UTC))
        return PlainReporter(stream=stream, wallclock=stamp, interval=interval, clock=clock, secrets=secrets)
    if mode == "json":
        return JsonReporter(events or EventStream(stream, secrets=secrets, wallclock=wallclock), clock=clock)
    return Reporter()


class PlainReporter(Reporter):
    """Lines stamped in UTC for cron, CI and pipes: start (or resuming), a progress line per interval, done."""

    def __init__(self, *, stream: TextIO, wallclock: Callable[[], datetime], interval: float, **common: Any) -> None:
        super().__init__(**common)
        self._stream, self._wallclock, self._interval = stream, wallclock, interval

    def _write(self, text: str) -> None:
        stamp = utc(self._wallclock()).strftime("%Y-%m-%dT%H:%M:%SZ")
        self._stream.write(f"{stamp} {self._safe(text)}\n")
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
        parts.append(f"{100 * item.completed // item.total}%")
        parts.append(f"{human_size(item.completed)}/{human_size(item.total)}")
    else:
        parts.append(human_size(item.completed))
    parts.append(human_rate(rate))
    if item.total and rate and item.completed < item.total:
        parts.append(f"ETA {human_duration(math.ceil((item.total - item.completed) / rate))}")
    return " ".join(parts)


class JsonReporter(Reporter):
    """``--progress json``: events ``start``, ``progress`` (at most once a second per file: bytes so far, size,
    smoothed rate), ``waiting``, ``note``, ``finish`` (bytes, seconds) and ``error``, each a line, through the
    run's one :class:`EventStream` (which says ``begin`` first and ``end`` last, and makes every string safe)."""

    def __init__(self, events: EventStream, *, clock: Callable[[], float]) -> None:
        super().__init__(clock=clock)
        self._events = events

    def _emit(self, kind: str, item: Item, /, **fields: Any) -> None:
        self._events.emit(kind, model=item.model, path=item.path, label=item.label, **fields)

    def show(self, event: Event) -> None:
        now, key = self._clock(), event.key
        if event.kind == "begin":
            self._tally.begin(total_bytes=event.total, files=event.files)
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
            if found is None or now - found.shown < PROGRESS_EVERY:
                return
            found.shown = now
            rate = found.meter.rate(now)
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
