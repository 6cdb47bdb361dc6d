"""A stop swallowed where Python lets no exception out (``mdl.cli.swallowed``): Ctrl-C or SIGTERM
landing in a weakref's callback still stops the command; anything else is reported as before."""

from __future__ import annotations

import signal
import sys
import time
import weakref
from typing import Any

import pytest

from mdl.cli.swallowed import AGAIN_AFTER, interrupts_kept, redelivered


class _Dropped:
    """An object whose weakref callback runs where an exception is only reported, never raised."""


def test_an_interrupt_swallowed_by_a_weakref_callback_reaches_the_command(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reported: list[Any] = []
    monkeypatch.setattr(sys, "unraisablehook", reported.append)
    # SIGTERM as the CLI sets it (mdl.__main__), and SIGINT as Python's default
    previous = {
        kind: signal.signal(kind, signal.default_int_handler)
        for kind in (signal.SIGTERM, signal.SIGINT)
    }
    in_callback: list[bool] = []

    def terminated_now(_: object) -> None:
        in_callback.append(True)
        signal.raise_signal(signal.SIGTERM)  # its KeyboardInterrupt raised here, and swallowed
        in_callback.append(False)

    try:
        with pytest.raises(KeyboardInterrupt), interrupts_kept():
            dropped = _Dropped()
            kept = weakref.ref(dropped, terminated_now)
            del dropped
            deadline = time.monotonic() + 60  # (sent again from a thread; bounded: no hang)
            while time.monotonic() < deadline:
                time.sleep(0.01)
            pytest.fail("the interrupt never reached the command")
    finally:
        for kind, handler in previous.items():
            signal.signal(kind, handler)
    assert in_callback == [True]
    assert kept() is None
    assert reported == []  # nothing for the interpreter to print ("Exception ignored in")
    assert sys.unraisablehook == reported.append  # put back as it was


def test_no_interrupt_is_sent_once_the_block_has_ended(monkeypatch: pytest.MonkeyPatch) -> None:
    reported: list[Any] = []
    monkeypatch.setattr(sys, "unraisablehook", reported.append)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)

    def interrupted_now(_: object) -> None:
        signal.raise_signal(signal.SIGINT)  # swallowed: sent again a moment later...

    try:
        try:
            with interrupts_kept():
                dropped = _Dropped()
                kept = weakref.ref(dropped, interrupted_now)
                del dropped  # ...but the block ends at once
        except KeyboardInterrupt:
            pass  # (sent before the block ended, on a busy machine: it lands in the block)
        time.sleep(AGAIN_AFTER * 10)  # what would come after the end comes here: nothing does
    finally:
        signal.signal(signal.SIGINT, previous)
    assert kept() is None
    assert reported == []


def test_anything_else_swallowed_is_reported_as_before(monkeypatch: pytest.MonkeyPatch) -> None:
    reported: list[Any] = []
    monkeypatch.setattr(sys, "unraisablehook", reported.append)
    again: list[bool] = []

    def fails(_: object) -> None:
        raise ValueError("a callback's own failure")

    with redelivered(KeyboardInterrupt, lambda: again.append(True)):
        assert sys.unraisablehook != reported.append  # (its own, while the block runs)
        dropped = _Dropped()
        kept = weakref.ref(dropped, fails)
        del dropped
    assert kept() is None
    assert [type(u.exc_value) for u in reported] == [ValueError]
    assert again == []
    assert sys.unraisablehook == reported.append
