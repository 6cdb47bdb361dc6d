"""The suite on a busy machine (issue 59, J): a run cut short names what failed as it failed, and
leaves no server it started running."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from seaweed import weed_binary

pytestmark = pytest.mark.slow  # whole pytest runs in subprocesses

TESTS = Path(__file__).resolve().parent
SAFETY_NET = 600  # seconds: only a broken run waits this long


def test_a_cut_quiet_run_names_the_failure_it_had(tmp_path: Path) -> None:
    # the second test ends the run as `timeout -s KILL` would: no summary is ever printed
    (tmp_path / "test_cut.py").write_text(
        "import os, signal\n"
        "def test_broken():\n    assert 1 == 2\n"
        "def test_cut():\n    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "conftest"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), *sys.path])},
        capture_output=True,
        text=True,
        timeout=SAFETY_NET,
    )
    assert done.returncode == -signal.SIGKILL, done.stdout + done.stderr
    assert "FAILED test_cut.py::test_broken" in done.stdout, done.stdout


CTRL_C_TESTS = """\
import os, signal, subprocess, sys

def test_this_process_hears_ctrl_c():
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler

def test_a_child_hears_ctrl_c():
    kill = "import os, signal, time; os.kill(os.getpid(), signal.SIGINT); time.sleep(60)"
    assert subprocess.run([sys.executable, "-c", kill], timeout=120).returncode == -signal.SIGINT
"""


@pytest.mark.parametrize("workers", ["0", "2"])
def test_a_run_begun_with_ctrl_c_ignored_says_so_once_and_its_ctrl_c_tests_pass(
    tmp_path: Path, workers: str
) -> None:
    """``nohup pytest … &`` starts the run with SIGINT ignored, which every child inherits: the
    Ctrl-C tests pass all the same (under xdist too), and the run says once, at its start, why."""
    (tmp_path / "test_ctrl_c.py").write_text(CTRL_C_TESTS)
    run = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "conftest"]
    done = subprocess.run(
        [*run, "-n", workers],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), *sys.path])},
        capture_output=True,
        text=True,
        timeout=SAFETY_NET,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),  # as nohup … & does
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("began with Ctrl-C (SIGINT) ignored") == 1, done.stdout
    assert done.stdout.index("began with Ctrl-C") < done.stdout.index("2 passed")


STARTS_WEED = """\
import os, pathlib, sys
from seaweed import start_weed
server = start_weed(pathlib.Path(sys.argv[1]))
print(server.process.pid, flush=True)
os.kill(os.getpid(), 9)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux's parent-death signal")
@pytest.mark.skipif(weed_binary() is None, reason="SeaweedFS's weed is not installed")
def test_a_seaweed_server_dies_with_the_process_that_started_it(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", STARTS_WEED, str(tmp_path)],
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), *sys.path])},
        capture_output=True,
        text=True,
        timeout=SAFETY_NET,
    )
    assert done.returncode == -signal.SIGKILL, done.stderr
    weed = int(done.stdout)
    deadline = time.monotonic() + SAFETY_NET
    while _alive(weed):
        if time.monotonic() > deadline:
            os.kill(weed, signal.SIGKILL)
            pytest.fail(f"weed {weed} outlived the process that started it")
        time.sleep(0.1)


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie is gone: its parent was init, which reaps it)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"
