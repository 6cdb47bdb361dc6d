"""A name with a newline (a file in the run, a path argument, a --checkpoint value, a shard an
index names) never reaches stderr raw from pack or unpack: quoted with its control characters
escaped, one line, never a forged one (docs/output.md)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from runfixtures import make_hf_run, write
from runfixtures import mdl as run_mdl
from terminal import unstamped

FORGED = "2026-11-30T00:00:00Z [1] mdl: FORGED"
HOSTILE = f"a\n{FORGED}\tz"
ESCAPED = repr(HOSTILE)[1:-1]  # inside its quotes, with the path around it


@pytest.fixture
def run_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MDL_LOG_FILE", str(tmp_path / "mdl.log"))
    return make_hf_run(tmp_path / "run", steps=(100, 200)).root


def said(*args: str, code: int | None = None) -> list[str]:
    """stderr of ``mdl ARGS``, a line each (every one stamped: none forged), and that HOSTILE was
    shown escaped on one of them."""
    result = run_mdl(*args)
    if code is not None:
        assert result.exit_code == code, result.stderr
    lines = unstamped(result.stderr)
    assert not [line for line in lines if line.startswith(FORGED[:20])], result.stderr
    assert [line for line in lines if ESCAPED in line], result.stderr
    return lines


def test_a_file_of_the_run(run_dir: Path) -> None:
    write(run_dir / HOSTILE, "x")
    said("pack", str(run_dir), "-o", "out.zip", code=2)


def test_a_file_a_profile_leaves_out(run_dir: Path) -> None:
    """Left out files are never refused for their names: the `left out` line lists them."""
    write(run_dir / "checkpoint-200" / f"optimizer.{HOSTILE}", "x")
    said("pack", str(run_dir), "--checkpoint", "latest", "-o", "out.zip", "--dry-run", code=0)


def test_a_fifo_of_the_run(run_dir: Path) -> None:
    """Skipped (and said) before its name is checked: special files are never packed."""
    os.mkfifo(run_dir / "checkpoint-200" / HOSTILE)
    said("pack", str(run_dir), "--checkpoint", "latest", "-o", "out.zip", code=0)


def test_a_shard_an_index_names(run_dir: Path) -> None:
    index = run_dir / "checkpoint-200" / "model.safetensors.index.json"
    write(index, json.dumps({"weight_map": {"w": HOSTILE}}))
    said("pack", str(run_dir), "--checkpoint", "checkpoint-200", code=2)


@pytest.mark.parametrize(
    "args",
    [["pack", HOSTILE], ["pack", "run", "--checkpoint", HOSTILE], ["unpack", HOSTILE]],
    ids=["run folder", "checkpoint", "archive"],
)
def test_an_argument(run_dir: Path, args: list[str]) -> None:
    said(*args, code=2)


def test_a_destination_that_is_a_file(run_dir: Path) -> None:
    assert run_mdl("pack", str(run_dir), "--checkpoint", "latest", "-o", "out.zip").exit_code == 0
    write(run_dir.parent / HOSTILE, "x")
    said("unpack", "out.zip", "-d", HOSTILE)
