"""What every display counts: items in flight, their bytes and smoothed rates, and the batch's time left."""

from __future__ import annotations

from dataclasses import dataclass, field

from mdl.cli.render.rates import RateMeter, seconds_left, total_seconds_left


@dataclass
class Item:
    """One item in flight (a file being fetched, hashed or written)."""

    label: str
    total: int | None
    completed: int
    initial: int  # bytes present before this run (a resume): not part of the speed
    started: float
    meter: RateMeter
    model: str | None = None
    path: str | None = None
    waiting: str | None = None  # what it waits for (another run's lock), until bytes arrive
    waiting_since: float = 0.0
    shown: dict[str, float] = field(default_factory=dict)  # reporter bookkeeping: when it last wrote a line

    def rate(self, now: float) -> float | None:
        """This item's smoothed rate."""
        return self.meter.rate(now)

    def seconds_left(self, now: float) -> float | None:
        """This item's own time left, from its own smoothed rate."""
        if self.total is None or self.waiting is not None:
            return None
        return seconds_left(self.total - self.completed, self.rate(now))


class Tally:
    """Counts for one display; not thread-safe (the reporter holds its lock around every call)."""

    def __init__(self) -> None:
        self.items: dict[str, Item] = {}
        self.files = 0  # items in the current batch
        self.done = 0  # items of the batch finished (ok or not)
        self.total: int | None = None  # bytes the batch has to move
        self.moved = 0  # bytes moved since the batch began
        self.meter: RateMeter | None = None  # all bytes, all items

    def begin(self, *, total_bytes: int | None, files: int) -> None:
        """A new batch: counts start again."""
        self.files, self.done, self.total, self.moved = files, 0, total_bytes, 0

    def start(self, key: str, item: Item) -> Item | None:
        """Track ``item`` (replacing a retry of the same key); returns the replaced one."""
        if self.meter is None:
            self.meter = RateMeter(item.started)
        old = self.items.pop(key, None)
        self.items[key] = item
        return old

    def wait(self, key: str, message: str, now: float, *, label: str) -> tuple[Item, bool]:
        """Mark ``key`` as waiting for ``message``; True if that is news. A key not started yet gets a row
        (labelled ``label``) until it starts: a lock is taken before the first byte."""
        item = self.items.get(key)
        if item is None:
            item = self.items[key] = Item(label, None, 0, 0, now, RateMeter(now))
        if item.waiting == message:
            return item, False
        item.waiting, item.waiting_since = message, now
        return item, True

    def advance(self, key: str, nbytes: int, now: float) -> Item | None:
        """Count ``nbytes`` for ``key`` and the batch; returns the item (None if unknown)."""
        self.moved += nbytes
        if self.meter is not None:
            self.meter.add(nbytes, now)
        item = self.items.get(key)
        if item is None:
            return None
        if item.waiting is not None and nbytes > 0:  # the wait is over: measure from now
            item.waiting, item.meter = None, RateMeter(now)
        item.completed += nbytes
        item.meter.add(nbytes, now)
        return item

    def finish(self, key: str) -> Item | None:
        """Stop tracking ``key``; returns its item."""
        self.done += 1
        return self.items.pop(key, None)

    def rate(self, now: float) -> float | None:
        """The smoothed rate of everything."""
        return None if self.meter is None else self.meter.rate(now)

    def seconds_left(self, now: float) -> float | None:
        """The batch's time left: remaining bytes over the aggregate rate, never less than the slowest item's."""
        remaining = None if self.total is None else self.total - self.moved
        if remaining is None and any(item.total is None for item in self.items.values()):
            return None  # a file of unknown size still streams: the slowest known file only bounds the end
        files = [item.seconds_left(now) for item in self.items.values()]
        return total_seconds_left(remaining, self.rate(now), files)

    def total_label(self) -> str:
        """``total 4/6 files``: never cut on screen."""
        return f"total {self.done}/{self.files} file{'s' if self.files != 1 else ''}"
