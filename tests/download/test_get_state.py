"""``mdl get -d D`` keeps only its record in ``D/.mdl/`` and never touches anyone else's state
there.

A ``mdl pull --dest D`` may use the same folder: its records, locks and partial downloads survive
any get. A finished get keeps the record of what it wrote (``D/.mdl/get.json``, so that running it
again is a no-op), removes its lock files and the empty folders it created; a partial download
(something to resume) stays until a later get finishes it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from runfixtures import mdl
from servers import Fault, HubServer, make_data

from mdl.errors import ExitCode

DATA = make_data(2_000_000, seed=41)
WEIGHTS = make_data(1_500_000, seed=42)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def tree(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


RECORD = [".mdl", ".mdl/get.json"]


@pytest.fixture
def url(hub: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    hub.add_repo("org/tiny", {"config.json": b'{"a": 1}', "model.safetensors": WEIGHTS})
    (tmp_path / "catalog.toml").write_text('[models.tiny]\nrepo = "org/tiny"\n')
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setenv("MDL_LOG_FILE", str(tmp_path / "mdl.log"))
    monkeypatch.chdir(tmp_path)
    return hub.cdn.add_file("/files/data.bin", DATA, etag='"d1"')


def test_a_finished_get_leaves_only_the_file_and_its_record(url: str, tmp_path: Path) -> None:
    result = mdl("get", url, "-d", "D")
    assert result.exit_code == 0, result.output
    assert tree(tmp_path / "D") == [*RECORD, "data.bin"]
    entry = json.loads((tmp_path / "D" / ".mdl" / "get.json").read_text())["files"]["data.bin"]
    assert (entry["size"], entry["sha256"], entry["etag"]) == (len(DATA), sha(DATA), '"d1"')


def test_get_with_o_leaves_only_the_file(url: str, tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    assert mdl("get", url, "-o", "out/x.bin").exit_code == 0
    assert tree(tmp_path / "out") == [*RECORD, "x.bin"]


def test_a_failed_get_without_bytes_leaves_nothing(
    url: str, hub: HubServer, tmp_path: Path
) -> None:
    result = mdl("get", f"{hub.cdn.url}/files/absent.bin", "-d", "D")
    assert result.exit_code == ExitCode.NOT_FOUND, result.output
    assert tree(tmp_path / "D") == []


def test_a_resumed_get_leaves_nothing_behind(
    url: str, hub: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MDL_RETRIES", "0")
    hub.cdn.faults.add(Fault.reset(after_bytes=700_000, path_prefix="/files/", times=None))
    assert mdl("get", url, "-d", "D").exit_code == ExitCode.NETWORK
    hub.cdn.faults.clear()
    kept = tree(tmp_path / "D")
    assert any(p.endswith(".part") for p in kept), kept
    assert ".mdl/get.json" not in kept, "a failure is not recorded"
    monkeypatch.delenv("MDL_RETRIES")
    result = mdl("get", url, "-d", "D", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["files"][0]["action"] == "resumed"
    assert tree(tmp_path / "D") == [*RECORD, "data.bin"], "no partial, no lock, no empty folder"


def test_a_pulls_state_in_the_same_folder_survives_a_get(
    url: str, hub: HubServer, tmp_path: Path
) -> None:
    dest = tmp_path / "D"
    assert mdl("pull", "tiny", "--dest", str(dest)).exit_code == 0
    # A pull still under way elsewhere: a partial download and its lock, beside the finished model's
    # record.
    partial = dest / ".mdl" / "partial" / "tiny-0123456789abcdef-big.bin.part"
    partial.write_bytes(b"x" * 100)
    foreign_lock = dest / ".mdl" / "locks" / "tiny-0123456789abcdef-big.bin.lock"
    foreign_lock.write_text("")
    before = {p: p.read_bytes() for p in (dest / ".mdl").rglob("*") if p.is_file()}
    assert (dest / ".mdl" / "records" / "tiny.json") in before

    result = mdl("get", url, "-d", str(dest))
    assert result.exit_code == 0, result.output
    assert (dest / "data.bin").read_bytes() == DATA
    after = {p: p.read_bytes() for p in (dest / ".mdl").rglob("*") if p.is_file()}
    record = after.pop(dest / ".mdl" / "get.json")
    assert after == before, (
        "every file the pull keeps is there, unchanged, and get added only its record"
    )
    assert list(json.loads(record)["files"]) == ["data.bin"]
    # ... and the pull's record still serves list/verify.
    assert mdl("verify", "tiny", "--dest", str(dest)).exit_code == 0


def test_a_pull_that_starts_during_a_get_keeps_its_folder(
    url: str, hub: HubServer, tmp_path: Path
) -> None:
    dest = tmp_path / "D"

    def pull_now() -> None:  # runs inside the get's download: a pull --dest D beginning meanwhile
        assert mdl("pull", "tiny", "--dest", str(dest)).exit_code == 0

    # during the download (its probe)
    hub.cdn.faults.add(Fault.call(pull_now, path_prefix="/files/"))
    result = mdl("get", url, "-d", str(dest))
    assert result.exit_code == 0, result.output
    assert (dest / ".mdl" / "records" / "tiny.json").is_file(), (
        "the pull's record survived the get's clean-up"
    )
    assert mdl("verify", "tiny", "--dest", str(dest)).exit_code == 0
    assert list(json.loads((dest / ".mdl" / "get.json").read_text())["files"]) == ["data.bin"]
