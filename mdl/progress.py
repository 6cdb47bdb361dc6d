"""The progress protocol the core reports through; the CLI's displays (mdl/cli/render/) implement it."""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    """Receives progress from the core. Implementations must be thread-safe: streams report concurrently.

    The CLI's displays: rich bars on a terminal, stamped plain lines off it, JSON events (``--progress json``).
    """

    def begin(self, *, total_bytes: int | None, files: int) -> None:
        """A batch starts: the bytes still to transfer (None if unknown) over ``files`` files.

        The total's time left is these bytes minus those advanced, over the smoothed rate of all items.
        """

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
        """One item (a file) starts; ``completed`` bytes are already present (a resume, said as
        ``resuming <label> at 600 MiB of 1.60 GiB``). Starting a key again (a retry) replaces its row.

        ``model`` and ``path`` name it for programs (``--progress json``); ``label`` is what people read.
        """

    def waiting(self, key: str, message: str) -> None:
        """Item ``key`` (already started) waits for something other than bytes (another run's lock).

        Rich shows ``waiting (m:ss): <message>`` on its row until bytes arrive; plain lines write it once.
        """

    def advance(self, key: str, nbytes: int) -> None:
        """``nbytes`` more bytes of item ``key`` arrived (or were processed); negative for bytes thrown away."""

    def finish(self, key: str, *, ok: bool, message: str = "") -> None:
        """Item ``key`` is done (or failed with ``message``).

        A failure draws nothing for people (the command's final report names each failed file once);
        ``--progress json`` emits an ``error`` event.
        """

    def note(self, message: str) -> None:
        """An informational line for the user (for example: "no bytes for 30 s, reconnecting (1/20)")."""


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
