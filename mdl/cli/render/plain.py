"""Plain progress lines for cron, CI and pipes: stamped in UTC, one event a line, never a control character."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TextIO

from mdl.cli.render.base import Reporter
from mdl.cli.render.rates import RateMeter
from mdl.cli.render.tally import Item, Tally
from mdl.redact import safe_text
from mdl.units import human_duration, human_rate, human_size


class PlainReporter(Reporter):
    """Timestamped lines: start (or resuming), at most one progress line per interval per file, done."""

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
        self._tally = Tally()

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
            self._tally.begin(total_bytes=total_bytes, files=files)
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
        """``start label (size)``, or ``resuming label at 600 MiB of 1.60 GiB`` when bytes are kept."""
        now = self._clock()
        label = safe_text(label, secrets=self._secrets)
        item = Item(label, total, completed, completed, now, RateMeter(now), model, path)
        item.shown["line"] = now
        with self._lock:
            self._tally.start(key, item)
            if completed:
                self._write(f"resuming {label} at {human_size(completed)} of {human_size(total)}")
            else:
                self._write(f"start {label} ({'size unknown' if total is None else human_size(total)})")

    def waiting(self, key: str, message: str) -> None:
        """Write what the item waits for, once per message."""
        label = safe_text(key, secrets=self._secrets)
        with self._lock:
            item, news = self._tally.wait(key, message, self._clock(), label=label)
            if news:
                self._write(f"{item.label} waiting: {message}")

    def advance(self, key: str, nbytes: int) -> None:
        """Count the bytes; write a progress line when this item's interval has passed."""
        with self._lock:
            self._transferred += nbytes
            now = self._clock()
            item = self._tally.advance(key, nbytes, now)
            if item is None:
                return
            # A complete item gets its done line next; a "100%" line just before it would be noise.
            if now - item.shown["line"] < self._interval or (item.total is not None and item.completed >= item.total):
                return
            item.shown["line"] = now
            self._write(_progress_text(item, item.rate(now)))

    def finish(self, key: str, *, ok: bool, message: str = "") -> None:
        """Write the done line (size, time, average speed); a failure is left to the final report."""
        now = self._clock()
        with self._lock:
            item = self._tally.finish(key)
            if not ok:
                return
            label = item.label if item is not None else safe_text(key, secrets=self._secrets)
            text = f"done {label}"
            if item is not None:
                elapsed = now - item.started
                text += f" {human_size(item.completed)} in {human_duration(elapsed)}"
                if elapsed > 0 and item.completed > item.initial:
                    text += f" ({human_rate((item.completed - item.initial) / elapsed)})"
            self._write(f"{text}: {safe_text(message, secrets=self._secrets)}" if message else text)

    def note(self, message: str) -> None:
        """Write ``message`` as a stamped line."""
        with self._lock:
            self._write(message)


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
