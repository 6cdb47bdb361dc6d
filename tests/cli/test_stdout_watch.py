"""The watch on stdout's reader (``StdoutWatch``): its stop reaches the command even when the
signal lands where Python lets no exception out."""

from __future__ import annotations

import contextlib
import gc
import os
import signal
import sys
import time
import weakref
from collections.abc import Iterator
from typing import Any

import pytest

from mdl.cli.stdout import WAKE_SIGNAL, StdoutClosed, StdoutWatch

pytestmark = pytest.mark.skipif(WAKE_SIGNAL is None, reason="POSIX: the watch needs SIGURG")


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
        try:
            os.close(read_fd)
        except OSError:
            pass  # (closed by the test: the reader left)


class _Dropped:
    """An object whose weakref callback runs where an exception is only reported, never raised."""


def test_a_stop_swallowed_by_a_weakref_callback_is_raised_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reported: list[Any] = []
    monkeypatch.setattr(sys, "unraisablehook", reported.append)
    watch = StdoutWatch()
    assert WAKE_SIGNAL is not None
    in_callback: list[bool] = []

    def reader_leaves_now(_: object) -> None:
        # The reader leaves and the wake-up lands here, inside a weakref's callback: Python
        # reports what the handler raises to sys.unraisablehook and carries on.
        in_callback.append(True)
        os.close(reader)  # (the watcher's wake-up may land from here on: inside, as the one below)
        signal.raise_signal(WAKE_SIGNAL)
        in_callback.append(False)  # (not reached if the stop came out here: it cannot)

    with stdout_pipe() as reader, pytest.raises(StdoutClosed), watch.stop_when_closed():
        dropped = _Dropped()
        kept = weakref.ref(dropped, reader_leaves_now)
        del dropped
        gc.collect()
        deadline = time.monotonic() + 60  # (the watcher wakes it again; bounded: no hang)
        while time.monotonic() < deadline:
            time.sleep(0.01)
        pytest.fail("the stop never reached the command")
    assert in_callback == [True]  # the first stop came inside the callback, which carried on
    assert kept() is None
    assert watch.fired
    assert reported == []  # nothing left for the interpreter to print ("Exception ignored in")
