"""The part hashes beside catalog.lock, end to end against the loopback Hub and its CDN: ``mdl lock``
hashes the parts of the files installed here and verified (a later run adds the files that came
since, drops bytes no longer pinned), and a pull that takes its pins from the lock checks each part
as it lands: one flipped byte costs one part, not the file. A lock without them, or with bad ones,
pulls as before (whole-file checks)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
from runfixtures import mdl
from servers import HubServer, make_data

from mdl import api, partsize
from mdl.errors import ExitCode
from mdl.lockfile.parts import PartHashes, dump_parts, parts_beside, read_parts
from mdl.report import FileOutcome, RunReport

MiB = 1 << 20
WEIGHTS = make_data(6 * MiB + 12_345, seed=70)
CONFIG = b'{"hidden_size": 8}\n'
W_SHA = hashlib.sha256(WEIGHTS).hexdigest()
C_SHA = hashlib.sha256(CONFIG).hexdigest()


@pytest.fixture
def catalog(hub: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    hub.add_repo("org/m", {"model.safetensors": WEIGHTS, "config.json": CONFIG})
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setenv("MDL_LOG_FILE", str(tmp_path / "mdl.log"))
    # parts of 1 MiB: a 6 MiB file is cut in 7 (mdl's are 16 MiB; the size is kept per file)
    monkeypatch.setattr(partsize, "PART", MiB)
    path = tmp_path / "catalog.toml"
    path.write_text('[models.m]\nrepo = "org/m"\n')
    return path


def locked_with_parts(catalog: Path, machine: Path) -> Path:
    """Lock (nothing here yet: no part hashes), pull on ``machine``, lock again there: the part
    hashes of what it installed are written beside the lock, which itself is unchanged."""
    first = api.lock(all=True, catalog=catalog, dest=machine)
    assert first.ok and first.changed and (first.parts, first.parts_changed) == (0, False)
    sidecar = parts_beside(catalog.with_suffix(".lock"))
    assert not sidecar.exists(), "no file is here to hash: no part hashes, no file"
    assert api.pull(all=True, catalog=catalog, dest=machine).ok
    again = api.lock(all=True, catalog=catalog, dest=machine)
    assert again.ok and not again.changed, "the lock itself is fresh"
    assert (again.parts_changed, again.parts, again.hashed) == (True, 2, 2)
    return sidecar


def weights_outcome(report: RunReport) -> FileOutcome:
    return next(f for f in report.files if f.path == "model.safetensors")


@pytest.mark.parametrize("mode", ["frozen", "locked", "auto"])
def test_a_flipped_byte_costs_one_part_when_the_lock_has_part_hashes(
    catalog: Path, hub: HubServer, tmp_path: Path, mode: str
) -> None:
    sidecar = locked_with_parts(catalog, tmp_path / "machine-1")
    found = read_parts(sidecar)
    assert set(found) == {W_SHA, C_SHA}
    assert (found[W_SHA].size, found[W_SHA].part, len(found[W_SHA].digests)) == (
        len(WEIGHTS),
        MiB,
        7,
    )
    hub.cdn.log.clear()
    hub.cdn.flips.append([3 * MiB + 17, 1])
    flags = {"frozen": mode == "frozen", "locked": mode == "locked"}
    report = api.pull(all=True, catalog=catalog, dest=tmp_path / "machine-2", **flags)
    assert report.ok, report.files
    got = tmp_path / "machine-2" / "m" / "model.safetensors"
    assert got.read_bytes() == WEIGHTS
    outcome = weights_outcome(report)
    assert outcome.verified and outcome.action == "downloaded"
    assert any("1 range(s) failed their lock hash" in w for w in outcome.warnings), outcome
    shown = outcome.to_json()
    assert (shown["range_trust"], shown["ranges_refetched"]) == ("lock", 1)
    sent = hub.cdn.log.body_bytes()
    assert len(WEIGHTS) < sent <= len(WEIGHTS) + 2 * MiB, "the file and a part, not twice the file"


def test_a_later_lock_adds_what_came_and_drops_what_is_no_longer_pinned(
    catalog: Path, hub: HubServer, tmp_path: Path
) -> None:
    sidecar = locked_with_parts(catalog, tmp_path / "machine-1")
    stale = "cd" * 32
    entries = read_parts(sidecar) | {stale: PartHashes(5, 10, (b"\0" * 32,))}
    sidecar.write_text(dump_parts(entries))
    text = sidecar.read_text()
    assert stale in text
    again = api.lock(all=True, catalog=catalog, dest=tmp_path / "elsewhere")
    assert again.ok and again.parts_changed and (again.parts, again.hashed) == (2, 0)
    assert stale not in sidecar.read_text(), "bytes no lock line pins are dropped"
    assert set(read_parts(sidecar)) == {W_SHA, C_SHA}, "the others kept though nothing is here"
    sidecar.unlink()
    check = api.lock(all=True, catalog=catalog, check=True)
    assert check.ok, "--check does not ask for part hashes"


def test_mdl_lock_says_what_it_wrote_beside_the_lock(
    catalog: Path, hub: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    machine = tmp_path / "machine-1"
    assert api.pull(all=True, catalog=catalog, dest=machine).ok
    monkeypatch.setenv("MDL_DEST", str(machine))
    done = mdl("lock", "--catalog", str(catalog))
    assert done.exit_code == 0, done.stderr
    sidecar = parts_beside(catalog.with_suffix(".lock"))
    assert f"wrote {sidecar} (part hashes of 2 files, 2 hashed here now)" in done.stderr
    doc = json.loads(mdl("lock", "--catalog", str(catalog), "--json").stdout)
    assert doc["parts"] == {
        "path": str(sidecar),
        "changed": False,
        "files": 2,
        "hashed": 0,
        "not_here": 0,
    }


def test_a_bad_parts_file_is_one_warning_and_the_pull_checks_whole_files(
    catalog: Path, hub: HubServer, tmp_path: Path
) -> None:
    sidecar = locked_with_parts(catalog, tmp_path / "machine-1")
    sidecar.write_text(sidecar.read_text().replace("version = 1", "version = 7"))
    report = api.pull(all=True, catalog=catalog, dest=tmp_path / "machine-2", frozen=True)
    assert report.ok, report.files
    said = {w for f in report.files for w in f.warnings}
    assert said == {
        f"{sidecar}: version 7 is newer than this mdl understands; not used: each file is"
        " checked whole"
    }
    assert (tmp_path / "machine-2" / "m" / "model.safetensors").read_bytes() == WEIGHTS
    again = api.lock(all=True, catalog=catalog, dest=tmp_path / "machine-1")
    assert again.warnings == (
        f"{sidecar}: version 7 is newer than this mdl understands; writing it again",
    )
    assert again.parts_changed and set(read_parts(sidecar)) == {W_SHA, C_SHA}


def test_a_lock_without_part_hashes_pulls_as_before(
    catalog: Path, hub: HubServer, tmp_path: Path
) -> None:
    sidecar = locked_with_parts(catalog, tmp_path / "machine-1")
    sidecar.unlink()  # as mdl 0.6 writes a lock
    hub.cdn.log.clear()
    hub.cdn.flips.append([3 * MiB + 17, 1])
    report = api.pull(all=True, catalog=catalog, dest=tmp_path / "machine-2", frozen=True)
    outcome = weights_outcome(report)
    assert not any("range" in w for w in outcome.warnings), outcome
    # the whole file's hash alone judges it: the flipped byte fails it whole, as before
    assert report.exit_code == ExitCode.INTEGRITY, report.files
    assert outcome.error is not None and "sha256 mismatch" in outcome.error
    assert hub.cdn.log.body_bytes() >= len(WEIGHTS), "fetched whole, then refused whole"


def test_a_file_changed_behind_its_record_gets_no_part_hashes(
    catalog: Path, hub: HubServer, tmp_path: Path
) -> None:
    machine = tmp_path / "machine-1"
    assert api.lock(all=True, catalog=catalog, dest=machine).ok
    assert api.pull(all=True, catalog=catalog, dest=machine).ok
    installed = machine / "m" / "model.safetensors"
    before = installed.stat()
    with installed.open("r+b") as handle:  # one byte changed, size and mtime put back
        handle.seek(5 * MiB)
        handle.write(bytes([WEIGHTS[5 * MiB] ^ 1]))
    os.utime(installed, ns=(before.st_atime_ns, before.st_mtime_ns))
    report = api.lock(all=True, catalog=catalog, dest=machine)
    assert report.ok and (report.parts, report.hashed) == (1, 1)
    assert set(read_parts(parts_beside(catalog.with_suffix(".lock")))) == {C_SHA}
    assert report.warnings == (
        f"m/model.safetensors: no part hashes: {installed} changed since it was verified",
    )


def test_files_mdl_did_not_install_get_part_hashes_when_their_read_proves_them(
    catalog: Path, hub: HubServer, tmp_path: Path
) -> None:
    # A team copies the files into place with another tool (rsync, hf download): no record of mdl's
    # vouches for them. The read that makes the part hashes proves the sha256 the lock pins.
    machine = tmp_path / "copied"
    done = mdl("lock", "--catalog", str(catalog), "--dest", str(machine))
    assert done.exit_code == 0, done.stderr
    assert "no part hashes for 2 files: not here to read" in done.stderr
    doc = json.loads(
        mdl("lock", "--catalog", str(catalog), "--dest", str(machine), "--json").stdout
    )
    assert doc["parts"]["not_here"] == 2
    (machine / "m").mkdir(parents=True)
    (machine / "m" / "model.safetensors").write_bytes(WEIGHTS)
    wrong = machine / "m" / "config.json"
    wrong.write_bytes(CONFIG.replace(b"8", b"9"))  # the pinned size, other bytes
    again = mdl("lock", "--catalog", str(catalog), "--dest", str(machine), "--json")
    assert again.exit_code == 0, again.stderr
    sidecar = parts_beside(catalog.with_suffix(".lock"))
    assert set(read_parts(sidecar)) == {W_SHA}
    doc = json.loads(again.stdout)["parts"]
    assert (doc["files"], doc["hashed"], doc["not_here"]) == (1, 1, 0)
    said = [line for line in again.stderr.splitlines() if "no part hashes" in line]
    wrong_sha = hashlib.sha256(wrong.read_bytes()).hexdigest()
    assert len(said) == 1 and said[0].endswith(
        f"mdl: warning: m/config.json: no part hashes: {wrong} is not the bytes the lock pins"
        f" (sha256 {wrong_sha})"
    ), again.stderr
    # and a pull elsewhere checks the copied file's parts: a flipped byte costs one part
    hub.cdn.log.clear()
    hub.cdn.flips.append([3 * MiB + 17, 1])
    report = api.pull(all=True, catalog=catalog, dest=tmp_path / "machine-2", frozen=True)
    assert report.ok, report.files
    assert weights_outcome(report).to_json()["ranges_refetched"] == 1
