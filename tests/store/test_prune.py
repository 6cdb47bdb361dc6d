"""``mdl prune`` and ``mdl remove --prune``: what the catalog no longer names goes, and only what
mdl recorded; a model another run is pulling is kept; links planted in the destination are never
followed."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest
from planted import snapshot
from runfixtures import HANG, mdl, wait_for
from servers import Fault, HubServer, git_blob_sha1, make_data
from zygote import forked_mdl

from mdl.errors import LockTimeoutError
from mdl.store.store import Store
from mdl.wait import Wait

WEIGHTS = make_data(300_000, seed=39)
CONFIG = b'{"hidden_size": 8}'
VOCAB = b"[PAD]\n"
CATALOG = """
[models.tiny]
repo = "org/tiny"

[models.other]
repo = "org/other"
"""


@pytest.fixture
def world(
    hub: HubServer, catalog: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, Path]:
    hub.add_repo(
        "org/tiny", {"config.json": CONFIG, "model.safetensors": WEIGHTS, "sub/vocab.txt": VOCAB}
    )
    hub.add_repo("org/other", {"config.json": b"{}"})
    catalog.write_text(CATALOG)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setenv("MDL_DEST", str(tmp_path / "models"))
    monkeypatch.setenv("MDL_LOG_FILE", str(tmp_path / "mdl.log"))
    return {
        "dest": tmp_path / "models",
        "cache": tmp_path / "hf-cache",
        "catalog": catalog,
        "root": tmp_path,
    }


def pull(*args: str) -> None:
    result = mdl("pull", *args, "--no-progress")
    assert result.exit_code == 0, result.stderr


def drop_model(catalog: Path, name: str) -> None:
    result = mdl("remove", name)
    assert result.exit_code == 0, result.stderr
    assert f"[models.{name}]" not in catalog.read_text()


def test_prune_removes_a_removed_models_files_and_record_and_nothing_else(
    world: dict[str, Path],
) -> None:
    dest = world["dest"]
    pull("tiny", "other")
    (dest / "tiny" / "notes.txt").write_text("mine")  # a user's own file in the model folder
    (dest / "mine").mkdir()  # an unrecorded folder in dest
    (dest / "mine" / "w.bin").write_bytes(b"x")
    result = mdl("remove", "tiny")
    assert "mdl prune" in result.stderr, (
        "remove without --prune names the command that removes the files"
    )
    assert (dest / "tiny" / "config.json").exists()

    dry = mdl("prune", "--dry-run")
    assert dry.exit_code == 0, dry.stderr
    assert f"would remove  {dest / 'tiny' / 'config.json'}" in dry.stdout
    assert (dest / "tiny" / "config.json").exists(), "--dry-run changes nothing"

    result = mdl("prune")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert sorted(line.split("  ")[1] for line in lines) == sorted(
        str(dest / "tiny" / p) for p in ("config.json", "model.safetensors", "sub/vocab.txt")
    )
    assert all(line.startswith("removed  ") for line in lines)
    assert "freed" in result.stderr and "kept 2 path(s) mdl did not write" in result.stderr, (
        result.stderr
    )
    assert (dest / "tiny" / "notes.txt").read_text() == "mine"
    assert not (dest / "tiny" / "sub").exists(), "emptied folders go"
    assert (dest / "mine" / "w.bin").exists()
    assert not Store(dest).record_path("tiny").exists()
    assert (dest / "other" / "config.json").exists() and Store(dest).record_path("other").exists()
    again = mdl("prune", "--json")
    assert json.loads(again.stdout)["removed"] == []


def test_prune_keeps_a_file_changed_since_mdl_wrote_it(world: dict[str, Path]) -> None:
    dest = world["dest"]
    pull("tiny")
    (dest / "tiny" / "config.json").write_bytes(b'{"edited": true, "by": "me"}')
    drop_model(world["catalog"], "tiny")
    result = mdl("prune", "--json", "-v")
    doc = json.loads(result.stdout)
    assert doc["ok"] is True
    removed = {r["path"] for r in doc["removed"]}
    assert str(dest / "tiny" / "config.json") not in removed
    changed = {
        "path": str(dest / "tiny" / "config.json"),
        "model": "tiny",
        "reason": "changed since mdl wrote it",
    }
    assert {**changed, "catalog": None} in doc["kept"]
    assert (dest / "tiny" / "config.json").exists()
    assert doc["freed"] == len(WEIGHTS) + len(VOCAB)
    assert all(r["model"] == "tiny" and r["reason"] == "not in the catalog" for r in doc["removed"])


def test_prune_removes_files_a_model_no_longer_has(world: dict[str, Path], hub: HubServer) -> None:
    dest = world["dest"]
    pull("tiny")
    hub.commit("org/tiny", {"sub/vocab.txt": None})
    pull("tiny")
    shown = json.loads(mdl("show", "tiny", "--json").stdout)["models"][0]
    assert shown["extra"] == ["sub/vocab.txt"]
    result = mdl("prune", "--json")
    doc = json.loads(result.stdout)
    assert [(r["path"], r["reason"]) for r in doc["removed"]] == [
        (str(dest / "tiny" / "sub" / "vocab.txt"), "no longer part of the model")
    ]
    assert not (dest / "tiny" / "sub").exists()
    assert json.loads(mdl("show", "tiny", "--json").stdout)["models"][0]["extra"] == []
    assert (dest / "tiny" / "model.safetensors").exists()


def test_remove_prune_does_both(world: dict[str, Path]) -> None:
    dest = world["dest"]
    pull("tiny", "other")
    result = mdl("remove", "tiny", "--prune", "--json")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["pruned"]["freed"] == len(CONFIG) + len(WEIGHTS) + len(VOCAB)
    assert not (dest / "tiny").exists()
    assert (dest / "other" / "config.json").exists()
    assert "[models.tiny]" not in world["catalog"].read_text()


def test_remove_prune_dry_run_lists_what_would_go_and_changes_nothing(
    world: dict[str, Path],
) -> None:
    dest, catalog = world["dest"], world["catalog"]
    pull("tiny", "other")
    assert mdl("lock", "--all").exit_code == 0
    lock = catalog.with_name("catalog.lock")
    before = (catalog.read_text(), lock.read_text(), sorted(p for p in dest.rglob("*")))
    dry = mdl("remove", "tiny", "--prune", "--dry-run")
    assert dry.exit_code == 0, dry.stderr
    assert sorted(line.split("  ")[1] for line in dry.stdout.splitlines()) == sorted(
        str(dest / "tiny" / p) for p in ("config.json", "model.safetensors", "sub/vocab.txt")
    )
    assert all(line.startswith("would remove  ") for line in dry.stdout.splitlines())
    assert "would remove tiny from" in dry.stderr and "would free" in dry.stderr, dry.stderr
    assert "would update" in dry.stderr, dry.stderr
    assert (catalog.read_text(), lock.read_text(), sorted(p for p in dest.rglob("*"))) == before, (
        "nothing changed"
    )

    doc = json.loads(mdl("remove", "tiny", "--prune", "--dry-run", "--json").stdout)
    assert doc["dry_run"] is True and doc["pruned"]["dry_run"] is True
    assert doc["pruned"]["freed"] == len(CONFIG) + len(WEIGHTS) + len(VOCAB)
    assert {r["removed"] for r in doc["pruned"]["removed"]} == {False}
    just_the_catalog = mdl("remove", "tiny", "--dry-run")
    assert just_the_catalog.exit_code == 0 and "would remove tiny from" in just_the_catalog.stderr
    assert (catalog.read_text(), lock.read_text(), sorted(p for p in dest.rglob("*"))) == before

    # then for real: what the dry run said
    done = json.loads(mdl("remove", "tiny", "--prune", "--json").stdout)
    assert [r["path"] for r in done["pruned"]["removed"]] == [
        r["path"] for r in doc["pruned"]["removed"]
    ]
    assert not (dest / "tiny").exists() and "[models.tiny]" not in catalog.read_text()


def test_a_model_being_pulled_is_skipped_and_its_files_kept(world: dict[str, Path]) -> None:
    """Another run holds the lock of one of the model's files (as a pull does while fetching it)."""
    dest = world["dest"]
    pull("tiny")
    drop_model(world["catalog"], "tiny")
    store = Store(dest)
    taken, done = threading.Event(), threading.Event()

    def puller() -> None:
        with store.acquire_file_lock("tiny", "model.safetensors", Wait.within(5)):
            taken.set()
            done.wait(HANG)

    thread = threading.Thread(target=puller)
    thread.start()
    try:
        assert taken.wait(HANG)
        result = mdl("prune")
        assert result.exit_code == 0, result.stderr
        assert "tiny: skipped: another mdl run is pulling it" in result.stderr
        assert result.stdout == ""
        assert (dest / "tiny" / "config.json").exists() and store.record_path("tiny").exists()
    finally:
        done.set()
        thread.join()
    assert mdl("prune").exit_code == 0
    assert not (dest / "tiny").exists()


def test_a_pull_starting_mid_prune_waits_for_its_locks(world: dict[str, Path]) -> None:
    """Prune holds the files' locks while it removes them: a run taking one meanwhile waits until
    it is done.
    """
    dest = world["dest"]
    pull("tiny")
    drop_model(world["catalog"], "tiny")
    store = Store(dest)
    waited: list[bool] = []
    real_rename = os.rename

    # a removal starts by setting aside
    def set_aside_then_look(path: str, *args: object, **kwargs: object) -> None:
        if not waited and str(path) == "config.json":
            try:
                store.acquire_file_lock("tiny", "config.json", Wait.within(0))
            except LockTimeoutError:
                waited.append(True)
            else:
                waited.append(False)
        real_rename(path, *args, **kwargs)  # type: ignore[arg-type]

    from mdl import api

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(os, "rename", set_aside_then_look)
        report = api.prune()
    assert waited == [True], "the file's lock was free while prune removed it"
    assert {r.path.name for r in report.removed} >= {"config.json"}


@pytest.mark.parametrize("swapped", ["blob", "snapshot entry"])
def test_in_the_hf_cache_an_entry_replaced_as_prune_removes_it_survives(
    world: dict[str, Path], swapped: str
) -> None:
    """Another tool renames a new file (or link) over the blob or the snapshot entry prune checked,
    just before prune removes it: what is removed is what was checked, and the newcomer stays."""
    cache = world["cache"]
    pull("tiny", "--layout", "hf-cache")
    drop_model(world["catalog"], "tiny")
    repo = cache / "models--org--tiny"
    blob = repo / "blobs" / hashlib.sha256(WEIGHTS).hexdigest()
    entry = next(p for p in (repo / "snapshots").rglob("model.safetensors"))
    target = blob if swapped == "blob" else entry
    newcomer = world["root"] / "newcomer"
    if swapped == "blob":
        newcomer.write_bytes(WEIGHTS)  # the same bytes, a new file (another tool's atomic write)
        os.utime(newcomer, ns=(blob.stat().st_atime_ns, blob.stat().st_mtime_ns))
    else:
        newcomer.symlink_to(os.readlink(entry))  # the same link, made anew
    made = newcomer.lstat().st_ino
    real_rename, real_unlink = os.rename, os.unlink

    # before prune's first act on the name (setting it aside, or unlinking it)
    def swap_first(call: Any) -> Any:
        def act(path: str, *args: object, **kwargs: object) -> None:
            if str(path) == target.name and os.path.lexists(newcomer):
                real_rename(newcomer, target)
            call(path, *args, **kwargs)

        return act

    from mdl import api

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(os, "rename", swap_first(real_rename))
        patch.setattr(os, "unlink", swap_first(real_unlink))
        report = api.prune(layout="hf-cache")
    assert target.lstat().st_ino == made, "the newcomer is where it was put"
    assert target not in [r.path for r in report.removed]
    assert [k.reason for k in report.kept if k.path == target] == [
        "replaced while prune checked it"
    ]
    assert report.freed < len(WEIGHTS), "the weights it did not remove are not counted as freed"


def test_prune_in_the_hf_cache_keeps_blobs_another_snapshot_uses(
    world: dict[str, Path], hub: HubServer
) -> None:
    cache = world["cache"]
    pull("tiny", "--layout", "hf-cache")
    first = hub.repo("org/tiny").sha
    hub.commit("org/tiny", {"config.json": b'{"hidden_size": 16}'})
    second = hub.repo("org/tiny").sha
    repo = cache / "models--org--tiny"
    # huggingface_hub (not mdl) holds the new commit, whose snapshot links to the same weights blob
    weights_blob = repo / "blobs" / hashlib.sha256(WEIGHTS).hexdigest()
    newer = repo / "snapshots" / second
    newer.mkdir(parents=True)
    (newer / "model.safetensors").symlink_to(os.path.relpath(weights_blob, newer))
    drop_model(world["catalog"], "tiny")

    result = mdl("prune", "--layout", "hf-cache", "--json")
    assert result.exit_code == 0, result.stderr
    removed = {r["path"] for r in json.loads(result.stdout)["removed"]}
    assert str(repo / "snapshots" / first / "model.safetensors") in removed
    assert str(weights_blob) not in removed and weights_blob.is_file(), (
        "another snapshot links to it"
    )
    assert str(repo / "snapshots" / first / "config.json") in removed
    assert not (repo / "snapshots" / first).exists()
    assert not (repo / "refs" / "main").exists(), (
        "a ref naming a removed snapshot corrupts the cache"
    )
    from huggingface_hub import scan_cache_dir

    scanned = scan_cache_dir(cache)
    assert not scanned.warnings, scanned.warnings
    assert [r.repo_id for r in scanned.repos] == ["org/tiny"]


def test_prune_in_the_hf_cache_removes_an_emptied_repo(world: dict[str, Path]) -> None:
    cache = world["cache"]
    pull("tiny", "other", "--layout", "hf-cache")
    drop_model(world["catalog"], "tiny")
    result = mdl("prune", "--layout", "hf-cache")
    assert result.exit_code == 0, result.stderr
    assert not (cache / "models--org--tiny").exists()
    assert (cache / "models--org--other").exists()
    from huggingface_hub import scan_cache_dir

    assert not scan_cache_dir(cache).warnings


def test_a_blob_shared_with_a_model_that_stays_is_kept(
    world: dict[str, Path], catalog: Path
) -> None:
    catalog.write_text(
        CATALOG + '\n[models.again]\nfiles = [{ repo = "org/tiny", path = "model.safetensors" }]\n'
    )
    cache = world["cache"]
    pull("tiny", "again", "--layout", "hf-cache")
    drop_model(catalog, "tiny")
    result = mdl("prune", "--layout", "hf-cache", "--json")
    assert result.exit_code == 0, result.stderr
    repo = cache / "models--org--tiny"
    assert (repo / "blobs" / hashlib.sha256(WEIGHTS).hexdigest()).is_file()
    snapshot_dir = repo / "snapshots" / next(p.name for p in (repo / "snapshots").iterdir())
    assert (snapshot_dir / "model.safetensors").is_file(), "the model that stays still opens it"
    assert not (snapshot_dir / "config.json").exists()
    assert mdl("verify", "again", "--layout", "hf-cache").exit_code == 0


@pytest.mark.parametrize("planted", ["model", "sub"])
def test_a_planted_link_never_makes_prune_delete_outside(
    world: dict[str, Path], planted: str
) -> None:
    dest, root = world["dest"], world["root"]
    pull("tiny")
    outside = root / "outside"
    outside.mkdir()
    (outside / "sub").mkdir()
    for rel in ("config.json", "model.safetensors", "sub/vocab.txt"):
        src = dest / "tiny" / rel
        (outside / rel).write_bytes(src.read_bytes())
        # looks just as recorded
        os.utime(outside / rel, ns=(src.stat().st_atime_ns, src.stat().st_mtime_ns))
    if planted == "model":
        os.rename(dest / "tiny", root / "moved")
        (dest / "tiny").symlink_to(outside)
    else:
        for p in (dest / "tiny" / "sub").iterdir():
            p.unlink()
        (dest / "tiny" / "sub").rmdir()
        (dest / "tiny" / "sub").symlink_to(outside / "sub")
    drop_model(world["catalog"], "tiny")
    before = snapshot(outside)
    result = mdl("prune")
    assert result.exit_code in (0, 2), result.stderr
    assert "Traceback" not in result.stderr
    assert snapshot(outside) == before
    assert "symbolic link" in result.stderr


@pytest.mark.parametrize("planted", ["snapshots", "blobs", "refs", "repo"])
def test_a_planted_link_in_the_hf_cache_never_makes_prune_delete_outside(
    world: dict[str, Path], planted: str
) -> None:
    cache, root = world["cache"], world["root"]
    pull("tiny", "--layout", "hf-cache")
    repo = cache / "models--org--tiny"
    outside = root / "outside"
    where = repo if planted == "repo" else repo / planted
    os.rename(where, outside)  # the real folder moved out, a link to it planted in its place
    where.symlink_to(outside)
    drop_model(world["catalog"], "tiny")
    before = snapshot(outside)
    result = mdl("prune", "--layout", "hf-cache")
    assert result.exit_code in (0, 2), result.stderr
    assert "Traceback" not in result.stderr
    assert snapshot(outside) == before
    assert where.is_symlink()


def test_remove_refuses_dest_without_prune(world: dict[str, Path]) -> None:
    result = mdl("remove", "tiny", "--dest", str(world["dest"]))
    assert result.exit_code == 2
    assert "--prune" in result.stderr
    assert "[models.tiny]" in world["catalog"].read_text(), "nothing changed"


@pytest.mark.slow
def test_prune_while_another_process_pulls_the_model_keeps_it(
    world: dict[str, Path], hub: HubServer
) -> None:
    """A real `mdl pull` in another process, its download held mid-body: prune with its catalog
    edited to no longer name the model skips it (the file in flight is locked, though not yet
    recorded), and the pull finishes whole."""
    dest = world["dest"]
    pull("other")
    stall = hub.cdn.faults.add(Fault.stall(after_bytes=100_000, seconds=4, path_prefix="/blobs/"))
    proc = subprocess.Popen(
        [forked_mdl(), "pull", "tiny", "--no-progress"],
        env=dict(os.environ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    # (a small file's body is held in memory till it is whole: its lock, not a .part, is on disk)
    lock = Store(dest).lock_path("tiny", "model.safetensors")
    try:
        wait_for(
            lambda: stall.hits > 0 and lock.exists(), timeout=30, what="the pull's stalled fetch"
        )
        assert (dest / "tiny" / "config.json").exists() or Store(dest).record_path("tiny").exists()
        # the catalog that pulls it, edited
        world["catalog"].write_text('[models.other]\nrepo = "org/other"\n')
        result = mdl("prune", "--json")
        world["catalog"].write_text(CATALOG)
        assert result.exit_code == 0, result.stderr
        doc = json.loads(result.stdout)
        assert [r for r in doc["removed"] if r["model"] == "tiny"] == []
        assert any(
            w.startswith("tiny: skipped: another mdl run is pulling it") for w in doc["warnings"]
        ), doc
    finally:
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err.decode()
    for rel, data in {
        "config.json": CONFIG,
        "model.safetensors": WEIGHTS,
        "sub/vocab.txt": VOCAB,
    }.items():
        assert (dest / "tiny" / rel).read_bytes() == data
    assert mdl("verify", "tiny").exit_code == 0


# --- files mdl found in place (adopted) are never mdl's to remove ---


def record_of(store: Store, model: str) -> dict[str, object]:
    return dict(json.loads(store.record_path(model).read_text()))


def test_a_file_found_in_place_is_adopted_and_kept_by_prune(
    world: dict[str, Path], hub: HubServer
) -> None:
    dest, data = world["dest"], make_data(50_000, seed=7)
    url = hub.cdn.add_file("/files/x.bin", data)
    world["catalog"].write_text(
        f'[models.u]\nfiles = [{{ url = "{url}", sha256 = "{hashlib.sha256(data).hexdigest()}"'
        " }]\n"
    )
    (dest / "u").mkdir(parents=True)
    (dest / "u" / "x.bin").write_bytes(data)  # the user's own copy, there before mdl
    hub.cdn.log.clear()
    pull("u")
    assert len(hub.cdn.log) == 0, "checked by hash, not fetched"
    files = record_of(Store(dest), "u")["files"]
    assert isinstance(files, dict) and files["x.bin"]["adopted"] is True
    # touched: the next pull re-checks it, and it stays adopted
    os.utime(dest / "u" / "x.bin", ns=(1, 1))
    pull("u")
    files = record_of(Store(dest), "u")["files"]
    assert (
        isinstance(files, dict)
        and files["x.bin"]["adopted"] is True
        and files["x.bin"]["mtime_ns"] == 1
    )

    result = mdl("remove", "u", "--prune", "--json")
    assert result.exit_code == 0, result.stderr
    assert (dest / "u" / "x.bin").read_bytes() == data, "never mdl's to remove"
    kept = json.loads(result.stdout)["pruned"]["kept"]
    reason = "found in place, not written by mdl"
    assert {
        "path": str(dest / "u" / "x.bin"),
        "model": "u",
        "reason": reason,
        "catalog": None,
    } in kept
    assert not Store(dest).record_path("u").exists(), (
        "no longer mdl's: out of its records, as a changed file"
    )


def run_hf(code: str, *, offline: bool = True) -> subprocess.CompletedProcess[str]:
    """huggingface_hub in a fresh interpreter (its settings are read at import) with this test's
    environment.
    """
    environ = {**os.environ, **({"HF_HUB_OFFLINE": "1"} if offline else {})}
    command = [sys.executable, "-c", textwrap.dedent(code)]
    result = subprocess.run(command, env=environ, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def cache_files(cache: Path) -> dict[str, str]:
    """Every entry under the cache's repos (not its .locks): a link's target, a file's size."""
    found = {}
    for path in sorted(cache.rglob("*")):
        if ".locks" not in path.relative_to(cache).parts and (path.is_symlink() or path.is_file()):
            found[str(path.relative_to(cache))] = (
                os.readlink(path) if path.is_symlink() else str(path.stat().st_size)
            )
    return found


@pytest.mark.slow
def test_prune_keeps_what_huggingface_hub_downloaded_into_the_cache(
    world: dict[str, Path], hub: HubServer
) -> None:
    cache = world["cache"]
    run_hf(
        'from huggingface_hub import snapshot_download; snapshot_download("org/tiny")',
        offline=False,
    )
    before = cache_files(cache)
    world["catalog"].write_text(
        '[settings]\nlayout = "hf-cache"\n\n[models.tinyall]\nrepo = "org/tiny"\n'
    )
    hub.cdn.log.clear()
    pull("--all")
    assert hub.cdn.log.body_bytes() == 0, "checked by hash, not downloaded again"
    result = mdl("remove", "tinyall", "--prune", "--json")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)["pruned"]
    assert doc["removed"] == []
    assert {k["reason"] for k in doc["kept"]} == {"found in place, not written by mdl"}
    assert cache_files(cache) == before, "huggingface_hub's links, blobs and refs all stay"
    run_hf(
        'from huggingface_hub import hf_hub_download; open(hf_hub_download("org/tiny",'
        ' "model.safetensors"), "rb")'
    )


@pytest.mark.slow
def test_prune_in_the_cache_removes_what_mdl_wrote_beside_what_it_found(
    world: dict[str, Path],
) -> None:
    cache = world["cache"]
    run_hf(
        'from huggingface_hub import hf_hub_download; hf_hub_download("org/tiny", "config.json")',
        offline=False,
    )
    world["catalog"].write_text(
        '[settings]\nlayout = "hf-cache"\n\n[models.tinyall]\nrepo = "org/tiny"\n'
    )
    pull("--all")
    result = mdl("remove", "tinyall", "--prune", "--json")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)["pruned"]
    snapshot = next((cache / "models--org--tiny" / "snapshots").iterdir())
    assert {Path(r["path"]).name for r in doc["removed"]} == {
        "model.safetensors",
        "vocab.txt",
        hashlib.sha256(WEIGHTS).hexdigest(),
        git_blob_sha1(VOCAB),
    }
    assert [k["path"] for k in doc["kept"]] == [str(snapshot / "config.json")]
    assert not (snapshot / "model.safetensors").exists() and not (snapshot / "sub").exists()
    run_hf(
        'from huggingface_hub import hf_hub_download; open(hf_hub_download("org/tiny",'
        ' "config.json"), "rb")'
    )


# --- catalogs sharing one destination: each prunes only the models it pulled ---


def two_catalogs(root: Path) -> tuple[Path, Path]:
    first, second = root / "a" / "catalog.toml", root / "b" / "catalog.toml"
    for path, name in ((first, "tiny"), (second, "other")):
        path.parent.mkdir()
        path.write_text(f'[models.{name}]\nrepo = "org/{name}"\n')
    return first, second


def with_catalog(path: Path, *args: str) -> dict[str, object]:
    result = mdl(*args, "--json", env={"MDL_CATALOG": str(path)})
    assert result.exit_code == 0, result.stderr
    return dict(json.loads(result.stdout))


def test_prune_keeps_the_models_another_catalog_pulled(world: dict[str, Path]) -> None:
    dest = world["dest"]
    first, second = two_catalogs(world["root"])
    with_catalog(first, "pull", "tiny")
    with_catalog(second, "pull", "other")
    assert record_of(Store(dest), "tiny")["catalog"] == str(first.resolve())

    doc = with_catalog(second, "prune")
    assert doc["removed"] == []
    reason = f"pulled with another catalog: {first.resolve()}"
    assert doc["kept"] == [
        {
            "path": str(dest / "tiny"),
            "model": "tiny",
            "reason": reason,
            "catalog": str(first.resolve()),
        }
    ]
    assert (dest / "tiny" / "model.safetensors").read_bytes() == WEIGHTS
    said = mdl("prune", env={"MDL_CATALOG": str(second)})
    assert (
        f"kept 1 model(s) pulled with another catalog (prune them with --catalog {first.resolve()})"
        in said.stderr
    )
    assert "mdl did not write" not in said.stderr

    first.write_text("")  # the catalog that pulled it drops it: its prune removes it
    doc = with_catalog(first, "prune")
    assert {Path(r["path"]).name for r in doc["removed"]} == {
        "config.json",
        "model.safetensors",
        "vocab.txt",
    }
    assert not Store(dest).record_path("tiny").exists()
    assert (dest / "other" / "config.json").exists(), "the other catalog's model stays"


def test_a_record_naming_no_catalog_is_the_running_catalogs_to_prune(
    world: dict[str, Path],
) -> None:
    dest = world["dest"]
    first, second = two_catalogs(world["root"])
    with_catalog(first, "pull", "tiny")
    written = record_of(Store(dest), "tiny")
    del written["catalog"]  # as an mdl before catalogs were recorded wrote it
    Store(dest).record_path("tiny").write_text(json.dumps(written))
    doc = with_catalog(second, "prune")
    assert {Path(r["path"]).name for r in doc["removed"]} == {
        "config.json",
        "model.safetensors",
        "vocab.txt",
    }


def test_a_frozen_pull_records_the_catalog_beside_its_lock(world: dict[str, Path]) -> None:
    first, _ = two_catalogs(world["root"])
    with_catalog(first, "lock")
    with_catalog(first, "pull", "tiny", "--frozen")
    assert record_of(Store(world["dest"]), "tiny")["catalog"] == str(first.resolve())
    first.unlink()  # only the lock came to this machine: still that catalog's model
    shutil.rmtree(world["dest"])
    with_catalog(first, "pull", "tiny", "--frozen")
    assert record_of(Store(world["dest"]), "tiny")["catalog"] == str(first.resolve())


def test_whose_model_prune_may_remove() -> None:
    from mdl.catalog.settings import catalog_file
    from mdl.store.prune import other_catalog
    from mdl.store.records import ModelRecord

    here = Path("/w/a/catalog.toml")
    assert other_catalog(ModelRecord("m", catalog=str(here)), here) is None
    assert other_catalog(ModelRecord("m"), here) is None, (
        "an older mdl's record: the running catalog's"
    )
    assert other_catalog(ModelRecord("m", catalog="/w/b/catalog.toml"), here) == "/w/b/catalog.toml"
    assert catalog_file(None, Path("/w/a/catalog.lock")) == here
    assert catalog_file(None, Path("/w/a/x.lock.lock")) == Path("/w/a/x.lock")
    assert catalog_file(None, None) is None


def test_a_file_stays_adopted_across_re_checks_and_mdls_own_stays_mdls() -> None:
    from mdl.store.records import FileRecord, adopted_when_found

    mine = FileRecord("a", 1, "0" * 64, 1)
    assert adopted_when_found(None) is True, "found in place with no record: adopted"
    assert adopted_when_found(mine) is False
    assert adopted_when_found(FileRecord("a", 1, "0" * 64, 1, adopted=True)) is True
