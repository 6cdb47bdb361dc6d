"""Background work, one way: a daemon thread beside the caller's work, with one stop rule.

The rule: the work is handed the stop event and returns soon after it is set (it waits on the
event, never sleeps, and bounds each outside call by its own timeouts); ``stop`` sets the event
and joins for at most ``join`` seconds. Past that the daemon is left to end on its own: a call it
is in ends within its client's timeouts, and the caller never waits on it without a deadline.
A failure the work does not handle is logged in one line (its traceback at debug level), never
lost and never a traceback on the terminal.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Self

log = logging.getLogger(__name__)

JOIN = 5.0  # seconds ``stop`` waits for the work to return


class Background:
    """``work(stop)`` run on a daemon thread named ``name`` between ``start`` and ``stop`` (or as
    a context). ``stop`` may be shared (one event ends several helpers); its own otherwise.
    ``join``: None when the caller's next step needs the work's end (it is bounded by its own
    size, as hashing a file's tail is): ``stop`` then waits for it (Ctrl-C still heard)."""

    def __init__(
        self,
        name: str,
        work: Callable[[threading.Event], None],
        *,
        stop: threading.Event | None = None,
        join: float | None = JOIN,
    ) -> None:
        self.name = name
        self.stopping = threading.Event() if stop is None else stop
        self._work = work
        self._join = join
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def _run(self) -> None:
        try:
            self._work(self.stopping)
        except Exception as exc:  # a helper's failure is said; the caller goes on
            log.warning("background work %s failed: %s", self.name, exc)
            log.debug("background work %s failed", self.name, exc_info=True)

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Tell the work to stop; wait for it at most ``join`` seconds (not at all from itself)."""
        self.stopping.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(self._join)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def every(seconds: float, do: Callable[[], object]) -> Callable[[threading.Event], None]:
    """Work for ``Background`` that calls ``do`` every ``seconds`` until stopped."""

    def work(stop: threading.Event) -> None:
        while not stop.wait(seconds):
            do()

    return work
