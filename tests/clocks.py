"""Clocks for tests: a monotonic clock the test moves by hand, a fixed wall clock, and the work a
call does counted in lines run (how work grows with its size is counted, never timed: a busy or
slow machine changes nothing)."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from types import FrameType, ModuleType
from typing import Any

from mdl.transfer.scheduling import RateLimiter
from mdl.wait import Wait


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        """A wait that moves the clock, not the test (the retries' waits, RetryPolicy.virtual)."""
        self.now += seconds


class Unwaited(threading.Event):
    """A cancel never set whose waits end at once, unset: a ``Wait`` on a ``FakeClock`` with it
    pauses between looks without real time (the test moves the clock, not the pauses)."""

    def wait(self, timeout: float | None = None) -> bool:
        return self.is_set()


class VirtualWaits:
    """A follower's waits on a lease (``mdl.buckets.lease.wait_for``) on a clock of the test's: each
    pause between two looks moves it by ``pause`` seconds and takes no real time, and reading the
    parts published takes none of it, however busy the machine. ``wait_for`` wraps the real one
    (``mdl.download._fill.wait_for``): its bound counts from the wait's start on this clock."""

    def __init__(self, pause: float) -> None:
        self.pause = pause
        self.now = 0.0
        self.pauses = 0

    def clock(self) -> float:
        return self.now

    def poll(self, attempt: int) -> float:
        self.now += self.pause
        self.pauses += 1
        return 0.0

    def wrap(self, wait_for: Callable[..., Any]) -> Callable[..., Any]:
        def waiting(*args: Any, began: float | None = None, **kwargs: Any) -> Any:
            given = kwargs.pop("wait")
            wait = Wait(given.deadline, given.cancel, self.clock, given.seconds)
            return wait_for(*args, wait=wait, poll=self.poll, **kwargs)

        return waiting


class PacedClock:
    """A clock that only a wait moves: a wait of ``t`` seconds, begun at the time its thread last
    read, moves it to that time plus ``t`` (never back). Waits of several threads at once overlap,
    as they do in real time: the clock ends at the latest one's end, however slow the machine.
    ``pacing(limiter)`` is a ``RateLimiter`` whose waits are these (its pacing is the proof)."""

    def __init__(self) -> None:
        self.now = 0.0
        self._lock = threading.Lock()
        self._read = threading.local()

    def __call__(self) -> float:
        with self._lock:
            self._read.at = self.now
            return self.now

    def wait(self, seconds: float, cancel: threading.Event) -> bool:
        with self._lock:
            self.now = max(self.now, self._read.at + seconds)
        return cancel.is_set()

    def pacing(self, rate: int) -> RateLimiter:
        clock = self

        class Waits(threading.Event):
            def __init__(self, cancel: threading.Event) -> None:
                super().__init__()
                self.cancel = cancel

            def wait(self, timeout: float | None = None) -> bool:
                return clock.wait(timeout or 0.0, self.cancel)

        class Paced(RateLimiter):
            def consume(self, nbytes: int, cancel: threading.Event) -> None:
                super().consume(nbytes, Waits(cancel))

        return Paced(rate, clock=self)


def wallclock() -> datetime:
    """Always 2026-11-22 08:03:39 UTC."""
    return datetime(2026, 11, 22, 8, 3, 39, tzinfo=UTC)


def lines_run(work: Callable[[], object], module: ModuleType) -> int:
    """How many lines of ``module`` ``work`` runs: its cost in steps, whatever the machine's speed
    or load."""
    lines = 0

    def local(frame: FrameType, event: str, arg: object) -> object:
        nonlocal lines
        lines += event == "line"
        return local

    def called(frame: FrameType, event: str, arg: object) -> object:
        return local if frame.f_code.co_filename == module.__file__ else None

    before = sys.gettrace()
    sys.settrace(called)
    try:
        work()
    finally:
        sys.settrace(before)
    return lines
