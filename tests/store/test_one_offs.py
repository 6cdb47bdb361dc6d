"""What ``get`` fetched is seen by the commands that look and tidy: ``list`` names each folder a get
saved into and each repo it put in the Hugging Face cache, with a total and the disk an older
revision still holds; ``prune`` frees those older revisions; ``clean`` forgets a folder removed with
``rm -rf``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from runfixtures import mdl, use_catalog
from servers import HubServer, make_data

OLD = make_data(90_000, seed=883)
NEW = make_data(90_000, seed=884)
TINY = {"config.json": b'{"a": 1}', "model.safetensors": OLD}


@pytest.fixture
def env(hub: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> HubServer:
    hub.add_repo("org/tiny", TINY)
    use_catalog(tmp_path, monkeypatch, "", endpoint=hub.url)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.chdir(tmp_path)
    return hub


def listed(*flags: str) -> dict[str, Any]:
    result = mdl("list", "--json", *flags)
    assert result.exit_code == 0, result.stderr
    doc: dict[str, Any] = json.loads(result.stdout)
    return doc


def test_list_names_each_get_folder_with_a_total(env: HubServer, tmp_path: Path) -> None:
    assert mdl("get", "hf://org/tiny", "-d", "a").exit_code == 0
    assert mdl("get", "hf://org/tiny/config.json", "-d", "b").exit_code == 0
    assert mdl("get", "hf://org/tiny", "-d", "a").exit_code == 0  # noted once
    doc = listed()
    found = {Path(o["path"]).name: o for o in doc["one_offs"]}
    assert sorted(found) == ["a", "b"]
    whole = len(OLD) + len(TINY["config.json"])
    assert (found["a"]["status"], found["a"]["files"], found["a"]["size"]) == (
        "installed",
        2,
        whole,
    )
    assert (found["b"]["files"], found["b"]["size"]) == (1, len(TINY["config.json"]))
    assert doc["total"] == {"size": whole + len(TINY["config.json"]), "earlier": 0}
    plain = mdl("list")
    assert "fetched by mdl get:" in plain.stdout and str(tmp_path / "a") in plain.stdout
    assert "total: " in plain.stderr and "2 one-offs" in plain.stderr, plain.stderr
    (tmp_path / "a" / "config.json").unlink()
    assert {Path(o["path"]).name: o["status"] for o in listed()["one_offs"]}["a"] == "partial"
    # --status holds them too (their files gone: missing); --tag leaves them out (they have none)
    for status, names in (("partial", ["a"]), ("installed", ["b"]), ("missing", [])):
        assert [Path(o["path"]).name for o in listed("--status", status)["one_offs"]] == names
    assert listed("--tag", "anything")["one_offs"] == []
    assert "fetched by mdl get:" not in mdl("list", "--status", "missing").stdout
    shutil.rmtree(tmp_path / "b")  # gone: missing
    assert [Path(o["path"]).name for o in listed("--status", "missing")["one_offs"]] == ["b"]


def test_clean_forgets_a_folder_removed_since(env: HubServer, tmp_path: Path) -> None:
    assert mdl("get", "hf://org/tiny", "-d", "a").exit_code == 0
    shutil.rmtree(tmp_path / "a")
    assert [o["status"] for o in listed()["one_offs"]] == ["gone"]
    dry = json.loads(mdl("clean", "--dry-run", "--json").stdout)
    assert [Path(f["path"]).name for f in dry["files"]] == ["a"]
    assert len(listed()["one_offs"]) == 1, "a dry run forgets nothing"
    done = mdl("clean", "--json")
    assert done.exit_code == 0, done.stderr
    assert listed()["one_offs"] == []


def test_an_older_revision_in_the_cache_is_shown_and_pruned(env: HubServer, tmp_path: Path) -> None:
    from huggingface_hub import hf_hub_download

    assert mdl("get", "hf://org/tiny", "--layout", "hf-cache").exit_code == 0
    env.replace_file("org/tiny", "model.safetensors", NEW)
    assert mdl("get", "hf://org/tiny", "--layout", "hf-cache").exit_code == 0
    [one] = listed("--layout", "hf-cache")["one_offs"]
    assert (one["name"], one["kind"], one["earlier"]) == ("models--org--tiny", "hf-cache", len(OLD))
    assert "older revisions hold" in mdl("list", "--layout", "hf-cache").stderr
    pruned = mdl("prune", "--layout", "hf-cache", "--json")
    assert pruned.exit_code == 0, pruned.stderr
    removed = json.loads(pruned.stdout)["removed"]
    assert sum(r["size"] for r in removed if r["removed"]) == len(OLD), removed
    [one] = listed("--layout", "hf-cache")["one_offs"]
    assert (one["earlier"], one["status"]) == (0, "installed")
    found = hf_hub_download(
        "org/tiny", "model.safetensors", cache_dir=tmp_path / "hf", local_files_only=True
    )
    assert Path(found).read_bytes() == NEW, "the current revision stays"


def test_a_catalog_models_older_revision_is_shown_by_list(
    env: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_catalog(tmp_path, monkeypatch, '[models.tiny]\nrepo = "org/tiny"\n', endpoint=env.url)
    assert mdl("pull", "tiny", "--layout", "hf-cache").exit_code == 0
    env.replace_file("org/tiny", "model.safetensors", NEW)
    assert mdl("pull", "tiny", "--layout", "hf-cache").exit_code == 0
    doc = listed("--layout", "hf-cache")
    [model] = doc["models"]
    assert (model["name"], model["earlier"]) == ("tiny", len(OLD))
    assert doc["total"] == {"size": len(NEW) + len(TINY["config.json"]), "earlier": len(OLD)}
    shown = mdl("list", "--layout", "hf-cache")
    assert "older revisions 87.9 KiB" in shown.stdout, shown.stdout
    assert mdl("prune", "--layout", "hf-cache").exit_code == 0
    assert listed("--layout", "hf-cache")["total"]["earlier"] == 0


def test_remove_a_get_folder_takes_what_get_saved_and_keeps_what_changed(
    env: HubServer, tmp_path: Path
) -> None:
    assert mdl("get", "hf://org/tiny", "-d", "a").exit_code == 0
    mine = tmp_path / "a" / "notes.txt"
    mine.write_text("mine")
    dry = mdl("remove", "./a", "--dry-run")
    assert dry.exit_code == 0, dry.stderr
    assert f"would remove  {tmp_path / 'a' / 'model.safetensors'}" in dry.stdout, dry.stdout
    assert (tmp_path / "a" / "model.safetensors").exists(), "a dry run removes nothing"
    (tmp_path / "a" / "config.json").write_bytes(b'{"a": 2}')  # same size, edited since
    done = mdl("remove", "./a", "--json")
    assert done.exit_code == 0, done.stderr
    doc = json.loads(done.stdout)
    assert [Path(r["path"]).name for r in doc["removed"]] == ["model.safetensors"]
    assert [Path(k["path"]).name for k in doc["kept"]] == ["config.json"]
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == [
        ".mdl",
        "config.json",
        "notes.txt",
    ]
    assert [o["files"] for o in listed()["one_offs"]] == [1], "the record keeps the changed file"
    (tmp_path / "a" / "config.json").unlink()
    mine.unlink()
    assert mdl("remove", "./a").exit_code == 0
    assert not (tmp_path / "a").exists(), "nothing of it left: the folder goes too"
    assert listed()["one_offs"] == []
    none = mdl("remove", str(tmp_path))
    assert none.exit_code == 2 and "no record of mdl get" in none.stderr, none.stderr


def test_lists_total_counts_the_models_with_something_on_disk(
    env: HubServer, tmp_path: Path
) -> None:
    """A catalog's models never pulled hold nothing: "in 10 models" for one on disk misled."""
    (tmp_path / "catalog.toml").write_text(
        '[models.tiny]\nrepo = "org/tiny"\n\n[models.never]\nrepo = "org/never"\n'
    )
    assert mdl("pull", "tiny").exit_code == 0
    listed_plain = mdl("list")
    assert listed_plain.exit_code == 0, listed_plain.stderr
    assert "on disk in 1 model and 0 one-offs" in listed_plain.stderr, listed_plain.stderr
