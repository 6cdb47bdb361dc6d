"""A stop swallowed where Python lets no exception out (``mdl.cli.swallowed``): Ctrl-C, SIGTERM
or stdout's reader leaving, landed in a weakref's callback, still stops the command; anything else
is reported as before."""

from __future__ import annotations

import contextlib
import gc
import os
import signal
import sys
import threading
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from runfixtures import HANG

from mdl.cli.stdout import WAKE_SIGNAL, StdoutClosed, StdoutWatch
from mdl.cli.swallowed import interrupts_kept, redelivered


class _Dropped:
    """An object whose weakref callback runs where an exception is only reported, never raised."""


def dropped_with(callback: Callable[[object], None]) -> weakref.ref[_Dropped]:
    """A weakref whose ``callback`` has run (its object dropped at once)."""
    dropped = _Dropped()
    kept = weakref.ref(dropped, callback)
    del dropped
    gc.collect()
    return kept


def stopped() -> None:
    """Wait for the stop to be raised here (a signal's handler interrupts the wait); fail if it
    never is."""
    threading.Event().wait(HANG)
    pytest.fail("the stop never reached the command")


@contextlib.contextmanager
def stdout_pipe() -> Iterator[int]:
    """fd 1 a pipe (what the watch watches); its read end, for the test to close. Put back after.
    (Made in the test's body: pytest points fd 1 at its capture again as each phase begins.)"""
    read_fd, write_fd = os.pipe()
    saved = os.dup(1)
    os.dup2(write_fd, 1)
    os.close(write_fd)
    try:
        yield read_fd
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        with contextlib.suppress(OSError):  # (closed by the test: the reader left)
            os.close(read_fd)


@contextlib.contextmanager
def int_handlers() -> Iterator[None]:
    """SIGTERM as the CLI sets it (mdl.__main__) and SIGINT as Python's default; put back after."""
    previous = {
        kind: signal.signal(kind, signal.default_int_handler)
        for kind in (signal.SIGTERM, signal.SIGINT)
    }
    try:
        yield
    finally:
        for kind, handler in previous.items():
            signal.signal(kind, handler)


@pytest.fixture
def reported(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """What reaches the hook there was (the interpreter's "Exception ignored in")."""
    seen: list[Any] = []
    monkeypatch.setattr(sys, "unraisablehook", seen.append)
    return seen


@pytest.mark.skipif(WAKE_SIGNAL is None, reason="POSIX: the watch needs SIGURG")
def test_the_watchs_stop_swallowed_by_a_weakref_callback_is_raised_again(
    reported: list[Any],
) -> None:
    watch = StdoutWatch()
    assert WAKE_SIGNAL is not None
    in_callback: list[bool] = []

    def reader_leaves_now(_: object) -> None:
        in_callback.append(True)
        os.close(reader)  # (the watcher's wake-up may land from here on: inside, as the one below)
        signal.raise_signal(WAKE_SIGNAL)  # raised here, and swallowed
        in_callback.append(False)

    with stdout_pipe() as reader, pytest.raises(StdoutClosed), watch.stop_when_closed():
        kept = dropped_with(reader_leaves_now)
        stopped()  # the watcher wakes it again
    assert in_callback == [True]  # the first stop came inside the callback, which carried on
    assert kept() is None and watch.fired
    assert reported == []


def test_an_interrupt_swallowed_by_a_weakref_callback_reaches_the_command(
    reported: list[Any],
) -> None:
    in_callback: list[bool] = []

    def terminated_now(_: object) -> None:
        in_callback.append(True)
        signal.raise_signal(signal.SIGTERM)  # its KeyboardInterrupt raised here, and swallowed
        in_callback.append(False)

    with int_handlers(), pytest.raises(KeyboardInterrupt), interrupts_kept():
        kept = dropped_with(terminated_now)
        stopped()  # sent again from a thread
    assert in_callback == [True]
    assert kept() is None
    assert reported == []
    assert sys.unraisablehook == reported.append  # put back as it was


def test_no_interrupt_is_sent_once_the_block_has_ended(reported: list[Any]) -> None:
    with int_handlers():
        # (sent before the end, it lands in the block: a busy machine may)
        with contextlib.suppress(KeyboardInterrupt), interrupts_kept():
            dropped_with(lambda _: signal.raise_signal(signal.SIGINT))  # swallowed: sent again
        for sender in threading.enumerate():  # the one that would send it again has ended...
            if sender.name == "mdl-interrupt-again":
                sender.join(HANG)
        gc.collect()  # ...and sent nothing: a signal's handler would raise here, at the latest
    assert reported == []


def test_anything_else_swallowed_is_reported_as_before(reported: list[Any]) -> None:
    again: list[bool] = []

    def fails(_: object) -> None:
        raise ValueError("a callback's own failure")

    with redelivered(KeyboardInterrupt, lambda: again.append(True)):
        assert sys.unraisablehook != reported.append  # (its own, while the block runs)
        dropped_with(fails)
    assert [type(u.exc_value) for u in reported] == [ValueError]
    assert again == []
    assert sys.unraisablehook == reported.append
