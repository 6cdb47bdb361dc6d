"""``--progress json``: one JSON event per line on stderr, for wrappers and dashboards."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, TextIO

from mdl.cli.render.base import Reporter
from mdl.cli.render.rates import RateMeter
from mdl.cli.render.stream import EventStream
from mdl.cli.render.tally import Item, Tally
from mdl.report import FileOutcome

PROGRESS_EVERY = 1.0  # seconds: at most one progress event per file this often


class JsonReporter(Reporter):
    """Events ``start``, ``progress``, ``waiting``, ``note``, ``finish``, ``error``, each a line, written through
    the run's one :class:`EventStream` (which says ``begin`` first and ``end`` last)."""

    def __init__(
        self,
        *,
        stream: TextIO,
        clock: Callable[[], float],
        wallclock: Callable[[], datetime],
        secrets: tuple[str, ...],
        interval: float = PROGRESS_EVERY,
        events: EventStream | None = None,
    ) -> None:
        super().__init__()
        self._events = events or EventStream(stream, secrets=secrets, wallclock=wallclock)
        self._clock = clock
        self._interval = interval
        self._tally = Tally()

    def _emit(self, event: str, item: Item | None = None, /, **fields: Any) -> None:
        """Write one event naming ``item`` (callers hold the lock); the stream makes every string safe."""
        if item is not None:
            fields = {"model": item.model, "path": item.path, "label": item.label, **fields}
        self._events.emit(event, **fields)

    def begin(self, *, total_bytes: int | None, files: int) -> None:
        """``begin`` with how many files and bytes the run holds (a later batch: ``plan``)."""
        with self._lock:
            self._tally.begin(total_bytes=total_bytes, files=files)
            self._events.begin(files=files, total=total_bytes)

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
        """``start``: the file's size and the bytes already present (a resume)."""
        now = self._clock()
        item = Item(label, total, completed, completed, now, RateMeter(now), model, path)
        item.shown["event"] = now
        with self._lock:
            self._tally.start(key, item)
            self._emit("start", item, total=total, completed=completed)

    def waiting(self, key: str, message: str) -> None:
        """``waiting``: what the file waits for (another run's lock)."""
        with self._lock:
            item, news = self._tally.wait(key, message, self._clock(), label=key)
            if news:
                self._emit("waiting", item, message=message)

    def advance(self, key: str, nbytes: int) -> None:
        """``progress`` at most once a second per file: bytes so far, size, smoothed rate (bytes/s)."""
        with self._lock:
            self._transferred += nbytes
            now = self._clock()
            item = self._tally.advance(key, nbytes, now)
            if item is None or now - item.shown["event"] < self._interval:
                return
            item.shown["event"] = now
            rate = item.rate(now)
            shown = None if rate is None else round(rate)
            self._emit("progress", item, bytes=item.completed, total=item.total, rate=shown)

    def finish(self, key: str, *, ok: bool, message: str = "") -> None:
        """``finish`` (bytes, seconds) or ``error`` (message) for the file."""
        now = self._clock()
        with self._lock:
            item = self._tally.finish(key) or Item(key, None, 0, 0, now, RateMeter(now))
            if ok:
                self._emit("finish", item, bytes=item.completed, seconds=round(now - item.started, 3))
            else:
                model = item.model or None
                self._events.error(message or "failed", model=model, path=item.path, label=item.label)

    def unreached(self, outcomes: Sequence[FileOutcome]) -> None:
        """An ``error`` event for each failed file or model no ``error`` event named yet (it failed before a byte)."""
        with self._lock:
            for outcome in outcomes:
                key = (outcome.model or None, outcome.path)
                if outcome.action != "failed" or key in self._events.errors:
                    continue
                label = "/".join(part for part in key if part)
                self._events.error(outcome.error or "failed", hint=outcome.hint, model=key[0], path=key[1], label=label)

    def note(self, message: str) -> None:
        """``note``: an informational message (a stall being recovered, a mirror skipped)."""
        with self._lock:
            self._events.note(message)
