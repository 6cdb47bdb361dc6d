"""Rolling upgrades: a fleet moves to this mdl a machine at a time, so the lock ``mdl lock`` writes
now (with its part hashes beside it, ``catalog.lock.parts``) must still pull on mdl 0.6.0, which
refuses unknown keys and newer versions in ``catalog.lock`` itself (exit 2); and a lock 0.6.0 wrote
(no part hashes) pulls here as before. mdl 0.6.0 is this repo's own code at the commit before the
0.7.0 bump, run as a real process against the loopback Hub."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from runfixtures import mdl_from_history
from servers import HubServer, make_data

from mdl import api
from mdl.lockfile.parts import parts_beside, read_parts

ROOT = Path(__file__).resolve().parents[2]
WEIGHTS = make_data(3 * (1 << 20) + 99, seed=60)
CONFIG = b'{"v": 6}\n'


def _git(*args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(ROOT), *args], capture_output=True, text=True, timeout=60, check=False
    )
    if done.returncode != 0:
        pytest.skip(f"no git history of mdl here (git {args[0]}: {done.stderr.strip()[:200]})")
    return done.stdout


@pytest.fixture(scope="module")
def mdl_060(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """mdl 0.6.0's package, from git history, in a folder of its own (for PYTHONPATH)."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed: mdl 0.6.0 cannot be taken from history")
    bump = _git("log", "-1", "--format=%H", '-S"0.6.0"', "--", "mdl/version.py").strip()
    if not bump:
        pytest.skip("this clone's history does not reach mdl 0.6.0 (shallow?)")
    release = f"{bump}~1"  # the commit before the one that moved past 0.6.0
    assert '__version__ = "0.6.0"' in _git("show", f"{release}:mdl/version.py")
    return mdl_from_history(release, tmp_path_factory.mktemp("mdl-0.6.0"))


def run_060(mdl_060: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mdl", *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, **env, "PYTHONPATH": str(mdl_060)},
        cwd=mdl_060,
    )


@pytest.fixture
def world(hub: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    hub.add_repo("org/m", {"model.safetensors": WEIGHTS, "config.json": CONFIG})
    catalog = tmp_path / "catalog.toml"
    catalog.write_text('[models.m]\nrepo = "org/m"\n')
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    return {"HF_ENDPOINT": hub.url, "MDL_CATALOG": str(catalog)}


@pytest.mark.slow
def test_mdl_0_6_0_pulls_frozen_with_the_lock_and_its_part_hashes_beside_it(
    mdl_060: Path, world: dict[str, str], tmp_path: Path
) -> None:
    catalog = Path(world["MDL_CATALOG"])
    assert api.lock(all=True, catalog=catalog).ok
    assert api.pull(all=True, catalog=catalog, dest=tmp_path / "new").ok
    written = api.lock(all=True, catalog=catalog, dest=tmp_path / "new")
    sidecar = parts_beside(catalog.with_suffix(".lock"))
    assert written.parts_changed and len(read_parts(sidecar)) == 2, "the part hashes are there"

    version = run_060(mdl_060, "--version", env=world)
    assert "0.6.0" in version.stdout, (version.stdout, version.stderr)
    old = tmp_path / "old"
    done = run_060(mdl_060, "pull", "--frozen", "--all", env={**world, "MDL_DEST": str(old)})
    assert done.returncode == 0, done.stderr
    got = old / "m" / "model.safetensors"
    assert hashlib.sha256(got.read_bytes()).digest() == hashlib.sha256(WEIGHTS).digest()
    assert (old / "m" / "config.json").read_bytes() == CONFIG

    # what the part hashes beside the lock spare: the same hashes in the lock stop 0.6.0 (exit 2)
    lock = catalog.with_suffix(".lock")
    lock.write_text(lock.read_text() + "\n[parts]\n")
    refused = run_060(mdl_060, "pull", "--frozen", "--all", env={**world, "MDL_DEST": str(old)})
    assert refused.returncode == 2 and "parts" in refused.stderr, refused.stderr


@pytest.mark.slow
def test_a_lock_mdl_0_6_0_wrote_pulls_here_with_whole_file_checks(
    mdl_060: Path, world: dict[str, str], tmp_path: Path
) -> None:
    catalog = Path(world["MDL_CATALOG"])
    done = run_060(mdl_060, "lock", env=world)
    assert done.returncode == 0, done.stderr
    assert catalog.with_suffix(".lock").exists()
    assert not parts_beside(catalog.with_suffix(".lock")).exists(), "0.6.0 writes none"
    report = api.pull(all=True, catalog=catalog, dest=tmp_path / "new", frozen=True)
    assert report.ok, report.files
    assert all(not f.warnings for f in report.files), "no word of part hashes: there are none"
    assert (tmp_path / "new" / "m" / "model.safetensors").read_bytes() == WEIGHTS
