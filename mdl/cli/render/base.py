"""The reporter every display builds on: the progress protocol, thread-safe, discarding everything (-q)."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from types import TracebackType
from typing import Self

from mdl.report import FileOutcome


class Reporter:
    """A thread-safe :class:`mdl.progress.Progress` with ``close()``; this base discards everything (-q)."""

    def __init__(self) -> None:
        # Re-entrant: the rich display redraws from inside console.print, which runs under this lock.
        self._lock = threading.RLock()
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
        """Item ``key`` is done, or failed with ``message`` (the final report names failures, not the display)."""

    def note(self, message: str) -> None:
        """An informational line for the user."""

    def unreached(self, outcomes: Sequence[FileOutcome]) -> None:
        """The run's outcomes, once it ended: files (or whole models) that failed before any transfer began (not
        found, refused) never reached the display. People read them in the final report; ``--progress json`` says
        each with an ``error`` event, as it does for a transfer that failed."""

    def close(self) -> None:
        """Stop the display; safe to call more than once."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
