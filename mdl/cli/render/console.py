"""Text for people and programs: stderr messages, or with ``--progress json`` one
:class:`EventStream` (a program never meets a human line, a second ``begin`` or an event after
``end``); JSON on stdout; tables that fit the terminal."""

from __future__ import annotations

import contextlib
import json
import os
import re
import threading
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from itertools import accumulate, zip_longest
from typing import Any, NamedTuple, TextIO, cast
from unicodedata import combining, east_asian_width

from mdl.redact import Secrets, safe_doc, safe_text, shown_data


def no_color(environ: Mapping[str, str]) -> bool:
    """True when NO_COLOR asks for no colour (https://no-color.org: present and not empty)."""
    return bool(environ.get("NO_COLOR"))


def color_enabled(*, isatty: bool, environ: Mapping[str, str]) -> bool:
    """Colour only on a terminal, without NO_COLOR, and not with TERM=dumb."""
    return isatty and not no_color(environ) and environ.get("TERM") != "dumb"


def isatty(stream: Any) -> bool:
    """Whether ``stream`` is a terminal; streams without a usable ``isatty`` (tests) count as
    not.
    """
    return callable(method := getattr(stream, "isatty", None)) and bool(method())


def utc(moment: datetime) -> datetime:
    """``moment`` in UTC; a naive one (an injected clock) is taken as UTC."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def line_prefix(moment: datetime, pid: int) -> str:
    """What starts each line mdl writes on stderr off a terminal: ``2026-11-25T14:07:33Z [4242]
    `` (UTC, pid).
    """
    return f"{utc(moment).strftime('%Y-%m-%dT%H:%M:%SZ')} [{pid}] "


class StampedLines:
    """stderr off a terminal (cron, CI, a shared log): every line starts with :func:`line_prefix` —
    when, and which run — as wget's and aria2c's logs do, so two runs writing one log stay apart. A
    write is one write below."""

    def __init__(
        self,
        stream: TextIO,
        *,
        wallclock: Callable[[], datetime] | None = None,
        pid: int | None = None,
    ):
        self.stream = stream
        self._wallclock = wallclock or (lambda: datetime.now(UTC))
        self._pid = os.getpid() if pid is None else pid
        self._lock = threading.Lock()
        self._at_start = True  # the next character begins a line

    def write(self, text: str) -> int:
        with self._lock:
            prefix, out = line_prefix(self._wallclock(), self._pid), []
            for line in re.findall(r"[^\n]*\n|[^\n]+", text):
                if self._at_start:  # (a blank line gets no trailing space)
                    line = (prefix.rstrip() if line == "\n" else prefix) + line
                out.append(line)
                self._at_start = line.endswith("\n")
            if out:
                self.stream.write("".join(out))
        return len(text)

    def flush(self) -> None:
        self.stream.flush()

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        return self.stream.fileno()


def stamped(stream: TextIO, **options: Any) -> TextIO:
    """``stream`` with each line stamped (:class:`StampedLines`; once: a stamped stream is
    returned as it is).
    """
    if isinstance(stream, StampedLines):
        return stream
    return cast(TextIO, StampedLines(stream, **options))


def unstamped(stream: TextIO) -> TextIO:
    """The stream under :func:`stamped` (a display that draws on the terminal itself needs it as
    it is).
    """
    return stream.stream if isinstance(stream, StampedLines) else stream


class _Lenient:
    """stderr as the CLI writes it: a write or flush that fails (a full disk under a cron log, a
    terminal hung up) is dropped. Lines for people never stop the work: the files, stdout's data
    and the exit code say how it ended, as curl and wget go on."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        with contextlib.suppress(OSError, ValueError):  # (a closed stream: ValueError)
            self.stream.write(text)
        return len(text)

    def flush(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.stream.flush()

    def isatty(self) -> bool:
        return isatty(self.stream)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


def lenient(stream: TextIO) -> TextIO:
    """``stream`` (the process's stderr) with failing writes dropped (:class:`_Lenient`)."""
    return stream if isinstance(stream, _Lenient) else cast(TextIO, _Lenient(stream))


def stderr_sink(stream: TextIO, *, events: bool = False) -> TextIO:
    """Where mdl's lines for people go: ``stream`` on a terminal (nothing added) or for an event
    stream (pure JSON, each event with its own ``time``), else :func:`stamped`."""
    return stream if events or isatty(stream) else stamped(stream)


class EventStream:
    """Events, a JSON document a line: ``begin`` first (null totals if something else is),
    ``plan``, ``end`` last.
    """

    def __init__(
        self,
        stream: TextIO,
        *,
        secrets: Secrets | None = None,
        wallclock: Callable[[], datetime] | None = None,
    ) -> None:
        self._stream, self._secrets = stream, secrets
        self._wallclock = wallclock or (lambda: datetime.now(UTC))
        self._lock = threading.RLock()
        self._begun = self._ended = False
        # an empty batch's totals, said only if nothing follows
        self._empty: dict[str, int | None] | None = None
        # (model, path) an ``error`` event named
        self.errors: set[tuple[str | None, str | None]] = set()

    def _write(self, event: str, fields: Mapping[str, Any]) -> None:
        stamp = utc(self._wallclock()).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        # which run the stream is (two runs' streams may share a file, as their plain lines)
        if event == "begin":
            fields = {**fields, "pid": os.getpid()}
        clean = safe_doc({"event": event, "time": stamp, **fields}, secrets=self._secrets)
        try:
            self._stream.write(json.dumps(clean, ensure_ascii=False) + "\n")
            self._stream.flush()
        except (OSError, ValueError):  # stderr's reader left: the run's outcome is its exit code
            self._ended = True

    def emit(self, event: str, /, **fields: Any) -> None:
        with self._lock:
            if self._ended:
                return
            if not self._begun:
                self._begun = True
                self._write("begin", self._empty or {"files": None, "total": None})
            self._write(event, fields)

    def begin(self, *, files: int, total: int | None) -> None:
        """The run's totals: ``begin`` the first time, ``plan`` later; an empty batch's wait for
        a truer ``begin``.
        """
        with self._lock:
            if files <= 0 and not self._begun:
                self._empty = {"files": files, "total": total}
            elif files > 0 and not self._ended:
                self._write("plan" if self._begun else "begin", {"files": files, "total": total})
                self._begun = True

    def error(
        self, message: str, *, model: str | None = None, path: str | None = None, **fields: Any
    ) -> None:
        """An ``error`` event: model, path, label, message, hint, then any other ``fields``
        (code, kind).
        """
        with self._lock:
            if model is not None or path is not None:
                self.errors.add((model, path))
            label, hint = fields.pop("label", None), fields.pop("hint", None)
            self.emit(
                "error", model=model, path=path, label=label, message=message, hint=hint, **fields
            )

    # As a Console says them: a run's console is its event stream with --progress json.
    def warn(self, message: str) -> None:
        self.emit("warning", message=message)

    def info(self, message: str) -> None:
        self.emit("note", message=message)

    def end(self, *, exit_code: int, summary: Mapping[str, Any]) -> None:
        with self._lock:  # (emit drops what comes after the first end)
            self.emit("end", ok=exit_code == 0, exit_code=exit_code, summary=dict(summary))
            self._ended = True


def run_summary(
    outcomes: Sequence[Any], *, seconds: float, text: str | None, waited: float = 0.0
) -> dict[str, Any]:
    """The ``end`` event's ``summary``: counts, bytes fetched, seconds (``waited``: of them, the
    wall time files waited on other machines, when they did), and the summary line people read.
    """
    return {
        "models": len({o.model for o in outcomes if o.model}),
        "files": sum(1 for o in outcomes if o.path is not None),
        "actions": dict(Counter(o.action for o in outcomes)),
        "failed": sum(1 for o in outcomes if o.failing),
        "bytes": sum(o.fetched for o in outcomes),
        **_reused(outcomes),
        "seconds": round(seconds, 3),
        **({"waited": round(waited, 3)} if waited else {}),
        "text": text,
    }


def _reused(outcomes: Sequence[Any]) -> dict[str, int]:
    """``reused``: bytes copied from files already here, said only when there were some."""
    reused = sum(o.reused for o in outcomes)
    return {"reused": reused} if reused else {}


_BOLD_RED, _YELLOW, _BOLD, _RESET = "\x1b[1;31m", "\x1b[33m", "\x1b[1m", "\x1b[0m"


class Console:
    """Errors, warnings and info for people on stderr, redacted (with ``--progress json``, the
    run's events).
    """

    def __init__(
        self,
        stream: TextIO,
        *,
        environ: Mapping[str, str],
        quiet: bool = False,
        secrets: Secrets | None = None,
        color: bool | None = None,
    ) -> None:
        self._stream, self._quiet, self._secrets = stream, quiet, secrets
        self._color = (
            color_enabled(isatty=isatty(stream), environ=environ) if color is None else color
        )
        self._lock = threading.Lock()

    def _line(self, prefix: str, paint: str, message: str) -> str:
        text = safe_text(message, multiline=True, secrets=self._secrets)
        if prefix and self._color:
            prefix = f"{paint}{prefix}{_RESET}"
        return f"{prefix}{text}\n"

    def _write(self, text: str) -> None:
        with self._lock:
            self._stream.write(text)
            self._stream.flush()

    def error(self, message: str, *, hint: str | None = None, **fields: Any) -> None:
        """``mdl: error: <message>`` and ``  hint: <hint>``, even under -q; ``fields`` are for
        events only. One write: memory that runs out while it is made leaves neither line said
        (the last resort then says both), never the error twice.
        """
        hinted = self._line("  hint: ", _BOLD, hint) if hint else ""
        self._write(self._line("mdl: error: ", _BOLD_RED, message) + hinted)

    def warn(self, message: str) -> None:
        """``mdl: warning: <message>``, unless quiet."""
        if not self._quiet:
            self._write(self._line("mdl: warning: ", _YELLOW, message))

    def info(self, message: str) -> None:
        """``message`` as is, unless quiet."""
        if not self._quiet:
            self._write(self._line("", "", message))


def display_width(text: str) -> int:
    """Terminal columns ``text`` takes: wide East Asian characters count 2, combining marks 0."""
    return sum(_char_width(c) for c in text)


def _char_width(char: str) -> int:
    return 0 if combining(char) else 2 if east_asian_width(char) in "WF" else 1


def head(text: str, width: int) -> str:
    """The longest start of ``text`` that fits ``width`` columns."""
    used = accumulate(map(_char_width, text))  # columns taken up to each character
    end = next((i for i, columns in enumerate(used) if columns > width), len(text))
    return text[:end]


ELLIPSIS = "…"
GAP = 2  # spaces between columns


def table_width(stream: TextIO, environ: Mapping[str, str]) -> int | None:
    """A table's width on ``stream``: ``$COLUMNS`` or the terminal's; off a terminal None, every
    value whole.
    """
    if not isatty(stream):
        return None
    columns = environ.get("COLUMNS", "")
    if columns.isdigit() and int(columns) > 0:
        return int(columns)
    try:
        return os.get_terminal_size(stream.fileno()).columns or 80
    except (OSError, ValueError):
        return 80


def fit_path(path: str, width: int | None) -> str:
    """A path in ``width`` columns (None: whole), never to be wrapped mid-name by the terminal:
    whole when it fits, else its first folder, ``…`` and as many of its last names as fit
    (``/home/…/models/tiny-bert``); a last name wider than the room keeps its end."""
    if width is None or display_width(path) <= width:
        return path
    parts = path.split("/")
    lead_at = 2 if path.startswith("/") else 1
    lead, middle, kept = "/".join(parts[:lead_at]), parts[lead_at:-1], parts[-1]
    for part in reversed(middle):
        if display_width(f"{lead}/{ELLIPSIS}/{part}/{kept}") > width:
            break
        kept = f"{part}/{kept}"
    for shown in (f"{lead}/{ELLIPSIS}/{kept}", f"{ELLIPSIS}/{kept}"):
        if display_width(shown) <= width:
            return shown
    tail = kept[-max(width - 1, 1) :]
    while display_width(tail) > width - 1 and len(tail) > 1:
        tail = tail[1:]
    return ELLIPSIS + tail


def fit_cell(text: str, width: int) -> list[str]:
    """A cell's lines in ``width`` columns: text folds at its spaces; a word too long (a path, a
    URL) is cut.
    """
    if display_width(text) <= width:
        return [text]
    lines: list[str] = []
    line = ""
    for word in text.split():
        joined = f"{line} {word}" if line else word
        if display_width(joined) <= width:
            line = joined
            continue
        if line:
            lines.append(line)
        line = word if display_width(word) <= width else head(word, width - 1) + ELLIPSIS
    lines.append(line)
    return lines


def _column_widths(natural: list[int], least: list[int], width: int | None) -> list[int]:
    """Widest cells if the table fits; else the widest give way first (to one level), never below
    their header.
    """
    room = None if width is None else width - GAP * (len(natural) - 1)
    if room is None or sum(natural) <= room:
        return list(natural)
    first = [max(least[0], min(natural[0], room // 3)), *least[1:]]
    # the first column (a name, a path) keeps a third of the room
    least = first if sum(first) <= room else least

    def capped(level: int) -> list[int]:
        return [max(low, min(w, level)) for w, low in zip(natural, least, strict=True)]

    # the highest level at which the table fits (0: none does, every column at its least)
    low = max(natural) - 1
    while low > 0 and sum(capped(low)) > room:
        low -= 1
    widths = capped(low)
    spare = room - sum(widths)
    # what the level leaves over goes to the first capped columns, one each
    for i, w in enumerate(widths):
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
    """An aligned table of ``columns`` (key, header) in ``width`` if given; numbers right,
    headers bold in colour.
    """
    cells = [[_cell(row.get(key)) for key, _ in columns] for row in rows]
    headers = [header for _, header in columns]
    layout = _Columns(_fitted_widths(cells, headers, width), _numeric(rows, columns))
    head = layout.line(headers)
    stream.write((f"{_BOLD}{head}{_RESET}" if color else head) + "\n")
    for values in cells:
        for line in layout.folded(values):
            stream.write(line + "\n")
    stream.flush()


def _cell(value: object) -> str:
    """A value as a table shows it: ``-`` when absent, data made printable."""
    return "-" if value is None else shown_data(str(value))


def _fitted_widths(cells: list[list[str]], headers: list[str], width: int | None) -> list[int]:
    """Each column's width: its widest cell, given way to fit ``width``, never below its
    header."""
    least = [display_width(header) for header in headers]
    natural = [max(map(display_width, column)) for column in zip(headers, *cells, strict=True)]
    return _column_widths(natural, least, width)


def _numeric(rows: Sequence[Mapping[str, Any]], columns: Sequence[tuple[str, str]]) -> list[bool]:
    """Which columns hold numbers only (aligned right)."""
    return [
        bool(rows) and all(isinstance(row.get(key), int | float) for row in rows)
        for key, _ in columns
    ]


class _Columns(NamedTuple):
    """A table's column widths, and which columns are numbers (aligned right)."""

    widths: list[int]
    numeric: list[bool]

    def line(self, values: Sequence[str]) -> str:
        """One line: each value padded to its column's width, numbers right."""
        shown = []
        for value, room, right in zip(values, self.widths, self.numeric, strict=True):
            pad = " " * (room - display_width(value))
            shown.append(pad + value if right else value + pad)
        return (" " * GAP).join(shown).rstrip()

    def folded(self, values: list[str]) -> list[str]:
        """One row's lines: each cell folded into its column, a shorter one blank below."""
        cells = [fit_cell(value, room) for value, room in zip(values, self.widths, strict=True)]
        return [self.line(line) for line in zip_longest(*cells, fillvalue="")]
