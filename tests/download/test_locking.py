"""``mdl lock`` as the API does it, against the loopback Hub and CDN: what the lock pins, that a
re-lock asks nothing and rewrites nothing, what --upgrade moves, what --check finds, and that a
failure writes nothing."""

from __future__ import annotations

import hashlib
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from runfixtures import HANG, Meeting
from servers import Fault, HubServer, git_blob_sha1, make_data
from zygote import forked_mdl

from mdl import api
from mdl.download.lock import LockReport
from mdl.errors import ExitCode, NotFoundError
from mdl.lockfile.io import read_lock
from mdl.lockfile.model import Lock
from mdl.progress import NullProgress

WEIGHTS = make_data(300_003, seed=3)
WEIGHTS_2 = make_data(310_000, seed=4)
CONFIG = b'{"model_type": "bert"}\n'
LORA = make_data(50_000, seed=5)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_catalog(folder: Path, hub: HubServer, *, extra: str = "") -> Path:
    lora = hub.cdn.add_file("/loras/style.safetensors", LORA)
    catalog = folder / "catalog.toml"
    catalog.write_text(f"""
[models.tiny]
repo = "org/tiny"

[[models.combo.files]]
repo = "org/tiny"
path = "config.json"
as = "cfg/config.json"

[[models.combo.files]]
url = "{lora}"
{extra}
""")
    return catalog


@dataclass(frozen=True)
class World:
    catalog: Path
    lock: Path
    dest: Path
    env: dict[str, str]

    def locked(self) -> Lock:
        found = read_lock(self.lock)
        assert found is not None
        return found


@pytest.fixture
def world(hub: HubServer, tmp_path: Path) -> World:
    hub.add_repo("org/tiny", {"config.json": CONFIG, "model.bin": WEIGHTS})
    catalog = write_catalog(tmp_path, hub)
    env = {"HF_ENDPOINT": hub.url, "MDL_DEST": str(tmp_path / "models")}
    return World(catalog, tmp_path / "catalog.lock", tmp_path / "models", env)


def lock(world: World, *names: str, upgrade: bool = False, check: bool = False) -> LockReport:
    return api.lock(*names, catalog=world.catalog, environ=world.env, upgrade=upgrade, check=check)


def test_the_lock_pins_commit_sizes_and_sha256_of_every_file(world: World, hub: HubServer) -> None:
    report = lock(world)
    assert report.ok and report.changed
    assert {c.name: c.status for c in report.changes} == {"combo": "added", "tiny": "added"}
    locked = world.locked()
    commit = hub.repo("org/tiny").sha
    tiny = locked.models["tiny"]
    assert (tiny.revision, tiny.commit) == ("main", commit)
    files = {f.path: f for f in tiny.files}
    assert files["model.bin"].sha256 == sha256(WEIGHTS) and files["model.bin"].size == len(WEIGHTS)
    assert files["model.bin"].source == f"hf://org/tiny@{commit}/model.bin"
    # A small git file: the Hub names only its blob id; the lock still has its sha256 (fetched once
    # and hashed).
    assert files["config.json"].sha256 == sha256(CONFIG)
    assert files["config.json"].git_oid == git_blob_sha1(CONFIG)
    combo = {f.path: f for f in locked.models["combo"].files}
    assert combo["cfg/config.json"].sha256 == sha256(CONFIG)
    # A URL without a catalog sha256: downloaded once to hash it, and nothing of it left behind.
    assert combo["style.safetensors"].sha256 == sha256(LORA) and combo[
        "style.safetensors"
    ].size == len(LORA)
    assert combo["style.safetensors"].source == hub.cdn.url + "/loras/style.safetensors"
    state = world.dest / ".mdl" / "partial"
    assert not state.exists() or list(state.iterdir()) == []
    assert not (world.dest / "combo").exists()


def test_a_second_lock_asks_nothing_and_rewrites_nothing(world: World, hub: HubServer) -> None:
    lock(world)
    path = world.lock
    text, mtime = path.read_bytes(), path.stat().st_mtime_ns
    hub.log.clear()
    hub.cdn.log.clear()
    report = lock(world)
    assert report.ok and not report.changed and report.resolved == ()
    assert {c.status for c in report.changes} == {"unchanged"}
    assert list(hub.log) == [] and list(hub.cdn.log) == []
    assert path.read_bytes() == text and path.stat().st_mtime_ns == mtime


def test_a_pulled_file_gives_its_sha256_without_a_download(world: World, hub: HubServer) -> None:
    assert api.pull("tiny", "combo", catalog=world.catalog, environ=world.env).ok
    hub.log.clear()
    hub.cdn.log.clear()
    assert lock(world).ok
    gets = hub.log.records(method="GET")
    fetched = [r.url_path for r in gets if "/resolve/" in r.url_path and not r.asks_metadata] + [
        r.url_path for r in hub.cdn.log.records()
    ]
    assert fetched == []  # the records of verified files named every sha256
    combo = {f.path: f for f in world.locked().models["combo"].files}
    assert combo["style.safetensors"].sha256 == sha256(LORA)


def test_without_upgrade_a_moved_branch_stays_locked(world: World, hub: HubServer) -> None:
    lock(world)
    old = hub.repo("org/tiny").sha
    hub.commit("org/tiny", {"model.bin": WEIGHTS_2, "extra.json": b"{}"})
    report = lock(world)
    assert report.ok and not report.changed
    assert world.locked().models["tiny"].commit == old


def test_upgrade_moves_main_and_says_what_changed(world: World, hub: HubServer) -> None:
    lock(world)
    old = hub.repo("org/tiny").sha
    new = hub.commit("org/tiny", {"model.bin": WEIGHTS_2, "extra.json": b"{}"})
    hub.log.clear()
    report = lock(world, "tiny", upgrade=True)
    fetched = [
        r.url_path.rsplit("/", 1)[-1]
        for r in hub.log.records(method="GET")
        if "/resolve/" in r.url_path and not r.asks_metadata
    ]
    # config.json is the same git blob: its sha256 comes from the old lock
    assert fetched == ["extra.json"]
    assert report.ok and report.changed and report.resolved == ("tiny",)
    (change,) = report.changes
    assert (change.name, change.status, change.old_commit, change.new_commit) == (
        "tiny",
        "changed",
        old,
        new,
    )
    assert [f.path for f in change.added] == ["extra.json"] and change.removed == ()
    ((before, after),) = change.changed
    assert (before.path, before.size, after.size) == ("model.bin", len(WEIGHTS), len(WEIGHTS_2))
    assert after.sha256 == sha256(WEIGHTS_2)
    doc = report.to_json()
    assert doc["changed"] is True and doc["lock"] == str(world.lock)
    assert doc["models"][0]["changed"][0]["new_size"] == len(WEIGHTS_2)


def test_an_edited_entry_is_relocked_alone_and_a_removed_one_dropped(
    world: World, hub: HubServer
) -> None:
    lock(world)
    catalog = world.catalog
    catalog.write_text(
        catalog.read_text().replace(
            'repo = "org/tiny"\n\n', 'repo = "org/tiny"\ninclude = ["*.bin"]\n\n', 1
        )
    )
    assert lock(world, check=True).stale == ("tiny",)
    hub.log.clear()
    report = lock(world)
    assert report.ok and report.changed and report.resolved == ("tiny",)
    assert [f.path for f in world.locked().models["tiny"].files] == ["model.bin"]
    text = catalog.read_text()
    catalog.write_text(text[: text.index("[[models.combo.files]]")])
    # an entry the catalog no longer has: the lock would change
    assert lock(world, check=True).stale == ("combo",)
    report = lock(world)
    assert {c.name: c.status for c in report.changes} == {"combo": "removed", "tiny": "unchanged"}
    assert set(world.locked().models) == {"tiny"}


def test_check_is_fresh_missing_or_stale_and_asks_nothing(world: World, hub: HubServer) -> None:
    missing = lock(world, check=True)
    assert (
        missing.missing
        and missing.stale == ("combo", "tiny")
        and missing.exit_code == ExitCode.USAGE
    )
    assert not world.lock.exists()
    lock(world)
    hub.log.clear()
    fresh = lock(world, check=True)
    assert fresh.ok and fresh.stale == () and fresh.to_json()["fresh"] is True
    assert list(hub.log) == []


def test_a_failing_model_writes_nothing(world: World, hub: HubServer) -> None:
    lock(world)
    path = world.lock
    before = path.read_bytes()
    catalog = world.catalog
    catalog.write_text(catalog.read_text() + '\n[models.gone]\nrepo = "org/gone"\n')
    hub.commit("org/tiny", {"model.bin": WEIGHTS_2})
    report = lock(world, upgrade=True)
    assert not report.ok and report.exit_code == NotFoundError.exit_code and not report.changed
    assert [f.model for f in report.failures] == ["gone"]
    assert path.read_bytes() == before


def test_names_lock_only_those_and_keep_the_rest(world: World, hub: HubServer) -> None:
    report = lock(world, "tiny")
    assert [c.name for c in report.changes] == ["tiny"]
    assert set(world.locked().models) == {"tiny"}
    lock(world, "combo")
    assert set(world.locked().models) == {"combo", "tiny"}


def test_offline_a_fresh_lock_is_fine_and_a_stale_one_fails(world: World, hub: HubServer) -> None:
    lock(world)
    env = {**world.env, "HF_HUB_OFFLINE": "1"}
    hub.log.clear()
    assert api.lock(catalog=world.catalog, environ=env).ok
    report = api.lock(catalog=world.catalog, environ=env, upgrade=True)
    assert report.exit_code == ExitCode.NETWORK and {f.model for f in report.failures} == {
        "combo",
        "tiny",
    }
    assert list(hub.log) == []


class Seen(NullProgress):
    """Keeps what the progress protocol was told (one thread: the hashing runs one file at a
    time).
    """

    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    def begin(self, *, total_bytes: int | None, files: int) -> None:
        self.events.append(("begin", f"{total_bytes}/{files}"))

    def start(self, key: str, **_: object) -> None:  # type: ignore[override]
        self.events.append(("start", key))

    def finish(self, key: str, *, ok: bool, message: str = "") -> None:
        self.events.append(("finish", f"{key} {ok} {message}"))


def test_files_hashed_by_download_show_progress_and_the_same_bytes_come_once(
    world: World, hub: HubServer
) -> None:
    seen = Seen()
    assert api.lock(catalog=world.catalog, environ=world.env, progress=seen).ok
    assert seen.events[0] == ("begin", "None/2")  # the URL's size is not known before it comes
    assert ("start", "combo/style.safetensors") in seen.events
    assert ("finish", "combo/style.safetensors True hashed") in seen.events
    # tiny/config.json and combo/cfg/config.json are one git blob: fetched once, the same sha256 for
    # both.
    gets = [
        r.url_path
        for r in hub.log.records(method="GET")
        if r.url_path.endswith("/config.json") and not r.asks_metadata
    ]
    assert len(gets) == 1


@pytest.mark.slow
def test_two_locks_at_once_keep_both_models(world: World, hub: HubServer, tmp_path: Path) -> None:
    """Each run reads the lock, asks the Hub, then writes: the second write must not drop the
    first's model. Two real processes, the Hub stand-in holding the first revision request until
    the other run's has come, so both read before either writes."""
    hub.add_repo("org/other", {"config.json": CONFIG})
    world.catalog.write_text(world.catalog.read_text() + '\n[models.other]\nrepo = "org/other"\n')
    hub.faults.add(Fault.call(Meeting(), path_prefix="/api/models/", times=None))
    env = {**os.environ, **world.env, "MDL_LOG_FILE": str(tmp_path / "mdl.log")}
    runs = [
        subprocess.Popen(
            [forked_mdl(), "lock", name, "--catalog", str(world.catalog), "--no-progress"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in ("tiny", "other")
    ]
    for run in runs:
        _, err = run.communicate(timeout=HANG)
        assert run.returncode == 0, err
    assert sorted(world.locked().models) == ["other", "tiny"]
    assert lock(world, "tiny", "other", check=True).exit_code == 0
