"""Issue 37: ``pack --with-logs`` takes the logs where runs keep them (``*.log``, ``progress.json``,
``metrics*.json``, ``trainer_state.json`` at the top, all of ``logs/``, TensorBoard's
``runs/**/events.out.tfevents.*``), says what it took and warns when there are none; ``--include``
matches inside folders as git and rsync do and adds to the chosen checkpoint, never replaces it;
``--exclude`` still wins; a pattern matching nothing is still exit 2."""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import Any

import pytest
from runfixtures import RecordingProgress, make_hf_run, mdl, write

from mdl.archive.collect import glob_matches
from mdl.archive.packer import PackOptions, PackResult, pack_run
from mdl.errors import UsageError


def pack(root: Path, run: str = "run", **kwargs: Any) -> tuple[PackResult, RecordingProgress]:
    progress = RecordingProgress()
    options = PackOptions(run_dir=Path(run), output=kwargs.pop("output", None), cwd=root, **kwargs)
    return pack_run(options, progress=progress), progress


def bare_run(root: Path) -> Path:
    """An HF run whose own top holds no log at all (the fixture's training.log, progress.json...
    removed).
    """
    run = make_hf_run(root / "run", steps=(100, 200)).root
    for name in ("training.log", "progress.json", "all_results.json"):
        (run / name).unlink()
    return run


def test_logs_under_logs_and_tensorboard_runs_are_taken_and_listed(tmp_path: Path) -> None:
    run = bare_run(tmp_path)
    write(run / "logs" / "training.log", "step 1 loss 2\n")
    write(run / "logs" / "eval" / "metrics.csv", "step,loss\n1,2\n")
    write(run / "runs" / "Nov25_10-00" / "events.out.tfevents.1732500000.host.1.0", b"\x00tb")
    write(run / "runs" / "Nov25_10-00" / "hparams.yaml", "lr: 1\n")  # not an event file: not a log
    os.symlink("/etc/hostname", run / "runs" / "stray-link")  # never resolved: not asked for
    write(run / "metrics_eval.json", "{}")
    write(run / "trainer_state.json", "{}")
    result, progress = pack(tmp_path, checkpoint="latest", with_logs=True)
    names = {f.path for f in result.files}
    taken = {
        "logs/training.log",
        "logs/eval/metrics.csv",
        "logs/runs/Nov25_10-00/events.out.tfevents.1732500000.host.1.0",
        "logs/metrics_eval.json",
        "logs/trainer_state.json",
    }
    assert taken <= names and "model.safetensors" in names
    assert not any("hparams" in name or "stray-link" in name for name in names)
    assert {f.role for f in result.files if f.path in taken} == {"logs"}
    [listed] = [note for note in progress.notes if note.startswith("--with-logs:")]
    assert "5 log files" in listed and all(name in listed for name in taken)
    assert listed in result.notes


def test_with_logs_warns_when_the_run_has_none(tmp_path: Path) -> None:
    bare_run(tmp_path)
    result, progress = pack(tmp_path, checkpoint="latest", with_logs=True)
    assert not any(f.path.startswith("logs/") for f in result.files)
    assert any("no logs found" in note and "logs/" in note for note in progress.notes)


def test_the_cli_lists_the_logs_and_warns_on_stderr(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    run = bare_run(tmp_path)
    write(run / "logs" / "training.log", "x\n")
    took = mdl("pack", str(run), "--checkpoint", "latest", "--with-logs", "-o", "a.zip")
    assert took.exit_code == 0, took.stderr
    assert "--with-logs: 1 log file: logs/training.log" in took.stderr
    (run / "logs" / "training.log").unlink()
    none = mdl("pack", str(run), "--checkpoint", "latest", "--with-logs", "-o", "b.zip", "--json")
    assert none.exit_code == 0, none.stderr
    assert "no logs found" in none.stderr and json.loads(none.stdout)["files"]


@pytest.mark.parametrize("pattern", ["logs/*", "logs", "logs/", "**/*.log", "*.log", "logs/**"])
def test_include_adds_files_inside_folders_to_the_checkpoint(tmp_path: Path, pattern: str) -> None:
    run = bare_run(tmp_path)
    write(run / "logs" / "training.log", "step 1\n")
    result, _ = pack(tmp_path, checkpoint="latest", includes=(pattern,))
    names = {f.path for f in result.files}
    assert "logs/training.log" in names
    assert {"model.safetensors", "config.json"} <= names  # the checkpoint's weights are still there
    with zipfile.ZipFile(tmp_path / "run-checkpoint-200.zip") as zf:
        assert zf.read("run-checkpoint-200/logs/training.log") == b"step 1\n"


def test_include_takes_files_of_the_run_at_any_depth_and_exclude_wins(tmp_path: Path) -> None:
    run = bare_run(tmp_path)
    write(run / "train.log", "top\n")
    write(run / "logs" / "a" / "deep.log", "deep\n")
    write(run / "logs" / "debug.log", "noisy\n")
    result, _ = pack(
        tmp_path, checkpoint="latest", includes=("**/*.log", "*.json"), excludes=("logs/debug.log",)
    )
    paths = [f.path for f in result.files]
    assert len(paths) == len(set(paths))  # a checkpoint file the pattern takes again is packed once
    names = set(paths)
    assert {"train.log", "logs/a/deep.log", "model.safetensors"} <= names
    assert "logs/debug.log" not in names
    with pytest.raises(UsageError, match=r"--include 'nothing/\*' matches no file"):
        pack(tmp_path, checkpoint="latest", includes=("nothing/*",))


def test_an_include_of_another_checkpoints_file_is_named_by_its_run_path(tmp_path: Path) -> None:
    bare_run(tmp_path)
    result, _ = pack(tmp_path, checkpoint="latest", includes=("checkpoint-100/trainer_state.json",))
    names = {f.path for f in result.files}
    assert {"checkpoint-100/trainer_state.json", "trainer_state.json", "model.safetensors"} <= names


def test_the_cli_include_keeps_the_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    run = bare_run(tmp_path)
    write(run / "logs" / "training.log", "x\n")
    done = mdl("pack", str(run), "--checkpoint", "latest", "--include", "logs/*", "--json")
    assert done.exit_code == 0, done.stderr
    roles = {f["path"]: f["role"] for f in json.loads(done.stdout)["files"]}
    assert roles["logs/training.log"] == "logs" and roles["model.safetensors"] == "weights"
    missing = mdl("pack", str(run), "--checkpoint", "latest", "--include", "logz/*", "-o", "x.zip")
    assert missing.exit_code == 2 and "logz/*" in missing.stderr


@pytest.mark.parametrize(
    ("path", "pattern", "expected"),
    [
        ("logs/training.log", "logs/*", True),
        # the folder logs/a matches: all of it is taken, as git does
        ("logs/a/b.log", "logs/*", True),
        ("a.log", "**/*.log", True),
        ("x/y/a.log", "**/*.log", True),
        ("x/y/a.log", "*.log", True),  # no slash: any depth
        ("x/logs/a.log", "logs/*", False),  # a slash anchors at the top
        ("x/logs/a.log", "logs/", True),  # a folder name at any depth
        ("logs", "logs/", False),  # a file named logs is no folder
        ("empty/", "empty/", True),
        ("checkpoint-1/config.json", "checkpoint-?/config.json", True),
        ("checkpoint-12/config.json", "checkpoint-?/config.json", False),
        ("a/b.txt", "/b.txt", False),
        ("b.txt", "/b.txt", True),
        ("model-1.bin", "model-[0-9].bin", True),
        ("model-x.bin", "model-[!0-9].bin", True),
    ],
)
def test_glob_rules(path: str, pattern: str, expected: bool) -> None:
    assert glob_matches(path, pattern) is expected


def test_a_whole_run_archive_says_which_logs_it_holds(tmp_path: Path) -> None:
    make_hf_run(tmp_path / "run", steps=(100,))
    result, progress = pack(tmp_path, checkpoint=None, with_logs=True)
    [listed] = [note for note in progress.notes if note.startswith("--with-logs:")]
    assert "holds them already" in listed and "training.log" in listed and "progress.json" in listed
    assert "training.log" in {f.path for f in result.files}
