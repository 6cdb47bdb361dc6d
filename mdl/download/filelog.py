"""One log line per file, ``file key=value …``: what was done to it, from where, how long, why it retried, what a
server said. A value with spaces, quotes, ``=`` or nothing in it is a JSON string, so ``parse_file_line`` (and any
``key=("…"|\\S+)`` reader) gets every field back; the log handler makes it safe (printable, no secrets)."""

from __future__ import annotations

import json
import logging
import re

from mdl.redact import safe_text
from mdl.report import FileOutcome

log = logging.getLogger("mdl.files")

SERVER_TEXT_LIMIT = 500
_BARE = re.compile(r"[^\s\"=\\]+")
_FIELD = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\S+)')


def _value(value: object) -> str:
    """A value as the line holds it: bare when unambiguous, else a JSON string."""
    text = value if isinstance(value, str) else str(value)
    return text if _BARE.fullmatch(text) else json.dumps(text, ensure_ascii=False)


def file_line(outcome: FileOutcome) -> str:
    """``file model=… path=… action=… source=… size=… sha256=… fetched=… seconds=… retries=N …``."""
    fields: list[tuple[str, object | None]] = [
        ("model", outcome.model),
        ("path", outcome.path or ""),
        ("action", outcome.action),
        ("dest", outcome.dest),
        ("source", outcome.source),
        ("size", outcome.size),
        ("sha256", outcome.sha256),
        ("fetched", outcome.fetched if outcome.action != "skipped" or outcome.fetched else None),
        ("seconds", f"{outcome.seconds:.3f}" if outcome.seconds is not None else None),
        ("retries", len(outcome.retries)),
        ("warning", outcome.warning or None),  # e.g. kept although the Hub could not be asked
        ("causes", " | ".join(outcome.retries) or None),
    ]
    if outcome.action == "failed":
        server_text = safe_text(outcome.server_text, limit=SERVER_TEXT_LIMIT) if outcome.server_text else None
        fields += [("exit", outcome.exit_code), ("status", outcome.status), ("server_text", server_text)]
        fields.append(("error", outcome.error or "failed"))
    return "file " + " ".join(f"{key}={_value(safe_text(str(value)))}" for key, value in fields if value is not None)


def log_outcome(outcome: FileOutcome) -> None:
    """Write the file's line: INFO when it is present and verified, ERROR when it failed."""
    level = logging.ERROR if outcome.action == "failed" else logging.INFO
    log.log(level, "%s", file_line(outcome))


def parse_file_line(line: str) -> dict[str, str]:
    """The fields of a ``file …`` line (anywhere in a log line), JSON strings decoded."""
    start = line.find(" file ") + 6 if not line.startswith("file ") else 5
    fields: dict[str, str] = {}
    for key, raw in _FIELD.findall(line[start:]):
        fields[key] = json.loads(raw) if raw.startswith('"') else raw
    return fields
