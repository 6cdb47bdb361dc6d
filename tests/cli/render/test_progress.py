"""Choosing the display: --progress auto|rich|plain|json|none, -q and --no-progress, terminals
and TERM=dumb.
"""

from __future__ import annotations

import io

import pytest

from mdl.cli.run import choose_progress_mode, make_reporter


@pytest.mark.parametrize(
    ("quiet", "no_progress", "json_output", "tty", "environ", "mode"),
    [
        (False, False, False, True, {"TERM": "xterm-256color"}, "rich"),
        (False, False, True, True, {"TERM": "xterm"}, "rich"),  # --json keeps progress on stderr
        (False, False, False, False, {"TERM": "xterm"}, "plain"),  # cron, CI, pipes
        (False, False, True, False, {}, "plain"),
        (False, False, False, True, {"TERM": "dumb"}, "plain"),
        (False, False, False, True, {"NO_COLOR": "1"}, "rich"),  # no colour, still bars
        (True, False, False, True, {}, "none"),
        (False, True, False, True, {}, "none"),
        (True, False, True, False, {}, "none"),
    ],
)
def test_auto_mode(
    quiet: bool, no_progress: bool, json_output: bool, tty: bool, environ: dict[str, str], mode: str
) -> None:
    for requested in (None, "auto"):
        got = choose_progress_mode(
            quiet=quiet,
            no_progress=no_progress,
            stderr_isatty=tty,
            environ=environ,
            requested=requested,
        )
        assert got == mode


@pytest.mark.parametrize(
    ("requested", "quiet", "no_progress", "tty", "mode"),
    [
        ("json", False, False, True, "json"),
        # for programs: -q silences people's output, not this channel
        ("json", True, False, False, "json"),
        ("json", False, True, False, "json"),
        ("rich", False, False, False, "rich"),  # asked for: bars even off a terminal
        ("plain", False, False, True, "plain"),
        ("PLAIN", False, False, True, "plain"),
        ("none", False, False, True, "none"),
        ("rich", True, False, True, "none"),  # -q and --no-progress still mean none
        ("plain", False, True, True, "none"),
    ],
)
def test_requested_mode(
    requested: str, quiet: bool, no_progress: bool, tty: bool, mode: str
) -> None:
    got = choose_progress_mode(
        quiet=quiet, no_progress=no_progress, stderr_isatty=tty, environ={}, requested=requested
    )
    assert got == mode


def test_unknown_mode_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="unknown progress mode"):
        choose_progress_mode(
            quiet=False, no_progress=False, stderr_isatty=True, environ={}, requested="fancy"
        )


def test_none_mode_writes_nothing() -> None:
    stream = io.StringIO()
    with make_reporter("none", stream=stream, environ={}) as reporter:
        reporter.begin(total_bytes=10, files=1)
        reporter.start("a", label="m/a", total=10, model="m", path="a")
        reporter.waiting("a", "lock")
        reporter.advance("a", 10)
        reporter.finish("a", ok=False, message="boom")
        reporter.note("quiet please")
    assert stream.getvalue() == ""
    assert reporter.transferred == 10
