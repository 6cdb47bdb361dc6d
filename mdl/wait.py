"""A wait as one value: till when it may last (a deadline on its clock, monotonic unless a test
gives its own) and who can stop it (the run's cancel: Ctrl-C, ``mdl serve``'s stop). Handed
down whole instead of a deadline, a timeout and an event apiece; a part of it is a ``child``,
never longer than its parent; a test moves its clock by hand (tests/clocks.py)."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from typing import Final


class Wait:
    """Till ``deadline`` (by ``clock``; ``math.inf``: till cancelled), or till ``cancel`` is set (a
    new event when none is given); ``seconds``: how long it was given (said when it ran out). Its
    fields are final (mypy holds them); a plain class: a frozen dataclass's generated methods were
    compiled at every start (~3 M instructions)."""

    __slots__ = ("cancel", "clock", "deadline", "seconds")

    def __init__(
        self,
        deadline: float = math.inf,
        cancel: threading.Event | None = None,
        clock: Callable[[], float] = time.monotonic,
        seconds: float = math.inf,
    ) -> None:
        self.deadline: Final = deadline
        self.cancel: Final = threading.Event() if cancel is None else cancel
        self.clock: Final = clock
        self.seconds: Final = seconds

    @classmethod
    def within(
        cls,
        seconds: float,
        cancel: threading.Event | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> Wait:
        """A wait of ``seconds`` from now."""
        return cls(clock() + seconds, cancel or threading.Event(), clock, seconds)

    def left(self) -> float:
        """Seconds till the deadline (0 once past)."""
        return max(0.0, self.deadline - self.clock())

    @property
    def over(self) -> bool:
        """Cancelled, or out of time."""
        return self.cancel.is_set() or self.clock() >= self.deadline

    def child(self, seconds: float) -> Wait:
        """A wait of ``seconds`` at most inside this one (its deadline, if sooner; its cancel)."""
        return Wait(min(self.deadline, self.clock() + seconds), self.cancel, self.clock, seconds)

    def pause(
        self, seconds: float, on: threading.Event | threading.Condition | None = None
    ) -> bool:
        """Wait ``seconds`` at most, never past the deadline, on ``on`` (an event, or a condition
        whose lock the caller holds: told early) or else on the cancel; False at once, without
        waiting, when the wait is over (cancelled or out of time): the caller looks again at
        what it waits for after a pause, and gives up when one is refused."""
        if self.over:
            return False
        (on or self.cancel).wait(min(seconds, self.left()))
        return True
