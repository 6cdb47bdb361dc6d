"""What the user sees: picks the progress display (rich / plain / json / none); re-exports the console helpers."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Literal, TextIO

from mdl.cli.render.base import Reporter
from mdl.cli.render.console import (
    Console,
    color_enabled,
    emit_json,
    no_color,
    render_table,
)
from mdl.cli.render.log import setup_logging
from mdl.cli.render.stream import EventStream
from mdl.units import human_duration, human_rate, human_size

__all__ = [
    "PROGRESS_CHOICES",
    "Console",
    "EventStream",
    "ProgressMode",
    "Reporter",
    "choose_progress_mode",
    "color_enabled",
    "emit_json",
    "human_duration",
    "human_rate",
    "human_size",
    "make_reporter",
    "no_color",
    "render_table",
    "setup_logging",
]

ProgressMode = Literal["rich", "plain", "json", "none"]
PROGRESS_CHOICES = ("auto", "rich", "plain", "json", "none")


def choose_progress_mode(
    *,
    quiet: bool,
    no_progress: bool,
    json_output: bool,
    stderr_isatty: bool,
    environ: Mapping[str, str],
    requested: str | None = None,
) -> ProgressMode:
    """Pick the display for ``--progress`` (auto|rich|plain|json|none).

    ``json`` is for programs and wins even over -q and --no-progress (they silence what people read); otherwise
    -q and --no-progress mean none; rich and plain are taken as asked; auto is rich on a terminal, plain lines
    off it or with TERM=dumb.
    """
    # json_output does not matter: progress goes to stderr, so stdout stays pure JSON.
    del json_output
    choice = (requested or "auto").lower()
    if choice not in PROGRESS_CHOICES:
        raise ValueError(f"unknown progress mode {requested!r}")  # the option's choices keep users out of here
    if choice == "json":
        return "json"
    if quiet or no_progress or choice == "none":
        return "none"
    if choice in ("rich", "plain"):
        return "rich" if choice == "rich" else "plain"
    if not stderr_isatty or environ.get("TERM") == "dumb":
        return "plain"
    return "rich"


def make_reporter(
    mode: ProgressMode,
    *,
    stream: TextIO,
    environ: Mapping[str, str],
    clock: Callable[[], float] = time.monotonic,
    wallclock: Callable[[], datetime] | None = None,
    interval: float = 5.0,
    secrets: tuple[str, ...] = (),
    events: EventStream | None = None,
) -> Reporter:
    """The reporter for ``mode``, writing to ``stream`` (stderr); use it as a context manager or close it.

    ``events`` is the run's one JSON event stream (``json`` mode), shared with its console so that ``begin`` is
    said once and ``end`` last."""
    stamp = wallclock or (lambda: datetime.now(UTC))
    if mode == "rich":
        from mdl.cli.render.bars import make_rich

        return make_rich(stream=stream, environ=environ, clock=clock, secrets=secrets)
    if mode == "plain":
        from mdl.cli.render.plain import PlainReporter

        return PlainReporter(stream=stream, clock=clock, wallclock=stamp, interval=interval, secrets=secrets)
    if mode == "json":
        from mdl.cli.render.events import JsonReporter

        return JsonReporter(stream=stream, clock=clock, wallclock=stamp, secrets=secrets, events=events)
    return Reporter()
