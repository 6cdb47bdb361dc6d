"""Choosing checkpoints: NAME, latest, best, step:N, completeness, and the quirks of the
trainers' output folders.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest
from runfixtures import (
    make_hf_run,
    make_kohya_run,
    make_lightning_run,
    safetensors_bytes,
    write,
    write_json,
)

from mdl.archive._checkpoints import safetensors_problem, select_checkpoint
from mdl.errors import ExitCode, UsageError


def test_latest_is_the_highest_complete_step_and_says_what_it_skipped(tmp_path: Path) -> None:
    run = make_hf_run(tmp_path / "run", steps=(100, 200, 300, 400), sharded=(300,))
    # checkpoint-400 crashed mid-save: its weights are cut short.
    weights = run.ckpt("checkpoint-400") / "model.safetensors"
    os.truncate(weights, weights.stat().st_size - 100)
    (run.root / "tmp-checkpoint-500").mkdir()
    chosen = select_checkpoint(run.root, "latest")
    assert chosen.checkpoint == "checkpoint-300"
    assert chosen.root == run.ckpt("checkpoint-300")
    reasons = {s.checkpoint: s.reason for s in chosen.skipped}
    assert set(reasons) == {"checkpoint-400", "tmp-checkpoint-500"}
    assert (
        "model.safetensors" in reasons["checkpoint-400"]
        and "truncated" in reasons["checkpoint-400"]
    )
    assert "interrupted" in reasons["tmp-checkpoint-500"]


def test_latest_orders_by_step_number_not_by_name_or_mtime(tmp_path: Path) -> None:
    run = make_hf_run(tmp_path / "run", steps=(9, 10, 100))
    os.utime(run.ckpt("checkpoint-9"), (4_000_000_000, 4_000_000_000))  # newest mtime, lowest step
    assert select_checkpoint(run.root, "latest").checkpoint == "checkpoint-100"


def test_a_missing_shard_makes_a_checkpoint_incomplete(tmp_path: Path) -> None:
    run = make_hf_run(tmp_path / "run", steps=(100, 200), sharded=(200,))
    (run.ckpt("checkpoint-200") / "model-00002-of-00002.safetensors").unlink()
    chosen = select_checkpoint(run.root, "latest")
    assert chosen.checkpoint == "checkpoint-100"
    assert "model-00002-of-00002.safetensors" in chosen.skipped[0].reason
    with pytest.raises(UsageError, match=r"checkpoint-200.*incomplete.*model-00002-of-00002"):
        select_checkpoint(run.root, "checkpoint-200")


def test_a_weight_map_naming_a_path_outside_is_never_followed(tmp_path: Path) -> None:
    run = make_hf_run(tmp_path / "run", steps=(100, 200), sharded=(200,))
    write(tmp_path / "secret.safetensors", safetensors_bytes({"w": 8}))
    write_json(
        run.ckpt("checkpoint-200") / "model.safetensors.index.json",
        {"weight_map": {"w": "../secret.safetensors"}},
    )
    chosen = select_checkpoint(run.root, "latest")
    assert chosen.checkpoint == "checkpoint-100"
    assert "../secret.safetensors" in chosen.skipped[0].reason
    with pytest.raises(UsageError, match=r"unsafe shard path '\.\./secret\.safetensors'"):
        select_checkpoint(run.root, "checkpoint-200")


def test_best_uses_the_basename_of_a_stale_absolute_path_and_reports_the_metric(
    tmp_path: Path,
) -> None:
    run = make_hf_run(tmp_path / "run", steps=(100, 200, 300), best_step=200)
    chosen = select_checkpoint(run.root, "best")
    assert chosen.checkpoint == "checkpoint-200"
    assert chosen.metric == 0.25
    assert "/data/old-machine/outputs/run/checkpoint-200" in chosen.reason
    assert "checkpoint-300/trainer_state.json" in chosen.reason  # the newest state, by step


def test_best_reads_the_trainer_state_with_the_highest_step_not_the_newest_file(
    tmp_path: Path,
) -> None:
    run = make_hf_run(tmp_path / "run", steps=(100, 200), best_step=100)
    stale = {"global_step": 100, "best_model_checkpoint": "out/checkpoint-200", "best_metric": 9.0}
    write_json(run.ckpt("checkpoint-100") / "trainer_state.json", stale)
    os.utime(run.ckpt("checkpoint-100") / "trainer_state.json", (4_000_000_000, 4_000_000_000))
    assert select_checkpoint(run.root, "best").checkpoint == "checkpoint-100"


def test_best_falls_back_to_best_global_step(tmp_path: Path) -> None:
    run = make_hf_run(tmp_path / "run", steps=(100, 200))
    write_json(
        run.root / "trainer_state.json",
        {"global_step": 200, "best_global_step": 200, "best_metric": 0.1},
    )
    chosen = select_checkpoint(run.root, "best")
    assert chosen.checkpoint == "checkpoint-200"
    assert "best_global_step 200" in chosen.reason


@pytest.mark.parametrize(
    "recorded", ["/etc", "../../x", "/tmp/other-run/checkpoint-999", "C:\\runs\\oops"]
)
def test_best_model_checkpoint_that_names_no_checkpoint_in_the_run_is_refused(
    tmp_path: Path, recorded: str
) -> None:
    run = make_hf_run(tmp_path / "run", steps=(100, 200), best_path=recorded)
    with pytest.raises(UsageError) as err:
        select_checkpoint(run.root, "best")
    assert repr(recorded) in err.value.message
    assert err.value.exit_code == ExitCode.USAGE


def test_step_n_matches_numbers_not_spellings(tmp_path: Path) -> None:
    run = make_hf_run(tmp_path / "run", steps=(100,))
    run.ckpt("checkpoint-100").rename(run.root / "checkpoint-0100")
    chosen = select_checkpoint(run.root, "step:100")
    assert chosen.checkpoint == "checkpoint-0100"
    with pytest.raises(UsageError, match=r"no checkpoint for step 5 \(steps present: 100\)"):
        select_checkpoint(run.root, "step:5")
    with pytest.raises(UsageError, match="ASCII digits"):
        select_checkpoint(run.root, "step:１００")


def test_two_names_for_one_step_is_an_error(tmp_path: Path) -> None:
    run = make_hf_run(tmp_path / "run", steps=(7,))
    make_hf_run(tmp_path / "other", steps=(7,)).ckpt("checkpoint-7").rename(
        run.root / "checkpoint-007"
    )
    with pytest.raises(UsageError, match=r"'checkpoint-007' and 'checkpoint-7' are both step 7"):
        select_checkpoint(run.root, "latest")


def test_full_width_digits_are_not_a_checkpoint(tmp_path: Path) -> None:
    run = make_hf_run(tmp_path / "run", steps=(100,))
    make_hf_run(tmp_path / "other", steps=(5,)).ckpt("checkpoint-5").rename(
        run.root / "checkpoint-００５"
    )
    assert select_checkpoint(run.root, "latest").checkpoint == "checkpoint-100"
    with pytest.raises(UsageError, match="not a checkpoint name"):
        select_checkpoint(run.root, "checkpoint-００５")


@pytest.mark.parametrize(
    "spec", ["../run/checkpoint-100", "checkpoint-100/model.safetensors", "/etc", ".."]
)
def test_a_checkpoint_name_is_never_a_path(tmp_path: Path, spec: str) -> None:
    run = make_hf_run(tmp_path / "run", steps=(100,))
    with pytest.raises(UsageError, match=r"not a path|not a checkpoint name"):
        select_checkpoint(run.root, spec)


def test_named_checkpoint_with_a_trailing_slash_and_unknown_names(tmp_path: Path) -> None:
    run = make_hf_run(tmp_path / "run", steps=(100,))
    (run.root / "tmp-checkpoint-200").mkdir()
    assert select_checkpoint(run.root, "checkpoint-100/").checkpoint == "checkpoint-100"
    with pytest.raises(UsageError, match="temporary folder"):
        select_checkpoint(run.root, "tmp-checkpoint-200")
    with pytest.raises(UsageError, match="no checkpoint 'checkpoint-999'"):
        select_checkpoint(run.root, "checkpoint-999")


def test_no_complete_checkpoint_lists_every_reason(tmp_path: Path) -> None:
    run = make_hf_run(tmp_path / "run", steps=(100,))
    (run.ckpt("checkpoint-100") / "model.safetensors").unlink()
    with pytest.raises(UsageError, match=r"no complete checkpoint.*checkpoint-100: no weights"):
        select_checkpoint(run.root, "latest")


def test_lightning_steps_and_last_ckpt(tmp_path: Path) -> None:
    run = make_lightning_run(tmp_path / "pl")
    latest = select_checkpoint(run.root, "latest")
    assert (latest.checkpoint, latest.single_file) == ("epoch=1-step=200.ckpt", True)
    assert select_checkpoint(run.root, "step:100").checkpoint == "epoch=0-step=100.ckpt"
    assert select_checkpoint(run.root, "last.ckpt").root == run.root / "checkpoints" / "last.ckpt"


def test_kohya_epochs(tmp_path: Path) -> None:
    run = make_kohya_run(tmp_path / "lora")
    assert select_checkpoint(run.root, "latest").checkpoint == "style-000002.safetensors"


def test_accelerate_nested_checkpoints(tmp_path: Path) -> None:
    root = tmp_path / "acc"
    for i in (0, 1):
        write(
            root / "checkpoints" / f"checkpoint_{i}" / "model.safetensors",
            safetensors_bytes({"w": 64}, seed=str(i)),
        )
        write(root / "checkpoints" / f"checkpoint_{i}" / "optimizer.bin", b"state")
    assert select_checkpoint(root, "latest").root == root / "checkpoints" / "checkpoint_1"


def test_safetensors_consistency(tmp_path: Path) -> None:
    good = write(
        tmp_path / "good.safetensors",
        safetensors_bytes({"a": 10, "b": 6}, metadata={"format": "pt"}),
    )
    assert safetensors_problem(good) is None
    long = write(tmp_path / "long.safetensors", safetensors_bytes({"a": 10}) + b"extra")
    assert "should end at byte" in (safetensors_problem(long) or "")
    huge = write(tmp_path / "huge.safetensors", struct.pack("<Q", 1 << 40) + b"{}")
    assert "does not fit" in (safetensors_problem(huge) or "")
    notjson = write(tmp_path / "nj.safetensors", struct.pack("<Q", 4) + b"\xff\xfe{[")
    assert safetensors_problem(notjson) == "header is not JSON"
    tiny = write(tmp_path / "tiny.safetensors", b"abc")
    assert "no header" in (safetensors_problem(tiny) or "")
    bad = write(
        tmp_path / "bad.safetensors",
        struct.pack("<Q", 40) + b'{"w": {"data_offsets": [5, 1]}}'.ljust(40),
    )
    assert "bad data_offsets" in (safetensors_problem(bad) or "")


def test_steps_are_listed_numerically_and_the_nearest_is_suggested(tmp_path: Path) -> None:
    run = make_hf_run(tmp_path / "run", steps=(500, 1000, 1500))
    with pytest.raises(UsageError, match=r"steps present: 500, 1000, 1500\)") as err:
        select_checkpoint(run.root, "step:700")
    assert err.value.hint == "did you mean step:500?"
    (run.ckpt("checkpoint-1500") / "model.safetensors").unlink()
    with pytest.raises(UsageError, match=r"checkpoint-1500.*incomplete"):
        select_checkpoint(run.root, "step:1500")
    chosen = select_checkpoint(run.root, "latest")
    assert chosen.checkpoint == "checkpoint-1000" and [s.checkpoint for s in chosen.skipped] == [
        "checkpoint-1500"
    ]


@pytest.mark.parametrize(
    ("spec", "hint"),
    [
        ("lastest", "did you mean latest?"),
        ("bset", "did you mean best?"),
        ("checkpoint-1001", "did you mean checkpoint-1000?"),
    ],
)
def test_a_misspelt_checkpoint_gets_did_you_mean(tmp_path: Path, spec: str, hint: str) -> None:
    run = make_hf_run(tmp_path / "run", steps=(500, 1000))
    with pytest.raises(UsageError) as err:
        select_checkpoint(run.root, spec)
    assert err.value.hint == hint
    assert err.value.exit_code == ExitCode.USAGE
