"""Smoothed transfer rates and the times left that follow from them (the one rule every display uses)."""

from __future__ import annotations

import math
from collections.abc import Iterable

WINDOW = 5.0  # seconds: the rate follows what the link does now, not the average since the start
_NEVER = 100 * 3600.0  # seconds: a time left beyond 100 hours is a stall, not an estimate
_FOLD = 0.05  # seconds: bytes are folded in at most this often, so a 64 KiB chunk costs no math.exp


class RateMeter:
    """An exponentially weighted rate over ~``WINDOW`` seconds, fed with byte counts and the time they arrived.

    Bytes and elapsed time are weighted alike (rate = weighted bytes / weighted time), so the first seconds
    read as the plain average rather than a value still climbing from zero, and a stalled stream decays to 0.
    Time counts from the first bytes: the wait for them (Hub call, redirect, connect) is latency, not speed.
    Not thread-safe: the reporters call it under their own lock.
    """

    def __init__(self, now: float, *, window: float = WINDOW) -> None:
        self._window = window
        self._last = now
        self._bytes = 0.0  # weighted bytes
        self._time = 0.0  # weighted seconds
        self._pending = 0
        self._flowing = False  # no byte yet: the time until the first one (request, redirect, connect) is not speed

    def add(self, nbytes: int, now: float) -> None:
        """Count ``nbytes`` arriving at ``now``; bytes thrown away (negative counts) did cross the link."""
        if not self._flowing:
            if nbytes <= 0:
                return
            # The clock starts at the first bytes; they are left out, as they came over an unknown part of the wait.
            self._flowing, self._last = True, now
            return
        if nbytes > 0:
            self._pending += nbytes
        if now - self._last >= _FOLD:
            self._fold(now)

    def _fold(self, now: float) -> None:
        """Decay what was seen so far by the time passed, then add what arrived since."""
        elapsed = now - self._last
        if elapsed <= 0:  # bytes counted at the instant of the last fold: no interval to spread them over
            self._bytes += self._pending
            self._pending = 0
            return
        decay = math.exp(-elapsed / self._window)
        weight = self._window * (1 - decay)  # the weighted length of the interval the bytes arrived over
        # The bytes are spread over that interval, as the time is: a steady rate reads exactly as itself.
        self._bytes = self._bytes * decay + self._pending * weight / elapsed
        self._time = self._time * decay + weight
        self._pending = 0
        self._last = now

    def rate(self, now: float) -> float | None:
        """Bytes per second around ``now``; None before a fifth of a second has been seen (too noisy to show)."""
        if not self._flowing:
            return None
        self._fold(now)
        if self._time < 0.2:
            return None
        return max(self._bytes / self._time, 0.0)


def seconds_left(remaining: int | None, rate: float | None) -> float | None:
    """``remaining`` bytes at ``rate``; None when either is unknown or nothing moves."""
    if remaining is None or rate is None or rate <= 0:
        return None
    left = max(remaining, 0) / rate
    return left if left < _NEVER else None


def total_seconds_left(remaining: int | None, rate: float | None, files: Iterable[float | None]) -> float | None:
    """The batch's time left: its remaining bytes over the aggregate rate, never less than the slowest file's.

    Files that finished early still weigh in a smoothed aggregate for a few seconds; the floor keeps the total
    from promising less than the throttled big file it waits for (issue 12: "total 0:24 while the file shows
    1:47"). Files whose own time is unknown (not started, stalled) do not lower or raise the floor.
    """
    total = seconds_left(remaining, rate)
    slowest = max((s for s in files if s is not None), default=None)
    if total is None:
        return slowest
    return total if slowest is None else max(total, slowest)
