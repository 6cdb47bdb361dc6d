"""A Hugging Face cache blob named by a sha256 (or git blob id) only ever holds those bytes,
``--no-verify`` or not.

``hf_hub_download(local_files_only=True)`` serves whatever sits under the blob's name, so mdl
refuses (exit 6, naming the file, the expected and the actual hash) to store other bytes there, and
``mdl verify`` calls a corrupt blob corrupt, never "missing".
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from runfixtures import mdl
from servers import Fault, HubServer, make_data

from mdl.errors import ExitCode

WEIGHTS = make_data(2_000_000, seed=31)
CONFIG = b'{"model_type": "bert"}\n'


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def corrupted(data: bytes) -> bytes:
    bad = bytearray(data)
    bad[1234] ^= 0xFF
    return bytes(bad)


@pytest.fixture
def cache(hub: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    hub.add_repo("org/tiny", {"config.json": CONFIG, "model.safetensors": WEIGHTS})
    (tmp_path / "catalog.toml").write_text('[models.tiny]\nrepo = "org/tiny"\n')
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setenv("MDL_LOG_FILE", str(tmp_path / "mdl.log"))
    return tmp_path / "hf-cache"


def blobs(cache: Path) -> dict[str, bytes]:
    folder = cache / "models--org--tiny" / "blobs"
    return {p.name: p.read_bytes() for p in folder.iterdir()} if folder.is_dir() else {}


def serve_corrupt_weights(hub: HubServer) -> bytes:
    """The CDN answers every request for the weights' blob with other bytes of the same size."""
    bad = corrupted(WEIGHTS)
    hub.cdn.faults.add(
        Fault.http_error(200, bad, path_prefix=f"/blobs/{sha256(WEIGHTS)}", times=None)
    )
    return bad


def test_no_verify_refuses_wrong_bytes_for_a_cache_blob(hub: HubServer, cache: Path) -> None:
    bad = serve_corrupt_weights(hub)
    result = mdl("pull", "tiny", "--layout", "hf-cache", "--no-verify", "--json")
    assert result.exit_code == ExitCode.INTEGRITY, result.output
    files = {f["path"]: f for f in json.loads(result.stdout)["files"]}
    error = str(files["model.safetensors"]["error"])
    assert "model.safetensors" in error and sha256(WEIGHTS) in error and sha256(bad) in error
    assert files["config.json"]["action"] == "downloaded"
    stored = blobs(cache)
    assert sha256(WEIGHTS) not in stored and sha256(bad) not in stored, (
        "nothing stored under any name"
    )
    for name, data in stored.items():  # every blob that is there holds the bytes its name says
        assert name in (sha256(data), hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest())
    snapshot = next((cache / "models--org--tiny" / "snapshots").iterdir())
    assert not (snapshot / "model.safetensors").exists()


def test_no_verify_with_right_bytes_still_fills_the_cache(hub: HubServer, cache: Path) -> None:
    result = mdl("pull", "tiny", "--layout", "hf-cache", "--no-verify")
    assert result.exit_code == 0, result.output
    assert blobs(cache)[sha256(WEIGHTS)] == WEIGHTS


def test_no_verify_still_trusts_the_plain_layout(
    hub: HubServer, cache: Path, tmp_path: Path
) -> None:
    # Outside the cache no name claims a hash: --no-verify keeps its meaning (size checked, hash
    # not).
    bad = serve_corrupt_weights(hub)
    result = mdl("pull", "tiny", "--dest", "models", "--no-verify")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "models" / "tiny" / "model.safetensors").read_bytes() == bad


def test_verify_reports_a_corrupt_blob_as_corrupt(hub: HubServer, cache: Path) -> None:
    assert mdl("pull", "tiny", "--layout", "hf-cache").exit_code == 0
    blob = cache / "models--org--tiny" / "blobs" / sha256(WEIGHTS)
    blob.chmod(0o644)
    blob.write_bytes(corrupted(WEIGHTS))
    result = mdl("verify", "tiny", "--layout", "hf-cache", "--json")
    assert result.exit_code == ExitCode.INTEGRITY, result.output
    error = str(
        {f["path"]: f for f in json.loads(result.stdout)["files"]}["model.safetensors"]["error"]
    )
    assert "missing" not in error and sha256(corrupted(WEIGHTS)) in error, error


def test_verify_reports_bytes_misnamed_by_an_older_mdl_as_corrupt(
    hub: HubServer, cache: Path
) -> None:
    """What an older ``--no-verify`` left: the blob named by the expected sha256 holds other bytes,
    and the record, written from those bytes, carries their hash."""
    assert mdl("pull", "tiny", "--layout", "hf-cache").exit_code == 0
    bad = corrupted(WEIGHTS)
    blob = cache / "models--org--tiny" / "blobs" / sha256(WEIGHTS)
    blob.chmod(0o644)
    blob.write_bytes(bad)
    [record_path] = (cache / ".locks" / "mdl" / "records").glob("tiny.json")
    record = json.loads(record_path.read_text())
    files = record["files"]
    entry = (
        files["model.safetensors"]
        if isinstance(files, dict)
        else next(f for f in files if f["path"] == "model.safetensors")
    )
    entry["sha256"] = sha256(bad)
    entry["mtime_ns"] = blob.stat().st_mtime_ns
    record_path.write_text(json.dumps(record))
    result = mdl("verify", "tiny", "--layout", "hf-cache", "--json")
    assert result.exit_code == ExitCode.INTEGRITY, result.output
    error = str(
        {f["path"]: f for f in json.loads(result.stdout)["files"]}["model.safetensors"]["error"]
    )
    assert "corrupt" in error and "missing" not in error, error
    assert sha256(bad) in error
