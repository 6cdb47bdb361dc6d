"""The run log: a rotated file shared safely by concurrent runs, every record made safe, nothing
on stderr.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from mdl.redact import Secrets, safe_text

if TYPE_CHECKING:
    from pathlib import Path

_HANDLER = "mdl-run-log"  # the name of the handler setup_logging installs (and replaces)


def redact_record(record: logging.LogRecord, secrets: Secrets | None) -> bool:
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
        from mdl.cli.render.logfile import SharedRotatingFileHandler

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

    # Timestamps in UTC ISO-8601 with milliseconds (``2026-11-22T08:03:39.123Z``): machines line up.
    formatter = logging.Formatter(
        "%(asctime)s %(levelname)s pid=%(process)d [%(threadName)s] %(name)s: %(message)s"
    )
    formatter.converter = time.gmtime
    formatter.default_time_format, formatter.default_msec_format = "%Y-%m-%dT%H:%M:%S", "%s.%03dZ"
    handler.setFormatter(formatter)
    handler.addFilter(lambda record: redact_record(record, secrets))
    handler.name = _HANDLER
    logger.addHandler(handler)
    return log_file
