"""pull, verify, show and resolve with catalog.lock from the command line: --locked and --frozen,
the one warning for a stale model, a machine that has only the lock, exit codes, stdout vs stderr
and the JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from locks import lock_catalog, sha256_tree
from runfixtures import mdl
from servers import CdnServer, HubServer, make_data

WEIGHTS = make_data(150_000, seed=3)

CATALOG = """
[models.tiny]
description = "tiny test model"
repo = "org/tiny"

[models.pair]
files = [{ repo = "org/tiny", path = "config.json", as = "cfg/config.json" }]
"""


@pytest.fixture
def world(hub: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    hub.add_repo("org/tiny", {"config.json": b'{"v": 1}', "model.safetensors": WEIGHTS})
    catalog = tmp_path / "project" / "catalog.toml"
    catalog.parent.mkdir()
    catalog.write_text(CATALOG)
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setenv("MDL_CATALOG", str(catalog))
    monkeypatch.setenv("MDL_DEST", str(tmp_path / "models"))
    monkeypatch.setenv("MDL_LOG_FILE", str(tmp_path / "mdl.log"))
    return catalog


def api_requests(hub: HubServer) -> list[str]:
    return [
        f"{r.method} {r.url_path}"
        for r in hub.log
        if r.url_path.startswith("/api/") or r.method == "HEAD"
    ]


def test_a_stale_model_is_warned_about_once_on_stderr_and_in_the_json(
    world: Path, hub: HubServer
) -> None:
    lock_catalog(world, hub)
    world.write_text(
        CATALOG.replace('repo = "org/tiny"\n', 'repo = "org/tiny"\ninclude = ["*"]\n', 1)
    )
    result = mdl("pull", "--all")
    assert result.exit_code == 0, result.stderr
    warning = (
        "mdl: warning: tiny: catalog.lock is out of date for this model; resolving it fresh (run"
        " mdl lock)"
    )
    assert result.stderr.count("catalog.lock") == 1 and warning in result.stderr
    assert "catalog.lock" not in result.stdout
    doc = json.loads(mdl("pull", "--all", "--json").stdout)
    assert {f["model"]: f.get("warning") for f in doc["files"]} == {
        "tiny": warning.removeprefix("mdl: warning: "),
        "pair": None,
    }


def test_locked_refuses_with_exit_2_naming_the_models(
    world: Path, hub: HubServer, tmp_path: Path
) -> None:
    missing = mdl("pull", "--all", "--locked")
    assert missing.exit_code == 2
    assert "--locked: there is no catalog.lock" in missing.stderr and "tiny, pair" in missing.stderr
    assert "mdl lock" in missing.stderr
    lock_catalog(world, hub)
    world.write_text(CATALOG.replace('as = "cfg/config.json"', 'as = "config.json"'))
    stale = mdl("pull", "--all", "--locked", "--json")
    assert stale.exit_code == 2
    assert (
        json.loads(stale.stdout)["error"]["message"]
        == "--locked: catalog.lock is out of date for pair (the catalog changed since it was"
        " locked)"
    )
    env_stale = mdl("verify", "pair", env={"MDL_LOCKED": "1"})
    assert env_stale.exit_code == 2 and "out of date for pair" in env_stale.stderr
    both = mdl("pull", "tiny", "--locked", "--frozen")
    assert both.exit_code == 2 and "--locked and --frozen" in both.stderr
    assert len(hub.cdn.log) == 0 and not (tmp_path / "models").exists()
    assert mdl("pull", "tiny", "--locked").exit_code == 0  # tiny itself is locked and fresh


def test_frozen_works_on_a_machine_that_has_only_the_lock(
    world: Path, hub: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lock = lock_catalog(world, hub)
    machine = tmp_path / "machine"
    machine.mkdir()
    (machine / "catalog.lock").write_bytes(lock.read_bytes())
    monkeypatch.delenv("MDL_CATALOG")
    monkeypatch.chdir(machine)
    # main moved since the lock
    hub.commit("org/tiny", {"model.safetensors": make_data(150_000, seed=99)})
    hub.log.clear()
    pulled = mdl("pull", "--frozen", "--all", "--dest", str(machine / "models"))
    assert pulled.exit_code == 0, pulled.stderr
    assert api_requests(hub) == []
    tree = sha256_tree(machine / "models")
    assert sorted(tree) == ["pair/cfg/config.json", "tiny/config.json", "tiny/model.safetensors"]
    assert (machine / "models" / "tiny" / "model.safetensors").read_bytes() == WEIGHTS
    assert mdl("verify", "--frozen", "--all", "--dest", str(machine / "models")).exit_code == 0
    shown = mdl("show", "tiny", "--frozen", "--dest", str(machine / "models"), "--json")
    assert shown.exit_code == 0, shown.stderr
    assert json.loads(shown.stdout)["models"][0]["status"] == "installed"

    unknown = mdl("pull", "--frozen", "tiyn")
    assert (
        unknown.exit_code == 2
        and "'tiyn'" in unknown.stderr
        and "did you mean 'tiny'" in unknown.stderr
    )
    assert mdl("pull", "--all").exit_code == 2  # without --frozen a catalog is needed


def test_frozen_finds_the_lock_beside_the_catalog_flag_even_when_the_catalog_is_absent(
    world: Path, hub: HubServer, tmp_path: Path
) -> None:
    lock = lock_catalog(world, hub)
    elsewhere = tmp_path / "deploy"
    elsewhere.mkdir()
    (elsewhere / "catalog.lock").write_bytes(lock.read_bytes())
    result = mdl("pull", "--frozen", "pair", "--catalog", str(elsewhere / "catalog.toml"))
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "models" / "pair" / "cfg" / "config.json").read_bytes() == b'{"v": 1}'
    none = mdl("pull", "--frozen", "pair", "--catalog", str(tmp_path / "nowhere" / "catalog.toml"))
    assert none.exit_code == 2 and "--frozen: no catalog.lock found" in none.stderr


def test_frozen_direct_urls_come_from_the_lock(
    tmp_path: Path, cdn: CdnServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = make_data(70_000, seed=5)
    url = cdn.add_file("/files/lora.safetensors", data)
    catalog = tmp_path / "catalog.toml"
    catalog.write_text(f'[models.lora]\nfiles = [{{ url = "{url}" }}]\n')
    hub = HubServer()
    lock = lock_catalog(catalog, hub, urls={url: data})
    catalog.unlink()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MDL_LOG_FILE", str(tmp_path / "mdl.log"))
    result = mdl("pull", "--frozen", "--all", "--dest", str(tmp_path / "models"))
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "models" / "lora" / "lora.safetensors").read_bytes() == data
    assert lock.exists()


def test_show_and_resolve_use_the_lock(world: Path, hub: HubServer) -> None:
    lock_catalog(world, hub)
    commit = hub.repo("org/tiny").sha
    hub.commit("org/tiny", {"extra.txt": b"new on main"})
    hub.log.clear()
    shown = mdl("show", "tiny", "--json")
    assert shown.exit_code == 0, shown.stderr
    model = json.loads(shown.stdout)["models"][0]
    assert model["commit"] == commit and model["status"] == "missing"
    assert {f["path"]: f["state"] for f in model["files"]} == {
        "config.json": "missing",
        "model.safetensors": "missing",
    }
    resolved = mdl("resolve", "tiny", "--json")
    assert resolved.exit_code == 0, resolved.stderr
    doc = json.loads(resolved.stdout)["models"][0]
    assert doc["commit"] == commit and doc["locked"] is True
    # not extra.txt
    assert sorted(f["path"] for f in doc["files"]) == ["config.json", "model.safetensors"]
    assert all(f"/resolve/{commit}/" in f["url"] for f in doc["files"])
    assert len(hub.log) == 0  # neither asked the Hub anything

    world.write_text(
        CATALOG.replace(
            'description = "tiny test model"', 'description = "tiny"\ninclude = ["*.json"]'
        )
    )
    stale = mdl("show", "tiny")
    assert stale.exit_code == 0
    assert (
        stale.stderr.count(
            "tiny: catalog.lock is out of date for this model; using the catalog entry"
        )
        == 1
    )


def test_frozen_needs_the_catalog_for_a_signed_url(
    tmp_path: Path, cdn: CdnServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = make_data(50_000, seed=6)
    cdn.add_file("/files/signed.bin", data)
    url = cdn.signed_url("/files/signed.bin")
    catalog = tmp_path / "catalog.toml"
    catalog.write_text(f'[models.signed]\nfiles = [{{ url = "{url}" }}]\n')
    lock = lock_catalog(catalog, HubServer(), urls={url: data})
    assert "REDACTED" in lock.read_text() and "Signature" not in lock.read_text()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MDL_LOG_FILE", str(tmp_path / "mdl.log"))
    with_catalog = mdl("pull", "--frozen", "--all", "--dest", str(tmp_path / "models"))
    # the catalog beside the lock lends the signed URL
    assert with_catalog.exit_code == 0, with_catalog.stderr
    assert (tmp_path / "models" / "signed" / "signed.bin").read_bytes() == data
    catalog.unlink()
    alone = mdl("pull", "--frozen", "--all", "--dest", str(tmp_path / "other"))
    assert alone.exit_code == 2
    assert (
        "signed/signed.bin: catalog.lock holds this signed URL without its signature"
        in alone.stderr
    )
    assert len([r for r in cdn.log if r.method == "GET"]) == 1  # the first pull's only


def test_frozen_refuses_a_lock_whose_model_name_climbs_out_of_dest(
    world: Path, hub: HubServer, tmp_path: Path
) -> None:
    lock = lock_catalog(world, hub)
    lock.write_text(lock.read_text().replace('name = "tiny"', 'name = "../../evil"'))
    hub.log.clear()
    for flag in ("--frozen", "--locked"):
        result = mdl("pull", flag, "--all", "--dest", str(tmp_path / "deep" / "er" / "models"))
        assert result.exit_code == 2, result.stderr
        assert (
            f"{lock}: model[1].name: model names use" in result.stderr
            and "Traceback" not in result.stderr
        )
    assert not (tmp_path / "evil").exists() and not (tmp_path / "deep").exists()
    assert len(hub.log) == 0 and len(hub.cdn.log) == 0


def test_a_hub_repo_id_the_hub_refuses_is_exit_2_not_a_crash(world: Path, hub: HubServer) -> None:
    world.write_text(CATALOG + '\n[models.odd]\nfiles = [{ repo = "org/a--b", path = "x.bin" }]\n')
    for args in (("lock",), ("pull", "odd")):
        result = mdl(*args)
        assert result.exit_code == 2, (args, result.stderr)
        assert (
            "org/a--b: not a valid Hub repo id" in result.stderr
            and "internal error" not in result.stderr
        )
