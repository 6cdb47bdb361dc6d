"""The repository holds source, docs and tests only: no model file or mdl state that a run in its
folder left behind (a 90-byte HTML page named ``style.safetensors`` and its ``.mdl/get.json`` were
committed once)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path, PurePosixPath

import pytest

ROOT = Path(__file__).parents[1]
MODEL_SUFFIXES = {
    ".safetensors",
    ".gguf",
    ".bin",
    ".ckpt",
    ".pt",
    ".pth",
    ".onnx",
    ".h5",
    ".msgpack",
}


def tracked_files() -> list[str]:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    done = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "-z"], capture_output=True, check=False, timeout=60
    )
    if done.returncode != 0:
        pytest.skip(f"git ls-files failed: {done.stderr.decode(errors='replace')}")
    return [name for name in done.stdout.decode().split("\0") if name]


def stray(names: list[str]) -> list[str]:
    """Model files and mdl's own state outside tests/ and bench/ (fixtures there are made by
    code, not committed).
    """
    found = []
    for name in names:
        path = PurePosixPath(name)
        if path.parts[0] in ("tests", "bench"):
            continue
        if path.suffix.lower() in MODEL_SUFFIXES or ".mdl" in path.parts:
            found.append(name)
    return found


def test_no_model_file_or_mdl_state_is_committed() -> None:
    assert stray(tracked_files()) == []


def test_the_check_finds_what_was_committed_once() -> None:
    assert stray(["style.safetensors", ".mdl/get.json", "mdl/cli/app.py", "tests/x.bin"]) == [
        "style.safetensors",
        ".mdl/get.json",
    ]
