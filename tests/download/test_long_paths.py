"""Names the filesystem refuses end in a documented exit for that file, never exit 1 (issue 27).

A listing path that passes the listing validator (mdl.paths.path_problem) may still be more than the
filesystem allows: a path past PATH_MAX, or many long components. Such a file fails with exit 7
naming its path (cut to a readable length), the other files and models of the run go on, in both
layouts.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from profiles import examples
from runfixtures import mdl
from servers import HubServer

from mdl.paths import path_problem

LONG = "/".join(["d" * 200] * 21) + "/w.bin"  # 21 components of 200 bytes: over PATH_MAX (4096)


@pytest.fixture
def world(hub: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> HubServer:
    (tmp_path / "catalog.toml").write_text(
        textwrap.dedent("""
            [models.long]
            repo = "org/long"

            [models.ok]
            repo = "org/ok"
            """)
    )
    hub.add_repo("org/ok", {"config.json": b"{}\n"})
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setenv("MDL_DEST", str(tmp_path / "models"))
    monkeypatch.setenv("MDL_LOG_FILE", str(tmp_path / "mdl.log"))
    return hub


@pytest.mark.parametrize("layout", ["plain", "hf-cache"])
def test_a_path_longer_than_the_filesystem_allows_is_exit_7_and_the_rest_goes_on(
    world: HubServer, layout: str
) -> None:
    # the listing validator lets it through: the filesystem has the last word
    assert path_problem(LONG) is None
    world.add_repo("org/long", {LONG: b"weights", "small.json": b"{}"})
    result = mdl("pull", "--all", "--layout", layout, "--json")
    assert result.exit_code == 7, result.stderr
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr
    rows = {(f["model"], f["path"]): f for f in json.loads(result.stdout)["files"]}
    assert rows[("ok", "config.json")]["action"] == "downloaded"  # the other model went on
    failed = [f for f in rows.values() if f["action"] == "failed"]
    assert failed and all(f["model"] == "long" for f in failed)
    assert any("longer than" in f["error"] or "too long" in f["error"] for f in failed), failed
    assert all(len(f["error"]) < 600 for f in failed)  # the path is cut to a readable length
    assert all(len(line) < 800 for line in result.stderr.splitlines())


_COMPONENT = st.text(alphabet=st.sampled_from("abcXYZ-_.é漢"), min_size=1, max_size=120).filter(
    lambda c: c not in (".", "..")
)


@settings(
    max_examples=examples(12),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    parts=st.lists(_COMPONENT, min_size=1, max_size=40),
    layout=st.sampled_from(["plain", "hf-cache"]),
)
@example(parts=["d" * 200] * 21 + ["w.bin"], layout="plain")
@example(parts=["漢" * 80] * 14, layout="hf-cache")
def test_any_listing_path_the_validator_accepts_ends_in_success_or_a_documented_exit(
    world: HubServer, tmp_path: Path, parts: list[str], layout: str
) -> None:
    path = "/".join(parts)
    if path_problem(path) is not None:
        return
    name = f"org/p{abs(hash((path, layout))) % 10**9}"
    world.add_repo(name, {path: b"x"})
    catalog = tmp_path / f"c{abs(hash((path, layout))) % 10**9}.toml"
    catalog.write_text(f'[models.m]\nrepo = "{name}"\n')
    result = mdl("pull", "m", "--catalog", str(catalog), "--layout", layout)
    assert result.exit_code in (0, 5, 7), result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("layout", ["plain", "hf-cache"])
def test_offline_views_after_a_pull_that_met_a_long_path_show_the_model_partial(
    world: HubServer, layout: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """list, show and verify read the record, which names the long path: it cannot be on disk, so
    the model is partial (verify: the file missing), never a whole-command exit 7 that hides every
    other model."""
    world.add_repo("org/long", {LONG: b"weights", "small.json": b"{}"})
    monkeypatch.setenv("MDL_LAYOUT", layout)
    assert mdl("pull", "--all").exit_code == 7
    listed = mdl("list", "--json")
    assert listed.exit_code == 0, listed.stderr
    states = {m["name"]: m["status"] for m in json.loads(listed.stdout)["models"]}
    # hf-cache: refused whole
    assert states["ok"] == "installed" and states["long"] in ("partial", "missing")
    shown = mdl("show", "long", "--json")
    assert shown.exit_code == 0, shown.stderr
    verified = mdl("verify", "--all", "--json")
    assert verified.exit_code == 4, verified.stderr
    rows = {(f["model"], f["path"]): f["action"] for f in json.loads(verified.stdout)["files"]}
    assert rows[("ok", "config.json")] == "verified"


def test_get_of_a_whole_repo_with_a_path_too_long_is_exit_7_not_a_traceback(
    world: HubServer, tmp_path: Path
) -> None:
    world.add_repo("org/long", {LONG: b"weights", "small.json": b"{}"})
    result = mdl("get", "hf://org/long", "-d", str(tmp_path / "got"))
    assert result.exit_code == 7, result.stderr
    assert "longer than" in result.stderr or "too long" in result.stderr
    assert len(result.stderr) < 800  # the path cut to a readable length
    # -o: the same check, no stat crash
    deep = mdl("get", "http://127.0.0.1:1/w.bin", "-o", str(tmp_path / LONG))
    assert deep.exit_code == 7, deep.stderr
