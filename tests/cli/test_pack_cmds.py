"""`mdl pack` / `mdl unpack` through the CLI: exit codes, stdout vs stderr, --json shapes, round
trip.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

import pytest
from runfixtures import make_hf_run, mdl


@pytest.fixture
def run_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MDL_LOG_FILE", str(tmp_path / "mdl.log"))
    make_hf_run(tmp_path / "bert-run", steps=(100, 200, 300), sharded=(200,), best_step=200)
    return tmp_path / "bert-run"


def test_pack_best_is_deploy_ready_and_round_trips(run_dir: Path, tmp_path: Path) -> None:
    result = mdl("pack", str(run_dir), "--checkpoint", "best", "--json")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert set(doc) >= {"archive", "size", "sha256", "checkpoint", "reason", "files"}
    assert doc["checkpoint"] == "checkpoint-200"
    archive = Path(doc["archive"])
    assert archive == tmp_path / "bert-run-checkpoint-200.zip"
    assert hashlib.sha256(archive.read_bytes()).hexdigest() == doc["sha256"]
    names = {f["path"] for f in doc["files"]}
    assert (
        "model.safetensors.index.json" in names
        and "config.json" in names
        and "tokenizer.json" in names
    )
    assert not names & {
        "optimizer.pt",
        "scheduler.pt",
        "scaler.pt",
        "rng_state.pth",
        "training_args.bin",
    }
    with zipfile.ZipFile(archive) as zf:
        assert zf.namelist()[0] == "bert-run-checkpoint-200/mdl-manifest.json"
        assert zf.testzip() is None

    out = tmp_path / "deploy"
    unpacked = mdl("unpack", str(archive), "-d", str(out), "--json")
    assert unpacked.exit_code == 0, unpacked.stderr
    udoc = json.loads(unpacked.stdout)
    assert Path(udoc["dest"]) == out
    for name in names:
        assert (out / "bert-run-checkpoint-200" / name).read_bytes() == (
            run_dir / "checkpoint-200" / name
        ).read_bytes()
    again = mdl("unpack", str(archive), "-d", str(out))
    assert again.exit_code == 2 and "--force" in again.stderr


def test_pack_is_deterministic(run_dir: Path, tmp_path: Path) -> None:
    # The archive's stem names its top folder, so the same input means the same name in two places.
    first = json.loads(
        mdl("pack", str(run_dir), "--checkpoint", "latest", "-o", "one/m.zip", "--json").stdout
    )
    second = json.loads(
        mdl("pack", str(run_dir), "--checkpoint", "latest", "-o", "two/m.zip", "--json").stdout
    )
    assert first["sha256"] == second["sha256"]
    assert first["checkpoint"] == "checkpoint-300"


def test_pack_dry_run_writes_nothing_and_lists_files(run_dir: Path, tmp_path: Path) -> None:
    result = mdl("pack", str(run_dir), "--checkpoint", "step:100", "--dry-run")
    assert result.exit_code == 0, result.stderr
    assert "model.safetensors" in result.stdout
    assert not list(tmp_path.glob("*.zip"))


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--checkpoint", "../etc"], "../etc"),
        (["--checkpoint", "checkpoint-999"], "checkpoint-999"),
        (["--profile", "tiny"], "--profile"),
        (["--compress", "zstd"], "--compress"),
        (["--include", "*.nothing"], "*.nothing"),
    ],
)
def test_pack_bad_input_is_exit_2(run_dir: Path, args: list[str], needle: str) -> None:
    result = mdl("pack", str(run_dir), *args)
    assert result.exit_code == 2, result.stderr
    assert needle in result.stderr
    assert "Traceback" not in result.stderr


def test_pack_escaping_symlink_is_exit_2(run_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "secret.txt").write_text("do not ship")
    (run_dir / "checkpoint-300" / "notes.txt").symlink_to(tmp_path / "secret.txt")
    result = mdl("pack", str(run_dir), "--checkpoint", "latest", "--json")
    assert result.exit_code == 2
    assert "notes.txt" in json.loads(result.stdout)["error"]["message"]
    assert not list(tmp_path.glob("*.zip*"))


def test_unpack_hostile_archive_is_exit_2_and_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as zf:
        zf.writestr("pkg/config.json", "{}")
        zf.writestr("../escape.txt", "gotcha")
    out = tmp_path / "out"
    result = mdl("unpack", str(evil), "-d", str(out))
    assert result.exit_code == 2
    assert "../escape.txt" in result.stderr
    assert not (tmp_path / "escape.txt").exists()
    assert not out.exists() or not any(
        p for p in out.iterdir() if not p.name.startswith(".mdl-unpack")
    )


def test_unpack_corrupt_archive_is_exit_6(run_dir: Path, tmp_path: Path) -> None:
    doc = json.loads(
        mdl("pack", str(run_dir), "--checkpoint", "latest", "-o", "x.zip", "--json").stdout
    )
    data = bytearray(Path(doc["archive"]).read_bytes())
    with zipfile.ZipFile(doc["archive"]) as zf:
        info = zf.getinfo("x/model.safetensors")
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra) + 100
    data[start] ^= 0xFF
    (tmp_path / "bad.zip").write_bytes(bytes(data))
    result = mdl("unpack", "bad.zip", "-d", "out")
    assert result.exit_code == 6, result.stderr
    assert "model.safetensors" in result.stderr
    assert not (tmp_path / "out" / "x").exists()


def _zeros_zip(path: Path) -> None:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        zf.writestr("zeros.bin", b"\0" * (5 << 20))


def test_unpack_max_ratio_refuses_by_default_and_names_the_override(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    _zeros_zip(tmp_path / "z.zip")
    refused = mdl("unpack", "z.zip", "-d", "out")
    assert refused.exit_code == 2
    assert "zeros.bin" in refused.stderr and "--max-ratio" in refused.stderr
    assert not (tmp_path / "out" / "zeros.bin").exists()
    allowed = mdl("unpack", "z.zip", "-d", "out", "--max-ratio", "2000")
    assert allowed.exit_code == 0, allowed.stderr
    assert (tmp_path / "out" / "zeros.bin").stat().st_size == 5 << 20
    off = mdl("unpack", "z.zip", "-d", "out2", "--max-ratio", "inf")
    assert off.exit_code == 0, off.stderr


@pytest.mark.parametrize("value", ["0", "-1", "nan"])
def test_unpack_max_ratio_must_be_positive(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.chdir(tmp_path)
    _zeros_zip(tmp_path / "z.zip")
    result = mdl("unpack", "z.zip", "-d", "out", "--max-ratio", value)
    assert result.exit_code == 2
    assert "--max-ratio" in result.stderr
    assert not (tmp_path / "out").exists()
