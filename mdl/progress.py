"""The progress protocol the core reports through; the CLI's ui module implements it."""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    """Receives progress from the core. Implementations must be thread-safe: streams report concurrently."""

    def begin(self, *, total_bytes: int | None, files: int) -> None:
        """A batch starts: the bytes still to transfer (None if unknown) over ``files`` files."""

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
        """One item (a file) starts; ``completed`` bytes are already present (a resume).

        ``model`` and ``path`` name it for programs (``--progress json``); ``label`` is what people read.
        """

    def waiting(self, key: str, message: str) -> None:
        """Item ``key`` waits for something other than bytes (another run's lock): say so on its bar."""

    def advance(self, key: str, nbytes: int) -> None:
        """``nbytes`` more bytes of item ``key`` arrived (or were processed)."""

    def finish(self, key: str, *, ok: bool, message: str = "") -> None:
        """Item ``key`` is done (or failed with ``message``)."""

    def note(self, message: str) -> None:
        """An informational line for the user (for example: waiting for a lock held by another run)."""


class NullProgress:
    """A progress sink that discards everything (for ``-q`` and for library callers)."""

    def begin(self, *, total_bytes: int | None, files: int) -> None:
        """Ignore."""

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
        """Ignore."""

    def waiting(self, key: str, message: str) -> None:
        """Ignore."""

    def advance(self, key: str, nbytes: int) -> None:
        """Ignore."""

    def finish(self, key: str, *, ok: bool, message: str = "") -> None:
        """Ignore."""

    def note(self, message: str) -> None:
        """Ignore."""
