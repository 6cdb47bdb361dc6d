"""`--progress json` is a pure stream: every stderr line is one JSON document, one `begin` first,
warnings and errors as events, one `end` last with the exit code and the summary — with or without
-q, on success, failure, a usage error or a bug.

Against the loopback Hub and CDN (tests/servers.py), through the real CLI.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from runfixtures import mdl
from servers import CdnServer, HubServer, make_data
from zygote import forked_mdl

from mdl.cli.render.console import EventStream, run_summary
from mdl.cli.run import Exit, Run, guarded
from mdl.cli.translate import failed_to_start, wants_events
from mdl.errors import UsageError

WEIGHTS = make_data(300_000, seed=31)
CONFIG = b'{"hidden_size": 8}'


def stream(text: str) -> list[dict[str, Any]]:
    """Every line of ``text`` as a JSON object (a line that is not one fails the test), checked as a
    stream: one ``begin``, first; one ``end``, last; every event stamped."""
    events = [json.loads(line) for line in text.splitlines()]
    assert events, "no events"
    assert all(isinstance(e, dict) and {"event", "time"} <= set(e) for e in events)
    kinds = [e["event"] for e in events]
    assert kinds[0] == "begin" and kinds.count("begin") == 1, kinds
    assert kinds[-1] == "end" and kinds.count("end") == 1, kinds
    return events


def end_of(events: list[dict[str, Any]]) -> dict[str, Any]:
    end = events[-1]
    assert set(end) == {"event", "time", "ok", "exit_code", "summary"}
    assert set(end["summary"]) == {
        "models",
        "files",
        "actions",
        "failed",
        "bytes",
        "seconds",
        "text",
    }
    return end


@pytest.fixture
def world(
    hub: HubServer, catalog: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, Path]:
    hub.add_repo("org/tiny", {"config.json": CONFIG, "model.safetensors": WEIGHTS})
    catalog.write_text('[models.tiny]\nrepo = "org/tiny"\n\n[models.badname]\nrepo = "org/nope"\n')
    monkeypatch.chdir(tmp_path)
    return {"tmp": tmp_path, "dest": tmp_path / "models"}


@pytest.mark.parametrize("quiet", [[], ["-q"]])
def test_a_pull_is_one_stream_from_begin_to_end(world: dict[str, Path], quiet: list[str]) -> None:
    result = mdl("pull", "tiny", "--progress", "json", *quiet)
    assert result.exit_code == 0, result.stderr
    assert result.stdout == f"{world['dest'] / 'tiny'}\n"  # the data stays on stdout
    events = stream(result.stderr)
    assert events[0]["files"] == 2 and events[0]["total"] == len(CONFIG) + len(WEIGHTS)
    assert [e["event"] for e in events].count("finish") == 2
    end = end_of(events)
    assert end["ok"] is True and end["exit_code"] == 0
    summary = end["summary"]
    assert summary["models"] == 1 and summary["files"] == 2 and summary["failed"] == 0
    assert summary["actions"] == {"downloaded": 2} and summary["bytes"] == len(CONFIG) + len(
        WEIGHTS
    )
    assert summary["text"].startswith("pulled 1 model (2 files: 2 downloaded)")


def test_a_failing_pull_says_each_error_once_and_ends_with_its_code(world: dict[str, Path]) -> None:
    result = mdl("pull", "badname", "tiny", "--progress", "json")
    assert result.exit_code == 4
    events = stream(result.stderr)
    errors = [e for e in events if e["event"] == "error"]
    assert [(e["model"], e["path"]) for e in errors] == [("badname", None)]
    assert "badname" in errors[0]["message"] and "hint" in errors[0]
    end = end_of(events)
    assert end["ok"] is False and end["exit_code"] == 4
    assert end["summary"]["failed"] == 1 and end["summary"]["actions"] == {
        "failed": 1,
        "downloaded": 2,
    }


def test_a_run_that_fails_before_any_file_still_begins_and_ends(world: dict[str, Path]) -> None:
    result = mdl(
        "pull", "tiny", "--progress", "json", "--catalog", str(world["tmp"] / "missing.toml")
    )
    assert result.exit_code == 2
    events = stream(result.stderr)
    assert events[0] == {
        "event": "begin",
        "time": events[0]["time"],
        "files": None,
        "total": None,
        "pid": os.getpid(),
    }
    [error] = [e for e in events if e["event"] == "error"]
    assert (
        error["code"] == 2
        and error["kind"]
        and error["model"] is None
        and "missing.toml" in error["message"]
    )
    assert end_of(events)["exit_code"] == 2


def test_a_usage_error_inside_the_command_is_an_event_and_an_end(world: dict[str, Path]) -> None:
    result = mdl("get", "-o", "x", "-d", "y", "http://127.0.0.1:9/x", "--progress", "json")
    assert result.exit_code == 2
    events = stream(result.stderr)
    assert [e["event"] for e in events] == ["begin", "error", "end"]
    assert events[1]["kind"] == "usage" and events[1]["code"] == 2
    assert end_of(events)["ok"] is False


def test_an_internal_error_still_ends_the_stream(monkeypatch: pytest.MonkeyPatch) -> None:
    stderr = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stderr)
    monkeypatch.delenv("MDL_DEBUG", raising=False)
    run = Run(progress="json")
    with pytest.raises(Exit) as ended, guarded(run):
        raise RuntimeError("a bug")
    assert ended.value.exit_code == 1
    events = stream(stderr.getvalue())
    assert [e["event"] for e in events] == ["begin", "error", "end"]
    assert events[1]["message"] == "internal error: RuntimeError: a bug" and events[1]["hint"]
    assert end_of(events)["exit_code"] == 1


def test_verify_is_one_stream(world: dict[str, Path]) -> None:
    assert mdl("pull", "tiny", "-q").exit_code == 0
    result = mdl("verify", "tiny", "--progress", "json")
    assert result.exit_code == 0, result.stderr
    end = end_of(stream(result.stderr))
    assert end["ok"] is True and end["summary"]["actions"] == {"verified": 2}


def _inline(name: str, data: bytes) -> dict[str, Any]:
    return {
        "type": "file_data",
        "filename": name,
        "data": base64.b64encode(data).decode(),
        "size": len(data),
    }


def test_a_job_output_with_three_outputs_is_one_stream(
    world: dict[str, Path], cdn: CdnServer
) -> None:
    big = make_data(100_000, seed=32)
    url = cdn.add_file("/results/job-9/model.safetensors", big, signed=True)
    job = {
        "id": "job-9",
        "status": "COMPLETED",
        "output": {
            "files": [
                _inline("a.bin", b"alpha"),
                _inline("b.bin", b"beta"),
                {"type": "redirect", "url": url, "filename": "model.safetensors", "size": len(big)},
            ]
        },
    }
    (world["tmp"] / "job.json").write_text(json.dumps(job))
    result = mdl("get", "job.json", "-d", "out", "--progress", "json")
    assert result.exit_code == 0, result.stderr
    # one begin, even when the sources are planned in batches (``plan`` events)
    events = stream(result.stderr)
    assert {e["path"] for e in events if e["event"] == "finish"} == {
        "a.bin",
        "b.bin",
        "model.safetensors",
    }
    assert all(e["files"] is not None for e in events if e["event"] in ("begin", "plan"))
    end = end_of(events)
    assert end["ok"] is True and end["summary"]["files"] == 3 and end["summary"]["models"] == 0
    out = world["tmp"] / "out"
    assert result.stdout.splitlines() == [
        str(out / "a.bin"),
        str(out / "b.bin"),
        str(out / "model.safetensors"),
    ]
    assert (
        hashlib.sha256((out / "model.safetensors").read_bytes()).digest()
        == hashlib.sha256(big).digest()
    )
    assert "X-Amz-Signature=" not in result.stderr


def test_a_list_asked_for_json_progress_is_a_stream_too(world: dict[str, Path]) -> None:
    """A command without a progress display still keeps the promise: begin, its warnings/notes,
    end.
    """
    result = mdl("--progress", "json", "list")
    assert result.exit_code == 0, result.stderr
    assert "tiny" in result.stdout
    events = stream(result.stderr)
    assert [e["event"] for e in events] == ["begin", "note", "end"]
    assert events[1]["message"].startswith("total: "), "list's total, as a note"


@pytest.mark.parametrize(
    ("argv", "wanted"),
    [
        (["pull", "--progress", "json", "--bogus"], True),
        (["--progress=json", "pull"], True),
        (["pull", "--progress", "plain"], False),
        (["get", "--", "--progress", "json"], False),
        (["pull", "--progress"], False),
    ],
)
def test_a_command_line_that_asks_for_events_is_seen_before_it_parses(
    argv: list[str], wanted: bool
) -> None:
    assert wants_events(argv) is wanted


def test_a_run_that_never_started_is_still_a_whole_stream() -> None:
    """What the entry point writes for a command line that did not parse (mdl/__main__.py)."""
    out = io.StringIO()
    failed_to_start(out, UsageError("No such option: --bogus", hint="see mdl --help"))
    events = stream(out.getvalue())
    assert [e["event"] for e in events] == ["begin", "error", "end"]
    assert events[1]["kind"] == "usage" and events[1]["code"] == 2
    assert events[1]["message"] == "No such option: --bogus"
    assert events[1]["hint"] == "see mdl --help"
    assert end_of(events)["exit_code"] == 2 and events[-1]["ok"] is False


@pytest.mark.parametrize(
    ("argv", "hint"),
    [
        (["pull", "--progress", "json", "--bogus"], "see mdl pull --help"),
        (["--progress=json", "--json", "nosuch"], "see mdl --help"),
        (["get", "org/x", "--progress", "json", "--max-workers"], "--connections N"),
    ],
)
def test_a_command_line_that_did_not_parse_is_a_whole_stream_in_a_real_process(
    argv: list[str], hint: str
) -> None:
    """The entry point's translator (mdl.cli.run.invoke): no usage text on a stderr that a
    program reads.
    """
    done = subprocess.run([forked_mdl(), *argv], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    events = stream(done.stderr)
    assert [e["event"] for e in events] == ["begin", "error", "end"]
    assert (
        events[1]["kind"] == "usage" and events[1]["code"] == 2 and argv[-1] in events[1]["message"]
    )
    assert end_of(events)["exit_code"] == 2
    assert hint in events[1]["hint"]  # as --json and stderr say it
    if "--json" in argv:
        doc = json.loads(done.stdout)
        assert (
            doc["ok"] is False
            and doc["error"]["code"] == 2
            and doc["error"]["hint"] == "see mdl --help"
        )
    else:
        assert done.stdout == ""


def test_one_begin_however_many_batches_and_nothing_after_end() -> None:
    out = io.StringIO()
    events = EventStream(out)
    events.begin(files=0, total=0)  # an empty phase waits for a truer begin
    events.begin(files=2, total=30)
    events.begin(files=0, total=0)  # a later empty batch says nothing
    events.begin(files=1, total=5)  # a later batch: its totals as a ``plan``
    events.warn("mirror m is not usable")
    events.end(exit_code=0, summary=run_summary((), seconds=0.0, text=None))
    events.info("too late")
    events.end(exit_code=3, summary={})
    got = stream(out.getvalue())
    assert [(e["event"], e.get("files"), e.get("total")) for e in got] == [
        ("begin", 2, 30),
        ("plan", 1, 5),
        ("warning", None, None),
        ("end", None, None),
    ]
    assert got[2]["message"] == "mirror m is not usable" and got[-1]["exit_code"] == 0


@pytest.mark.slow
@pytest.mark.parametrize(
    "argv",
    [
        ["--progress", "json", "frob"],
        ["--progress", "json", "pull", "--bogus"],
        ["pull", "--progress=json", "--jobs", "many"],
        ["--json", "--progress", "json", "get"],
    ],
)
def test_a_command_line_that_does_not_parse_is_a_whole_stream_from_the_real_entry_point(
    argv: list[str],
) -> None:
    """The console script itself (mdl/__main__.py), not only its parts: Click's usage text never
    reaches stderr.
    """
    import subprocess

    done = subprocess.run([forked_mdl(), *argv], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    events = stream(done.stderr)
    assert [e["event"] for e in events] == ["begin", "error", "end"]
    assert events[1]["kind"] == "usage" and end_of(events)["exit_code"] == 2


def test_work_stopped_for_a_reader_that_left_ends_141_in_the_exit_code_and_the_end_event(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`mdl verify --progress json | head -1`: the work stops as for a Ctrl-C (its report says
    interrupted, 130), and the run ends 141, as `cat` would; the stream's ``end`` says the same code
    as the process."""
    stderr = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stderr)
    run = Run(progress="json", command="verify")
    with pytest.raises(Exit) as ended, guarded(run):
        run.watch.fired = True  # what the watcher does when stdout's reader leaves mid-work
        raise Exit(130)
    assert ended.value.exit_code == 141
    assert end_of(stream(stderr.getvalue()))["exit_code"] == 141
