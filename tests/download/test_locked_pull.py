"""Pulls pinned by catalog.lock, against the loopback Hub: the same bytes on every machine, no Hub
API calls, stale entries resolved fresh with one warning, the lock's sha256 enforced, and offline
pulls from the lock."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from locks import lock_catalog, sha256_tree
from servers import HubServer, make_data

from mdl import api
from mdl.errors import ExitCode, UsageError
from mdl.lockfile.io import parse_lock, write_lock

CATALOG = """
[models.tiny]
repo = "org/tiny"

[models.other]
files = [{ repo = "org/other", path = "weights.bin" }, { repo = "org/other", path = "config.json", as = "cfg.json" }]
"""


@pytest.fixture
def world(hub: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    hub.add_repo(
        "org/tiny",
        {
            "config.json": b'{"v": 1}',
            "model.safetensors": make_data(300_000, seed=1),
            "vocab.txt": b"a\nb\n",
        },
    )
    hub.add_repo(
        "org/other", {"weights.bin": make_data(200_000, seed=2), "config.json": b'{"o": 1}'}
    )
    catalog = tmp_path / "catalog.toml"
    catalog.write_text(CATALOG)
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setenv("MDL_LOG_FILE", str(tmp_path / "mdl.log"))
    return catalog


def api_requests(hub: HubServer) -> list[str]:
    """Every request the Hub stand-in got that is not a file download (revision info, tree, HEAD
    metadata).
    """
    return [
        f"{r.method} {r.url_path}"
        for r in hub.log
        if r.url_path.startswith("/api/") or r.method == "HEAD"
    ]


def move_main(hub: HubServer) -> None:
    hub.commit(
        "org/tiny", {"model.safetensors": make_data(300_000, seed=9), "vocab.txt": b"a\nb\nc\n"}
    )
    hub.commit("org/other", {"weights.bin": make_data(200_000, seed=8)})


def test_main_moved_between_two_machines_locked_pulls_get_the_same_bytes(
    world: Path, hub: HubServer, tmp_path: Path
) -> None:
    lock_catalog(world, hub)
    first = api.pull(all=True, catalog=world, dest=tmp_path / "machine-1")
    assert first.ok, first.files
    move_main(hub)  # the fleet's cron runs an hour apart; main moved in between
    hub.log.clear()
    second = api.pull(all=True, catalog=world, dest=tmp_path / "machine-2")
    assert second.ok, second.files
    assert api_requests(hub) == []
    one, two = sha256_tree(tmp_path / "machine-1"), sha256_tree(tmp_path / "machine-2")
    assert one == two and len(one) == 5  # every file, byte for byte
    old = hub.repo("org/tiny").commits
    assert len(old) == 2

    # Without the lock, the same two pulls end on two commits.
    (world.with_suffix(".lock")).unlink()
    third = api.pull(all=True, catalog=world, dest=tmp_path / "machine-3")
    assert third.ok
    three = sha256_tree(tmp_path / "machine-3")
    assert three["tiny/model.safetensors"] != one["tiny/model.safetensors"]
    assert three["other/weights.bin"] != one["other/weights.bin"]
    assert three["tiny/config.json"] == one["tiny/config.json"]


@pytest.mark.slow
def test_a_locked_pull_of_a_300_file_repo_asks_the_hub_api_nothing(
    hub: HubServer, tmp_path: Path
) -> None:
    files = {f"shard-{i:03d}.json": b'{"i": %d}' % i for i in range(280)}
    files |= {f"weights/part-{i:02d}.safetensors": make_data(4096, seed=i) for i in range(20)}
    hub.add_repo("org/big", files)
    catalog = tmp_path / "catalog.toml"
    catalog.write_text('[models.big]\nrepo = "org/big"\n')
    lock_catalog(catalog, hub)
    env = {"HF_ENDPOINT": hub.url, "HOME": str(tmp_path)}
    hub.log.clear()
    report = api.pull("big", catalog=catalog, dest=tmp_path / "models", environ=env)
    assert report.ok and len(report.files) == 300
    assert api_requests(hub) == []  # no revision info, no tree listing, no HEAD
    downloads = hub.log.records(method="GET", path_prefix="/org/big/resolve/")
    assert len(downloads) == 300
    commit = hub.repo("org/big").sha
    assert all(f"/resolve/{commit}/" in r.url_path for r in downloads)  # pinned, never "main"

    # Without the lock the same pull lists the tree and asks for the revision.
    hub.log.clear()
    catalog.with_suffix(".lock").unlink()
    assert api.pull("big", catalog=catalog, dest=tmp_path / "fresh", environ=env).ok
    assert any("/tree/" in r for r in api_requests(hub)) and any(
        "/revision/" in r for r in api_requests(hub)
    )


def test_a_stale_entry_alone_is_resolved_fresh_with_one_warning(
    world: Path, hub: HubServer, tmp_path: Path
) -> None:
    lock_catalog(world, hub)
    world.write_text(
        CATALOG.replace('repo = "org/tiny"', 'repo = "org/tiny"\nexclude = ["vocab.txt"]')
    )
    move_main(hub)
    hub.log.clear()
    report = api.pull(all=True, catalog=world, dest=tmp_path / "models")
    assert report.ok, report.files
    warned = {f.warning for f in report.files if f.model == "tiny"}
    assert warned == {
        "tiny: catalog.lock is out of date for this model; resolving it fresh (run mdl lock)"
    }
    assert all(f.warning is None for f in report.files if f.model == "other")
    # only the stale one is asked
    assert api_requests(hub) and all("/org/tiny/" in r for r in api_requests(hub))
    models = tmp_path / "models"
    assert not (models / "tiny" / "vocab.txt").exists()  # the catalog as edited
    # main, now
    assert (models / "tiny" / "model.safetensors").read_bytes() == make_data(300_000, seed=9)
    # still the lock's
    assert (models / "other" / "weights.bin").read_bytes() == make_data(200_000, seed=2)


def test_a_model_missing_from_the_lock_is_resolved_fresh_and_says_so(
    world: Path, hub: HubServer, tmp_path: Path
) -> None:
    lock_catalog(world, hub, only=("other",))
    report = api.pull(all=True, catalog=world, dest=tmp_path / "models")
    assert report.ok
    assert {f.warning for f in report.files if f.model == "tiny"} == {
        "tiny: not in catalog.lock; resolving it fresh (run mdl lock)"
    }


def test_locked_refuses_a_missing_or_stale_lock_before_any_request(
    world: Path, hub: HubServer, tmp_path: Path
) -> None:
    with pytest.raises(
        UsageError, match=r"--locked: there is no catalog.lock .* to pin tiny, other"
    ):
        api.pull(all=True, catalog=world, dest=tmp_path / "models", locked=True)
    lock_catalog(world, hub)
    world.write_text(CATALOG.replace('path = "weights.bin"', 'path = "weights.bin", as = "w.bin"'))
    with pytest.raises(UsageError, match=r"out of date for other \(the catalog changed") as caught:
        api.pull(all=True, catalog=world, dest=tmp_path / "models", locked=True)
    assert "tiny" not in caught.value.message and caught.value.exit_code == ExitCode.USAGE
    assert len(hub.log) == 0 and len(hub.cdn.log) == 0  # nothing asked, nothing fetched
    assert not (tmp_path / "models").exists()
    with pytest.raises(UsageError, match="--locked and --frozen"):
        api.pull("tiny", catalog=world, locked=True, frozen=True)


def test_the_locks_sha256_wins_over_what_the_hub_serves_now(
    world: Path, hub: HubServer, tmp_path: Path
) -> None:
    lock_path = lock_catalog(world, hub)
    lock = parse_lock(lock_path.read_text())
    tiny = lock.models["tiny"]
    bad = tuple(
        dataclasses.replace(f, sha256="0" * 64) if f.path == "vocab.txt" else f for f in tiny.files
    )
    write_lock(
        lock_path,
        dataclasses.replace(
            lock, models={**lock.models, "tiny": dataclasses.replace(tiny, files=bad)}
        ),
    )
    report = api.pull("tiny", catalog=world, dest=tmp_path / "models")
    assert report.exit_code == ExitCode.INTEGRITY
    failed = [f for f in report.files if f.failing]
    assert [f.path for f in failed] == ["vocab.txt"] and "sha256" in (failed[0].error or "")
    assert not (tmp_path / "models" / "tiny" / "vocab.txt").exists()


def test_a_local_file_of_another_version_than_the_lock_is_fetched_again(
    world: Path, hub: HubServer, tmp_path: Path
) -> None:
    dest = tmp_path / "models"
    assert api.pull("tiny", catalog=world, dest=dest).ok  # no lock: main as it is
    move_main(hub)
    lock_catalog(world, hub)  # locked at the new main
    verify = api.verify("tiny", catalog=world, dest=dest)
    assert verify.exit_code == ExitCode.NOT_FOUND  # not ready: never 6, "a file changed"
    outdated = sorted(f.path or "" for f in verify.files if f.failing)
    assert outdated == ["model.safetensors", "vocab.txt"]
    assert all(
        "outdated: catalog.lock pins sha256" in (f.error or "") for f in verify.files if f.failing
    )
    report = api.pull("tiny", catalog=world, dest=dest)
    assert {f.path: f.action for f in report.files} == {
        "config.json": "skipped",
        "model.safetensors": "downloaded",
        "vocab.txt": "downloaded",
    }
    assert (dest / "tiny" / "vocab.txt").read_bytes() == b"a\nb\nc\n"
    assert api.verify("tiny", catalog=world, dest=dest).ok


def test_offline_with_a_lock_and_complete_records_pull_verify_show_resolve_ask_nothing(
    world: Path, hub: HubServer, tmp_path: Path
) -> None:
    lock_catalog(world, hub)
    dest = tmp_path / "models"
    assert api.pull(all=True, catalog=world, dest=dest).ok
    hub.log.clear()
    hub.cdn.log.clear()
    env = {"HF_ENDPOINT": hub.url, "HF_HUB_OFFLINE": "1", "HOME": str(tmp_path)}
    pulled = api.pull(all=True, catalog=world, dest=dest, environ=env)
    assert pulled.ok and {f.action for f in pulled.files} == {"skipped"}
    assert api.verify(all=True, catalog=world, dest=dest, environ=env).ok
    info = api.show("tiny", catalog=world, dest=dest, environ=env)
    assert info.status.status == "installed" and info.warning is None
    resolution = api.resolve(all=True, catalog=world, dest=dest, environ=env)
    assert resolution.ok
    commit = hub.repo("org/tiny").sha
    assert {m["name"]: m["commit"] for m in resolution.models}["tiny"] == commit
    assert all(f["state"] == "installed" for m in resolution.models for f in m["files"])
    assert len(hub.log) == 0 and len(hub.cdn.log) == 0

    # A file never pulled cannot be fetched offline: said, not guessed.
    (dest / "tiny" / "vocab.txt").unlink()
    again = api.pull("tiny", catalog=world, dest=dest, environ=env)
    assert again.exit_code == ExitCode.NETWORK
    assert len(hub.log) == 0


def test_a_locked_pull_into_the_hf_cache_fills_the_locked_commits_snapshot(
    world: Path, hub: HubServer, tmp_path: Path
) -> None:
    lock_catalog(world, hub)
    commit = hub.repo("org/tiny").sha
    move_main(hub)
    hub.log.clear()
    env = {"HF_ENDPOINT": hub.url, "HF_HUB_CACHE": str(tmp_path / "cache"), "HOME": str(tmp_path)}
    report = api.pull("tiny", catalog=world, layout="hf-cache", environ=env)
    assert report.ok, report.files
    assert api_requests(hub) == []
    snapshot = tmp_path / "cache" / "models--org--tiny" / "snapshots" / commit
    assert (snapshot / "model.safetensors").read_bytes() == make_data(300_000, seed=1)
    assert report.path("tiny") == snapshot
    assert api.verify("tiny", catalog=world, layout="hf-cache", environ=env).ok
