"""Every command that talks to a server, against one that accepts connections and never answers
(issue 11, item 14).

Each must end with exit 5 and one line naming the endpoint that did not answer, well within HANG
(two minutes) with ``--timeout 0.3`` (the bound is generous: it tells "bounded" from "hangs", not
fast from slow).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hostile import SilentServer
from runfixtures import HANG, mdl, use_catalog
from terminal import unstamped

# a hang would be forever; two 0.3 s timeouts and a backoff are about a second on a quiet machine
BOUND = HANG


@pytest.fixture
def silent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SilentServer]:
    """A silent server as the Hub, and a catalog whose models need it (snapshot, Hub file, direct
    URL).
    """
    with SilentServer() as server:
        text = f"""
[models.snapshot]
repo = "org/tiny"

[models.hub-file]
files = [{{ repo = "org/tiny", path = "config.json" }}]

[models.direct]
files = [{{ url = "{server.url}/weights.bin" }}]
"""
        use_catalog(tmp_path, monkeypatch, text, endpoint=server.url)
        monkeypatch.chdir(tmp_path)
        yield server


COMMANDS = [
    pytest.param(["pull", "snapshot"], "the Hub at {url}", id="pull-snapshot"),
    pytest.param(["pull", "hub-file"], "the Hub at {url}", id="pull-hub-file"),
    pytest.param(["pull", "direct"], "{host}", id="pull-direct-url"),
    pytest.param(["pull", "--dry-run", "snapshot"], "the Hub at {url}", id="pull-dry-run"),
    pytest.param(["resolve", "snapshot"], "the Hub at {url}", id="resolve-snapshot"),
    pytest.param(["resolve", "hub-file"], "the Hub at {url}", id="resolve-hub-file"),
    pytest.param(["resolve", "--follow", "direct"], "{host}", id="resolve-follow-direct"),
    pytest.param(["get", "{url}/file.bin", "-d", "out"], "{host}", id="get-url"),
    pytest.param(
        ["get", "hf://org/tiny/config.json", "-d", "out"], "the Hub at {url}", id="get-hf-uri"
    ),
]


@pytest.mark.slow
@pytest.mark.realtime
@pytest.mark.parametrize(("args", "names"), COMMANDS)
def test_a_server_that_never_answers_is_exit_5_naming_it(
    silent: SilentServer, args: list[str], names: str
) -> None:
    host = f"127.0.0.1:{silent.port}"
    argv = [a.format(url=silent.url, host=host) for a in args]
    started = time.monotonic()
    result = mdl(*argv, "--timeout", "0.3")
    elapsed = time.monotonic() - started
    assert result.exit_code == 5, (result.stdout, result.stderr)
    errors = [line for line in unstamped(result.stderr) if line.startswith("mdl: error:")]
    assert len(errors) == 1, result.stderr
    assert names.format(url=silent.url, host=host) in errors[0]
    assert "did not answer within 0.3 s" in errors[0]
    assert elapsed < BOUND
    assert silent.accepted >= 1  # it really was asked


@pytest.mark.slow
@pytest.mark.realtime
def test_the_default_timeout_is_named_in_the_message(
    silent: SilentServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MDL_TIMEOUT is the same setting as --timeout (flags > environment > catalog > 10 s)."""
    monkeypatch.setenv("MDL_TIMEOUT", "0.5")
    result = mdl("resolve", "snapshot")
    assert result.exit_code == 5
    assert f"the Hub at {silent.url} did not answer within 0.5 s" in result.stderr


@pytest.mark.slow
@pytest.mark.realtime
def test_one_silent_hub_is_asked_once_per_run_not_once_per_model(silent: SilentServer) -> None:
    """`pull --all` against a dead Hub does not wait the timeout again for every model."""
    result = mdl("pull", "snapshot", "hub-file", "--timeout", "0.3")
    assert result.exit_code == 5
    # both models fail, naming the Hub (the first one's wait before its retry said too)
    failed = [line for line in result.stderr.splitlines() if "retrying in" not in line]
    assert "\n".join(failed).count(f"the Hub at {silent.url} did not answer") == 2
    # the first model's tries (and at most one more), not two tries per model
    assert silent.accepted <= 3
