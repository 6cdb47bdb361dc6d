"""A ready progress display for the Python API, opt-in: rich's bars (a row per file in flight and
the total) in a notebook or on a terminal, fed by the core's events (``mdl.progress.Progress``). The
one module outside the CLI that draws: only when a caller makes one (rich, a dependency, loads
then)."""

from __future__ import annotations

import threading
import time
from contextlib import AbstractContextManager
from types import TracebackType
from typing import TYPE_CHECKING, Any

from mdl.progress import Event, Progress

if TYPE_CHECKING:
    from rich.progress import TaskID

TOTAL = ""  # the key of the run's total row (a run-wide wait is said there too)
REDRAW_SECONDS = 0.1  # at most this often for bytes alone; any other event redraws at once


class ProgressBars(Progress, AbstractContextManager["ProgressBars"]):
    """Bars for ``progress=``: ``with mdl.ProgressBars() as bars: mdl.fetch("o/m",
    progress=bars)``. Drawn on ``console`` (a ``rich.console.Console``; default: stderr, which
    Jupyter shows live), from the calls' threads (thread-safe), without a thread of its own; closed
    (the last frame kept, or cleared with ``transient=True``) by ``close()`` or the ``with``."""

    def __init__(self, *, console: Any = None, transient: bool = False) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )
        from rich.progress import Progress as Bars

        self._bars = Bars(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(binary_units=True),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=console if console is not None else Console(stderr=True),
            auto_refresh=False,
            transient=transient,
        )
        self._lock = threading.Lock()
        self._rows: dict[str, tuple[TaskID, str]] = {}  # by key: the row and its label
        self._drawn = 0.0
        self._live = False

    def emit(self, event: Event) -> None:
        with self._lock:
            if not self._live:
                self._bars.start()
                self._live = True
            getattr(self, f"_on_{event.kind}")(event)  # (each kind of Event has its method)
            now = time.monotonic()
            if event.kind != "advance" or now - self._drawn >= REDRAW_SECONDS:
                self._drawn = now
                self._bars.refresh()

    def _on_begin(self, event: Event) -> None:
        self._row(TOTAL, "total", event.total, 0)

    def _on_start(self, event: Event) -> None:
        self._row(event.key, event.label or event.key, event.total, event.completed)

    def _on_advance(self, event: Event) -> None:
        for one in dict.fromkeys((event.key, TOTAL)):  # the item's row and the total's
            if one in self._rows:
                self._bars.advance(self._rows[one][0], event.nbytes)

    def _on_finish(self, event: Event) -> None:
        if event.key != TOTAL and event.key in self._rows:
            self._bars.remove_task(self._rows.pop(event.key)[0])

    def _on_waiting(self, event: Event) -> None:
        if (row := self._rows.get(event.key)) is not None:  # (a run-wide wait: the key TOTAL)
            self._bars.update(row[0], description=f"{row[1]} ({event.message})")

    def _on_note(self, event: Event) -> None:
        self._bars.console.print(event.message, markup=False, highlight=False)

    def _row(self, key: str, label: str, total: int | None, completed: int) -> None:
        """Item ``key``'s row, made or started again (a retry), with its label and sizes."""
        if key in self._rows:
            self._bars.update(self._rows[key][0], total=total, completed=completed)
            self._bars.update(self._rows[key][0], description=label)
        else:
            task = self._bars.add_task(label, total=total, completed=completed)
            self._rows[key] = (task, label)

    def close(self) -> None:
        """Stop drawing (the last frame stays unless ``transient``); a later event starts again."""
        with self._lock:
            if self._live:
                self._bars.refresh()
                self._bars.stop()
                self._live = False

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
