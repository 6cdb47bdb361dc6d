"""What a profile leaves out is said: `skipped` with its reason in --json, on stderr, and in
--dry-run too.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
from runfixtures import TRAINING_STATE, make_hf_run, make_kohya_run, write
from runfixtures import mdl as run_mdl
from servers import make_data
from terminal import unstamped

import mdl
from mdl.archive.collect import DENY_REASON, RUN_LEVEL_REASON
from mdl.units import human_size


@pytest.fixture
def run_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MDL_LOG_FILE", str(tmp_path / "mdl.log"))
    run = make_hf_run(tmp_path / "run", steps=(100, 500))
    write(
        run.root / "checkpoint-500" / "global_step500" / "zero_pp_rank_0_optim_states.pt",
        make_data(64, "ds"),
    )
    return run.root


def _left_out(doc: dict[str, object]) -> dict[str, str]:
    skipped = doc["skipped"]
    assert isinstance(skipped, list)
    return {item["path"]: item["reason"] for item in skipped if item["checkpoint"] is None}


@pytest.mark.parametrize("dry_run", [False, True])
def test_deploy_lists_the_training_state_it_leaves_out(run_dir: Path, dry_run: bool) -> None:
    result = run_mdl(
        "pack",
        str(run_dir),
        "--checkpoint",
        "latest",
        "--json",
        *(["--dry-run"] if dry_run else []),
    )
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    expected = {f"checkpoint-500/{name}": DENY_REASON for name in TRAINING_STATE}
    # a folder of state: one entry, not its files
    expected["checkpoint-500/global_step500/"] = DENY_REASON
    assert _left_out(doc) == expected
    assert all(set(item) == {"path", "checkpoint", "reason"} for item in doc["skipped"])
    packed = {f["path"] for f in doc["files"]}
    assert not packed & {p.split("/", 1)[1].rstrip("/") for p in expected}
    assert "training state, not needed to deploy" in DENY_REASON


@pytest.mark.parametrize("dry_run", [False, True])
def test_the_human_output_says_it_too(run_dir: Path, dry_run: bool) -> None:
    result = run_mdl(
        "pack", str(run_dir), "--checkpoint", "latest", *(["--dry-run"] if dry_run else [])
    )
    assert result.exit_code == 0, result.stderr
    line = next(x for x in unstamped(result.stderr) if x.startswith("left out "))
    assert "checkpoint-500/optimizer.pt" in line and line.endswith(DENY_REASON)
    # up to six paths are named
    assert "checkpoint-500/global_step500/" in line and "more" not in line
    assert "optimizer.pt" not in result.stdout  # stdout lists what is in the archive


def test_full_profile_leaves_nothing_out_of_the_checkpoint(run_dir: Path) -> None:
    result = mdl.pack(run_dir, checkpoint="latest", profile="full", dry_run=True)
    assert result.to_json()["skipped"] == []
    assert "optimizer.pt" in {f.path for f in result.files}


def test_a_whole_run_pack_names_the_checkpoints_and_state_it_leaves_out(run_dir: Path) -> None:
    doc = mdl.pack(run_dir, output="whole.zip").to_json()
    skipped = {item["path"]: item for item in doc["skipped"]}
    assert skipped["checkpoint-100/"] == {
        "path": "checkpoint-100/",
        "checkpoint": "checkpoint-100",
        "reason": RUN_LEVEL_REASON,
    }
    assert skipped["training_args.bin"]["reason"] == DENY_REASON
    with zipfile.ZipFile("whole.zip") as zf:
        assert not [
            n for n in zf.namelist() if "checkpoint-" in n or n.endswith("training_args.bin")
        ]


def test_latest_passing_over_a_checkpoint_is_listed_with_the_same_keys(
    tmp_path: Path, run_dir: Path
) -> None:
    (run_dir / "checkpoint-500" / "model.safetensors").unlink()
    doc = mdl.pack(run_dir, checkpoint="latest", dry_run=True).to_json()
    assert doc["checkpoint"] == "checkpoint-100"
    passed = [item for item in doc["skipped"] if item["checkpoint"] == "checkpoint-500"]
    # a folder ends in "/", as everywhere `skipped` names one
    assert len(passed) == 1 and passed[0]["path"] == "checkpoint-500/" and passed[0]["reason"]


def test_kohya_state_folders_are_listed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    make_kohya_run(tmp_path / "lora")
    doc = mdl.pack(tmp_path / "lora", dry_run=True).to_json()
    assert _left_out(doc) == {
        "style-000001-state/": DENY_REASON,
        "style-000002-state/": DENY_REASON,
    }


def test_the_manifest_lists_what_was_left_out_as_the_json_does(
    run_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "exp.zip"
    result = run_mdl("pack", str(run_dir), "--checkpoint", "latest", "-o", str(out), "--json")
    assert result.exit_code == 0, result.stderr
    with zipfile.ZipFile(out) as archive:
        manifest = json.loads(archive.read("exp/mdl-manifest.json"))
    assert manifest["skipped"] == json.loads(result.stdout)["skipped"]
    assert "checkpoint-500/optimizer.pt" in _left_out(manifest)


def test_a_dry_run_says_how_many_files_and_bytes_would_go_in(run_dir: Path) -> None:
    result = run_mdl("pack", str(run_dir), "--checkpoint", "latest", "--dry-run")
    assert result.exit_code == 0, result.stderr
    doc = mdl.pack(run_dir, checkpoint="latest", dry_run=True).to_json()
    content = sum(f["size"] for f in doc["files"])
    line = next(x for x in result.stderr.splitlines() if "would write " in x)
    assert f"({len(doc['files'])} files, {human_size(content)} before compression)" in line
    assert "?" not in line
