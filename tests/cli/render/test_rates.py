"""Smoothed rates and times left, on an injected clock: the total never promises less than its
slowest file.
"""

from __future__ import annotations

import pytest

from mdl.cli.render.progress import SETTLED, RateMeter, Tally, seconds_left, total_seconds_left
from mdl.progress import Event

MiB = 1024**2
GiB = 1024**3


def test_meter_reads_the_average_at_first_then_follows_the_link() -> None:
    meter = RateMeter(0.0)
    assert meter.rate(0.0) is None  # nothing seen yet: no number rather than a wild one
    for step in range(1, 21):  # 2 s at 10 MiB/s
        meter.add(MiB, step * 0.1)
    assert meter.rate(2.0) == pytest.approx(10 * MiB, rel=0.05)
    for step in range(1, 301):  # then 30 s at 1 MiB/s: the early burst fades within a few windows
        meter.add(MiB // 10, 2.0 + step * 0.1)
    assert meter.rate(32.0) == pytest.approx(MiB, rel=0.05)


def test_meter_times_from_the_first_byte_not_from_the_request() -> None:
    """A file starts (Hub call, redirect, connect) half a second before its first byte: that wait is
    not its speed.

    Counted, a file just started read ~1.3 MiB/s for 2 MiB/s, so its time left (and the total's
    floor) jumped up each time a big file started.
    """
    meter = RateMeter(0.0)
    assert meter.rate(0.5) is None  # waiting for the first byte: no speed yet
    for step in range(1, 11):  # the first byte at 0.5 s, then 1 s at 2 MiB/s, in 0.1 s batches
        meter.add(MiB // 5, 0.5 + step * 0.1)
    assert meter.rate(1.5) == pytest.approx(2 * MiB, rel=0.1)


def test_meter_decays_when_bytes_stop_and_ignores_discarded_bytes() -> None:
    meter = RateMeter(0.0)
    for step in range(1, 51):
        meter.add(MiB, step * 0.1)
    meter.add(-20 * MiB, 5.0)  # bytes thrown away did cross the link: the rate does not go negative
    busy = meter.rate(5.0)
    assert busy is not None and busy > 5 * MiB
    idle = meter.rate(35.0)  # 30 s without a byte
    assert idle is not None and idle < 0.01 * busy


def test_seconds_left() -> None:
    assert seconds_left(100 * MiB, 10 * MiB) == 10
    assert seconds_left(None, 10.0) is None
    assert seconds_left(10, None) is None
    assert seconds_left(10, 0.0) is None
    assert seconds_left(10**15, 1.0) is None  # a stall, not an estimate


def test_total_is_never_less_than_the_slowest_file() -> None:
    assert total_seconds_left(24 * MiB, MiB, [107.0, 3.0, None]) == 107.0
    assert total_seconds_left(300 * MiB, MiB, [107.0]) == 300.0
    assert total_seconds_left(None, None, [5.0]) == 5.0
    assert total_seconds_left(MiB, MiB, [None]) == 1.0


def test_files_finishing_early_do_not_make_the_total_optimistic() -> None:
    """The issue's case: five small files finish in the first second, the big throttled one shows
    1:47 left.
    """
    tally = Tally()
    now = 0.0
    big, small = 120 * MiB, 8 * MiB
    tally.apply(Event("begin", total=big + 5 * small, files=6), now)
    keys = ["big", *(f"s{i}" for i in range(5))]
    for key in keys:
        size = big if key == "big" else small
        tally.apply(Event("start", key, key, size), now)
    # the first second: small files at 40 MiB/s each, the big one throttled to 1 MiB/s
    for _ in range(10):
        now += 0.1
        for key in keys[1:]:
            tally.apply(Event("advance", key, nbytes=4 * MiB), now)
        tally.apply(Event("advance", "big", nbytes=MiB // 10), now)
    for key in keys[1:]:
        tally.apply(Event("finish", key), now)
    for _ in range(40):  # 4 s more of the big file alone
        now += 0.1
        tally.apply(Event("advance", "big", nbytes=MiB // 10), now)
    item = tally.items["big"]
    own = item.seconds_left(now)
    assert own == pytest.approx(115, rel=0.1)  # 115 MiB left at 1 MiB/s
    total = tally.seconds_left(now)
    assert total is not None and own is not None
    assert total >= own  # the aggregate still remembers the burst; the floor keeps the total honest
    rate = tally.rate(now)
    assert rate is not None and rate > 2 * MiB  # ...which is what made the old total say 0:24


def test_no_total_time_while_a_file_of_unknown_size_is_coming() -> None:
    """A server that never says a size: the batch's end cannot be known while that file streams (not
    the other file's 0:04, which only bounds it); once it is done, the known files' times are what
    is left."""
    tally = Tally()
    now = 0.0
    tally.apply(Event("begin", total=None, files=2), now)
    tally.apply(Event("start", "unsized", "unsized", None), now)
    tally.apply(Event("start", "known", "known", 8 * MiB), now)
    for _ in range(32):  # (the clock starts at the first bytes: 3.1 s of them)
        now += 0.1
        tally.apply(Event("advance", "unsized", nbytes=MiB // 10), now)
        tally.apply(Event("advance", "known", nbytes=MiB // 10), now)
    assert tally.items["known"].seconds_left(now) == pytest.approx(4.8, rel=0.1)
    assert tally.seconds_left(now) is None
    tally.apply(Event("finish", "unsized"), now)
    assert tally.seconds_left(now) == pytest.approx(4.8, rel=0.1)


def test_no_time_left_until_the_rate_means_something() -> None:
    """Issue 88: the first frames, when only small files had moved, said ``47:22:4`` for GiB to
    come; no estimate is shown until bytes have flowed for SETTLED seconds, then it is."""
    tally = Tally()
    now = 0.0
    tally.apply(Event("begin", total=2 * GiB, files=2), now)
    tally.apply(Event("start", "small", "small", 10_000), now)
    tally.apply(Event("start", "big", "big", 2 * GiB - 10_000), now)
    tally.apply(Event("advance", "small", nbytes=10_000), now)
    while now < SETTLED - 0.5:
        now += 0.25
        tally.apply(Event("advance", "big", nbytes=100), now)
        assert tally.seconds_left(now) is None and tally.items["big"].seconds_left(now) is None
    while now < SETTLED + 0.5:
        now += 0.25
        tally.apply(Event("advance", "big", nbytes=25 * MiB), now)
    assert tally.seconds_left(now) is not None and tally.items["big"].seconds_left(now) is not None
