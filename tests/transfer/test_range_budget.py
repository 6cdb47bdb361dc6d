"""The range budget's buffers (``ranges._Budget``): pieces of one region mapped once, reused, never
two held at once sharing a byte, never more than the budget held; a reader with no room waits
till its deadline, then gets None."""

from __future__ import annotations

import threading
from contextlib import ExitStack

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mdl.transfer import ranges
from mdl.wait import Wait

MOST = 1 << 16


@given(st.lists(st.tuples(st.booleans(), st.integers(1, MOST)), max_size=60))
def test_held_buffers_never_share_a_byte_and_freed_ones_are_reused(
    steps: list[tuple[bool, int]],
) -> None:
    """Take (when there is room) or give back the oldest, in any order of sizes: each piece held
    keeps what its reader wrote (none shares a byte with another), all are of the one region, and
    all of it is free again once every one is given back (a reader of the whole budget gets it)."""
    budget = ranges._Budget(MOST)
    never = threading.Event()
    held: list[tuple[ExitStack, memoryview, bytes]] = []
    region = None
    for tag, (take, size) in enumerate(steps):
        if take:
            stack = ExitStack()
            view = stack.enter_context(budget.buffer(size, Wait(0.0, never)))
            if view is None:  # no room now, which only a buffer held makes
                assert held
                stack.close()
                continue
            region = view.obj if region is None else region
            assert len(view) == size and view.obj is region, "a buffer outside the one region"
            view[:] = mark = bytes([tag]) * size
            held.append((stack, view, mark))
        elif held:
            held.pop(0)[0].close()
        assert sum(len(view) for _, view, _ in held) <= MOST
        assert all(bytes(view) == mark for _, view, mark in held), "two buffers share bytes"
    for stack, _, _ in held:
        stack.close()
    with budget.buffer(MOST, Wait(0.0, never)) as whole:
        assert whole is not None and (region is None or whole.obj is region)


def test_a_buffer_over_the_budget_is_refused() -> None:
    with pytest.raises(ValueError), ranges._Budget(MOST).buffer(MOST + 1, Wait()):
        pass
