"""What the user sees: progress reporters (rich / plain / none); re-exports the console and log helpers."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import TYPE_CHECKING, Literal, Self, TextIO

from mdl.cli.render.console import (
    Console,
    color_enabled,
    emit_json,
    no_color,
    render_table,
)
from mdl.cli.render.log import setup_logging
from mdl.redact import safe_text
from mdl.units import human_duration, human_size

if TYPE_CHECKING:
    from rich.progress import Progress as RichProgress
    from rich.progress import TaskID

__all__ = [
    "Console",
    "ProgressMode",
    "Reporter",
    "choose_progress_mode",
    "color_enabled",
    "emit_json",
    "human_duration",
    "human_size",
    "make_reporter",
    "render_table",
    "setup_logging",
]

ProgressMode = Literal["rich", "plain", "json", "none"]

_LABEL_WIDTH = 48  # rich bars: the widest label; longer ones keep their tail (the file name), not their head
_RICH_FLUSH = 0.1  # seconds between updates of the rich bars: rich redraws 10 times a second anyway
_NUMBERS_WIDTH = 42  # rich bars: "1,000.5/3,000.0 MB 999.9 MB/s 0:00:00" and the gaps between columns


def choose_progress_mode(
    *,
    quiet: bool,
    no_progress: bool,
    json_output: bool,
    stderr_isatty: bool,
    environ: Mapping[str, str],
    requested: str | None = None,
) -> ProgressMode:
    """Pick the display: none for -q/--no-progress; plain off a terminal or with TERM=dumb; else rich."""
    # json_output is accepted but does not matter: progress goes to stderr, so stdout stays pure JSON.
    del json_output
    if quiet or no_progress:
        return "none"
    if not stderr_isatty or environ.get("TERM") == "dumb":
        return "plain"
    return "rich"


class Reporter:
    """A thread-safe :class:`mdl.progress.Progress` with ``close()``; this base discards everything (-q)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._transferred = 0

    @property
    def transferred(self) -> int:
        """Bytes reported through ``advance`` so far, over all items."""
        with self._lock:
            return self._transferred

    def begin(self, *, total_bytes: int | None, files: int) -> None:
        """A batch of ``files`` items starts, with ``total_bytes`` still to transfer."""

    def start(
        self,
        key: str,
        *,
        label: str,
        total: int | None,
        completed: int = 0,
        model: str | None = None,
        path: str | None = None,
    ) -> None:
        """Item ``key`` starts; ``completed`` bytes are already present."""

    def waiting(self, key: str, message: str) -> None:
        """Item ``key`` waits for something other than bytes (another run's lock)."""

    def advance(self, key: str, nbytes: int) -> None:
        """``nbytes`` more bytes of item ``key`` arrived."""
        with self._lock:
            self._transferred += nbytes

    def finish(self, key: str, *, ok: bool, message: str = "") -> None:
        """Item ``key`` is done, or failed with ``message``."""

    def note(self, message: str) -> None:
        """An informational line for the user."""

    def close(self) -> None:
        """Stop the display; safe to call more than once."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


@dataclass
class _Item:
    """What the plain reporter remembers about one item in flight."""

    label: str
    total: int | None
    completed: int
    initial: int  # bytes present before this run: excluded from the speed
    started: float
    last_line: float
    last_completed: int


class _PlainReporter(Reporter):
    """Timestamped lines for cron, CI and pipes: start, at most one progress line per interval, finish."""

    def __init__(
        self,
        *,
        stream: TextIO,
        clock: Callable[[], float],
        wallclock: Callable[[], datetime],
        interval: float,
        secrets: tuple[str, ...],
    ) -> None:
        super().__init__()
        self._stream = stream
        self._clock = clock
        self._wallclock = wallclock
        self._interval = interval
        self._secrets = secrets
        self._items: dict[str, _Item] = {}

    def _write(self, text: str) -> None:
        """One line, stamped in UTC; callers hold the lock so lines from threads never interleave."""
        moment = self._wallclock()
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        stamp = moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        self._stream.write(f"{stamp} {safe_text(text, secrets=self._secrets)}\n")
        self._stream.flush()

    def begin(self, *, total_bytes: int | None, files: int) -> None:
        """Say how much the batch holds (nothing when it is empty)."""
        if files <= 0:
            return
        size = "" if total_bytes is None else f", {human_size(total_bytes)}"
        with self._lock:
            self._write(f"begin {files} file{'s' if files != 1 else ''}{size}")

    def start(
        self,
        key: str,
        *,
        label: str,
        total: int | None,
        completed: int = 0,
        model: str | None = None,
        path: str | None = None,
    ) -> None:
        """Write the start line: label, size and where a resume picks up."""
        now = self._clock()
        label = safe_text(label, secrets=self._secrets)
        resume = f", resuming at {human_size(completed)}" if completed else ""
        size = "size unknown" if total is None else human_size(total)
        with self._lock:
            self._items[key] = _Item(label, total, completed, completed, now, now, completed)
            self._write(f"start {label} ({size}{resume})")

    def advance(self, key: str, nbytes: int) -> None:
        """Count the bytes; write a progress line when this item's interval has passed."""
        with self._lock:
            self._transferred += nbytes
            item = self._items.get(key)
            if item is None:
                return
            item.completed += nbytes
            now = self._clock()
            elapsed = now - item.last_line
            # A complete item gets its done line next; a "100%" line just before it would be noise.
            if elapsed < self._interval or (item.total is not None and item.completed >= item.total):
                return
            # Speed over the last interval (what the link does now); the ETA follows from it.
            speed = (item.completed - item.last_completed) / elapsed if elapsed > 0 else 0.0
            item.last_line, item.last_completed = now, item.completed
            self._write(_progress_text(item, speed))

    def finish(self, key: str, *, ok: bool, message: str = "") -> None:
        """Write the done line (size, time, average speed) or the FAILED line with the reason."""
        now = self._clock()
        message = safe_text(message, secrets=self._secrets)
        with self._lock:
            item = self._items.pop(key, None)
            label = item.label if item is not None else key
            if not ok:
                self._write(f"FAILED {label}: {message or 'failed'}")
                return
            text = f"done {label}"
            if item is not None:
                elapsed = now - item.started
                text += f" {human_size(item.completed)} in {human_duration(elapsed)}"
                if elapsed > 0 and item.completed > item.initial:
                    text += f" ({human_size(int((item.completed - item.initial) / elapsed))}/s)"
            self._write(f"{text}: {message}" if message else text)

    def note(self, message: str) -> None:
        """Write ``message`` as a stamped line."""
        message = safe_text(message, secrets=self._secrets)
        with self._lock:
            self._write(message)


def _progress_text(item: _Item, speed: float) -> str:
    """``label 45% 120.0 MB/265.3 MB 38.2 MB/s ETA 4s``, leaving out what is unknown."""
    parts = [item.label]
    if item.total:
        parts.append(f"{100 * item.completed // item.total}%")
        parts.append(f"{human_size(item.completed)}/{human_size(item.total)}")
    else:
        parts.append(human_size(item.completed))
    parts.append(f"{human_size(int(speed))}/s")
    if item.total and speed > 0 and item.completed < item.total:
        parts.append(f"ETA {human_duration(math.ceil((item.total - item.completed) / speed))}")
    return " ".join(parts)


class _RichReporter(Reporter):
    """Live bars on a terminal: one per active file plus a total, with bytes, speed and ETA."""

    def __init__(
        self,
        *,
        stream: TextIO,
        environ: Mapping[str, str],
        clock: Callable[[], float],
        secrets: tuple[str, ...],
    ) -> None:
        super().__init__()
        # Imported here, not at module level: rich.progress costs ~80 ms, which `mdl --help` should not pay.
        from rich.console import Console as RichConsole
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )
        from rich.table import Column

        # The caller chose rich because stderr is a terminal; forcing it keeps that decision in one place.
        console = RichConsole(file=stream, force_terminal=True, no_color=no_color(environ), highlight=False)
        # Numbers never wrap: the label and the bar share what the terminal has left (read once, at start).
        label_width = max(12, min(_LABEL_WIDTH, console.width - _NUMBERS_WIDTH - 10))
        bar_width = max(5, min(40, console.width - _NUMBERS_WIDTH - label_width))
        self._label_width = label_width
        self._progress: RichProgress = Progress(
            TextColumn(
                "{task.description}",
                markup=False,
                table_column=Column(width=label_width, no_wrap=True, overflow="ellipsis"),
            ),
            BarColumn(bar_width=bar_width),
            DownloadColumn(table_column=Column(no_wrap=True, justify="right")),
            TransferSpeedColumn(table_column=Column(no_wrap=True, justify="right")),
            TimeRemainingColumn(table_column=Column(no_wrap=True)),
            console=console,
            get_time=clock,
            # Never redirect: rich would route the command's stdout (data, JSON) to the stderr console.
            redirect_stdout=False,
            redirect_stderr=False,
        )
        self._secrets = secrets
        self._tasks: dict[str, tuple[TaskID, str]] = {}
        self._total: TaskID | None = None
        self._pending: dict[str, int] = {}
        self._clock = clock
        self._flushed = clock()
        self._files = 0
        self._done = 0
        self._live = False
        self._closed = False

    def _ensure_live(self) -> None:
        """Start the live display on first use, so a run with nothing to show draws nothing."""
        if not self._live and not self._closed:
            self._progress.start()
            self._live = True

    def begin(self, *, total_bytes: int | None, files: int) -> None:
        """Show (or reset) the total bar for a new batch; an empty batch draws nothing."""
        if files <= 0:
            return
        with self._lock:
            self._files, self._done = files, 0
            description = f"total ({files} file{'s' if files != 1 else ''})"
            if self._total is None:
                self._total = self._progress.add_task(description, total=total_bytes)
            else:
                self._progress.reset(self._total, total=total_bytes, completed=0, description=description)
            self._ensure_live()

    def start(
        self,
        key: str,
        *,
        label: str,
        total: int | None,
        completed: int = 0,
        model: str | None = None,
        path: str | None = None,
    ) -> None:
        """Add a bar for the item, already filled by what a resume keeps."""
        label = safe_text(label, secrets=self._secrets)
        width = self._label_width
        shown = label if len(label) <= width else "…" + label[-(width - 1) :]
        with self._lock:
            self._flush(self._clock())
            old = self._tasks.pop(key, None)
            if old is not None:  # the same item again (a retry from zero): one bar, not two
                self._progress.remove_task(old[0])
            task = self._progress.add_task(shown, total=total, completed=completed)
            self._tasks[key] = (task, label)
            self._ensure_live()

    def advance(self, key: str, nbytes: int) -> None:
        """Count the bytes; hand them to the bars at most every refresh period."""
        with self._lock:
            self._transferred += nbytes
            self._pending[key] = self._pending.get(key, 0) + nbytes
            now = self._clock()
            if now - self._flushed >= _RICH_FLUSH:
                self._flush(now)

    def _flush(self, now: float) -> None:
        """Move the bars by what arrived since the last flush (callers hold the lock)."""
        # Batched because rich's advance costs ~5 µs; per 64 KiB chunk at 1 GB/s that is 7% of a core.
        self._flushed = now
        if not self._pending:
            return
        for key, nbytes in self._pending.items():
            entry = self._tasks.get(key)
            if entry is not None:
                self._progress.advance(entry[0], nbytes)
        if self._total is not None:
            self._progress.advance(self._total, sum(self._pending.values()))
        self._pending.clear()

    def finish(self, key: str, *, ok: bool, message: str = "") -> None:
        """Drop the item's bar; a failure stays on screen as a line above the bars."""
        with self._lock:
            self._flush(self._clock())
            entry = self._tasks.pop(key, None)
            if entry is not None:
                self._progress.remove_task(entry[0])
            self._done += 1
            if self._total is not None:
                self._progress.update(self._total, description=f"total ({self._done}/{self._files} files)")
            if not ok:
                text = f"FAILED {entry[1] if entry else key}: {message or 'failed'}"
                self._print(text, style="red")

    def note(self, message: str) -> None:
        """Print ``message`` above the bars."""
        with self._lock:
            self._print(message, style=None)

    def _print(self, text: str, *, style: str | None) -> None:
        """A redacted, control-free line above the live display (markup off: file names may hold "[")."""
        text = safe_text(text, multiline=True, secrets=self._secrets)
        self._progress.console.print(text, style=style, markup=False, highlight=False)

    def close(self) -> None:
        """Stop the live display, leaving its last frame (the total) on screen."""
        with self._lock:
            self._flush(self._clock())
            if self._live:
                self._progress.stop()
            self._live, self._closed = False, True


def make_reporter(
    mode: ProgressMode,
    *,
    stream: TextIO,
    environ: Mapping[str, str],
    clock: Callable[[], float] = time.monotonic,
    wallclock: Callable[[], datetime] | None = None,
    interval: float = 5.0,
    secrets: tuple[str, ...] = (),
) -> Reporter:
    """The reporter for ``mode``, writing to ``stream`` (stderr); use it as a context manager or close it."""
    if mode == "rich":
        return _RichReporter(stream=stream, environ=environ, clock=clock, secrets=secrets)
    if mode == "plain":
        return _PlainReporter(
            stream=stream,
            clock=clock,
            wallclock=wallclock or (lambda: datetime.now(UTC)),
            interval=interval,
            secrets=secrets,
        )
    return Reporter()
