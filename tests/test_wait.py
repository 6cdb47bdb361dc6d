"""A wait as one value (``mdl.wait.Wait``): what is left of it, a shorter wait inside it, a pause
that is over at its deadline and heard at once when cancelled; on the test's clock (the time a
wait may last is moved by hand, never waited out)."""

from __future__ import annotations

import threading

import pytest
from clocks import FakeClock
from runfixtures import HANG

from mdl.endpoint.shelf import LOOK_WAIT, NotServed, _Looks
from mdl.wait import Wait


def test_what_is_left_counts_down_on_the_waits_clock() -> None:
    clock = FakeClock()
    wait = Wait.within(5.0, clock=clock)
    assert (wait.left(), wait.over, wait.seconds) == (5.0, False, 5.0)
    clock.now += 3.0
    assert (wait.left(), wait.over) == (2.0, False)
    clock.now += 2.5
    assert (wait.left(), wait.over) == (0.0, True)


def test_a_child_wait_never_outlasts_its_parent_and_hears_its_cancel() -> None:
    clock, cancel = FakeClock(), threading.Event()
    wait = Wait.within(5.0, cancel, clock)
    assert wait.child(10.0).deadline == wait.deadline
    short = wait.child(1.0)
    assert short.left() == 1.0 and short.cancel is cancel
    clock.now += 1.0
    assert short.over and not wait.over
    cancel.set()
    assert wait.over and wait.child(10.0).over


def test_a_pause_is_over_at_the_deadline_without_waiting() -> None:
    """An hour's pause of a wait whose deadline passed returns at once (else the test hangs)."""
    clock = FakeClock()
    wait = Wait.within(1.0, clock=clock)
    clock.now += 1.0
    assert wait.pause(3600.0) is False


def test_a_pause_hears_the_cancel_at_once() -> None:
    """Ctrl-C (the run's cancel) ends an hour's pause, whether it came before or during it."""
    cancel = threading.Event()
    wait = Wait(cancel=cancel)
    threading.Thread(target=cancel.set).start()
    wait.pause(10 * HANG)  # (set before it, or while it waits)
    assert wait.over and wait.pause(10 * HANG) is False


def test_a_pause_on_a_condition_ends_when_it_is_told() -> None:
    told, changed, wait = [], threading.Condition(), Wait.within(HANG)

    def tell() -> None:
        with changed:
            told.append(True)
            changed.notify_all()

    with changed:
        threading.Thread(target=tell).start()
        while not told:
            assert wait.pause(HANG, changed)
    assert told and not wait.over


def test_a_request_waiting_on_a_look_under_way_gives_up_at_look_wait_on_the_shelfs_clock() -> None:
    """The endpoint's admission to a model's look: a request that waits on another's look under
    way is answered 503 once LOOK_WAIT passed by the shelf's clock (moved here by hand, never
    waited out), while that look is still held."""
    fake, asked = FakeClock(), threading.Event()
    entered, release = threading.Event(), threading.Event()

    def clock() -> float:
        asked.set()
        return fake()

    def held(model: str) -> list[object]:
        entered.set()
        assert release.wait(HANG)
        return []

    looks = _Looks(held, threading.Event(), clock)  # type: ignore[arg-type]
    first = threading.Thread(target=looks.of, args=("m",))
    first.start()
    caught: list[NotServed] = []

    def waiting() -> None:
        with pytest.raises(NotServed) as info:
            looks.of("m")
        caught.append(info.value)

    try:
        assert entered.wait(HANG)
        asked.clear()
        late = threading.Thread(target=waiting)
        late.start()
        assert asked.wait(HANG)  # its wait began: LOOK_WAIT from now, by this clock
        fake.now += LOOK_WAIT - 0.5
        assert late.is_alive()
        fake.now += 0.5  # (it looks at the clock every LOOK_EVERY at most)
        late.join(HANG)
        assert not late.is_alive() and not release.is_set()
        assert caught[0].status == 503 and "slow to look at" in caught[0].message
    finally:
        release.set()
        first.join(HANG)
