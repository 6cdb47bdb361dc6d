"""The shared token bucket behind ``--limit-rate``, on a fake clock."""

from __future__ import annotations

import threading

import pytest

from mdl.transfer.scheduling import RateLimiter


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class FakeEvent(threading.Event):
    def __init__(self, clock: FakeClock) -> None:
        super().__init__()
        self.clock = clock
        self.waits: list[float] = []

    def wait(self, timeout: float | None = None) -> bool:
        assert timeout is not None
        self.waits.append(timeout)
        self.clock.now += timeout
        return False


@pytest.mark.slow
def test_rate_limiter_token_bucket_with_a_fake_clock() -> None:
    clock = FakeClock()
    event = FakeEvent(clock)
    limiter = RateLimiter(1000, clock=clock)
    limiter.consume(250, event)
    limiter.consume(1000, event)
    # paced at 1000 B/s from the start
    assert event.waits == [pytest.approx(0.25), pytest.approx(1.0)]
    clock.now += 60  # a long idle period banks at most a quarter second of credit
    limiter.consume(500, event)
    limiter.consume(250, event)
    assert event.waits[2:] == [pytest.approx(0.25), pytest.approx(0.25)]
