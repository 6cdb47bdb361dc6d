"""The order a loader reads a model in, for a pull that serves while it fetches: files in natural
order (shard 2 before shard 10), as many at once as a pull fetches, and a file a loader waits on
taken next."""

from __future__ import annotations

import re
import threading

from mdl.transfer.ranges import Releases

_DIGITS = re.compile(r"(\d+)")


def natural_key(model: str, path: str) -> tuple[tuple[int, str, int], ...]:
    """``model-2-of-10`` before ``model-10-of-10``: the order loaders read shards in."""
    pieces = _DIGITS.split(f"{model}/{path}")
    return tuple((i % 2, piece if i % 2 == 0 else "", int(piece) if i % 2 else 0)
                 for i, piece in enumerate(pieces))  # fmt: skip


class Demand:
    """The files loaders are waiting on, oldest first: the fetch takes them before the rest."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._wanted: dict[tuple[str, str], None] = {}
        # set once the pull knows each model's files (their records expect them), or gave up
        # before: a loader's listing waits for it, never lists a model half-resolved
        self.planned = threading.Event()
        # the range checks of the pull's fetches: the endpoint reads verified ranges through them
        self.releases = Releases()

    def want(self, model: str, path: str) -> None:
        """A loader waits on ``model``'s ``path``: fetch it next, if it is still to start."""
        with self._lock:
            self._wanted.setdefault((model, path), None)

    def wanted(self) -> list[tuple[str, str]]:
        with self._lock:
            return list(self._wanted)

    def started(self, model: str, path: str) -> None:
        """The file is being fetched (or done): nothing to move any more."""
        with self._lock:
            self._wanted.pop((model, path), None)
