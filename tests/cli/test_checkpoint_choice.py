"""``mdl pack``'s checkpoint choice as users meet it: numeric step lists, "did you mean", a run
with no final model.
"""

from __future__ import annotations

import json
from pathlib import Path

from runfixtures import make_hf_run, mdl


def checkpoint_only_run(root: Path) -> Path:
    """A run whose trainer saved checkpoints but was stopped before writing the final model."""
    run = make_hf_run(root / "run", steps=(500, 1000, 1500))
    for name in ("model.safetensors", "training_args.bin"):
        (run.root / name).unlink()
    return run.root


def test_pack_of_a_run_with_only_checkpoints_says_so_and_hints_latest(tmp_path: Path) -> None:
    run = checkpoint_only_run(tmp_path)
    result = mdl("pack", str(run), "-o", str(tmp_path / "out.zip"))
    assert result.exit_code == 2
    assert (
        "run has no final model, only checkpoints (checkpoint-500, checkpoint-1000,"
        " checkpoint-1500)" in (result.stderr)
    )
    assert "--checkpoint latest" in result.stderr
    assert not (tmp_path / "out.zip").exists()
    packed = mdl(
        "pack", str(run), "--checkpoint", "latest", "-o", str(tmp_path / "out.zip"), "--json"
    )
    assert packed.exit_code == 0, packed.stderr
    assert json.loads(packed.stdout)["checkpoint"] == "checkpoint-1500"


def test_an_exclude_that_leaves_out_the_weights_is_named_not_the_run(tmp_path: Path) -> None:
    """Found by a hostile user (round 33): ``--exclude model.safetensors`` on a run that has its
    final model was told "the run has no final model"; the culprit is the exclude."""
    run = make_hf_run(tmp_path / "run", steps=(500, 1000)).root
    for pattern in ("model.safetensors", "*.safetensors"):
        result = mdl("pack", str(run), "--exclude", pattern, "-o", str(tmp_path / "out.zip"))
        assert result.exit_code == 2
        assert f"--exclude '{pattern}' leaves out the weights of run" in result.stderr
        assert "'model.safetensors'" in result.stderr and "no final model" not in result.stderr
        assert not (tmp_path / "out.zip").exists()
    # an exclude of something else still packs the run
    kept = mdl("pack", str(run), "--exclude", "config.json", "-o", str(tmp_path / "out.zip"))
    assert kept.exit_code == 0, kept.stderr


def test_misspelt_checkpoint_and_missing_step_on_the_command_line(tmp_path: Path) -> None:
    run = checkpoint_only_run(tmp_path)
    typo = mdl("pack", str(run), "--checkpoint", "lastest", "--dry-run")
    assert typo.exit_code == 2 and "did you mean latest?" in typo.stderr
    step = mdl("pack", str(run), "--checkpoint", "step:1200", "--dry-run")
    assert step.exit_code == 2
    assert (
        "steps present: 500, 1000, 1500" in step.stderr and "did you mean step:1000?" in step.stderr
    )
