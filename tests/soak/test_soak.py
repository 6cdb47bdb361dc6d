"""The soak (bench/soak.py) as a test: opt-in only, it takes minutes. Run with `MDL_SOAK=1 pytest
-m soak`.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Decided at import: the autouse fixture in tests/conftest.py drops MDL_* variables before each test
# runs.
pytestmark = [
    pytest.mark.soak,
    pytest.mark.skipif(
        os.environ.get("MDL_SOAK") != "1", reason="soak test: set MDL_SOAK=1 to run it (minutes)"
    ),
]
RUNS = os.environ.get("MDL_SOAK_RUNS", "60")


def test_soak_leaves_nothing_corrupted_or_stray(tmp_path: Path) -> None:
    report = tmp_path / "SOAK.md"
    command = [
        sys.executable,
        str(ROOT / "bench" / "soak.py"),
        "--runs",
        RUNS,
        "--time-limit",
        "240",
    ]
    done = subprocess.run(
        [*command, "--report", str(report)], capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    text = report.read_text()
    assert "| files corrupted | 0 |" in text
    assert "| stray files left | 0 |" in text
