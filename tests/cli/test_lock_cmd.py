"""``mdl lock`` on the command line: what it prints where, its --json, --upgrade and --check, and
its exit codes.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from runfixtures import mdl, use_catalog
from servers import HubServer, make_data

WEIGHTS = make_data(1_200_000, seed=21)
WEIGHTS_2 = make_data(1_300_000, seed=22)
CONFIG = b'{"hidden_size": 8}\n'
LORA = make_data(20_000, seed=23)

CATALOG = """
# the team's models
[models.tiny]
repo = "org/tiny"

[[models.lora.files]]
url = "{url}"
"""


@pytest.fixture
def catalog(hub: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    hub.add_repo("org/tiny", {"config.json": CONFIG, "model.bin": WEIGHTS})
    text = CATALOG.format(url=hub.cdn.add_file("/style.safetensors", LORA))
    return use_catalog(tmp_path, monkeypatch, text, endpoint=hub.url)


def test_lock_writes_the_lock_and_a_second_run_asks_nothing(catalog: Path, hub: HubServer) -> None:
    first = mdl("lock")
    assert first.exit_code == 0, first.stderr
    commit = hub.repo("org/tiny").sha
    assert first.stdout.splitlines() == [
        "lora: locked (1 file, 19.5 KiB)",
        f"tiny: locked at {commit[:7]} (2 files, 1.14 MiB)",
    ]
    lock = catalog.with_suffix(".lock")
    assert f"wrote {lock} (2 models, 2 resolved, 0 kept as locked)" in first.stderr
    text = lock.read_text()
    assert f'commit = "{commit}"' in text and hashlib.sha256(LORA).hexdigest() in text
    mtime = lock.stat().st_mtime_ns
    hub.log.clear()
    hub.cdn.log.clear()
    again = mdl("lock")
    assert again.exit_code == 0, again.stderr
    assert again.stdout == ""
    assert f"{lock} is up to date (2 models, 0 resolved, 2 kept as locked)" in again.stderr
    assert list(hub.log) == [] and list(hub.cdn.log) == []
    assert lock.read_text() == text and lock.stat().st_mtime_ns == mtime


def test_quiet_silences_stderr_but_never_the_lines_on_stdout(catalog: Path, hub: HubServer) -> None:
    """-q silences stderr but errors; the lines saying what was locked are the command's data
    (product rules).
    """
    quiet = mdl("lock", "-q")
    assert quiet.exit_code == 0, quiet.stderr
    commit = hub.repo("org/tiny").sha
    assert quiet.stdout.splitlines() == [
        "lora: locked (1 file, 19.5 KiB)",
        f"tiny: locked at {commit[:7]} (2 files, 1.14 MiB)",
    ]
    assert "wrote" not in quiet.stderr


def test_upgrade_reports_the_new_commit_and_the_file_diff(catalog: Path, hub: HubServer) -> None:
    assert mdl("lock").exit_code == 0
    old = hub.repo("org/tiny").sha
    new = hub.commit("org/tiny", {"model.bin": WEIGHTS_2, "tokenizer.json": b"{}"})
    kept = mdl("lock")  # without --upgrade a moved branch stays where the lock has it
    assert kept.exit_code == 0 and kept.stdout == ""
    moved = mdl("lock", "--upgrade")
    assert moved.exit_code == 0, moved.stderr
    assert moved.stdout.splitlines() == [
        "lora: unchanged",
        f"tiny: {old[:7]} → {new[:7]}; +1 file, -0, ~1 changed (model.bin 1.14 MiB → 1.24 MiB)",
    ]
    assert f'commit = "{new}"' in catalog.with_suffix(".lock").read_text()
    hub.commit("org/tiny", {"tokenizer.json": None})
    doc = json.loads(mdl("lock", "--upgrade", "tiny", "--json").stdout)
    assert doc["changed"] is True and doc["lock"] == str(catalog.with_suffix(".lock"))
    (model,) = doc["models"]
    assert model["name"] == "tiny" and model["status"] == "changed" and model["old_commit"] == new
    assert [f["path"] for f in model["removed"]] == ["tokenizer.json"] and model["added"] == model[
        "changed"
    ] == []


def test_check_exit_codes_fresh_stale_and_missing(catalog: Path, hub: HubServer) -> None:
    lock = catalog.with_suffix(".lock")
    missing = mdl("lock", "--check")
    assert missing.exit_code == 2
    assert f"mdl: error: {lock} does not exist" in missing.stderr and not lock.exists()
    assert mdl("lock").exit_code == 0
    hub.log.clear()
    fresh = mdl("lock", "--check")
    assert fresh.exit_code == 0 and fresh.stdout == ""
    assert "catalog.lock is up to date" in fresh.stderr
    catalog.write_text(
        catalog.read_text().replace('repo = "org/tiny"', 'repo = "org/tiny"\nexclude = ["*.json"]')
    )
    stale = mdl("lock", "--check")
    assert stale.exit_code == 2
    assert "catalog.lock is stale for: tiny (run mdl lock)" in stale.stderr
    assert mdl("lock", "--check", "lora").exit_code == 0  # only the named models are checked
    doc = json.loads(mdl("lock", "--check", "--json").stdout)
    assert doc["fresh"] is False and doc["stale"] == ["tiny"] and doc["changed"] is False
    assert list(hub.log) == []  # --check never asks anything


def test_a_model_that_cannot_be_resolved_fails_with_its_code_and_writes_nothing(
    catalog: Path, hub: HubServer
) -> None:
    assert mdl("lock").exit_code == 0
    lock = catalog.with_suffix(".lock")
    before = lock.read_bytes()
    catalog.write_text(catalog.read_text() + '\n[models.gone]\nrepo = "org/gone"\n')
    result = mdl("lock")
    assert result.exit_code == 4, result.stderr
    assert "mdl: error: gone:" in result.stderr and "was left as it was" in result.stderr
    assert lock.read_bytes() == before
    doc = json.loads(mdl("lock", "--json").stdout)
    assert doc["ok"] is False and [e["model"] for e in doc["errors"]] == ["gone"]


def test_bad_combinations_are_usage_errors(catalog: Path) -> None:
    both = mdl("lock", "--check", "--upgrade")
    assert both.exit_code == 2 and "--check changes nothing" in both.stderr
    named_and_all = mdl("lock", "tiny", "--all")
    assert named_and_all.exit_code == 2
    unknown = mdl("lock", "nope")
    assert unknown.exit_code == 2 and "nope" in unknown.stderr


def test_a_broken_lock_is_refused_by_check_and_written_again_by_lock(catalog: Path) -> None:
    lock = catalog.with_suffix(".lock")
    assert mdl("lock").exit_code == 0
    good = lock.read_text()
    lock.write_text("<<<<<<< HEAD\n" + good)  # a merge gone wrong
    check = mdl("lock", "--check")
    assert check.exit_code == 2 and f"{lock}: invalid TOML" in check.stderr
    named = mdl("lock", "tiny")  # the other entries cannot be kept from a lock that cannot be read
    assert named.exit_code == 2
    result = mdl("lock")
    assert result.exit_code == 0, result.stderr
    assert (
        "mdl: warning: " in result.stderr and "writing it again from the catalog" in result.stderr
    )
    assert lock.read_text() == good


def test_upgrade_of_a_multi_repo_model_says_which_files_moved_to_a_new_commit(
    catalog: Path, hub: HubServer
) -> None:
    hub.add_repo("org/vae", {"ae.safetensors": WEIGHTS, "README.md": b"vae"})
    catalog.write_text(
        catalog.read_text()
        + '\n[models.z]\nfiles = [{ repo = "org/tiny", path = "config.json" },'
        + ' { repo = "org/vae", path = "ae.safetensors", as = "vae/ae.safetensors" }]\n'
    )
    assert mdl("lock").exit_code == 0
    old = hub.repo("org/vae").sha
    # the file z uses is the same bytes, at a new commit
    new = hub.commit("org/vae", {"README.md": b"vae, v2"})
    lock = catalog.with_suffix(".lock")
    assert f"org/vae@{old}/ae.safetensors" in lock.read_text()
    moved = mdl("lock", "--upgrade", "z")
    assert moved.exit_code == 0, moved.stderr
    # the lock moved: the report must say so
    assert f"org/vae@{new}/ae.safetensors" in lock.read_text()
    assert moved.stdout.splitlines() == [
        f"z: org/vae {old[:7]} → {new[:7]}; +0 files, -0, ~0 changed, 1 re-pinned"
        " (vae/ae.safetensors)"
    ]
    hub.commit("org/vae", {"README.md": b"vae, v3"})
    doc = json.loads(mdl("lock", "--upgrade", "z", "--json").stdout)
    (model,) = doc["models"]
    assert doc["changed"] is True and model["status"] == "changed"
    assert model["repinned"] == [
        {
            "path": "vae/ae.safetensors",
            "old_source": f"hf://org/vae@{new}/ae.safetensors",
            "new_source": f"hf://org/vae@{hub.repo('org/vae').sha}/ae.safetensors",
        }
    ]
    assert model["repos"] == [
        {"repo": "org/vae", "old_commit": new, "new_commit": hub.repo("org/vae").sha}
    ]
    assert (
        json.loads(mdl("lock", "--upgrade", "z", "--json").stdout)["models"][0]["status"]
        == "unchanged"
    )


def test_upgrade_says_each_repo_s_commit_move_and_bytes_rebuilt_at_the_same_size(
    catalog: Path, hub: HubServer
) -> None:
    """Issue 50, F: a multi-repo model's line shows every repo's move, and rebuilt bytes of the same
    size say their sha256 moved (not "1.14 MiB → 1.14 MiB")."""
    hub.add_repo("org/vae", {"ae.safetensors": WEIGHTS})
    catalog.write_text(
        catalog.read_text()
        + '\n[models.z]\nfiles = [{ repo = "org/tiny", path = "config.json" },'
        + ' { repo = "org/vae", path = "ae.safetensors", as = "vae/ae.safetensors" }]\n'
    )
    assert mdl("lock").exit_code == 0
    tiny_old, vae_old = hub.repo("org/tiny").sha, hub.repo("org/vae").sha
    rebuilt = bytes(reversed(WEIGHTS))  # other bytes, the same size
    vae_new = hub.commit("org/vae", {"ae.safetensors": rebuilt})
    tiny_new = hub.commit("org/tiny", {"model.bin": rebuilt})
    moved = mdl("lock", "--upgrade")
    assert moved.exit_code == 0, moved.stderr
    was, now = hashlib.sha256(WEIGHTS).hexdigest()[:8], hashlib.sha256(rebuilt).hexdigest()[:8]
    assert moved.stdout.splitlines() == [
        "lora: unchanged",
        (
            f"tiny: {tiny_old[:7]} → {tiny_new[:7]}; +0 files, -0, ~1 changed (model.bin 1.14 MiB,"
            f" sha256 {was} → {now})"
        ),
        (
            f"z: org/tiny {tiny_old[:7]} → {tiny_new[:7]}, org/vae {vae_old[:7]} → {vae_new[:7]};"
            f" +0 files, -0, ~1 changed, 1 re-pinned (vae/ae.safetensors 1.14 MiB, sha256 {was} →"
            f" {now}, config.json)"
        ),
    ]


def test_a_catalog_named_something_dot_lock_is_never_overwritten_by_its_lock(
    catalog: Path, tmp_path: Path
) -> None:
    named = tmp_path / "models.lock"
    named.write_text("# precious comments\n" + catalog.read_text())
    before = named.read_text()
    result = mdl("lock", "--catalog", str(named))
    assert result.exit_code == 0, result.stderr
    assert named.read_text() == before
    assert 'name = "tiny"' in (tmp_path / "models.lock.lock").read_text()
    assert mdl("pull", "--locked", "--all", "--catalog", str(named)).exit_code == 0
