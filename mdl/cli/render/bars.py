"""Live bars on a terminal (rich): one row per active file and a total, with our own rate and time-left columns."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, TextIO

from mdl.cli.render.base import Reporter
from mdl.cli.render.frame import Row, render_rows
from mdl.cli.render.rates import RateMeter
from mdl.cli.render.tally import Item, Tally
from mdl.redact import safe_text
from mdl.units import human_clock, human_size

if TYPE_CHECKING:
    from rich.console import Console as RichConsole
    from rich.console import ConsoleOptions, RenderResult

FLUSH = 0.1  # seconds between folding arrived bytes into the counts: rich redraws 10 times a second anyway


class RichReporter(Reporter):
    """Rows for the items in flight and the batch's total, redrawn by rich's Live from a snapshot of the counts."""

    def __init__(
        self,
        *,
        stream: TextIO,
        no_color: bool,
        clock: Callable[[], float],
        secrets: tuple[str, ...],
        console: RichConsole | None = None,
    ) -> None:
        super().__init__()
        # Imported here, not at module level: rich costs tens of ms, which `mdl --help` should not pay.
        from rich.console import Console as RichConsole
        from rich.live import Live

        # The caller chose rich because stderr is a terminal; forcing it keeps that decision in one place.
        self.console = console or RichConsole(file=stream, force_terminal=True, no_color=no_color, highlight=False)
        self._color = not no_color
        self._clock = clock
        self._secrets = secrets
        self._tally = Tally()
        self._pending: dict[str, int] = {}
        self._flushed = clock()
        self._rows: list[Row] = []
        self._live = Live(
            self.frame(),
            console=self.console,
            refresh_per_second=10,
            # Never redirect: rich would route the command's stdout (data, JSON) to the stderr console.
            redirect_stdout=False,
            redirect_stderr=False,
        )
        self._started = False
        self._closed = False

    def _ensure_live(self) -> None:
        """Start the live display on first use, so a run with nothing to show draws nothing."""
        if not self._started and not self._closed:
            self._live.start()
            self._started = True

    def begin(self, *, total_bytes: int | None, files: int) -> None:
        """Show (or reset) the total row for a new batch; an empty batch draws nothing."""
        if files <= 0:
            return
        with self._lock:
            self._flush(self._clock())
            self._tally.begin(total_bytes=total_bytes, files=files)
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
        """Add a row for the item (a retry of the same key replaces it); a resume says so above the bars."""
        now = self._clock()
        label = safe_text(label, secrets=self._secrets)
        with self._lock:
            self._flush(now)
            self._pending.pop(key, None)
            self._tally.start(key, Item(label, total, completed, completed, now, RateMeter(now), model, path))
            if completed:
                self._print(f"resuming {label} at {human_size(completed)} of {human_size(total)}")
            self._ensure_live()

    def waiting(self, key: str, message: str) -> None:
        """Show ``waiting (m:ss): message`` on the item's row until its bytes flow (the clock survives a cut)."""
        message, label = (safe_text(text, secrets=self._secrets) for text in (message, key))
        with self._lock:
            self._tally.wait(key, message, self._clock(), label=label)
            self._ensure_live()

    def advance(self, key: str, nbytes: int) -> None:
        """Count the bytes; fold them into the rows at most every ``FLUSH`` seconds (perf: 64 KiB chunks)."""
        with self._lock:
            self._transferred += nbytes
            self._pending[key] = self._pending.get(key, 0) + nbytes
            now = self._clock()
            if now - self._flushed >= FLUSH:
                self._flush(now)

    def _flush(self, now: float) -> None:
        """Fold what arrived since the last flush into the counts (callers hold the lock)."""
        self._flushed = now
        for key, nbytes in self._pending.items():
            self._tally.advance(key, nbytes, now)
        self._pending.clear()

    def finish(self, key: str, *, ok: bool, message: str = "") -> None:
        """Drop the item's row; a failure prints nothing here (the final report names each failed file once)."""
        with self._lock:
            self._flush(self._clock())
            self._tally.finish(key)

    def note(self, message: str) -> None:
        """Print ``message`` above the bars."""
        with self._lock:
            self._print(message)

    def _print(self, text: str) -> None:
        """A redacted, control-free line above the live display (markup off: file names may hold "[")."""
        text = safe_text(text, multiline=True, secrets=self._secrets)
        self.console.print(text, markup=False, highlight=False)

    def snapshot(self) -> list[Row]:
        """The rows as they stand now: the total first, then the items in the order they started."""
        with self._lock:
            now = self._clock()
            self._flush(now)
            tally = self._tally
            rows = []
            if tally.files:
                left = tally.seconds_left(now)
                rows.append(Row(tally.total_label(), tally.moved, tally.total, tally.rate(now), left, whole=True))
            for item in tally.items.values():
                waiting = None
                if item.waiting is not None:
                    waiting = f"waiting ({human_clock(now - item.waiting_since)}): {item.waiting}"
                left = item.seconds_left(now)
                rows.append(Row(item.label, item.completed, item.total, item.rate(now), left, waiting))
            self._rows = rows
            return rows

    def frame_rows(self) -> list[Row]:
        """A fresh snapshot when the counts are free, else the last one (never wait on a worker's lock)."""
        if self._lock.acquire(blocking=False):
            try:
                return self.snapshot()
            finally:
                self._lock.release()
        return self._rows

    def frame(self) -> _Frame:
        """The renderable the live display redraws (tests print it to a recording console of a chosen width)."""
        return _Frame(self)

    @property
    def color(self) -> bool:
        """Whether the bars may use colour."""
        return self._color

    def close(self) -> None:
        """Stop the live display, leaving its last frame on screen."""
        with self._lock:
            self._flush(self._clock())
            if self._started:
                self._live.stop()
            self._started, self._closed = False, True


class _Frame:
    """The live renderable: lays the rows out for the width rich offers at each redraw (a resized terminal)."""

    def __init__(self, reporter: RichReporter) -> None:
        self._reporter = reporter

    def __rich_console__(self, console: RichConsole, options: ConsoleOptions) -> RenderResult:
        yield from _lines(self._reporter, options.max_width)


def _lines(reporter: RichReporter, width: int) -> Iterator[Any]:
    rows = reporter.frame_rows()
    yield from render_rows(rows, width, color=reporter.color)


def make_rich(
    *, stream: TextIO, environ: Mapping[str, str], clock: Callable[[], float], secrets: tuple[str, ...]
) -> RichReporter:
    """The rich reporter for ``stream``, colourless under NO_COLOR."""
    from mdl.cli.render.console import no_color

    return RichReporter(stream=stream, no_color=no_color(environ), clock=clock, secrets=secrets)
