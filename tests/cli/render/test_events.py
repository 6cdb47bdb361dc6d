"""``--progress json``: one event per line on stderr, each parseable, named by model and path,
redacted.
"""

from __future__ import annotations

import io
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

import pytest
from clocks import FakeClock, wallclock
from runfixtures import mdl
from servers import HubServer, make_data

from mdl import api
from mdl.cli.run import Run, make_reporter
from mdl.redact import Secrets

SIGNED = "https://cdn.example.com/m.bin?X-Amz-Signature=deadbeefcafe&X-Amz-Credential=AKIA123"
WEIGHTS = make_data(3_000_000, seed=11)


def events(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_event_shapes(clock: FakeClock) -> None:
    stream = io.StringIO()
    reporter = make_reporter("json", stream=stream, environ={}, clock=clock, wallclock=wallclock)
    reporter.begin(total_bytes=3000, files=2)
    reporter.start(
        "a", label="tiny/model.bin", total=2000, completed=500, model="tiny", path="model.bin"
    )
    reporter.start("b", label="tiny/config.json", total=1000, model="tiny", path="config.json")
    reporter.waiting("b", "another mdl run holds the lock")
    for _ in range(8):
        clock.now += 0.25
        reporter.advance("a", 100)
    reporter.note("no bytes for 30 s, reconnecting (1/20)")
    reporter.finish("a", ok=True)
    reporter.finish("b", ok=False, message="sha256 mismatch")
    reporter.close()
    got = events(stream)
    assert all(e["time"] == "2026-11-22T08:03:39.000Z" for e in got)
    for e in got:
        del e["time"]
    file_a = {"model": "tiny", "path": "model.bin", "label": "tiny/model.bin"}
    file_b = {"model": "tiny", "path": "config.json", "label": "tiny/config.json"}
    assert got == [
        {"event": "begin", "files": 2, "total": 3000, "pid": os.getpid()},
        {"event": "start", **file_a, "total": 2000, "completed": 500},
        {"event": "start", **file_b, "total": 1000, "completed": 0},
        {"event": "waiting", **file_b, "message": "another mdl run holds the lock"},
        # at most once a second
        {"event": "progress", **file_a, "bytes": 900, "total": 2000, "rate": 400},
        {"event": "progress", **file_a, "bytes": 1300, "total": 2000, "rate": 400},
        {"event": "note", "message": "no bytes for 30 s, reconnecting (1/20)"},
        {"event": "finish", **file_a, "bytes": 1300, "seconds": 2.0},
        {"event": "error", **file_b, "message": "sha256 mismatch", "hint": None},
    ]


def test_events_are_redacted_and_single_lines(clock: FakeClock) -> None:
    stream = io.StringIO()
    reporter = make_reporter(
        "json", stream=stream, environ={}, clock=clock, secrets=Secrets(("s3cr3t-value",))
    )
    reporter.start("x", label="evil/\x1b[2Jname\n.bin", total=None, model="evil", path="name\n.bin")
    reporter.finish("x", ok=False, message=f"403 for {SIGNED}\nbody: s3cr3t-value\r\x1b[31m")
    reporter.note("hf_abcdefghijklmnop is your token")
    text = stream.getvalue()
    assert len(text.splitlines()) == 4  # begin (said first, totals unknown) and the three
    for secret in ("deadbeefcafe", "s3cr3t-value", "hf_abcdefghijklmnop", "\x1b", "\\u001b"):
        assert secret not in text
    begin = {
        "event": "begin",
        "time": events(stream)[0]["time"],
        "files": None,
        "total": None,
        "pid": os.getpid(),
    }
    assert events(stream)[0] == begin
    assert events(stream)[2]["message"].startswith("403 for https://cdn.example.com/m.bin?REDACTED")
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", events(stream)[0]["time"])


@pytest.fixture
def tiny(hub: HubServer, catalog: Path, tmp_path: Path) -> Path:
    """A Hub with one small repo and a catalog naming it; returns the destination."""
    hub.add_repo("org/tiny", {"config.json": b'{"hidden_size": 8}', "model.safetensors": WEIGHTS})
    catalog.write_text('[models.tiny]\nrepo = "org/tiny"\n')
    return tmp_path / "models"


def check_pull_events(lines: list[str]) -> None:
    assert lines, "no events"
    got = [json.loads(line) for line in lines]  # every line is one JSON object
    assert all({"event", "time"} <= set(e) for e in got)
    kinds = [e["event"] for e in got]
    assert kinds[0] == "begin" and kinds.count("start") == 2 and kinds.count("finish") == 2
    finished = {e["label"]: e["bytes"] for e in got if e["event"] == "finish"}
    assert finished == {"tiny/config.json": 18, "tiny/model.safetensors": len(WEIGHTS)}


def test_json_events_from_a_real_pull(tiny: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stderr = io.StringIO()
    # the run's one event stream writes to the stderr it starts with
    monkeypatch.setattr(sys, "stderr", stderr)
    run = Run(progress="json", quiet=True)  # -q silences people's output, not the events asked for
    with run.reporter() as progress:
        report = api.pull("tiny", progress=progress)
    assert report.ok
    check_pull_events(stderr.getvalue().splitlines())


def test_cli_progress_json(tiny: Path) -> None:
    helptext = mdl("pull", "--help", env={"COLUMNS": "200"}).output
    if not re.search(r"(?<![\w-])--progress\b", helptext):
        pytest.skip(
            "`mdl pull --progress` lands from another helper's branch; unskips itself once it is"
            " there"
        )
    # With -q the events are all there is on stderr (errors aside): every line parses.
    result = mdl("pull", "tiny", "-q", "--progress", "json")
    assert result.exit_code == 0, result.output
    check_pull_events(result.stderr.splitlines())
    # Without -q too: people's lines (the summary, warnings) become events, so every line still
    # parses.
    again = mdl("pull", "tiny", "--force", "--progress", "json")
    assert again.exit_code == 0, again.output
    check_pull_events(again.stderr.splitlines())
