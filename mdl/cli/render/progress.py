"""The progress displays: what they count (rates, times left), their base, plain lines, JSON events, and live bars
on a terminal (rich, imported only when bars are drawn): a row per file in flight and the total, fit to its width."""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, NamedTuple, TextIO

from mdl.cli.render.console import ELLIPSIS, EventStream, display_width, head, utc
from mdl.progress import Event, Progress
from mdl.redact import safe_text
from mdl.units import human_clock, human_duration, human_rate, human_size

if TYPE_CHECKING:
    from rich.console import Console as RichConsole
    from rich.console import ConsoleOptions, RenderResult
    from rich.text import Text

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

    def __exit__(self, *_: object) -> None:
        self.close()


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


# -- live bars (rich) -------------------------------------------------------------------------------------------------

FLUSH = 0.1  # seconds between folding arrived bytes into the counts: rich redraws 10 times a second anyway
SIZE_WIDTH = 17  # "1023 MiB/1023 MiB"
RATE_WIDTH = 10  # "1023 MiB/s"
ETA_WIDTH = 7  # "1:02:03"
PERCENT_WIDTH = 4  # "100%"
MOVED_WIDTH = 8  # "1023 MiB": what the percentage column shows for a file of unknown size
BAR_MIN, BAR_MAX = 10, 40
LABEL_MIN = 16
# As the terminal narrows: the bar goes first, then the rate, then the size (a percentage stands in for it
# while it fits); the time left stays.
LAYOUTS: tuple[tuple[str, ...], ...] = (
    ("bar", "size", "rate", "eta"),
    ("size", "rate", "eta"),
    ("size", "eta"),
    ("percent", "eta"),
    ("eta",),
)
_WIDTHS = {"size": SIZE_WIDTH, "rate": RATE_WIDTH, "eta": ETA_WIDTH, "percent": PERCENT_WIDTH}
_SEPARATORS = "/-_."


class RichReporter(Reporter):
    """Rows for the items in flight and the batch's total, redrawn by rich's Live from a snapshot of the counts."""

    def __init__(self, *, stream: TextIO, no_color: bool, console: RichConsole | None = None, **common: Any) -> None:
        super().__init__(**common)
        # Imported here: rich costs tens of ms, which `mdl --help` should not pay.
        from rich.console import Console as RichConsole
        from rich.live import Live

        # The caller chose rich because stderr is a terminal; forcing it keeps that decision in one place.
        self.console = console or RichConsole(file=stream, force_terminal=True, no_color=no_color, highlight=False)
        self.color = not no_color
        self._pending: dict[str, int] = {}
        self._flushed = self._clock()
        self._rows: list[Row] = []
        # Never redirect: rich would route the command's stdout (data, JSON) to the stderr console.
        self._live = Live(
            self, console=self.console, refresh_per_second=10, redirect_stdout=False, redirect_stderr=False
        )
        self._closed = False

    def show(self, event: Event) -> None:
        now, key = self._clock(), event.key
        if event.kind == "advance":  # folded into the rows at most every FLUSH seconds (perf: 64 KiB chunks)
            self._pending[key] = self._pending.get(key, 0) + event.nbytes
            if now - self._flushed >= FLUSH:
                self._flush(now)
            return
        if event.kind == "note":
            self._print(event.message)
            return
        if event.kind == "begin" and event.files <= 0:  # an empty batch draws nothing
            return
        if event.kind != "waiting":
            self._flush(now)
        if event.kind == "begin":
            self._tally.begin(total_bytes=event.total, files=event.files)
        elif event.kind == "start":
            label = self._safe(event.label)
            self._pending.pop(key, None)
            self._tally.start(key, Item(label, event.total, now, event.completed, event.model, event.path))
            if event.completed:
                self._print(f"resuming {label} at {human_size(event.completed)} of {human_size(event.total)}")
        elif event.kind == "waiting":  # "waiting (m:ss): message" on its row until its bytes flow
            self._tally.wait(key, self._safe(event.message), now, label=self._safe(key))
        else:  # a failure prints nothing here: the final report names each failed file once
            self._tally.finish(key)
            return
        if not self._live.is_started and not self._closed:  # on first use: a run with nothing to show draws nothing
            self._live.start()

    def _flush(self, now: float) -> None:
        self._flushed = now
        for key, nbytes in self._pending.items():
            self._tally.advance(key, nbytes, now)
        self._pending.clear()

    def _print(self, text: str) -> None:
        """A redacted, control-free line above the live display (markup off: file names may hold "[")."""
        self.console.print(safe_text(text, multiline=True, secrets=self._secrets), markup=False, highlight=False)

    def __rich_console__(self, console: RichConsole, options: ConsoleOptions) -> RenderResult:
        """The rows in the width of each redraw; the last snapshot while a worker holds the lock (never waited on)."""
        if self._lock.acquire(blocking=False):
            try:
                self._rows = self._snapshot()
            finally:
                self._lock.release()
        yield from render_rows(self._rows, options.max_width, color=self.color)

    def _snapshot(self) -> list[Row]:
        """The total first, then the items in the order they started."""
        now = self._clock()
        self._flush(now)
        tally, rows = self._tally, []
        if tally.files:
            label = f"total {tally.done}/{tally.files} file{'s' if tally.files != 1 else ''}"  # never cut on screen
            rows.append(Row(label, tally.moved, tally.total, tally.rate(now), tally.seconds_left(now), whole=True))
        for item in tally.items.values():
            waiting = None
            if item.waiting is not None:
                waiting = f"waiting ({human_clock(now - item.waiting_since)}): {item.waiting}"
            rows.append(
                Row(item.label, item.completed, item.total, item.meter.rate(now), item.seconds_left(now), waiting)
            )
        return rows

    def close(self) -> None:
        """Stop the live display, leaving its last frame on screen."""
        with self._lock:
            self._flush(self._clock())
            self._live.stop()  # (a display never started stays undrawn)
            self._closed = True


class Row(NamedTuple):
    """What one line shows: an item, or the total (``whole``: its label is never cut)."""

    label: str
    completed: int
    total: int | None
    rate: float | None
    left: float | None
    waiting: str | None = None
    whole: bool = False


class Layout(NamedTuple):
    """The columns a width allows and how wide the label and the bar are."""

    columns: tuple[str, ...]
    label: int
    bar: int


def choose_layout(rows: Sequence[Row], width: int) -> Layout:
    """The richest column set that leaves the label its minimum (the total's label whole)."""
    need = max((display_width(r.label) for r in rows), default=LABEL_MIN)
    minimum = min(need, max([LABEL_MIN, *(display_width(r.label) for r in rows if r.whole)]))  # the total's whole
    need = min(need, max(minimum, width * 3 // 5))  # a narrow terminal keeps room for the numbers
    widths = {**_WIDTHS, "percent": _percent_width(rows)}
    for columns in LAYOUTS:
        room = width - sum(widths.get(c, 0) + 1 for c in columns if c != "bar")
        if "bar" in columns and room - BAR_MIN - 1 >= minimum:
            label = min(need, room - BAR_MIN - 1)
            return Layout(columns, label, min(BAR_MAX, room - label - 1))
        if "bar" not in columns and room >= minimum:
            return Layout(columns, min(need, room), 0)
    return Layout(("eta",), max(width - ETA_WIDTH - 1, 1), 0)


def _percent_width(rows: Sequence[Row]) -> int:
    """The share done ("42%"), or the bytes so far where no size is known (a server that never says it)."""
    return MOVED_WIDTH if any(row.total is None and row.waiting is None for row in rows) else PERCENT_WIDTH


def render_rows(rows: Sequence[Row], width: int, *, color: bool) -> list[Text]:
    """Each row as one line of at most ``width`` columns."""
    from rich.text import Text

    layout = choose_layout(rows, width)
    percent_width = _percent_width(rows)
    labels = fit_labels([r.label for r in rows], layout.label)
    lines = []
    for row, label in zip(rows, labels, strict=True):
        padded = label + " " * max(layout.label - display_width(label), 0)
        line = Text(padded, style="bold" if row.whole else "", no_wrap=True)
        if row.waiting is not None:
            message = Text(f" {row.waiting}", style="yellow", no_wrap=True)
            message.truncate(max(width - layout.label - 1, 0) + 1, overflow="ellipsis")
            lines.append(line + message)
            continue
        for column in layout.columns:
            line.append(" ")
            if column == "bar":
                line.append_text(_bar(row, layout.bar, color=color))
            elif column == "size":
                line.append(f"{human_size(row.completed)}/{human_size(row.total)}".rjust(SIZE_WIDTH), "green")
            elif column == "percent" and row.total is None:  # no share without a size: the bytes show it moves
                line.append(human_size(row.completed).rjust(percent_width), "green")
            elif column == "percent":
                share = f"{min(100 * row.completed // row.total, 100)}%" if row.total else "100%"
                line.append(share.rjust(percent_width), "green")
            elif column == "rate":
                line.append(human_rate(row.rate).rjust(RATE_WIDTH), "red")
            else:
                eta = "-:--" if row.left is None else human_clock(row.left)
                line.append(eta.rjust(ETA_WIDTH), "cyan")
        lines.append(line)
    return lines


def _bar(row: Row, width: int, *, color: bool) -> Text:
    """``━━━━━━    `` filled by the share done (empty while the size is unknown)."""
    from rich.text import Text

    filled = round(width * (min(max(row.completed / row.total, 0.0), 1.0) if row.total else 0.0))
    bar = Text("━" * filled, style="magenta" if row.whole else "green")
    # Without colour the background would look like done work: leave it blank, as rich does.
    bar.append(("━" if color else " ") * (width - filled), style="grey23")
    return bar


def _tail(text: str, width: int) -> str:
    return head(text[::-1], width)[::-1]


def shorten(text: str, width: int, *, keep: int | None = None) -> str:
    """``text`` in at most ``width`` columns, cut in the middle (``big/model-0…02.safetensors``); the character at
    ``keep`` (where it differs from another label) stays seen: the tail starts at its word, or the head reaches it."""
    if display_width(text) <= width:
        return text
    if width <= 1:
        return ELLIPSIS[:width]
    room = width - 1
    head_room = room * 2 // 5  # the tail holds the file name and its shard number: give it more
    first, tail = head(text, head_room), _tail(text, room - head_room)
    if keep is None or len(first) > keep >= 0 or keep >= len(text) - len(tail):
        return first + ELLIPSIS + tail
    start = keep
    while start > 0 and keep - start < 6 and text[start - 1] not in _SEPARATORS:
        start -= 1  # show the word the difference is in ("00001"), not half of it
    if display_width(text[start:]) <= room - min(4, room // 3):
        tail = text[start:]
        return head(text, room - display_width(tail)) + ELLIPSIS + tail
    first = text[: keep + 1]
    if display_width(first) < room:
        return first + ELLIPSIS + _tail(text, room - display_width(first))
    # Neither end reaches the difference: a window around it between two ellipses.
    window = _tail(text[: keep + 1], max(room - 1, 1) // 2 + 1)
    window += head(text[keep + 1 :], max(room - 1 - display_width(window), 0))
    return ELLIPSIS + window + ELLIPSIS


def _first_difference(text: str, other: str) -> int:
    """The first index where ``text`` and ``other`` differ (the last character if one starts the other)."""
    common = len(os.path.commonprefix([text, other]))  # noqa: RUF071 - characters, not path parts, are meant
    return common if common < len(text) else len(text) - 1


def fit_labels(labels: Sequence[str], width: int) -> list[str]:
    """Each label in ``width`` columns, cut so that distinct labels stay distinct on screen where possible."""
    shown: list[str] = []
    for i, text in enumerate(labels):
        keep = max((_first_difference(text, o) for j, o in enumerate(labels) if j != i and o != text), default=None)
        shown.append(shorten(text, width, keep=keep))
    seen: dict[str, int] = {}
    for i, text in enumerate(shown):
        if text in seen and labels[seen[text]] != labels[i]:
            shown[i] = ELLIPSIS + _tail(labels[i], width - 1)  # still alike: the plain tail, where shards differ
        seen.setdefault(shown[i], i)
    return shown
