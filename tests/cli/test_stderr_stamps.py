"""Off a terminal (cron's shared log), every line mdl writes on stderr says when (UTC) and which run
(pid), as wget's and aria2c's logs do: two overlapping runs' lines stay apart. On a terminal nothing
is added; events stay pure JSON."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from terminal import STAMP, run_mdl, unstamped
from zygote import forked_mdl, shared

from mdl.cli.render.console import Console, StampedLines, stamped, stderr_sink


@pytest.fixture
def catalog(tmp_path: Path) -> Path:
    path = tmp_path / "catalog.toml"
    path.write_text('[models.tiny]\nrepo = "org/tiny"\n')
    return path


@pytest.mark.slow
def test_two_runs_writing_one_log_are_told_apart_by_their_stamps(
    tmp_path: Path, catalog: Path
) -> None:
    """Two runs at once, both appending to one file (`>>log 2>&1`): each line names its run's
    pid, after the time.
    """
    log = tmp_path / "cron.log"
    args = [sys.executable, "-m", "mdl", "pull", "nope", "--no-progress", "--catalog", str(catalog)]
    env = {**os.environ, "MDL_LOG_FILE": str(tmp_path / "mdl.log")}
    with log.open("a") as sink:
        runs = [subprocess.Popen(args, stdout=sink, stderr=sink, env=env) for _ in range(2)]
        assert [run.wait(timeout=60) for run in runs] == [2, 2]
    lines = log.read_text().splitlines()
    assert len(lines) == 4 and unstamped(log.read_text())  # every line is stamped
    by_pid: dict[int, list[str]] = {}
    for line in lines:
        match = STAMP.match(line)
        assert match, line
        by_pid.setdefault(int(match[1]), []).append(line[match.end() :])
        moment = datetime.strptime(line[:20], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        assert abs((datetime.now(UTC) - moment).total_seconds()) < 120
    assert sorted(by_pid) == sorted(run.pid for run in runs)
    for said in by_pid.values():  # each run's error and hint, kept as `mdl: error:` for grep
        assert said[0].startswith("mdl: error: ") and "nope" in said[0], said
        assert said[1].startswith("  hint: "), said


def test_a_usage_error_off_a_terminal_is_stamped_too(catalog: Path) -> None:
    done = subprocess.run(
        [forked_mdl(), "pull", "--limit-rate"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2 and done.stdout == ""
    said = unstamped(done.stderr)
    assert any(
        line.startswith("Error: Option '--limit-rate' requires an argument") for line in said
    ), done.stderr


@pytest.mark.slow
def test_on_a_terminal_nothing_is_added(tmp_path: Path, catalog: Path) -> None:
    env = {**os.environ, "MDL_LOG_FILE": str(tmp_path / "mdl.log")}
    ran = run_mdl(["pull", "nope", "--catalog", str(catalog)], env=env, tty=True)
    assert ran.code == 2
    lines = [line for line in ran.screen.splitlines() if line.strip()]
    assert lines[0].startswith("mdl: error: ") and lines[1].startswith("  hint: "), ran.screen
    assert not STAMP.search(ran.screen), ran.screen


@pytest.mark.slow
def test_progress_json_stays_pure_and_begin_names_the_pid(tmp_path: Path, catalog: Path) -> None:
    env = {**os.environ, "MDL_LOG_FILE": str(tmp_path / "mdl.log")}
    args = ["pull", "nope", "--progress", "json", "--catalog", str(catalog)]
    run = shared().spawn(args, env=env, cwd=Path.cwd())  # mdl's own pid, as begin names it
    stderr = run.communicate(timeout=60)[1].decode()
    # every line a JSON document: no stamps
    events = [json.loads(line) for line in stderr.splitlines()]
    assert [e["event"] for e in events] == ["begin", "error", "end"]
    assert events[0]["pid"] == run.pid


def test_stamped_lines_prefix_each_line_once_in_one_write() -> None:
    """Pieces of a line get one stamp; a blank line gets no trailing space; each write is one
    write below.
    """
    below = io.StringIO()
    writes: list[str] = []
    below.write = writes.append  # type: ignore[method-assign]
    clock = iter([datetime(2026, 11, 25, 14, 7, 33, tzinfo=UTC)] * 10)
    sink = StampedLines(below, wallclock=lambda: next(clock), pid=4242)
    sink.write("mdl: warn")
    sink.write("ing: x\n\n  hint: y\n")
    sink.write("")
    assert writes == [
        "2026-11-25T14:07:33Z [4242] mdl: warn",
        "ing: x\n2026-11-25T14:07:33Z [4242]\n2026-11-25T14:07:33Z [4242]   hint: y\n",
    ]
    assert stamped(sink) is sink and not sink.isatty()  # never stamped twice


def test_the_console_says_every_kind_of_line_through_the_sink() -> None:
    below = io.StringIO()
    console = Console(stamped(below, pid=7), environ={})
    console.error("boom", hint="try again")
    console.warn("careful")
    console.info("pulled 1 model")
    assert [line.split(" ", 1)[1] for line in below.getvalue().splitlines()] == [
        "[7] mdl: error: boom",
        "[7]   hint: try again",
        "[7] mdl: warning: careful",
        "[7] pulled 1 model",
    ]
    assert unstamped(below.getvalue())


def test_the_sink_is_the_stream_itself_on_a_terminal_or_for_events() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal, pipe = Terminal(), io.StringIO()
    assert stderr_sink(terminal) is terminal
    assert stderr_sink(pipe, events=True) is pipe
    assert isinstance(stderr_sink(pipe), StampedLines)
