"""The one retry loop: exponential backoff with full jitter, Retry-After honoured, a budget per operation."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from mdl.errors import InterruptedByUserError, NetworkError
from mdl.transfer.http import UNREACHABLE_RETRIES, RetryableError, UnreachableError

log = logging.getLogger("mdl.http")
T = TypeVar("T")


def seconds(value: float) -> str:
    return f"{value:.0f} s" if value >= 10 or value == int(value) else f"{value:.1f} s"


def retry_cause(message: str, label: str) -> str:
    return message.removeprefix(f"{label}: ")


@dataclass(frozen=True)
class RetryPolicy:
    retries: int = 5
    base: float = 0.5
    cap: float = 30.0
    retry_after_cap: float = 120.0
    sleep: Callable[[float], None] = time.sleep
    rng: Callable[[], float] = random.random

    def delay(self, attempt: int, *, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.retry_after_cap)
        return float(self.rng() * min(self.cap, self.base * (2.0 ** (attempt - 1))))

    def run(
        self,
        call: Callable[[], T],
        *,
        what: str,
        wait: Callable[[float], bool] | None = None,
        on_retry: Callable[[str], None] | None = None,
        announce: Callable[[int, str], None] | None = None,
    ) -> T:
        """``call()``, retrying RetryableErrors with backoff; an unreachable host gets at most one retry."""
        tries = Tries(self, what, wait=wait, on_retry=on_retry, announce=announce)
        while True:
            try:
                return call()
            except RetryableError as exc:
                tries.failed(exc)


@dataclass
class Tries:
    """One operation's retry budget; ``wait(seconds)`` is True on Ctrl-C; with ``quick_unreachable`` a host that
    never answers gets one retry."""

    policy: RetryPolicy
    what: str
    wait: Callable[[float], bool] | None = None
    on_retry: Callable[[str], None] | None = None
    announce: Callable[[int, str], None] | None = None
    quick_unreachable: bool = True
    failures: int = 0

    def progressed(self) -> None:
        self.failures = 0

    def failed(self, exc: RetryableError, *, cause: str | None = None) -> None:
        """Count a failed try and wait; NetworkError once the budget is spent. ``cause``: the words for people."""
        self.failures += 1
        limit = self.policy.retries
        if self.quick_unreachable and isinstance(exc, UnreachableError):
            limit = min(limit, UNREACHABLE_RETRIES)
        if self.failures > limit:
            raise NetworkError(f"{exc.message} (gave up after {self.failures} tries)", hint=exc.hint) from exc
        delay = self.policy.delay(self.failures, retry_after=exc.retry_after)
        said = retry_cause(exc.message, self.what)
        log.info("%s: %s; retry %d in %.1fs", self.what, said, self.failures, delay)
        if self.on_retry is not None:
            self.on_retry(said)
        if self.announce is not None:
            self.announce(self.failures, f"{cause or said}, retrying in {seconds(delay)} ({self.failures}/{limit})")
        if self.wait is None:
            self.policy.sleep(delay)
        elif self.wait(delay):
            raise InterruptedByUserError(f"{self.what}: interrupted") from exc
