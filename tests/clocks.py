"""Clocks for tests: a monotonic clock the test moves by hand, and a fixed wall clock. (How work
grows with its size is counted, never timed: tests/xet/test_protocol.py, test_hostile_xet.py.)"""

from __future__ import annotations

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
