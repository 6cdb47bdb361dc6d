"""A wait on the Hub's rate limit is one stderr line in every display people read -- plain lines and
``--no-progress`` (cron) too, not only the log and ``--json`` (issue 59 H); ``-q`` says nothing,
``--progress json`` a ``note`` event. Against the loopback Hub answering 429 with the IETF
``RateLimit`` header."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from runfixtures import mdl, use_catalog
from servers import Fault, HubServer, make_data

from mdl.cli.run import make_reporter

LINE = "mdl: waiting 1 s: the Hub's rate limit (resolvers)"
CATALOG = '[models.tiny]\nrepo = "org/tiny"\n'


@pytest.fixture
def refusing(hub: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> HubServer:
    """org/tiny, its first resolve refused for 1 s as the Hub refuses (no Retry-After)."""
    hub.add_repo("org/tiny", {"config.json": b"{}\n", "model.safetensors": make_data(50_000)})
    use_catalog(tmp_path, monkeypatch, CATALOG, endpoint=hub.url)
    headers = {
        "RateLimit": '"resolvers";r=0;t=1',
        "RateLimit-Policy": '"fixed window";"resolvers";q=1000;w=300',
    }
    body = b"You have exceeded our rate limit for resolvers"
    hub.faults.add(
        Fault("status", status=429, body=body, headers=headers, path_prefix="/org/tiny/resolve/")
    )
    return hub


@pytest.mark.slow
@pytest.mark.parametrize("display", [["--no-progress"], ["--progress", "plain"], []])
def test_a_wait_on_the_hub_is_one_stderr_line(
    refusing: HubServer, tmp_path: Path, display: list[str]
) -> None:
    result = mdl("pull", "tiny", *display)
    assert result.exit_code == 0, result.stderr
    said = [line for line in result.stderr.splitlines() if "rate limit" in line]
    assert len(said) == 1, result.stderr
    assert said[0].endswith(LINE)
    assert (tmp_path / "models" / "tiny" / "config.json").exists()
    log = (tmp_path / "mdl.log").read_text()
    assert "the run waited 1 s in all on the Hub's rate limits (1 refusal: 1 s)" in log


@pytest.mark.slow
def test_quiet_says_nothing_of_it(refusing: HubServer) -> None:
    result = mdl("pull", "tiny", "-q")
    assert result.exit_code == 0, result.stderr
    assert "rate limit" not in result.stderr


@pytest.mark.slow
def test_the_event_stream_carries_it_as_a_note(refusing: HubServer) -> None:
    result = mdl("pull", "tiny", "--progress", "json", "--no-progress")
    assert result.exit_code == 0, result.stderr
    events = [json.loads(line) for line in result.stderr.splitlines()]
    notes = [e for e in events if e["event"] == "note" and "rate limit" in e["message"]]
    assert [n["message"] for n in notes] == [LINE]


@pytest.mark.parametrize(("mode", "quiet"), [("rich", False), ("plain", False), ("none", False)])
def test_each_display_says_the_runs_wait_once_and_gives_it_no_row(mode: str, quiet: bool) -> None:
    stream = io.StringIO()
    with make_reporter(mode, quiet=quiet, stream=stream, environ={}) as reporter:  # type: ignore[arg-type]
        reporter.begin(total_bytes=10, files=1)
        reporter.start("a", label="m/a", total=10, model="m", path="a")
        reporter.waiting("", LINE)  # the whole run, not a file
        reporter.advance("a", 10)
        reporter.finish("a", ok=True)
    assert stream.getvalue().count(LINE) == 1, stream.getvalue()
    assert "waiting:" not in stream.getvalue()  # no file's "waiting" row or line


def test_quiet_shows_no_wait() -> None:
    stream = io.StringIO()
    with make_reporter("none", quiet=True, stream=stream, environ={}) as reporter:
        reporter.waiting("", LINE)
    assert stream.getvalue() == ""
