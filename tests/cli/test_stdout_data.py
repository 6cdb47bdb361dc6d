"""stdout is data: `DIR=$(mdl pull tiny)` and `P=$(mdl get URL)` capture the path, `-q` never
silences stdout, and every `--json` document has `ok` and says an absent value as null.

Against the loopback Hub and CDN (tests/servers.py); the capture tests run a real shell, as a script
would.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from runfixtures import make_hf_run, mdl
from servers import CdnServer, HubServer, make_data
from terminal import unstamped
from zygote import forked_mdl

WEIGHTS = make_data(200_000, seed=21)
CONFIG = b'{"hidden_size": 8}'
OTHER = make_data(1000, seed=22)


@pytest.fixture
def world(
    hub: HubServer, catalog: Path, cdn: CdnServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, Any]:
    """Two models on the loopback Hub, one the Hub does not know, a CDN file; MDL_* set; cwd in
    tmp_path.
    """
    hub.add_repo("org/tiny", {"config.json": CONFIG, "model.safetensors": WEIGHTS})
    hub.add_repo("org/other", {"weights.bin": OTHER})
    catalog.write_text(
        '[models.tiny]\ndescription = "a tiny one"\nrepo = "org/tiny"\n\n'
        '[models.other]\nrepo = "org/other"\n\n'
        '[models.badname]\nrepo = "org/nope"\n'
    )
    monkeypatch.chdir(tmp_path)
    return {
        "dest": tmp_path / "models",
        "tmp": tmp_path,
        "url": cdn.add_file("/files/a.bin", b"alpha"),
        "url2": cdn.add_file("/files/b.bin", b"beta"),
        "gone": f"{cdn.url}/files/gone.bin",
    }


def shell(script: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``script`` in a real ``sh``, with ``$MDL`` the command that runs this mdl."""
    mdl_cmd = str(forked_mdl())  # each run a process forked from the worker's zygote
    return subprocess.run(
        ["sh", "-c", script],
        capture_output=True,
        text=True,
        env={**os.environ, "MDL": mdl_cmd, **env},
        timeout=120,
    )


# -- 1. the path on stdout, as `hf download` prints it
# -------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("flags", ["", "--no-progress", "-q", "--progress plain"])
def test_dir_of_a_pull_is_captured_by_a_shell(world: dict[str, Any], flags: str) -> None:
    done = shell(f'DIR=$($MDL pull tiny {flags}) && ls "$DIR"')
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["config.json", "model.safetensors"]


def test_pull_prints_each_model_folder_in_the_order_given(world: dict[str, Any]) -> None:
    result = mdl("pull", "other", "tiny")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines() == [str(world["dest"] / "other"), str(world["dest"] / "tiny")]
    # stderr: a summary in words
    assert "→" not in result.stderr and str(world["dest"]) not in result.stderr
    assert any(line.startswith("pulled 2 models") for line in unstamped(result.stderr))


def test_a_failed_model_has_no_line_and_its_error_is_on_stderr(world: dict[str, Any]) -> None:
    result = mdl("pull", "badname", "tiny")
    assert result.exit_code == 4
    assert result.stdout.splitlines() == [str(world["dest"] / "tiny")]
    assert "mdl: error: badname" in result.stderr


@pytest.mark.slow
def test_path_of_a_get_is_captured_by_a_shell(world: dict[str, Any]) -> None:
    done = shell(f'P=$($MDL get "{world["url"]}" -d out) && cat "$P"')
    assert done.returncode == 0, done.stderr
    assert done.stdout == "alpha"


@pytest.mark.parametrize("char", ["\n", "\t", "\u2028", "\u202e", "\u200c"])
@pytest.mark.parametrize(
    "command",
    [
        ("pull", "tiny", "--dest", "{}"),
        ("get", "{url}", "-d", "{}"),
        ("get", "{url}", "-o", "{}/f"),
    ],
)
def test_a_folder_no_line_of_stdout_can_name_is_refused_before_anything_is_made(
    world: dict[str, Any], char: str, command: tuple[str, ...]
) -> None:
    """Found by a hostile user (round 33): ``--dest $'a\\nb'`` made the folder ``a<LF>b`` and
    printed ``…/a b/tiny``, a path that does not exist, as the data ``DIR=$(mdl pull …)`` reads."""
    folder = f"a{char}b"
    args = [arg.format(folder, url=world["url"]) for arg in command]
    result = mdl(*args, "--json")
    assert result.exit_code == 2, result.stderr
    assert "cannot be used" in result.stderr and repr(char)[1:-1] in result.stderr
    assert not (world["tmp"] / folder).exists()
    assert json.loads(result.stdout)["error"]["code"] == 2
    # from the environment too, and the Hugging Face cache's
    assert mdl("pull", "tiny", env={"MDL_DEST": folder}).exit_code == 2
    cache = mdl("pull", "tiny", "--layout", "hf-cache", env={"HF_HUB_CACHE": folder})
    assert cache.exit_code == 2, cache.stderr
    assert "the Hugging Face cache" in cache.stderr


def test_get_prints_each_file_in_the_order_given(world: dict[str, Any]) -> None:
    result = mdl("get", world["url2"], world["url"], "-d", "out")
    assert result.exit_code == 0, result.stderr
    out = world["tmp"] / "out"
    assert result.stdout.splitlines() == [str(out / "b.bin"), str(out / "a.bin")]


def test_a_failed_get_prints_only_the_files_it_has(world: dict[str, Any]) -> None:
    result = mdl("get", world["gone"], world["url"], "-d", "out", "--no-progress")
    assert result.exit_code == 4
    assert result.stdout.splitlines() == [str(world["tmp"] / "out" / "a.bin")]
    assert "mdl: error:" in result.stderr and "gone.bin" in result.stderr


def test_json_and_dry_run_keep_their_own_stdout(world: dict[str, Any]) -> None:
    # one document, not a folder line before it
    doc = json.loads(mdl("pull", "tiny", "--json").stdout)
    assert doc["ok"] is True and len(doc["files"]) == 2
    dry = mdl("pull", "other", "--dry-run")
    assert dry.exit_code == 0, dry.stderr
    assert dry.stdout.splitlines()[0].split() == ["ACTION", "MODEL", "PATH", "SIZE", "WHY"]
    assert str(world["dest"] / "other") + "\n" not in dry.stdout


# -- 2. -q silences stderr, never stdout
# ---------------------------------------------------------------------


def test_quiet_list_and_show_print_their_data(world: dict[str, Any]) -> None:
    for args in (["list"], ["show", "tiny"]):
        loud, quiet_before, quiet_after = mdl(*args), mdl("-q", *args), mdl(*args, "-q")
        assert loud.exit_code == quiet_before.exit_code == quiet_after.exit_code == 0
        assert "tiny" in loud.stdout
        assert quiet_before.stdout == quiet_after.stdout == loud.stdout
        assert quiet_before.stderr == quiet_after.stderr == ""


def test_quiet_pull_and_get_print_paths_and_nothing_else(world: dict[str, Any]) -> None:
    pulled = mdl("-q", "pull", "tiny")
    assert pulled.exit_code == 0 and pulled.stderr == ""
    assert pulled.stdout == f"{world['dest'] / 'tiny'}\n"
    got = mdl("get", world["url"], "-d", "q", "-q")
    assert got.exit_code == 0 and got.stderr == ""
    assert got.stdout == f"{world['tmp'] / 'q' / 'a.bin'}\n"


def test_quiet_still_shows_errors(world: dict[str, Any]) -> None:
    bad = mdl("-q", "pull", "badname")
    assert bad.exit_code == 4 and bad.stdout == ""
    assert unstamped(bad.stderr)[0].startswith("mdl: error: badname")


# -- 3. every --json document: ok, and null for an absent value
# ----------------------------------------------


def _strings(doc: Any) -> list[str]:
    if isinstance(doc, str):
        return [doc]
    if isinstance(doc, dict):
        return [s for value in doc.values() for s in _strings(value)]
    if isinstance(doc, list):
        return [s for value in doc for s in _strings(value)]
    return []


def _json_cases(w: dict[str, Any]) -> dict[str, tuple[list[str], list[str]]]:
    """Each command (lock aside: its --check document is another change's) with a succeeding and a
    failing command line."""
    tmp: Path = w["tmp"]
    run = make_hf_run(tmp / "run", steps=(100,))
    archive = tmp / "run.zip"
    return {
        "list": (["list"], ["list", "--catalog", str(tmp / "missing.toml")]),
        "show": (["show", "tiny"], ["show", "nosuch"]),
        "resolve": (["resolve", "tiny"], ["resolve", "badname"]),
        "pull": (["pull", "tiny"], ["pull", "badname"]),
        "verify": (["verify", "tiny"], ["verify", "other"]),
        "clean": (["clean"], ["clean", "--catalog", str(tmp / "missing.toml")]),
        "prune": (["prune"], ["prune", "--catalog", str(tmp / "missing.toml")]),
        "get": (["get", w["url"], "-d", "j"], ["get", w["gone"], "-d", "j"]),
        "pack": (
            ["pack", str(run.root), "-o", str(archive)],
            ["pack", str(tmp / "norun"), "-o", str(tmp / "x.zip")],
        ),
        "unpack": (
            ["unpack", str(archive), "-d", str(tmp / "un")],
            ["unpack", str(tmp / "none.zip"), "-d", "u2"],
        ),
    }


def test_every_json_document_has_ok_and_no_empty_strings(world: dict[str, Any]) -> None:
    cases = _json_cases(world)
    for command, (good, bad) in cases.items():  # in order: verify needs the pull, unpack the pack
        for args, ok in ((good, True), (bad, False)):
            result = mdl(*args, "--json")
            doc = json.loads(result.stdout)
            assert (result.exit_code == 0) is ok, (command, args, result.exit_code, result.stderr)
            assert doc.get("ok") is ok, (command, doc)
            assert "" not in _strings(doc), (command, doc)
            if not ok and "error" in doc:
                assert set(doc["error"]) >= {"code", "kind", "message", "hint"}, doc
                assert doc["error"]["code"] == result.exit_code


def test_get_json_says_null_for_what_a_one_off_file_lacks(world: dict[str, Any]) -> None:
    doc = json.loads(mdl("get", world["url"], "-d", "n", "--json").stdout)
    [file] = doc["files"]
    assert file["model"] is None and file["error"] is None and file["warning"] is None
    assert file["path"] == "a.bin" and file["action"] == "downloaded"


def test_an_error_document_carries_its_hint(world: dict[str, Any]) -> None:
    result = mdl("get", "-o", "x", "-d", "y", world["url"], "--json")
    assert result.exit_code == 2
    doc = json.loads(result.stdout)
    assert doc == {
        "ok": False,
        "error": {"code": 2, "kind": "usage", "message": doc["error"]["message"], "hint": None},
    }
    unknown = mdl("show", "nosuch", "--json")
    error = json.loads(unknown.stdout)["error"]
    assert error["code"] == 2 and "nosuch" in error["message"]
    assert "hint" in error
