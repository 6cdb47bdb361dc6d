"""Text for people and programs: sizes and durations, stderr messages, JSON on stdout, plain tables."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import PurePath
from typing import Any, TextIO
from unicodedata import combining, east_asian_width

from mdl.cli.render.stream import EventStream

# The one sanitiser for every sink (mdl/redact.py): no console-only variant, so stderr, stdout, the log and
# records show a server's text the same way.
from mdl.redact import printable, safe_doc, safe_text

__all__ = ["printable", "safe_text"]


def no_color(environ: Mapping[str, str]) -> bool:
    """True when NO_COLOR asks for no colour (https://no-color.org: present and not empty)."""
    return bool(environ.get("NO_COLOR"))


def color_enabled(*, isatty: bool, environ: Mapping[str, str]) -> bool:
    """Colour only on a terminal, without NO_COLOR, and not with TERM=dumb."""
    return isatty and not no_color(environ) and environ.get("TERM") != "dumb"


def _isatty(stream: TextIO) -> bool:
    """Whether ``stream`` is a terminal; streams without a usable ``isatty`` count as not."""
    isatty = getattr(stream, "isatty", None)
    return bool(isatty()) if callable(isatty) else False


_BOLD_RED, _YELLOW, _BOLD, _RESET = "\x1b[1;31m", "\x1b[33m", "\x1b[1m", "\x1b[0m"


class Console:
    """Messages for people on stderr: errors, warnings and info, redacted and free of control characters.

    With ``--progress json`` (``events`` given) stderr is a program's stream: each message is an event instead
    (``error``, ``warning``, ``note``), and -q does not thin it out (a program asked for every event)."""

    def __init__(
        self,
        stream: TextIO,
        *,
        environ: Mapping[str, str],
        quiet: bool = False,
        secrets: tuple[str, ...] = (),
        color: bool | None = None,
        events: EventStream | None = None,
    ) -> None:
        self._stream = stream
        self._quiet = quiet
        self._secrets = secrets
        self._color = color_enabled(isatty=_isatty(stream), environ=environ) if color is None else color
        self._lock = threading.Lock()
        self.events = events

    def _write(self, prefix: str, paint: str, message: str) -> None:
        """Write ``prefix`` (coloured on a terminal) and the cleaned message, then flush."""
        text = safe_text(message, multiline=True, secrets=self._secrets)
        if prefix and self._color:
            prefix = f"{paint}{prefix}{_RESET}"
        with self._lock:
            self._stream.write(f"{prefix}{text}\n")
            self._stream.flush()

    def error(self, message: str, hint: str | None = None, **fields: Any) -> None:
        """``mdl: error: <message>`` and, when given, ``  hint: <hint>``; shown even under -q.

        ``fields`` (the exit ``code``, the error's ``kind``) go into the ``error`` event only."""
        if self.events is not None:
            self.events.error(message, hint=hint, **fields)
            return
        self._write("mdl: error: ", _BOLD_RED, message)
        if hint:
            self._write("  hint: ", _BOLD, hint)

    def warn(self, message: str) -> None:
        """``mdl: warning: <message>``; -q prints nothing on stderr but errors, so quiet hides it."""
        if self.events is not None:
            self.events.warning(message)
        elif not self._quiet:
            self._write("mdl: warning: ", _YELLOW, message)

    def info(self, message: str) -> None:
        """``message`` as is, unless quiet."""
        if self.events is not None:
            self.events.note(message)
        elif not self._quiet:
            self._write("", "", message)


def _json_default(value: object) -> object:
    """Serialise the few non-JSON types a result may carry (paths, times); anything else is a bug."""
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def emit_json(doc: Mapping[str, Any], *, stream: TextIO, secrets: tuple[str, ...] = ()) -> None:
    """Write exactly one JSON document and a newline: indented on a terminal, one line otherwise.

    Every string in it passes ``safe_text`` (per-file errors echo servers; URLs may be signed).
    """
    indent = 2 if _isatty(stream) else None
    clean = safe_doc(doc, secrets=secrets)
    stream.write(json.dumps(clean, ensure_ascii=False, indent=indent, default=_json_default) + "\n")
    stream.flush()


def _display_width(text: str) -> int:
    """Terminal columns ``text`` takes: wide East Asian characters count 2, combining marks 0."""
    return sum(0 if combining(c) else 2 if east_asian_width(c) in "WF" else 1 for c in text)


def _cell(value: Any) -> str:
    """A table cell as text; None shows as "-"."""
    return "-" if value is None else safe_text(str(value))


ELLIPSIS = "…"
GAP = 2  # spaces between columns


def table_width(stream: TextIO, environ: Mapping[str, str]) -> int | None:
    """How wide a table on ``stream`` may be: on a terminal, ``$COLUMNS`` or the terminal's width; off one (a pipe,
    a file) ``None``, no limit, so a script reads every value whole."""
    if not _isatty(stream):
        return None
    columns = environ.get("COLUMNS", "")
    if columns.isdigit() and int(columns) > 0:
        return int(columns)
    try:
        return os.get_terminal_size(stream.fileno()).columns or 80
    except (OSError, ValueError):
        return 80


def _cut(text: str, width: int) -> str:
    """``text`` in at most ``width`` columns: whole when it fits, else its start and ``…``."""
    if _display_width(text) <= width:
        return text
    kept, used = [], 0
    for char in text:
        used += _display_width(char)
        if used > width - 1:
            break
        kept.append(char)
    return "".join(kept) + ELLIPSIS


def fit_cell(text: str, width: int) -> list[str]:
    """A cell's lines in ``width`` columns, never a word broken mid-way: text folds at its spaces; a word (a
    path, a URL, a hash) too long for the column is cut with ``…``."""
    if _display_width(text) <= width:
        return [text]
    lines: list[str] = []
    line = ""
    for word in text.split():
        joined = f"{line} {word}" if line else word
        if _display_width(joined) <= width:
            line = joined
            continue
        if line:
            lines.append(line)
        line = _cut(word, width)
    lines.append(line)
    return lines


def _column_widths(natural: list[int], least: list[int], width: int | None) -> list[int]:
    """Each column's width: its widest cell when the table fits in ``width`` (or there is no limit); else the
    widest columns give way first (all capped at one level), never below their header (headers are never split),
    and the first column (what the row is about: a name, a path) keeps a third of the room if it needs it."""
    room = None if width is None else width - GAP * (len(natural) - 1)
    if room is None or sum(natural) <= room:
        return list(natural)
    first = [max(least[0], min(natural[0], room // 3)), *least[1:]]
    least = first if sum(first) <= room else least

    def capped(level: int) -> list[int]:
        return [max(low, min(w, level)) for w, low in zip(natural, least, strict=True)]

    low, high = 0, max(natural)  # the highest level at which the table fits: capped(low) fits, capped(high) not
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if sum(capped(middle)) <= room else (low, middle)
    widths = capped(low)
    spare = room - sum(widths)
    for i, w in enumerate(widths):  # what the level leaves over goes to the first capped columns, one each
        if spare > 0 and w == low and natural[i] > low:
            widths[i] += 1
            spare -= 1
    return widths


def render_table(
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[tuple[str, str]],
    *,
    stream: TextIO,
    color: bool,
    width: int | None = None,
) -> None:
    """An aligned text table of ``columns`` (key, header); numbers align right, headers bold with colour.

    With ``width`` (a terminal's), the table fits in it: the widest columns narrow first, text folds at its
    spaces, and a value without spaces (a path, a URL, a hash) is cut with ``…``; headers are never split."""
    cells = [[_cell(row.get(key)) for key, _ in columns] for row in rows]
    headers = [header for _, header in columns]
    least = [_display_width(header) for header in headers]
    natural = [max([least[i], *(_display_width(line[i]) for line in cells)]) for i in range(len(columns))]
    widths = _column_widths(natural, least, width)
    numeric = [bool(rows) and all(isinstance(row.get(key), int | float) for row in rows) for key, _ in columns]

    def line(values: list[str]) -> str:
        padded = []
        for i, value in enumerate(values):
            pad = " " * (widths[i] - _display_width(value))
            padded.append(pad + value if numeric[i] else value + pad)
        return (" " * GAP).join(padded).rstrip()

    head = line(headers)
    stream.write((f"{_BOLD}{head}{_RESET}" if color else head) + "\n")
    for values in cells:
        folded = [fit_cell(value, widths[i]) for i, value in enumerate(values)]
        for n in range(max(len(lines) for lines in folded)):
            stream.write(line([lines[n] if n < len(lines) else "" for lines in folded]) + "\n")
    stream.flush()
