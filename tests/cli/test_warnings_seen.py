"""Every warning is seen: a mirror that fails a file (404, 500, nothing listening) or serves a wrong
copy, and a model kept on a Hub outage, are a `mdl: warning:` line on stderr in every progress mode
(plain, --no-progress, none), a `warning` on the file in --json, a `warning` event with --progress
json, and a log line — and nothing on stderr with -q.

Against the loopback Hub and a loopback mirror that serves what it holds and nothing else
(tests/servers.py).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
from runfixtures import mdl
from servers import Content, Exchange, Fault, HubServer, LoopbackServer, closed_port, make_data
from terminal import unstamped
from typer.testing import Result

WEIGHTS = make_data(200_001, seed=41)
CONFIG = b'{"model_type": "bert"}\n'
FILES = {"config.json": CONFIG, "model.safetensors": WEIGHTS}


class Mirror(LoopbackServer):
    """A static mirror: ``/<model>/<path>`` from what it holds, 404 for anything else."""

    name = "mirror"

    def __init__(self) -> None:
        super().__init__()
        self.held: dict[str, bytes] = {}

    def route(self, ex: Exchange) -> None:
        data = self.held.get(unquote(ex.path))
        if data is None:
            ex.send_bytes(404, b"not found\n")
            return
        ex.send_content(Content(data), etag=f'"{len(data):x}"')


@pytest.fixture
def mirror() -> Iterator[Mirror]:
    server = Mirror().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def world(hub: HubServer, catalog: Path, tmp_path: Path) -> dict[str, Path]:
    hub.add_repo("org/tiny", FILES)
    catalog.write_text('[models.tiny]\nrepo = "org/tiny"\n')
    return {"dest": tmp_path / "models", "log": tmp_path / "mdl.log"}


def dead_url() -> str:
    """A loopback URL nothing listens on (``servers.closed_port``)."""
    return f"http://127.0.0.1:{closed_port()}"


def warnings(stderr: str) -> list[str]:
    """The ``mdl: warning:`` lines' messages (each line of stderr, off a terminal, after its
    stamp).
    """
    return [
        line.removeprefix("mdl: warning: ")
        for line in unstamped(stderr)
        if line.startswith("mdl: warning: ")
    ]


MODES = [[], ["--no-progress"], ["--progress", "plain"], ["--progress", "none"]]
MODE_IDS = ["default", "no-progress", "plain", "none"]


def pull_through(mirror_url: str, world: dict[str, Path], *flags: str) -> Result:
    result = mdl("pull", "tiny", "--mirror", mirror_url + "/{model}/{path}", *flags)
    assert result.exit_code == 0, result.stderr
    # the origin made up for it
    assert (world["dest"] / "tiny" / "model.safetensors").read_bytes() == WEIGHTS
    return result


@pytest.mark.slow
@pytest.mark.parametrize("flags", MODES, ids=MODE_IDS)
def test_a_mirror_missing_a_file_is_a_warning_in_every_mode(
    world: dict[str, Path], mirror: Mirror, flags: list[str]
) -> None:
    mirror.held = {"/tiny/config.json": CONFIG}  # it lacks the weights
    result = pull_through(mirror.url, world, *flags)
    [said] = warnings(result.stderr)
    assert said.startswith(
        f"tiny/model.safetensors: mirror {mirror.url}/tiny/model.safetensors failed ("
    )
    assert "404" in said and said.endswith("trying the next source")
    assert (
        "WARNING" in world["log"].read_text()
        and "tiny/model.safetensors: mirror" in world["log"].read_text()
    )


@pytest.mark.slow
def test_a_mirror_answering_500_is_a_warning_per_file_and_in_json(
    world: dict[str, Path], mirror: Mirror
) -> None:
    mirror.held = {f"/tiny/{path}": data for path, data in FILES.items()}
    mirror.faults.add(Fault.http_error(500, "boom", times=None))
    result = pull_through(mirror.url, world, "--json")
    doc = json.loads(result.stdout)
    by_path = {f["path"]: f for f in doc["files"]}
    for path in FILES:
        assert by_path[path]["warning"].startswith(
            f"tiny/{path}: mirror {mirror.url}/tiny/{path} failed ("
        )
        assert "mirror" not in by_path[path]  # the origin served it
    assert sorted(warnings(result.stderr)) == sorted(by_path[p]["warning"] for p in FILES)


def test_a_mirror_serving_a_wrong_copy_is_a_warning(world: dict[str, Path], mirror: Mirror) -> None:
    wrong = bytearray(WEIGHTS)
    wrong[1000] ^= 1
    mirror.held = {"/tiny/config.json": CONFIG, "/tiny/model.safetensors": bytes(wrong)}
    result = pull_through(mirror.url, world, "--no-progress", "--json")
    doc = json.loads(result.stdout)
    by_path = {f["path"]: f for f in doc["files"]}
    assert by_path["config.json"]["warning"] is None and by_path["config.json"]["mirror"]
    assert "mismatch" in by_path["model.safetensors"]["warning"]
    [said] = warnings(result.stderr)
    assert said == by_path["model.safetensors"]["warning"]


def test_a_dead_mirror_is_said_once_for_the_run(world: dict[str, Path]) -> None:
    result = pull_through(dead_url(), world, "--no-progress")
    [said] = warnings(result.stderr)
    assert "is not usable" in said and said.endswith("using the next source")


def test_quiet_hides_the_warning_but_json_and_the_log_keep_it(
    world: dict[str, Path], mirror: Mirror
) -> None:
    result = pull_through(mirror.url, world, "-q", "--json")
    assert result.stderr == ""
    doc = json.loads(result.stdout)
    assert all(f["warning"] and "404" in f["warning"] for f in doc["files"])
    assert world["log"].read_text().count("WARNING") >= 2


def test_progress_json_says_the_warning_as_an_event(world: dict[str, Path], mirror: Mirror) -> None:
    mirror.held = {"/tiny/config.json": CONFIG}
    result = pull_through(mirror.url, world, "--progress", "json")
    events: list[dict[str, Any]] = [json.loads(line) for line in result.stderr.splitlines()]
    said = [e["message"] for e in events if e["event"] == "warning"]
    assert len(said) == 1 and said[0].startswith("tiny/model.safetensors: mirror ")
    assert events[-1]["event"] == "end" and events[-1]["ok"] is True


# -- a model kept on a Hub outage
# ----------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("flags", MODES, ids=MODE_IDS)
def test_a_model_kept_on_a_hub_outage_is_a_warning_in_every_mode(
    world: dict[str, Path], monkeypatch: pytest.MonkeyPatch, flags: list[str]
) -> None:
    assert mdl("pull", "tiny", "-q").exit_code == 0
    monkeypatch.setenv("HF_ENDPOINT", dead_url())
    result = mdl("pull", "tiny", "--timeout", "2", *flags)
    assert result.exit_code == 0, result.stderr
    [said] = warnings(result.stderr)
    assert said.startswith("could not check tiny for updates: cannot reach the Hub")
    assert result.stdout == f"{world['dest'] / 'tiny'}\n"
    quiet = mdl("pull", "tiny", "--timeout", "2", "-q", *flags)
    assert quiet.exit_code == 0 and quiet.stderr == ""


# -- a server that names no version of a big file: no resume, no parallel ranges, and the user hears
# of it ----


@pytest.mark.slow
@pytest.mark.parametrize("flags", MODES, ids=MODE_IDS)
def test_a_big_file_with_no_validator_is_a_warning_in_every_mode(
    cdn: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, flags: list[str]
) -> None:
    monkeypatch.setenv("MDL_LOG_FILE", str(tmp_path / "mdl.log"))
    # above the split threshold: ranges would be used if they were safe
    data = make_data(33 * 1024 * 1024, seed=7)
    url = cdn.add_file("/big.bin", data, etag="", dated=False)
    result = mdl("get", url, "-d", str(tmp_path / "out"), *flags)
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "out" / "big.bin").read_bytes() == data
    said = warnings(result.stderr)
    assert len(said) == 1 and "names no version of the file" in said[0], result.stderr
    assert "names no version of the file" in (tmp_path / "mdl.log").read_text()


@pytest.mark.slow
def test_a_big_file_with_no_validator_is_a_warning_in_json(cdn: Any, tmp_path: Path) -> None:
    data = make_data(33 * 1024 * 1024, seed=8)
    # a weak ETag names no version either
    url = cdn.add_file("/big.bin", data, etag='W/"weak"', dated=False)
    result = mdl("get", url, "-d", str(tmp_path / "out"), "--json")
    assert result.exit_code == 0, result.stderr
    (row,) = json.loads(result.stdout)["files"]
    assert "names no version of the file" in row["warning"]
    quiet = mdl("get", url, "-d", str(tmp_path / "again"), "-q")
    assert quiet.exit_code == 0 and quiet.stderr == ""
    with_sha = mdl(
        "get",
        url,
        "-d",
        str(tmp_path / "sha"),
        "--sha256",
        __import__("hashlib").sha256(data).hexdigest(),
    )
    # a hash checks the result: ranges are safe
    assert with_sha.exit_code == 0 and warnings(with_sha.stderr) == []


# -- a library's own warning
# ----------------------------------------------------------------------------


def test_a_librarys_own_warning_goes_to_the_log_not_stderr(
    world: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """huggingface_hub warns as it loads when the environment has ``HF_HUB_ENABLE_HF_TRANSFER``
    (a setting mdl does not read: "set HF_XET_HIGH_PERFORMANCE"): raw on stderr it broke
    ``--progress json``'s one document a line. It is logged, never said."""
    import warnings as python_warnings

    from mdl.sources import hub

    def warned_as_it_loads() -> None:
        python_warnings.warn("The `HF_HUB_ENABLE_HF_TRANSFER` setting is deprecated", FutureWarning)

    monkeypatch.setattr(hub, "stored_token", lambda: warned_as_it_loads())
    result = mdl("pull", "tiny", "--progress", "json")
    assert result.exit_code == 0, result.stderr
    events = [json.loads(line) for line in result.stderr.splitlines()]  # every line one document
    assert events[0]["event"] == "begin" and events[-1]["ok"] is True
    assert not [e for e in events if e["event"] == "warning"]
    assert "HF_HUB_ENABLE_HF_TRANSFER" in world["log"].read_text()
