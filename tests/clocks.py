"""Clocks for tests: a monotonic clock the test moves by hand, a fixed wall clock, and how work
grows with its size (a complexity check that holds on a fast or a busy machine alike: both sizes are
timed side by side)."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def wallclock() -> datetime:
    """Always 2026-11-22 08:03:39 UTC."""
    return datetime(2026, 11, 22, 8, 3, 39, tzinfo=UTC)


def growth(work: Callable[[int], object], small: int, large: int, *, repeats: int = 3) -> float:
    """How many times longer ``work(large)`` takes than ``work(small)``: the least of ``repeats``
    runs of each, taken in turns (the least is what the work costs; load only ever adds to it).
    Linear work grows by ``large / small``, quadratic work by its square, however fast the machine.
    """
    best = {small: float("inf"), large: float("inf")}
    for _ in range(repeats):
        for size in (small, large):
            started = time.perf_counter()
            work(size)
            best[size] = min(best[size], time.perf_counter() - started)
    return best[large] / max(best[small], 1e-9)
