"""The run log: a rotated file with every record redacted, and nothing ever on stderr."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from mdl.redact import redact_text

_LOG_FORMAT = "%(asctime)s %(levelname)s pid=%(process)d [%(threadName)s] %(name)s: %(message)s"


class _UTCFormatter(logging.Formatter):
    """Timestamps in UTC ISO-8601 with milliseconds, so runs on different machines line up."""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        """``2026-11-22T08:03:39.123Z``."""
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        return f"{stamp}.{int(record.msecs):03d}Z"


class _RedactFilter(logging.Filter):
    """Redact every record (message with its args, traceback, stack) before the handler formats it."""

    def __init__(self, secrets: tuple[str, ...]) -> None:
        super().__init__()
        self.secrets = secrets

    def filter(self, record: logging.LogRecord) -> bool:
        """Replace the record's text by its redacted form; never drop a record."""
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            # A log call with a bad format string must not crash a download: keep the raw pieces.
            message = f"{record.msg!r} {record.args!r}"
        record.msg, record.args = redact_text(message, secrets=self.secrets), None
        if record.exc_info and not record.exc_text:
            # Render the traceback now (the formatter would reuse exc_text) so its URLs get redacted too.
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact_text(record.exc_text, secrets=self.secrets)
        if record.stack_info:
            record.stack_info = redact_text(record.stack_info, secrets=self.secrets)
        return True


def setup_logging(
    *,
    log_file: Path | None,
    verbose: bool,
    secrets: tuple[str, ...] = (),
    max_bytes: int = 5_000_000,
    backups: int = 3,
) -> Path | None:
    """Send the ``mdl`` logger to a rotated, redacted file; returns the file, or None when there is none."""
    logger = logging.getLogger("mdl")
    # Idempotent: replace what an earlier call installed (CliRunner runs many commands in one process).
    for old in [h for h in logger.handlers if any(isinstance(f, _RedactFilter) for f in h.filters)]:
        logger.removeHandler(old)
        old.close()
    logger.setLevel(logging.DEBUG if verbose else logging.INFO)

    # Without a file, a NullHandler still keeps logging's "last resort" handler from writing to stderr.
    handler: logging.Handler = logging.NullHandler()
    opened: Path | None = None
    if log_file is not None:
        from logging.handlers import RotatingFileHandler  # ~13 ms of imports that only logging runs pay

        class _QuietFileHandler(RotatingFileHandler):
            def handleError(self, record: logging.LogRecord) -> None:
                """Drop the record: stderr is for progress and messages; a full disk must not stop a run."""

        try:
            log_file.parent.mkdir(parents=True, exist_ok=True)
            handler = _QuietFileHandler(log_file, maxBytes=max_bytes, backupCount=backups, encoding="utf-8")
            opened = log_file
        except OSError:
            # Unwritable log location: the run goes on without a log; the caller sees None and warns.
            opened = None
    handler.setFormatter(_UTCFormatter(_LOG_FORMAT))
    handler.addFilter(_RedactFilter(secrets))
    logger.addHandler(handler)
    return opened
