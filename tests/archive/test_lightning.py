"""Lightning runs as Lightning writes them (``lightning_logs/version_N/`` with its checkpoints in
``checkpoints/``), and checkpoints that are links: each counts as what it links to."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import pytest
from runfixtures import make_hf_run, make_lightning_run, safetensors_bytes, write

from mdl.archive._checkpoints import select_checkpoint
from mdl.archive.collect import PackOptions
from mdl.archive.packer import PackResult, pack_run
from mdl.errors import ExitCode, UsageError
from mdl.progress import NullProgress


def pack(
    root: Path, run: str, checkpoint: str | None = None, *, dry_run: bool = False
) -> PackResult:
    options = PackOptions(
        run_dir=Path(run), output=None, checkpoint=checkpoint, cwd=root, dry_run=dry_run
    )
    return pack_run(options, progress=NullProgress())


@pytest.mark.parametrize("run", ["version_0", "lightning_logs/version_3"])
def test_a_lightning_run_packs_its_checkpoints(tmp_path: Path, run: str) -> None:
    """Its steps, latest, step:N and last.ckpt are found in checkpoints/; the whole run holds no
    weights of its own, so it is refused with the hint, never an archive without the model."""
    made = make_lightning_run(tmp_path / run)
    ckpts = made.root / "checkpoints"
    with pytest.raises(UsageError) as err:
        pack(tmp_path, run)
    assert err.value.exit_code == ExitCode.USAGE
    assert "epoch=1-step=200.ckpt" in err.value.message and "--checkpoint latest" in (
        err.value.hint or ""
    )
    result = pack(tmp_path, run, checkpoint="latest")
    assert (result.checkpoint, result.reason) == (
        "epoch=1-step=200.ckpt",
        "latest: highest complete step (200)",
    )
    stem = f"{made.root.name}-epoch=1-step=200"
    with zipfile.ZipFile(tmp_path / f"{stem}.zip") as zf:
        assert (
            zf.read(f"{stem}/epoch=1-step=200.ckpt")
            == (ckpts / "epoch=1-step=200.ckpt").read_bytes()
        )
    assert select_checkpoint(made.root, "step:100").root == ckpts / "epoch=0-step=100.ckpt"
    last = select_checkpoint(made.root, "last.ckpt")
    assert (last.root, last.single_file) == (ckpts / "last.ckpt", True)


def test_a_lightning_run_of_only_checkpoints_is_refused_with_the_hint(tmp_path: Path) -> None:
    made = make_lightning_run(tmp_path / "version_0")
    for name in ("hparams.yaml", "events.out.tfevents.1700000000.host.1.0"):
        (made.root / name).unlink()
    with pytest.raises(UsageError) as err:
        pack(tmp_path, "version_0")
    assert "only checkpoints" in err.value.message
    assert "--checkpoint latest" in (err.value.hint or "")


def test_a_lightning_root_without_a_logger(tmp_path: Path) -> None:
    """Lightning with logger=False saves into the root's checkpoints/, beside the top's files."""
    root = tmp_path / "root"
    write(root / "checkpoints" / "epoch=2-step=30.ckpt", b"weights")
    write(root / "train.py", "print()")
    result = pack(tmp_path, "root", checkpoint="latest", dry_run=True)
    assert result.checkpoint == "epoch=2-step=30.ckpt"
    assert [f.path for f in result.files] == ["epoch=2-step=30.ckpt"]


def test_last_ckpt_at_the_top_and_in_checkpoints_is_ambiguous_by_name(tmp_path: Path) -> None:
    made = make_lightning_run(tmp_path / "version_0")
    write(made.root / "last.ckpt", b"another")
    with pytest.raises(UsageError, match=r"two checkpoints are named 'last\.ckpt'"):
        select_checkpoint(made.root, "last.ckpt")
    assert select_checkpoint(made.root, "latest").checkpoint == "epoch=1-step=200.ckpt"


def test_a_linked_checkpoint_folder_counts_as_its_target(tmp_path: Path) -> None:
    """checkpoint-300 -> checkpoint-100: step 100's weights are never packed as step 300's."""
    run = make_hf_run(tmp_path / "run", steps=(100,))
    os.symlink("checkpoint-100", run.root / "checkpoint-300")
    latest = select_checkpoint(run.root, "latest")
    assert (latest.checkpoint, latest.reason) == (
        "checkpoint-100",
        "latest: highest complete step (100)",
    )
    with pytest.raises(UsageError, match=r"no checkpoint for step 300 \(steps present: 100\)"):
        select_checkpoint(run.root, "step:300")
    # by its own name it is what it is: checkpoint-100's files
    assert select_checkpoint(run.root, "checkpoint-300").root == run.root / "checkpoint-300"


def test_a_link_to_a_folder_outside_the_checkpoints_takes_its_targets_step(tmp_path: Path) -> None:
    run = make_hf_run(tmp_path / "run", steps=(100,))
    write(
        run.root / "kept" / "checkpoint-50" / "model.safetensors",
        safetensors_bytes({"w": 64}, seed="50"),
    )
    os.symlink("kept/checkpoint-50", run.root / "checkpoint-900")
    assert select_checkpoint(run.root, "latest").checkpoint == "checkpoint-100"
    assert select_checkpoint(run.root, "step:50").checkpoint == "checkpoint-900"
