"""A closed stdout (``mdl list | head -1``) ends the command quietly, as it ends ``cat``.

Python ignores SIGPIPE, so a write to a pipe whose reader has gone raises ``BrokenPipeError`` instead of
killing the process; unhandled, that was "internal error: BrokenPipeError" and, at interpreter shutdown,
"Exception ignored ... BrokenPipeError". Here a closed stdout becomes exit 141 (128 + SIGPIPE, what a shell
reports for ``cat`` killed by SIGPIPE) with nothing on stderr.

Commands that only print (list, show, resolve, verify, ``pack -o -``) also stop their work as soon as the
reader goes: a watcher thread waits for POLLERR on fd 1 (Linux reports it on the write end of a pipe whose
read end is closed) and signals the main thread, whose handler raises :class:`StdoutClosed` there. It is a
``KeyboardInterrupt``, so every cleanup written for Ctrl-C runs. The signal is SIGURG, not SIGPIPE: the
kernel also sends SIGPIPE for every failed write (to sockets too), and a handler raising on those could fire
anywhere, even after the command's error handling; SIGURG (ignored by default, meant for socket out-of-band
data, which mdl never uses) arrives only from the watcher, and only while the handler is armed.

Commands that change the disk do not watch: they finish their work (a half-done download or unpack is worse
than a lost table) and only their final write finds the pipe closed. A command that fails keeps its own exit
code: its error goes to stderr as always, and "no one read the output" is the lesser news.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import select
import signal
import stat
import sys
import threading
from collections.abc import Iterator
from types import FrameType

log = logging.getLogger("mdl.cli")

STDOUT_FD = 1
EXIT_STDOUT_CLOSED = 128 + 13  # 128 + SIGPIPE: what a shell reports for `cat` killed by a closed pipe


class StdoutClosed(KeyboardInterrupt):
    """stdout's reader has gone; raised in the main thread to stop the work (handled like Ctrl-C, then exit 141)."""


def stdout_closed(fd: int = STDOUT_FD) -> bool:
    """Whether ``fd`` is a pipe (or socket) that no one reads any more (POLLERR without waiting)."""
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
    """Whether ``exc`` (or what caused it) is a write that failed because stdout's reader has gone."""
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


def interrupted_by_closed_stdout() -> bool:
    """Whether :class:`StdoutClosed` was raised in this process (it can land just past the code that handles
    it, at the edge of a ``with`` block, and then reach the CLI framework as a plain Ctrl-C)."""
    return _Watch.fired


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


def flush_stdout(stream: object | None = None) -> None:
    """Flush ``stream`` (default ``sys.stdout``) now, so a closed pipe is found here and not at shutdown."""
    flush = getattr(stream if stream is not None else sys.stdout, "flush", None)
    if callable(flush):
        flush()


def flush_quietly(stream: object | None = None) -> None:
    """Flush ``stream`` for a command that is failing anyway: a closed stdout must not hide its exit code."""
    with unread_if_failing(failing=True):
        flush_stdout(stream)


@contextlib.contextmanager
def unread_if_failing(*, failing: bool) -> Iterator[None]:
    """Output of a command that is failing anyway: if no one reads it, drop it and go on to say what failed
    on stderr and exit with the failure's own code (it says more than 141)."""
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


class _Watch:
    """Whether a closed stdout may still interrupt the main thread (only inside the guarded body, and once),
    and whether it did."""

    armed = False
    fired = False


WAKE_SIGNAL: int | None = getattr(signal, "SIGURG", None)  # POSIX only; elsewhere nothing is watched


def _on_wake(signum: int, frame: FrameType | None) -> None:
    if _Watch.armed and stdout_closed():
        _Watch.armed = False
        _Watch.fired = True
        raise StdoutClosed


@contextlib.contextmanager
def stop_when_stdout_closes() -> Iterator[None]:
    """While the body runs, a reader leaving stdout raises :class:`StdoutClosed` in the main thread at once.

    Does nothing unless stdout is a pipe and this is the main thread (signals are delivered there only).
    """
    if (
        threading.current_thread() is not threading.main_thread()
        or not hasattr(select, "poll")
        or not hasattr(signal, "pthread_kill")
        or WAKE_SIGNAL is None
        or not _is_pipe(STDOUT_FD)
    ):
        yield
        return
    main_ident = threading.main_thread().ident
    wake_signal = WAKE_SIGNAL
    assert main_ident is not None and wake_signal is not None
    wake_read, wake_write = os.pipe()
    previous = signal.signal(wake_signal, _on_wake)

    def watch() -> None:
        poller = select.poll()
        poller.register(STDOUT_FD, 0)
        poller.register(wake_read, select.POLLIN)
        while True:
            try:
                events = dict(poller.poll())
            except InterruptedError:
                continue
            if events.get(wake_read):
                return
            if events.get(STDOUT_FD, 0) & select.POLLERR:
                log.info("stdout was closed by its reader; stopping")
                signal.pthread_kill(main_ident, wake_signal)
                return
            if events.get(STDOUT_FD, 0) & (select.POLLHUP | select.POLLNVAL):
                return  # not a reader that left: nothing to stop for

    watcher = threading.Thread(target=watch, name="mdl-stdout-watch", daemon=True)
    _Watch.armed = True
    watcher.start()
    try:
        yield
    finally:
        _Watch.armed = False  # from here on a late wake-up does nothing; a failed write is the error
        try:
            os.write(wake_write, b"x")
            watcher.join()
        finally:
            signal.signal(wake_signal, previous)
            os.close(wake_read)
            os.close(wake_write)
