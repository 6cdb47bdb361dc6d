"""stdout, where the data goes: the one JSON document, and a reader that leaves (``mdl list | head
-1``) ends a command quietly with exit 141, as ``cat``, but a failing one's code."""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import select
import signal
import stat
import threading
from collections.abc import Iterator, Mapping
from typing import Any, TextIO

from mdl.background import Background
from mdl.cli.render.console import isatty
from mdl.cli.swallowed import redelivered
from mdl.errors import EXIT_STDOUT_CLOSED as EXIT_STDOUT_CLOSED  # re-exported beside its rule
from mdl.errors import UsageError, causes
from mdl.redact import Secrets, safe_doc

log = logging.getLogger("mdl.cli")

# stdout was closed when mdl started (``>&-``; ``mdl.__main__`` put /dev/null there)
closed_at_start = False

STDOUT_FD = 1
# POSIX only; elsewhere nothing is watched
WAKE_SIGNAL: int | None = getattr(signal, "SIGURG", None)
# once stdout's reader has left, how often the watcher wakes the main thread again while a stop
# has not reached the command (it was swallowed: ``mdl.cli.swallowed``)
WAKE_AGAIN_MS = 100


def refuse_closed_stdout(command: str) -> None:
    """A command whose only output is stdout's data (``pack -o -``, ``list``) refuses a stdout
    closed at start (exit 2), as it refuses a terminal for binary data: its output would go
    nowhere."""
    if closed_at_start:
        raise UsageError(
            f"{command}: stdout is closed: what it prints would go nowhere",
            hint="give it a file or a pipe (>/dev/null to discard it)",
        )


def emit_document(
    doc: Mapping[str, Any], *, stream: TextIO, secrets: Secrets | None = None
) -> None:
    """The one JSON document on ``stream`` and a newline, indented on a terminal; an absent value is
    ``null``, never ``""``; its text made safe (errors echo servers), its data only made printable
    (``safe_doc``)."""
    clean = _nulled(safe_doc(doc, secrets=secrets))  # (redacted first: it knows records)
    stream.write(json.dumps(clean, ensure_ascii=False, indent=2 if isatty(stream) else None) + "\n")
    stream.flush()


def _nulled(doc: Any) -> Any:
    if isinstance(doc, str):
        return doc or None
    if isinstance(doc, Mapping):
        return {key: _nulled(value) for key, value in doc.items()}
    if isinstance(doc, list | tuple):
        return [_nulled(value) for value in doc]
    return doc


class StdoutClosed(KeyboardInterrupt):
    """stdout's reader has gone; raised in the main thread to stop the work (handled like Ctrl-C,
    then exit 141).
    """


def stdout_closed(fd: int = STDOUT_FD) -> bool:
    """Whether ``fd`` is a pipe (or socket) no one reads any more."""
    if not hasattr(select, "poll"):
        return False
    poller = select.poll()
    poller.register(fd, 0)  # no events asked: only POLLERR / POLLHUP / POLLNVAL are reported
    try:
        return any(mask & select.POLLERR for _, mask in poller.poll(0))
    except OSError:
        return False


# a write to stdout that no retry helps: a full disk or quota, an I/O error
UNWRITABLE = (errno.ENOSPC, errno.EDQUOT, errno.EIO)


def is_closed_stdout_error(exc: BaseException) -> bool:
    """Whether ``exc`` (or its cause) is a write that failed because stdout's reader has gone."""
    for current in causes(exc):
        if isinstance(current, StdoutClosed):
            return True
        if isinstance(current, OSError) and current.errno == errno.EPIPE:
            return stdout_closed()
    return False


def silence_stdout() -> None:
    """Point fd 1 at /dev/null, so buffered output flushed at shutdown goes nowhere instead of
    failing.
    """
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
    except OSError:
        return
    os.dup2(devnull, STDOUT_FD)
    os.close(devnull)


@contextlib.contextmanager
def unread_if_failing(*, failing: bool) -> Iterator[None]:
    """Output of a failing command that no one reads, or that stdout cannot take (a full disk), is
    dropped: its own exit code says more than 141, and its error is on stderr too.
    """
    try:
        yield
    except OSError as exc:
        if not failing or not (is_closed_stdout_error(exc) or exc.errno in UNWRITABLE):
            raise
        silence_stdout()


def _is_pipe(fd: int) -> bool:
    try:
        return stat.S_ISFIFO(os.fstat(fd).st_mode)
    except OSError:
        return False


class StdoutWatch:
    """One command's watch on stdout: while :meth:`stop_when_closed` runs its body, a reader leaving
    stdout (a pipe) raises :class:`StdoutClosed` (a Ctrl-C: every cleanup runs) in the main thread,
    once; ``fired`` says it did."""

    def __init__(self) -> None:
        self.armed = self.fired = False

    def _on_wake(self, *_: object) -> None:
        if self.armed and stdout_closed():
            self.armed, self.fired = False, True
            raise StdoutClosed

    @contextlib.contextmanager
    def stop_when_closed(self) -> Iterator[None]:
        """A watcher thread polls fd 1 and wakes the main thread with SIGURG (every failed write
        sends SIGPIPE).
        """
        wake_signal, main_ident = WAKE_SIGNAL, threading.get_ident()
        main = threading.current_thread() is threading.main_thread()
        watchable = hasattr(select, "poll") and _is_pipe(STDOUT_FD)
        if not main or wake_signal is None or not watchable:
            yield
            return
        wake_read, wake_write = os.pipe()
        previous = signal.signal(wake_signal, self._on_wake)

        def watch(stop: threading.Event) -> None:  # ends when its owner writes the wake pipe
            poller = select.poll()
            poller.register(STDOUT_FD, 0)
            poller.register(wake_read, select.POLLIN)
            closed = False
            while True:
                # (a signal's EINTR is retried by Python: PEP 475)
                events = dict(poller.poll(WAKE_AGAIN_MS if closed else None))
                if events.get(wake_read):
                    return
                found = events.get(STDOUT_FD, 0)
                if found & select.POLLERR:
                    log.info("stdout was closed by its reader; stopping")
                    closed = True
                    poller.unregister(STDOUT_FD)  # (it stays closed: not polled again)
                elif found & (select.POLLHUP | select.POLLNVAL):
                    return  # not a reader that left: nothing to stop for
                if closed and self.armed:  # the first time, or the last stop was swallowed
                    signal.pthread_kill(main_ident, wake_signal)

        watcher = Background("mdl-stdout-watch", watch)
        self.armed = True
        watcher.start()
        try:
            # a stop swallowed (``redelivered``): armed again, the watcher wakes the main thread
            with redelivered(StdoutClosed, lambda: setattr(self, "armed", True)):
                yield
        finally:
            # from here on a late wake-up does nothing; a failed write is the error
            self.armed = False
            try:
                os.write(wake_write, b"x")
                watcher.stop()
            finally:
                signal.signal(wake_signal, previous)
                os.close(wake_read)
                os.close(wake_write)
