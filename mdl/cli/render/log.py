"""The run log: a rotated file shared safely by concurrent runs, every record made safe, nothing
on stderr.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import time
from pathlib import Path

from mdl.redact import Secrets, safe_text

_HANDLER = "mdl-run-log"  # the name of the handler setup_logging installs (and replaces)


class SharedRotatingFileHandler(logging.FileHandler):
    """A size-rotated log file that several processes (two cron runs) may write and rotate at once:
    each record is written under a ``flock`` of the file now at the path (re-opened if another
    process rotated meanwhile), and the old file stays locked until the renames are done
    (``RotatingFileHandler`` alone assumes one writer). Its rotation is ``RotatingFileHandler``'s,
    written out: logging.handlers (pickle and queue with it) cost ~3 ms of every start."""

    def __init__(
        self,
        filename: Path,
        *,
        maxBytes: int,  # (RotatingFileHandler's names)
        backupCount: int,
        encoding: str,
        errors: str,
    ) -> None:
        super().__init__(filename, mode="a", encoding=encoding, errors=errors)
        self.maxBytes, self.backupCount = maxBytes, backupCount

    def shouldRollover(self, record: logging.LogRecord) -> bool:
        """Whether ``record`` would take the file to ``maxBytes`` (a path that is no regular file,
        /dev/null, is never rotated)."""
        path = Path(self.baseFilename)
        if path.exists() and not path.is_file():
            return False
        if self.stream is None:
            self.stream = self._open()
        if self.maxBytes <= 0:
            return False
        self.stream.seek(0, 2)
        return self.stream.tell() + len(f"{self.format(record)}\n") >= self.maxBytes

    def _lock_current(self) -> None:
        for _ in range(100):
            self.stream = self.stream or self._open()
            fcntl.flock(self.stream.fileno(), fcntl.LOCK_EX)
            with contextlib.suppress(OSError):
                here, there = os.fstat(self.stream.fileno()), Path(self.baseFilename).stat()
                if (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino):
                    return
            self.stream.close()  # rotated by another process: its lock goes with it
            self.stream = None
        raise OSError(f"{self.baseFilename} keeps being replaced")

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._lock_current()
            try:
                self._write(record)
            finally:
                if self.stream:
                    with contextlib.suppress(OSError):
                        fcntl.flock(self.stream.fileno(), fcntl.LOCK_UN)
        except (OSError, ValueError):  # a full disk or a vanished folder must not stop a download
            self.handleError(record)

    def _write(self, record: logging.LogRecord) -> None:
        """The record at the end of the file, rotated first when it would take the file past
        ``maxBytes`` (anything that fails: dropped, as BaseRotatingHandler.emit drops it)."""
        try:
            if self.shouldRollover(record):
                self.doRollover()
        except Exception:  # noqa: BLE001 - handleError drops it, as the stdlib's emit does
            self.handleError(record)
            return
        super().emit(record)

    def doRollover(self) -> None:
        assert self.stream is not None  # locked by emit
        # shares the old file's lock: its waiters wait until the new one is ours
        held = os.dup(self.stream.fileno())
        try:
            self._rotate()
            self._lock_current()
        finally:
            os.close(held)

    def _rotate(self) -> None:
        """The file → ``.1``, ``.1`` → ``.2``, … up to ``backupCount`` (the last one dropped); a new
        file at the path."""
        if self.stream:
            self.stream.close()
            self.stream = None
        if self.backupCount > 0:
            base = self.baseFilename
            for i in range(self.backupCount - 1, 0, -1):
                older, newer = Path(f"{base}.{i}"), Path(f"{base}.{i + 1}")
                if older.exists():
                    newer.unlink(missing_ok=True)
                    older.rename(newer)
            first = Path(f"{base}.1")
            first.unlink(missing_ok=True)
            if Path(base).exists():
                Path(base).rename(first)
        self.stream = self._open()

    def handleError(self, record: logging.LogRecord) -> None:
        """Drop the record: stderr is for progress and messages; a broken log must not stop a
        run.
        """


def setup_logging(
    *,
    log_file: Path | None,
    verbose: bool,
    secrets: Secrets | None = None,
    max_bytes: int = 5 * 1024 * 1024,
    backups: int = 3,
) -> Path | None:
    """Send the ``mdl`` logger to a rotated, redacted file; returns the file, or None when there
    is none.
    """
    logger = logging.getLogger("mdl")
    # Idempotent: replace what an earlier call installed (CliRunner runs many commands in one
    # process).
    for old in [h for h in logger.handlers if h.name == _HANDLER]:
        logger.removeHandler(old)
        old.close()
    logger.setLevel(logging.DEBUG if verbose else logging.INFO)

    # Without a file, a NullHandler still keeps logging's "last resort" handler from writing to
    # stderr.
    handler: logging.Handler = logging.NullHandler()
    if log_file is not None:
        try:
            log_file.parent.mkdir(parents=True, exist_ok=True)
            handler = SharedRotatingFileHandler(
                log_file,
                maxBytes=max_bytes,
                backupCount=backups,
                encoding="utf-8",
                errors="backslashreplace",
            )
        # an unwritable log location: the run goes on without a log; the caller sees None and warns
        except OSError:
            log_file = None

    def redact(record: logging.LogRecord) -> bool:
        """Make the record safe (message with its args, traceback, stack) before it is formatted."""
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            # A log call with a bad format string must not crash a download: keep the raw pieces.
            message = f"{record.msg!r} {record.args!r}"
        # One record, one line: a newline from a server's text could otherwise forge a log line.
        record.msg, record.args = safe_text(message, secrets=secrets), None
        if record.exc_info and not record.exc_text:
            # Render the traceback now (the formatter would reuse exc_text) so its URLs get redacted
            # too.
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = safe_text(record.exc_text, multiline=True, secrets=secrets)
        if record.stack_info:
            record.stack_info = safe_text(record.stack_info, multiline=True, secrets=secrets)
        return True

    # Timestamps in UTC ISO-8601 with milliseconds (``2026-11-22T08:03:39.123Z``): machines line up.
    formatter = logging.Formatter(
        "%(asctime)s %(levelname)s pid=%(process)d [%(threadName)s] %(name)s: %(message)s"
    )
    formatter.converter = time.gmtime
    formatter.default_time_format, formatter.default_msec_format = "%Y-%m-%dT%H:%M:%S", "%s.%03dZ"
    handler.setFormatter(formatter)
    handler.addFilter(redact)
    handler.name = _HANDLER
    logger.addHandler(handler)
    return log_file
