"""The common flags before or after the command, as git and hf users type them: `mdl -q list` =
`mdl list -q`.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from runfixtures import make_hf_run, mdl
from servers import HubServer, make_data
from terminal import PLAIN, unstamped
from zygote import forked_mdl

from mdl.cli.run import choose_progress_mode

WEIGHTS = make_data(300_000, seed=11)
CATALOG = '[models.tiny]\ndescription = "tiny test model"\nrepo = "org/tiny"\n'


@dataclass
class World:
    """A Hub with one repo, a catalog beside it (not where mdl looks by itself), a CDN file and a
    training run.
    """

    hub: HubServer
    tmp: Path
    catalog: Path
    dest: Path
    url: str
    run_dir: Path

    def archive(self) -> Path:
        """A packed archive of the run, made with the CLI (flags after the command)."""
        out = self.tmp / "packed" / "run.zip"
        if not out.exists():
            assert mdl("pack", str(self.run_dir), "-o", str(out), "-q").exit_code == 0
        return out


@pytest.fixture
def world(hub: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> World:
    hub.add_repo("org/tiny", {"config.json": b'{"hidden_size": 8}', "model.safetensors": WEIGHTS})
    catalog = tmp_path / "conf" / "models.toml"
    catalog.parent.mkdir()
    catalog.write_text(CATALOG)
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setenv("MDL_CATALOG", str(catalog))
    monkeypatch.setenv("MDL_DEST", str(tmp_path / "models"))
    monkeypatch.setenv("MDL_LOG_FILE", str(tmp_path / "mdl.log"))
    monkeypatch.chdir(tmp_path)
    url = hub.cdn.add_file("/files/weights.bin", WEIGHTS)
    make_hf_run(tmp_path / "run", steps=(100,))
    return World(hub, tmp_path, catalog, tmp_path / "models", url, tmp_path / "run")


# Each command with arguments that succeed offline or against the loopback servers; `tag` keeps
# outputs apart.
COMMANDS: dict[str, Callable[[World, str], list[str]]] = {
    "list": lambda w, tag: ["list"],
    "show": lambda w, tag: ["show", "tiny"],
    "resolve": lambda w, tag: ["resolve", "tiny"],
    "pull": lambda w, tag: ["pull", "tiny"],
    "verify": lambda w, tag: ["verify", "tiny"],
    "clean": lambda w, tag: ["clean"],
    "prune": lambda w, tag: ["prune"],
    "get": lambda w, tag: ["get", w.url, "-d", str(w.tmp / "got" / tag)],
    "pack": lambda w, tag: ["pack", str(w.run_dir), "-o", str(w.tmp / "zips" / f"{tag}.zip")],
    "unpack": lambda w, tag: ["unpack", str(w.archive()), "-d", str(w.tmp / "unpacked" / tag)],
    "init": lambda w, tag: ["init", "--catalog", str(w.tmp / "inits" / f"{tag}.toml")],
}
PROGRESS_COMMANDS = ("resolve", "pull", "verify", "get", "pack", "unpack")
CATALOG_COMMANDS = ("list", "show", "resolve", "pull", "verify", "clean", "prune", "get")
DEST_COMMANDS = ("list", "show", "resolve", "pull", "verify", "clean", "prune")


def prepare(world: World, command: str) -> None:
    """What a command needs on disk first (verify needs a pulled model)."""
    if command == "verify":
        assert mdl("pull", "tiny", "-q").exit_code == 0


def placed(world: World, command: str, flags: list[str], position: str, tag: str = "") -> list[str]:
    """The command line with ``flags`` before the command (``mdl FLAGS cmd …``) or after it
    (``mdl cmd … FLAGS``).
    """
    args = COMMANDS[command](world, tag or position)
    return [*flags, *args] if position == "before" else [*args, *flags]


def progress_lines(stderr: str) -> list[str]:
    """The plain progress display's lines (every line off a terminal is stamped: these are its
    own words).
    """
    return [line for line in unstamped(stderr) if PLAIN.match(line)]


BOTH = pytest.mark.parametrize("position", ["before", "after"])
EVERY_COMMAND = pytest.mark.parametrize("command", list(COMMANDS))


@pytest.mark.slow
@EVERY_COMMAND
@BOTH
def test_json_in_either_position_prints_one_document(
    world: World, command: str, position: str
) -> None:
    prepare(world, command)
    result = mdl(*placed(world, command, ["--json"], position))
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert isinstance(doc, dict) and doc.get("ok", True) is True


@pytest.mark.slow
@EVERY_COMMAND
@BOTH
def test_quiet_in_either_position_silences_stderr_not_the_data(
    world: World, command: str, position: str
) -> None:
    prepare(world, command)
    result = mdl(*placed(world, command, ["-q"], position))
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""
    # clean and prune have nothing to remove; unpack's file list still honours -q
    # (mdl/cli/archive.py)
    if command not in ("clean", "prune", "unpack"):
        assert result.stdout.strip(), "-q silences stderr, never the data a command exists to print"


@pytest.mark.slow
@EVERY_COMMAND
@BOTH
def test_log_file_in_either_position_gets_the_run(
    world: World, command: str, position: str
) -> None:
    prepare(world, command)
    log = world.tmp / "logs" / f"{command}-{position}.log"
    args = placed(world, command, ["--log-file", str(log)], position)
    (world.tmp / "mdl.log").unlink(missing_ok=True)  # what preparing the command logged
    result = mdl(*args)
    assert result.exit_code == 0, result.stderr
    assert "done in" in log.read_text()  # the run's last log line went to the file named
    assert not (world.tmp / "mdl.log").exists(), (
        "$MDL_LOG_FILE is the default; the flag overrides it"
    )


@pytest.mark.slow
@pytest.mark.parametrize("command", PROGRESS_COMMANDS)
@BOTH
def test_no_progress_in_either_position_leaves_only_the_summary(
    world: World, command: str, position: str
) -> None:
    prepare(world, command)
    result = mdl(*placed(world, command, ["--no-progress"], position))
    assert result.exit_code == 0, result.stderr
    assert not progress_lines(result.stderr), result.stderr


def test_without_no_progress_pull_shows_plain_lines(world: World) -> None:
    """The control for the test above: the lines it looks for are there by default."""
    result = mdl("pull", "tiny")
    assert result.exit_code == 0, result.stderr
    assert any("tiny/model.safetensors" in line for line in progress_lines(result.stderr)), (
        result.stderr
    )


@BOTH
def test_verbose_in_either_position_logs_debug(world: World, position: str) -> None:
    log = world.tmp / f"verbose-{position}.log"
    result = mdl(*placed(world, "pull", ["-v", "--log-file", str(log)], position))
    assert result.exit_code == 0, result.stderr
    assert " DEBUG " in log.read_text()  # the Hub's redirect to its CDN is logged at DEBUG
    quiet_log = world.tmp / f"plain-{position}.log"
    assert (
        mdl(*placed(world, "pull", ["--log-file", str(quiet_log)], position, tag="again")).exit_code
        == 0
    )
    assert " DEBUG " not in quiet_log.read_text()


@pytest.mark.slow
@pytest.mark.parametrize("command", CATALOG_COMMANDS)
@BOTH
def test_catalog_in_either_position(
    world: World, command: str, position: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    prepare(world, command)
    monkeypatch.delenv("MDL_CATALOG")
    result = mdl(*placed(world, command, ["--catalog", str(world.catalog), "--json"], position))
    assert result.exit_code == 0, result.stderr
    if command in ("list", "show", "resolve"):
        assert [m["name"] for m in json.loads(result.stdout)["models"]] == ["tiny"]


@pytest.mark.slow
@pytest.mark.parametrize("command", DEST_COMMANDS)
@BOTH
def test_dest_in_either_position(
    world: World, command: str, position: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = world.tmp / "elsewhere"
    monkeypatch.delenv("MDL_DEST")
    assert mdl("pull", "tiny", "--dest", str(elsewhere), "-q").exit_code == 0
    result = mdl(*placed(world, command, ["--dest", str(elsewhere), "--json"], position))
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    if command == "list":
        assert doc["models"][0]["status"] == "installed"
    if command in ("pull", "verify"):
        assert {f["action"] for f in doc["files"]} <= {"skipped", "verified"}
        assert all(Path(f["dest"]).is_relative_to(elsewhere) for f in doc["files"])


@BOTH
def test_pull_dest_in_either_position_saves_there(world: World, position: str) -> None:
    target = world.tmp / f"dest-{position}"
    result = mdl(*placed(world, "pull", ["--dest", str(target), "-q"], position))
    assert result.exit_code == 0, result.stderr
    assert (target / "tiny" / "model.safetensors").read_bytes() == WEIGHTS
    assert not world.dest.exists()


@pytest.mark.parametrize(
    ("flag", "command"), [("--dest", "get"), ("--dest", "pack"), ("--catalog", "unpack")]
)
def test_a_value_before_a_command_that_does_not_take_it_is_a_usage_error(
    world: World, flag: str, command: str
) -> None:
    result = mdl(*placed(world, command, [flag, str(world.tmp / "x")], "before"))
    assert result.exit_code == 2
    assert f"mdl {command} does not take {flag}" in result.stderr
    assert not (world.tmp / "x").exists()


def test_the_value_after_the_command_wins(world: World) -> None:
    first, second = world.tmp / "first.log", world.tmp / "second.log"
    a, b = world.tmp / "a", world.tmp / "b"
    before = ["--log-file", str(first), "--dest", str(a)]
    result = mdl(*before, "pull", "tiny", "--log-file", str(second), "--dest", str(b))
    assert result.exit_code == 0, result.stderr
    assert second.exists() and not first.exists()
    assert (b / "tiny" / "config.json").exists() and not a.exists()


def test_a_switch_counts_in_either_place(world: World) -> None:
    """`mdl -q pull x --json`: -q before and --json after both apply."""
    result = mdl("-q", "pull", "tiny", "--json")
    assert result.exit_code == 0
    assert json.loads(result.stdout)["ok"] is True
    assert result.stderr == ""


def test_json_list_is_list_json(world: World) -> None:
    assert mdl("--json", "list").stdout == mdl("list", "--json").stdout


def test_quiet_list_keeps_its_table(world: World) -> None:
    """-q silences stderr, never stdout: `mdl -q list` prints the table `mdl list` prints,
    wherever -q is.
    """
    assert mdl("-q", "list").stdout == mdl("list", "-q").stdout == mdl("list").stdout
    assert "tiny" in mdl("-q", "list").stdout


# -- --progress
# -----------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("command", PROGRESS_COMMANDS)
@BOTH
def test_bad_progress_value_is_exit_2_naming_the_choices(
    world: World, command: str, position: str
) -> None:
    result = mdl(*placed(world, command, ["--progress", "fancy"], position))
    assert result.exit_code == 2
    assert "--progress" in result.stderr
    for choice in ("auto", "rich", "plain", "json", "none"):
        assert choice in result.stderr


@pytest.mark.parametrize("command", ["list", "show", "clean", "prune"])
def test_progress_is_taken_on_every_command_before_or_after_its_name(
    world: World, command: str
) -> None:
    """docs/output.md: ``--progress`` on every command, before or after its name (one that shows
    no bars still makes stderr an event stream)."""
    assert mdl(*placed(world, command, ["--progress", "plain"], "before")).exit_code == 0
    after = mdl(*placed(world, command, ["--progress", "json"], "after"))
    assert after.exit_code == 0, after.stderr
    events = [json.loads(line)["event"] for line in after.stderr.splitlines()]
    assert events[0] == "begin" and events[-1] == "end"


def _mode_of(requested: str) -> str:
    return choose_progress_mode(
        quiet=False, no_progress=False, stderr_isatty=False, environ={}, requested=requested
    )


# The modes themselves come with the display work (mdl/cli/render/progress.py); these check the flag
# reaches it.
needs_modes = pytest.mark.skipif(
    _mode_of("none") != "none" or _mode_of("json") != "json",
    reason="--progress modes are not wired in yet",
)


@pytest.mark.slow
@needs_modes
@pytest.mark.parametrize("command", PROGRESS_COMMANDS)
@BOTH
def test_progress_none_in_either_position(world: World, command: str, position: str) -> None:
    prepare(world, command)
    result = mdl(*placed(world, command, ["--progress", "none"], position))
    assert result.exit_code == 0, result.stderr
    assert not progress_lines(result.stderr), result.stderr


@needs_modes
@BOTH
def test_progress_json_in_either_position_writes_events(world: World, position: str) -> None:
    result = mdl(*placed(world, "pull", ["--progress", "json"], position))
    assert result.exit_code == 0, result.stderr
    # every stderr line an event: one begin first, one end last, each file started and finished
    events = [json.loads(line) for line in result.stderr.splitlines()]
    kinds = [event["event"] for event in events]
    assert (kinds[0], kinds[-1], kinds.count("begin"), kinds.count("end")) == ("begin", "end", 1, 1)
    assert (events[-1]["ok"], events[-1]["exit_code"]) == (True, 0)
    for kind in ("start", "finish"):
        done = sorted(event["path"] for event in events if event["event"] == kind)
        assert done == ["config.json", "model.safetensors"], result.stderr


def test_progress_after_the_command_wins(world: World) -> None:
    """`mdl --progress plain pull x --progress fancy`: the command's own value is the one checked
    and used.
    """
    result = mdl("--progress", "plain", "pull", "tiny", "--progress", "fancy")
    assert result.exit_code == 2 and "fancy" in result.stderr


# -- real processes, as a shell runs them
# -------------------------------------------------------------------


def _python_m(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [forked_mdl(), *args], capture_output=True, text=True, env=dict(os.environ)
    )


def test_quiet_before_the_command_in_a_real_process(world: World) -> None:
    """The issue's report: `mdl -q list` said `No such option: -q`."""
    done = _python_m("-q", "list")
    assert done.returncode == 0, done.stderr
    assert "tiny" in done.stdout and done.stderr == ""


def test_json_before_the_command_shapes_parse_errors_too(world: World) -> None:
    done = _python_m("--json", "pull", "tiny", "--connections", "abc")
    assert done.returncode == 2
    doc = json.loads(done.stdout)
    assert (
        doc["ok"] is False
        and doc["error"]["code"] == 2
        and "--connections" in doc["error"]["message"]
    )
