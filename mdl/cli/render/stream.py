"""``--progress json``'s stderr: the progress display, the console and the run's ending all write through one
:class:`EventStream`, so a program never meets a human line, a second ``begin`` or an event after ``end``."""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from itertools import pairwise
from typing import Any, TextIO

from mdl.redact import safe_doc


def utc(moment: datetime) -> datetime:
    """``moment`` in UTC; a naive one (an injected clock) is taken as UTC."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


class EventStream:
    """Events, one JSON document a line: ``begin`` first (null totals when something else comes first), a later
    batch's totals as ``plan``, ``end`` last (later events are dropped)."""

    def __init__(
        self, stream: TextIO, *, secrets: tuple[str, ...] = (), wallclock: Callable[[], datetime] | None = None
    ) -> None:
        self._stream, self._secrets, self._wallclock = stream, secrets, wallclock or (lambda: datetime.now(UTC))
        self._lock = threading.RLock()
        self._begun = self._ended = False
        self._empty: dict[str, int | None] | None = None  # an empty batch's totals, said only if nothing follows
        self.errors: set[tuple[str | None, str | None]] = set()  # (model, path) an ``error`` event named

    def _write(self, event: str, fields: Mapping[str, Any]) -> None:
        stamp = utc(self._wallclock()).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        doc: dict[str, Any] = {"event": event, "time": stamp, **fields}
        clean = safe_doc(doc, secrets=self._secrets)
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
        """The run's totals: ``begin`` the first time, ``plan`` later. An empty batch waits: a later batch's totals
        make a truer ``begin``, and a ``plan`` of nothing says nothing."""
        with self._lock:
            if files <= 0 and not self._begun:
                self._empty = {"files": files, "total": total}
            elif files > 0 and not self._ended:
                self._write("plan" if self._begun else "begin", {"files": files, "total": total})
                self._begun = True

    def error(self, message: str, *, model: str | None = None, path: str | None = None, **fields: Any) -> None:
        """An ``error`` event: model, path, label, message, hint, then any other ``fields`` (code, kind)."""
        with self._lock:
            if model is not None or path is not None:
                self.errors.add((model, path))
            label, hint = fields.pop("label", None), fields.pop("hint", None)
            self.emit("error", model=model, path=path, label=label, message=message, hint=hint, **fields)

    def warning(self, message: str) -> None:
        self.emit("warning", message=message)

    def note(self, message: str) -> None:
        self.emit("note", message=message)

    def end(self, *, exit_code: int, summary: Mapping[str, Any]) -> None:
        with self._lock:  # (emit drops what comes after the first end)
            self.emit("end", ok=exit_code == 0, exit_code=exit_code, summary=dict(summary))
            self._ended = True


def run_summary(outcomes: Sequence[Any], *, seconds: float, text: str | None) -> dict[str, Any]:
    """The ``end`` event's ``summary``: counts, bytes fetched, seconds, and the summary line people read."""
    return {
        "models": len({o.model for o in outcomes if o.model}),
        "files": sum(1 for o in outcomes if o.path is not None),
        "actions": dict(Counter(o.action for o in outcomes)),
        "failed": sum(1 for o in outcomes if o.failing),
        "bytes": sum(o.fetched for o in outcomes),
        "seconds": round(seconds, 3),
        "text": text,
    }


def failed_to_start(stream: TextIO, *, message: str, exit_code: int, kind: str = "usage") -> None:
    """The whole stream of a run whose command line did not parse: ``begin``, the ``error`` and ``end``."""
    events = EventStream(stream)
    events.error(message, code=exit_code, kind=kind)
    events.end(exit_code=exit_code, summary=run_summary((), seconds=0.0, text=None))


def wants_events(argv: Sequence[str]) -> bool:
    """Whether a command line (not parsed) asks for ``--progress json``."""
    args = list(argv)
    if "--" in args:
        del args[args.index("--") :]  # what follows are arguments, not options
    return "--progress=json" in args or ("--progress", "json") in pairwise(args)
