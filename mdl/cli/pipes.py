"""A closed stdout (``mdl list | head -1``) ends the command quietly with exit 141 (128 + SIGPIPE), as ``cat``.

Python ignores SIGPIPE, so a write to a pipe whose reader left raises ``BrokenPipeError``. Commands that only
print (list, show, resolve, verify, ``pack -o -``) also stop at once: a watcher thread waits for POLLERR on fd 1
and signals the main thread, whose handler raises :class:`StdoutClosed` (a ``KeyboardInterrupt``: every Ctrl-C
cleanup runs). The signal is SIGURG, not SIGPIPE, which the kernel sends for every failed write (sockets too).
Commands that change the disk finish their work; a failing command keeps its own exit code.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import select
import signal
import stat
import threading
from collections.abc import Iterator
from types import FrameType

log = logging.getLogger("mdl.cli")

STDOUT_FD = 1
EXIT_STDOUT_CLOSED = 128 + 13  # 128 + SIGPIPE: what a shell reports for `cat` killed by a closed pipe


class StdoutClosed(KeyboardInterrupt):
    """stdout's reader has gone; raised in the main thread to stop the work (handled like Ctrl-C, then exit 141)."""


def stdout_closed(fd: int = STDOUT_FD) -> bool:
    """Whether ``fd`` is a pipe (or socket) no one reads any more."""
    if not hasattr(select, "poll"):
        return False
    poller = select.poll()
    poller.register(fd, 0)  # no events asked: only POLLERR / POLLHUP / POLLNVAL are reported
    try:
        events = poller.poll(0)
    except OSError:
        return False
    return any(mask & select.POLLERR for _, mask in events)


def is_closed_stdout_error(exc: BaseException) -> bool:
    """Whether ``exc`` (or its cause) is a write that failed because stdout's reader has gone."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, StdoutClosed):
            return True
        if isinstance(current, OSError) and current.errno == errno.EPIPE:
            return stdout_closed()
        current = current.__cause__ or current.__context__
    return False


def silence_stdout() -> None:
    """Point fd 1 at /dev/null, so buffered output flushed at shutdown goes nowhere instead of failing."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
    except OSError:
        return
    try:
        os.dup2(devnull, STDOUT_FD)
    finally:
        os.close(devnull)


@contextlib.contextmanager
def unread_if_failing(*, failing: bool) -> Iterator[None]:
    """Output of a failing command that no one reads is dropped: its own exit code says more than 141."""
    try:
        yield
    except OSError as exc:
        if not failing or not is_closed_stdout_error(exc):
            raise
        silence_stdout()


def _is_pipe(fd: int) -> bool:
    try:
        mode = os.fstat(fd).st_mode
    except OSError:
        return False
    return stat.S_ISFIFO(mode)


class Watch:
    """Whether a closed stdout may still interrupt the main thread (inside the guarded body, once), and did (then
    :class:`StdoutClosed` can land past its handler and reach Click as a Ctrl-C)."""

    armed = False
    fired = False


WAKE_SIGNAL: int | None = getattr(signal, "SIGURG", None)  # POSIX only; elsewhere nothing is watched


def _on_wake(signum: int, frame: FrameType | None) -> None:
    if Watch.armed and stdout_closed():
        Watch.armed = False
        Watch.fired = True
        raise StdoutClosed


@contextlib.contextmanager
def stop_when_stdout_closes() -> Iterator[None]:
    """While the body runs, a reader leaving stdout (a pipe) raises :class:`StdoutClosed` in the main thread."""
    wake_signal, main_ident = WAKE_SIGNAL, threading.get_ident()
    main = threading.current_thread() is threading.main_thread()
    if not main or wake_signal is None or not hasattr(select, "poll") or not _is_pipe(STDOUT_FD):
        yield
        return
    wake_read, wake_write = os.pipe()
    previous = signal.signal(wake_signal, _on_wake)

    def watch() -> None:
        poller = select.poll()
        poller.register(STDOUT_FD, 0)
        poller.register(wake_read, select.POLLIN)
        while True:
            events = dict(poller.poll())  # (a signal's EINTR is retried by Python: PEP 475)
            if events.get(wake_read):
                return
            if events.get(STDOUT_FD, 0) & select.POLLERR:
                log.info("stdout was closed by its reader; stopping")
                signal.pthread_kill(main_ident, wake_signal)
                return
            if events.get(STDOUT_FD, 0) & (select.POLLHUP | select.POLLNVAL):
                return  # not a reader that left: nothing to stop for

    watcher = threading.Thread(target=watch, name="mdl-stdout-watch", daemon=True)
    Watch.armed = True
    watcher.start()
    try:
        yield
    finally:
        Watch.armed = False  # from here on a late wake-up does nothing; a failed write is the error
        try:
            os.write(wake_write, b"x")
            watcher.join()
        finally:
            signal.signal(wake_signal, previous)
            os.close(wake_read)
            os.close(wake_write)
