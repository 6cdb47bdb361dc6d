"""``mdl verify --quick``, the deploy's readiness probe: every locked model here, complete and as
verified, judged by records and ``lstat`` without reading a byte; exit 0, else 4 (a file missing,
unfinished or of another version than locked) or 6 (a file changed since it was verified), and the
JSON names the file (tests/cli/test_probe.py: each state's code, users, output, cost)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
from locks import lock_catalog
from runfixtures import mdl
from servers import HubServer, make_data

from mdl.lockfile.io import read_lock, write_lock
from mdl.lockfile.model import Lock, LockedFile, LockedModel
from mdl.store.records import FileRecord
from mdl.store.store import Store

WEIGHTS = make_data(150_000, seed=3)
CATALOG = '[models.tiny]\nrepo = "org/tiny"\n'
BIG = 300 * 2**20  # a few hundred MiB, sparse: the probe must not read it


@pytest.fixture
def pulled(hub: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """tiny pulled at its locked commit; the folder it is in."""
    hub.add_repo("org/tiny", {"config.json": b'{"v": 1}', "model.safetensors": WEIGHTS})
    catalog = tmp_path / "catalog.toml"
    catalog.write_text(CATALOG)
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setenv("MDL_CATALOG", str(catalog))
    monkeypatch.setenv("MDL_DEST", str(tmp_path / "models"))
    monkeypatch.setenv("MDL_LOG_FILE", str(tmp_path / "mdl.log"))
    lock_catalog(catalog, hub)
    result = mdl("pull", "--all", "--locked")
    assert result.exit_code == 0, result.stderr
    hub.log.clear()
    hub.cdn.log.clear()
    return tmp_path / "models" / "tiny"


def probe(*extra: str) -> tuple[int, dict[str, dict[str, object]], dict[str, object]]:
    """``verify --all --quick --locked --json``: its exit code, its files by path, the document."""
    result = mdl("verify", "--all", "--quick", "--locked", "--json", *extra)
    doc = json.loads(result.stdout)
    return result.exit_code, {str(f["path"]): f for f in doc["files"]}, doc


def test_a_ready_model_is_exit_0_and_asks_no_server(pulled: Path, hub: HubServer) -> None:
    code, files, doc = probe()
    assert code == 0 and doc["ok"] is True
    assert {path: f["action"] for path, f in files.items()} == {
        "config.json": "verified",
        "model.safetensors": "verified",
    }
    assert files["model.safetensors"]["sha256"] == hashlib.sha256(WEIGHTS).hexdigest()
    assert len(hub.log) == 0 and len(hub.cdn.log) == 0
    plain = mdl("verify", "--all", "--quick", "--locked")
    assert plain.exit_code == 0
    assert plain.stdout == "" and "checked 1 model (2 files: 2 ready)" in plain.stderr


def test_a_missing_file_is_exit_4_naming_it(pulled: Path) -> None:
    (pulled / "config.json").unlink()
    code, files, doc = probe()
    assert code == 4 and doc["ok"] is False
    assert files["config.json"]["action"] == "missing"
    assert "tiny/config.json: missing" in str(files["config.json"]["error"])
    assert files["model.safetensors"]["action"] == "verified"


def test_a_model_never_pulled_is_exit_4(pulled: Path, tmp_path: Path) -> None:
    result = mdl("verify", "--all", "--quick", "--locked", "--dest", str(tmp_path / "elsewhere"))
    assert result.exit_code == 4
    assert "tiny: not on this disk" in result.stderr


def test_a_truncated_file_is_exit_6_naming_it(pulled: Path) -> None:
    with open(pulled / "model.safetensors", "r+b") as f:
        f.truncate(1000)
    code, files, _ = probe()
    assert code == 6
    failed = files["model.safetensors"]
    assert failed["action"] == "failed"
    assert "tiny/model.safetensors: its size changed since mdl verified it" in str(failed["error"])


def test_a_file_touched_since_it_was_verified_is_exit_6_and_verify_clears_it(pulled: Path) -> None:
    target = pulled / "model.safetensors"
    stat = target.stat()
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))
    code, files, _ = probe()
    assert code == 6
    assert "changed since mdl verified it" in str(files["model.safetensors"]["error"])
    # the full verify re-hashes it, finds the bytes right and trusts the new mtime from then on
    assert mdl("verify", "--all", "--locked").exit_code == 0
    assert probe()[0] == 0


def test_a_file_of_another_version_than_locked_is_exit_4(pulled: Path, tmp_path: Path) -> None:
    """Not ready (a routine new lock), never 6: that code says a file changed and pages a
    person."""
    lock_path = tmp_path / "catalog.lock"
    lock = read_lock(lock_path)
    tiny = lock.models["tiny"]
    other = "f" * 64
    files = tuple(
        LockedFile(f.path, f.size, other, f.source, None) if f.path == "config.json" else f
        for f in tiny.files
    )
    write_lock(
        lock_path,
        Lock({"tiny": LockedModel("tiny", tiny.fingerprint, tiny.revision, tiny.commit, files)}),
    )
    code, found, _ = probe()
    assert code == 4
    assert "outdated" in str(found["config.json"]["error"])


def test_a_big_file_is_answered_without_reading_it(pulled: Path, tmp_path: Path) -> None:
    """A sparse file of hundreds of MiB, recorded and locked as mdl would have them: the probe says
    ready, and this process read far fewer bytes than the file holds (``rchar``: every read, from
    disk or cache). (Not made unreadable: root reads it anyway, and another user's probe rightly
    says it may not read it, tests/cli/test_probe.py.)"""
    big = pulled / "model.safetensors"
    with open(big, "r+b") as f:
        f.truncate(BIG)  # zeros after the real bytes: a sparse tail
    digest = hashlib.sha256(WEIGHTS)
    zeros = bytes(2**20)
    digest.update(zeros[: 2**20 - len(WEIGHTS)])
    for _ in range(BIG // 2**20 - 1):
        digest.update(zeros)
    sha256 = digest.hexdigest()
    lock_path = tmp_path / "catalog.lock"
    tiny = read_lock(lock_path).models["tiny"]
    files = tuple(
        LockedFile(f.path, BIG, sha256, f.source, None) if f.path == "model.safetensors" else f
        for f in tiny.files
    )
    write_lock(
        lock_path,
        Lock({"tiny": LockedModel("tiny", tiny.fingerprint, tiny.revision, tiny.commit, files)}),
    )
    store = Store(tmp_path / "models")
    source = next(f.source for f in files if f.path == "model.safetensors")
    record = FileRecord("model.safetensors", BIG, sha256, big.stat().st_mtime_ns, source)
    store.update_record("tiny", revision=None, commit=None, put=record)
    before = _bytes_read()
    code, found, _ = probe()
    read = _bytes_read() - before
    assert code == 0, found
    assert found["model.safetensors"]["size"] == BIG
    assert read < BIG // 4, f"the probe read {read} bytes"


def _bytes_read() -> int:
    """Bytes this process has read so far (``/proc/self/io``'s ``rchar``)."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("no rchar in /proc/self/io")


def test_the_hugging_face_cache_is_judged_by_its_snapshot_entries(
    pulled: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In the Hugging Face cache a file is ready when its snapshot entry leads to its blob: an
    entry gone is a file missing (exit 4), though its blob is there."""
    monkeypatch.setenv("MDL_LAYOUT", "hf-cache")
    assert mdl("pull", "--all", "--locked").exit_code == 0
    assert probe()[0] == 0
    snapshots = list(Path(os.environ["HF_HOME"]).glob("hub/models--org--tiny/snapshots/*"))
    assert len(snapshots) == 1
    (snapshots[0] / "config.json").unlink()
    code, files, _ = probe()
    assert code == 4 and files["config.json"]["action"] == "missing"
