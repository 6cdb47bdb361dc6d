"""The run log's file: size-rotated, shared safely by concurrent runs (loaded only when a run
writes a log: a readiness probe writes none). Rotated as ``RotatingFileHandler`` does, on
``logging.FileHandler``: ``logging.handlers`` brings pickle and queue to every run's start.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import logging
import os
import stat
from pathlib import Path
from typing import Any


class SharedRotatingFileHandler(logging.FileHandler):
    """A size-rotated log file that several processes (two cron runs) may write and rotate at once:
    each record is written under a ``flock`` of the file now at the path (re-opened if another
    process rotated meanwhile), and the old file stays locked until the renames are done
    (``RotatingFileHandler`` alone assumes one writer). Past ``maxBytes`` the file becomes
    ``.1``, ``.1`` becomes ``.2``, … up to ``backupCount``: ``RotatingFileHandler``'s names."""

    # the locked file's size, as its fstat said when it was locked (None: not a regular file, never
    # rotated: /dev/null, a FIFO)
    _size: int | None = 0

    def __init__(
        self,
        filename: Path,
        *,
        maxBytes: int,  # (RotatingFileHandler's names)
        backupCount: int,
        encoding: str | None = None,
        errors: str | None = None,
    ) -> None:
        self.maxBytes, self.backupCount = maxBytes, backupCount
        super().__init__(filename, mode="a", encoding=encoding, errors=errors)

    def _lock_current(self) -> None:
        for _ in range(100):
            self.stream = self.stream or self._open()
            fcntl.flock(self.stream.fileno(), fcntl.LOCK_EX)
            with contextlib.suppress(OSError):
                here, there = os.fstat(self.stream.fileno()), Path(self.baseFilename).stat()
                if (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino):
                    self._size = here.st_size if stat.S_ISREG(here.st_mode) else None
                    return
            self.stream.close()  # rotated by another process: its lock goes with it
            self.stream = None
        raise OSError(f"{self.baseFilename} keeps being replaced")

    def _open(self) -> Any:
        """The file at the path for appending, this user's alone (0600, whatever the umask): a
        log holds what a run was asked for, request targets under ``serve -v`` included. One an
        older mdl left readable by others is made so too. Opened without blocking: a FIFO nobody
        reads would hang the run in ``open`` (ENXIO instead: the run goes on without a log, as for
        any unwritable one); one that is read is then written as a file is."""
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
        fd = os.open(self.baseFilename, flags | os.O_NONBLOCK, 0o600)
        try:
            os.set_blocking(fd, True)
            _own_only(fd)
            return os.fdopen(fd, self.mode, encoding=self.encoding, errors=self.errors)
        except BaseException:
            os.close(fd)
            raise

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = f"{self.format(record)}\n"  # once: the size rule and the write share it
            self._lock_current()
            try:
                if self._full(len(line)):
                    self.doRollover()
                assert self.stream is not None  # (locked)
                self.stream.write(line)
                self.stream.flush()
            finally:
                if self.stream:
                    with contextlib.suppress(OSError):
                        fcntl.flock(self.stream.fileno(), fcntl.LOCK_UN)
        # a full disk or a vanished folder must not stop a download; nor a record that cannot be
        # formatted (dropped, as logging's own rotating handlers drop it)
        except Exception:  # noqa: BLE001
            self.handleError(record)

    def _full(self, adding: int) -> bool:
        """``RotatingFileHandler``'s rule (``adding``: the formatted line's length) from what
        ``_lock_current`` found (the file at the path, locked, a regular file: it was opened for
        appending and stat'ed), not two more looks at the path and a seek per record; the stream is
        flushed after each record, so its size is the file's."""
        if self.maxBytes <= 0 or self._size is None:
            return False
        return self._size + adding >= self.maxBytes

    def doRollover(self) -> None:
        assert self.stream is not None  # locked by emit
        # shares the old file's lock: its waiters wait until the new one is ours
        held = os.dup(self.stream.fileno())
        try:
            self.stream.close()
            self.stream = None
            base = Path(self.baseFilename)
            names = [base, *(Path(f"{base}.{i}") for i in range(1, self.backupCount + 1))]
            # oldest first: .N-1 over .N, …, the log over .1 (none kept with no backups)
            for older, newer in reversed(list(itertools.pairwise(names))):
                with contextlib.suppress(FileNotFoundError):
                    older.replace(newer)
            self._lock_current()
        finally:
            os.close(held)

    def handleError(self, record: logging.LogRecord) -> None:
        """Drop the record: stderr is for progress and messages; a broken log must not stop a
        run.
        """


def _own_only(fd: int) -> None:
    """A regular file of this user's that others may read: readable by this user only."""
    found = os.fstat(fd)
    if stat.S_ISREG(found.st_mode) and found.st_uid == os.geteuid() and found.st_mode & 0o077:
        os.fchmod(fd, stat.S_IMODE(found.st_mode) & 0o700)
