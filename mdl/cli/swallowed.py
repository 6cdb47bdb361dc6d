"""A stop raised where Python lets no exception out (a weakref's callback, a ``__del__``, a
collector's callback) reaches ``sys.unraisablehook`` and is printed as "Exception ignored", while
the command runs on: caught there, and delivered again from outside it."""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

from mdl.background import Background

AGAIN_AFTER = 0.05  # seconds: a swallowed interrupt is sent again once the main thread has left


@contextlib.contextmanager
def redelivered(kind: type[BaseException], again: Callable[[], object]) -> Iterator[None]:
    """For the block, a ``kind`` swallowed where no exception may pass calls ``again``, which must
    not raise it there (it would be swallowed again): it wakes the main thread from another thread.
    Anything else goes to the hook there was."""
    previous = sys.unraisablehook

    def hook(unraisable: Any) -> None:
        if isinstance(unraisable.exc_value, kind):
            again()
        else:
            previous(unraisable)

    sys.unraisablehook = hook
    try:
        yield
    finally:
        sys.unraisablehook = previous


@contextlib.contextmanager
def interrupts_kept() -> Iterator[None]:
    """Ctrl-C or SIGTERM (a KeyboardInterrupt) swallowed is sent again to the main thread as a
    SIGINT, by background work of its own, a moment later: sent at once, it would land in the hook
    itself, and be lost there (swallowed again later, it is sent again). None is sent once the
    block has ended: the command is over, and an interrupt then would land in the exit."""
    main = threading.main_thread().ident
    assert main is not None  # (the main thread has started: this code runs in a thread)
    sending, ended = threading.Lock(), threading.Event()

    def send(stop: threading.Event) -> None:
        if not stop.wait(AGAIN_AFTER):
            with sending:
                if not stop.is_set():
                    signal.pthread_kill(main, signal.SIGINT)

    try:
        with redelivered(
            KeyboardInterrupt, lambda: Background("mdl-interrupt-again", send, stop=ended).start()
        ):
            yield
    finally:
        with sending:  # (one sent before this is raised in the block, or here)
            ended.set()
