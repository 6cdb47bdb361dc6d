"""A project's own catalog (issue 50, F): `mdl init --project` writes an empty ./catalog.toml, as
`uv init` writes a project file, and `mdl add` says which catalog it edits — the user catalog by
name, when no project has one."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest
from runfixtures import mdl

from mdl.catalog.files import NEW_CATALOG

URL = "https://cdn.example.com/loras/style.safetensors"


@pytest.fixture
def home(isolated_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty working folder (no catalog anywhere), downloads and log in tmp_path."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("MDL_DEST", str(tmp_path / "models"))
    monkeypatch.setenv("MDL_LOG_FILE", str(tmp_path / "mdl.log"))
    return isolated_env


def user_catalog(home: Path) -> Path:
    return home / ".config" / "mdl" / "catalog.toml"


def test_init_project_writes_an_empty_catalog_here_that_add_fills(home: Path) -> None:
    # a user catalog exists: the project's comes first in its folder
    assert mdl("init").exit_code == 0
    here = Path.cwd() / "catalog.toml"
    started = mdl("init", "--project")
    assert started.exit_code == 0, started.stderr
    assert started.stdout == f"{here}\n"
    assert here.read_text(encoding="utf-8") == NEW_CATALOG and tomllib.loads(NEW_CATALOG) == {}
    assert (
        f"wrote {here} with an empty catalog" in started.stderr
        and "mdl reads it here" in started.stderr
    )
    listed = mdl("list", "--json")
    assert listed.exit_code == 0, listed.stderr
    # the project's catalog, not the starter's tiny-bert
    assert json.loads(listed.stdout)["models"] == []
    added = mdl("add", "lora", URL, "--sha256", "a" * 64, "--no-check")
    assert added.exit_code == 0, added.stderr
    assert f"added lora to {here}" in added.stderr and "user catalog" not in added.stderr
    assert "lora" in tomllib.loads(here.read_text())["models"]
    assert "lora" not in tomllib.loads(user_catalog(home).read_text())["models"]
    again = mdl("init", "--project")
    assert again.exit_code == 2 and f"{here} already exists" in again.stderr
    assert "replace it with an empty catalog" in again.stderr


def test_add_without_a_project_catalog_names_the_user_catalog_it_edits(home: Path) -> None:
    assert mdl("init").exit_code == 0
    written = user_catalog(home)
    added = mdl("add", "lora", URL, "--sha256", "a" * 64, "--no-check")
    assert added.exit_code == 0, added.stderr
    assert f"added lora to {written}" in added.stderr
    assert (
        f"{written} is your user catalog" in added.stderr and "mdl init --project" in added.stderr
    )
    assert not (Path.cwd() / "catalog.toml").exists()
    doc = json.loads(mdl("add", "lora", "--tag", "style", "--json").stdout)
    assert doc["catalog"] == str(written) and doc["user_catalog"] is True
    removed = mdl("remove", "lora")
    assert removed.exit_code == 0 and f"{written} is your user catalog" in removed.stderr


def test_add_with_no_catalog_anywhere_creates_the_project_one(home: Path) -> None:
    added = mdl("add", "lora", URL, "--sha256", "a" * 64, "--no-check", "--json")
    assert added.exit_code == 0, added.stderr
    doc = json.loads(added.stdout)
    assert doc["catalog"] == str(Path.cwd() / "catalog.toml") and doc["created"] is True
    assert doc["user_catalog"] is False


def test_init_project_says_when_mdl_catalog_comes_first(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = home / "team.toml"
    other.write_text("")
    monkeypatch.setenv("MDL_CATALOG", str(other))
    started = mdl("init", "--project")
    assert started.exit_code == 0, started.stderr
    assert (Path.cwd() / "catalog.toml").read_text() == NEW_CATALOG and other.read_text() == ""
    assert f"mdl: warning: MDL_CATALOG={other} comes first in every folder" in started.stderr
