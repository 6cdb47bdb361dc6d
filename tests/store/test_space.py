"""Disk space: refuse before transferring when the known sizes do not fit; ENOSPC mid-way keeps
the .part and its resume record, and the next run (once there is room) resumes on them.

Both exit 7. The real cases run on a small tmpfs the test mounts (root only, skipped otherwise with
the reason); the injected cases (a fake free-space probe, a pwrite that fails with ENOSPC) run
everywhere.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from runfixtures import mdl as run_mdl
from servers import Fault, HubServer, make_data

import mdl.transfer._copy
from mdl.store.store import Store

MB = 1_000_000
SMALL = make_data(6 * MB, seed=41)
MEDIUM = make_data(12 * MB, seed=42)
BIG = make_data(40 * MB, seed=43)

CATALOG = """
[models.small]
repo = "org/small"

[models.medium]
repo = "org/medium"

[models.big]
repo = "org/big"
"""

FILES = {
    "small": ("w.bin", SMALL),
    "medium": ("model.safetensors", MEDIUM),
    "big": ("weights.bin", BIG),
}


@pytest.fixture
def world(hub: HubServer, catalog: Path, monkeypatch: pytest.MonkeyPatch) -> HubServer:
    for name, (path, data) in FILES.items():
        hub.add_repo(f"org/{name}", {path: data})
    catalog.write_text(CATALOG)
    monkeypatch.setenv("MDL_RETRIES", "3")
    return hub


def use_dest(monkeypatch: pytest.MonkeyPatch, dest: Path) -> Path:
    monkeypatch.setenv("MDL_DEST", str(dest))
    return dest


def partial_files(dest: Path) -> list[str]:
    folder = dest / ".mdl" / "partial"
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def fake_free_space(monkeypatch: pytest.MonkeyPatch, free: int) -> None:
    monkeypatch.setattr(Store, "free_bytes", lambda self: free)


# -- a small real filesystem
# -------------------------------------------------------------------------------


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Callable[[str], Path]]:
    """Mount a tmpfs of the given size (e.g. "8m") under tmp_path; unmounted after the test."""
    mounted: list[Path] = []

    def mount(size: str) -> Path:
        if os.geteuid() != 0:
            pytest.skip(f"mounting a small tmpfs needs root (running as uid {os.geteuid()})")
        target = tmp_path / f"fs-{len(mounted)}"
        target.mkdir()
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(target)],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            pytest.skip(
                f"`mount -t tmpfs` is not allowed here: {done.stderr.strip() or done.returncode}"
            )
        mounted.append(target)
        return target

    yield mount
    for target in reversed(mounted):
        if subprocess.run(["umount", str(target)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(target)], capture_output=True)


def fill(path: Path, nbytes: int | None = None) -> None:
    """Write `nbytes` of zeros to `path` (None: until the filesystem is full)."""
    block = b"\0" * 65536
    with path.open("wb") as handle:
        written = 0
        try:
            while nbytes is None or written < nbytes:
                chunk = block if nbytes is None else block[: min(len(block), nbytes - written)]
                handle.write(chunk)
                handle.flush()
                written += len(chunk)
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise


# -- refusing before any transfer
# ----------------------------------------------------------------------


def test_refuses_before_transferring_naming_both_sizes(
    world: HubServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_free_space(monkeypatch, 5 * MB)
    result = run_mdl("pull", "medium", "big", "--json")
    assert result.exit_code == 7, result.stderr
    assert "49.6 MiB" in result.stderr and "4.77 MiB" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    doc = json.loads(result.stdout)
    assert doc["ok"] is False and doc["error"]["code"] == 7
    assert "49.6 MiB" in doc["error"]["message"] and "4.77 MiB" in doc["error"]["message"]
    assert world.cdn.log.records(method="GET") == [], (
        "bytes were transferred before the space check"
    )
    assert world.log.records(path_prefix="/org/") == []
    dest = Path(os.environ["MDL_DEST"])
    assert partial_files(dest) == []
    assert not (dest / "medium").exists() and not (dest / "big").exists()


def test_what_fits_is_not_refused(world: HubServer, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_free_space(monkeypatch, 13 * MB)
    result = run_mdl("pull", "medium")
    assert result.exit_code == 0, result.stderr
    assert (Path(os.environ["MDL_DEST"]) / "medium" / "model.safetensors").read_bytes() == MEDIUM


def test_refuses_on_a_small_real_filesystem(
    world: HubServer, monkeypatch: pytest.MonkeyPatch, small_fs: Callable[[str], Path]
) -> None:
    dest = use_dest(monkeypatch, small_fs("8m") / "models")
    result = run_mdl("pull", "medium")
    assert result.exit_code == 7, result.stderr
    assert "11.4 MiB still to download" in result.stderr
    assert "free" in result.stderr
    assert world.cdn.log.records(method="GET") == []
    assert partial_files(dest) == []
    # What fits on it goes through.
    assert run_mdl("pull", "small").exit_code == 0
    assert (dest / "small" / "w.bin").read_bytes() == SMALL


def test_resume_checks_space_for_the_bytes_still_to_come(
    world: HubServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An interrupted run leaves a partial download with a few MB of the 40 MB done.
    monkeypatch.setenv("MDL_RETRIES", "0")
    world.cdn.faults.add(Fault.reset(after_bytes=2 * MB, path_prefix="/blobs/", skip=2, times=None))
    assert run_mdl("pull", "big", "--connections", "4").exit_code == 5
    world.cdn.faults.clear()
    world.cdn.log.clear()
    fake_free_space(monkeypatch, 10 * MB)  # far less than the ~35 MB still to come
    result = run_mdl("pull", "big", "--connections", "4")
    assert result.exit_code == 7, result.stderr
    assert world.cdn.log.records(method="GET") == []


# -- ENOSPC mid-download
# -------------------------------------------------------------------------------


def kept_bytes(dest: Path) -> int:
    """Bytes the resume record in ``dest`` says are on disk."""
    records = [p for p in (dest / ".mdl" / "partial").iterdir() if p.name.endswith(".json")]
    assert len(records) == 1, records
    return sum(done for _, _, done in json.loads(records[0].read_text())["pieces"])


@pytest.mark.slow
@pytest.mark.parametrize(
    ("model", "fs_size", "filler", "args"),
    [("small", "8m", 4 * MB, ()), ("big", "48m", 20 * MB, ("--connections", "4"))],
    ids=["one-stream", "parallel-ranges"],
)
def test_enospc_mid_download_keeps_the_part_exits_7_and_the_next_run_resumes(
    world: HubServer,
    monkeypatch: pytest.MonkeyPatch,
    small_fs: Callable[[str], Path],
    model: str,
    fs_size: str,
    filler: int,
    args: tuple[str, ...],
) -> None:
    root = small_fs(fs_size)
    dest = use_dest(monkeypatch, root / "models")
    # The space check passes; then something else fills the disk as the download starts.
    fault = world.cdn.faults.add(
        Fault.call(lambda: fill(root / "filler", filler), path_prefix="/blobs/")
    )
    result = run_mdl("pull", model, *args, "--json")
    assert fault.hits == 1
    assert result.exit_code == 7, result.stderr
    path, data = FILES[model]
    lines = [line for line in result.stderr.splitlines() if "no space left" in line]
    assert lines and all(".part" in line for line in lines), result.stderr
    assert "Traceback" not in result.stderr
    entry = json.loads(result.stdout)["files"][0]
    assert entry["action"] == "failed" and ".part" in entry["error"], entry
    assert "no space left" in entry["error"] and "run again to resume" in entry["error"]
    assert not (dest / model / path).exists()
    kept = kept_bytes(dest)
    assert kept > 0, "the partial download was not kept for the resume"
    if model == "small":
        assert len(world.cdn.log.records(method="GET")) == 1, "a full disk must not be retried"
    # Once there is room again, the next run resumes: the bytes kept are not fetched again.
    (root / "filler").unlink()
    world.cdn.log.clear()
    again = run_mdl("pull", model, *args)
    assert again.exit_code == 0, again.stderr
    assert (dest / model / path).read_bytes() == data
    served = world.cdn.log.body_bytes(method="GET")
    assert served <= len(data) - kept + 2 * MB, (served, kept)  # (a resume's small overlap)
    assert partial_files(dest) == []


def test_enospc_on_the_resume_record_leaves_nothing(
    world: HubServer, monkeypatch: pytest.MonkeyPatch, small_fs: Callable[[str], Path]
) -> None:
    root = small_fs("8m")
    dest = use_dest(monkeypatch, root / "models")
    Store(dest).ensure_dirs()
    # the disk fills up between the space check (faked: it said yes) and the first write
    fill(root / "filler")
    fake_free_space(monkeypatch, 100 * MB)
    result = run_mdl("pull", "small")
    assert result.exit_code == 7, result.stderr
    assert partial_files(dest) == []


def test_injected_enospc_mid_download_keeps_the_part_and_exits_7(
    world: HubServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_pwrite = os.pwrite
    written = {"bytes": 0}

    def pwrite(fd: int, data: bytes, offset: int) -> int:
        if written["bytes"] > 3 * MB:
            raise OSError(errno.ENOSPC, "No space left on device")
        n = real_pwrite(fd, data, offset)
        written["bytes"] += n
        return n

    monkeypatch.setattr(mdl.transfer._copy.os, "pwrite", pwrite)
    result = run_mdl("pull", "medium", "--json")
    monkeypatch.setattr(mdl.transfer._copy.os, "pwrite", real_pwrite)
    assert result.exit_code == 7, result.stderr
    entry = json.loads(result.stdout)["files"][0]
    assert entry["action"] == "failed" and "no space left" in entry["error"].lower()
    dest = Path(os.environ["MDL_DEST"])
    assert kept_bytes(dest) > 0, "the partial download was not kept for the resume"
    assert not (dest / "medium" / "model.safetensors").exists()
    assert len(world.cdn.log.records(method="GET")) == 1, "a full disk must not be retried"


def test_a_full_disk_while_reading_a_mirror_is_not_taken_to_the_next_source(
    world: HubServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # The disk is this machine's: the origin would meet it too. Exit 7 at once, the partial kept.
    shared = tmp_path / "shared"
    (shared / "medium").mkdir(parents=True)
    (shared / "medium" / "model.safetensors").write_bytes(MEDIUM)
    real_pwrite = os.pwrite
    written = {"bytes": 0}

    def pwrite(fd: int, data: bytes, offset: int) -> int:
        if written["bytes"] > 3 * MB:
            raise OSError(errno.ENOSPC, "No space left on device")
        n = real_pwrite(fd, data, offset)
        written["bytes"] += n
        return n

    monkeypatch.setattr(mdl.transfer._copy.os, "pwrite", pwrite)
    mirror = f"file://{shared}/{{model}}/{{path}}"
    result = run_mdl("pull", "medium", "--mirror", mirror, "--json")
    monkeypatch.setattr(mdl.transfer._copy.os, "pwrite", real_pwrite)
    assert result.exit_code == 7, result.stderr
    assert "trying the next source" not in result.stderr, result.stderr
    assert world.cdn.log.records(method="GET") == [], "the origin was asked after a full disk"
    assert kept_bytes(Path(os.environ["MDL_DEST"])) > 0
