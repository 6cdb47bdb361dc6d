"""A token bucket shared by every stream, for ``--limit-rate``."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class RateLimiter:
    """A shared token bucket capping total throughput across every stream (``--limit-rate``)."""

    def __init__(self, rate: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self._clock = clock
        self._lock = threading.Lock()
        self._next_free = clock()

    def consume(self, nbytes: int, cancel: threading.Event) -> None:
        """Account for ``nbytes`` and wait until the bucket allows them."""
        with self._lock:
            now = self._clock()
            # Allow a burst of at most a quarter second so an idle period does not bank unlimited credit.
            start = max(now - 0.25, self._next_free)
            self._next_free = start + nbytes / self.rate
            delay = self._next_free - now
        if delay > 0:
            cancel.wait(delay)
