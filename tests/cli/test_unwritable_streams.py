"""stdout or stderr that cannot be written (a full disk under a cron log, closed at start): lines for
people never stop the work, and data that cannot be written is exit 7, said on stderr; never exit 1
or a traceback. Real processes (the shell's redirections), forked from the suite's zygote; one
whose stdio is closed at start is an interpreter's own (the zygote hands a child its stdio)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from servers import CdnServer, make_data
from zygote import forked_mdl

DATA = make_data(200_000, seed=74)
FULL = "/dev/full"

pytestmark = pytest.mark.skipif(not Path(FULL).exists(), reason="needs /dev/full (Linux)")


def shell(line: str, cwd: Path, *, closed: bool = False) -> subprocess.CompletedProcess[str]:
    """``line`` run by sh, ``"$@"`` the suite's forked ``mdl`` (``closed``: ``python -m mdl``)."""
    mdl = [sys.executable, "-m", "mdl"] if closed else [str(forked_mdl())]
    return subprocess.run(
        ["sh", "-c", line, "sh", *mdl],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("stderr", ["2>/dev/full", "2>&-"], ids=["full", "closed"])
def test_a_get_whose_stderr_fails_fetches_the_file(
    cdn: CdnServer, tmp_path: Path, stderr: str
) -> None:
    url = cdn.add_file("/m/model.bin", DATA)
    closed = stderr == "2>&-"
    done = shell(f'"$@" get {url} -d out {stderr}; echo "exit $?"', tmp_path, closed=closed)
    assert done.stdout.splitlines()[-1] == "exit 0", done.stdout
    assert (tmp_path / "out" / "model.bin").read_bytes() == DATA
    assert done.stdout.splitlines()[0] == str(tmp_path / "out" / "model.bin")


def test_a_failing_get_whose_stderr_fails_keeps_its_own_code(
    cdn: CdnServer, tmp_path: Path
) -> None:
    done = shell(f'"$@" get {cdn.url}/m/none.bin -d out 2>/dev/full; echo "exit $?"', tmp_path)
    assert done.stdout.splitlines()[-1] == "exit 4", done.stdout


@pytest.mark.parametrize("args", ["list", "list --json", "show m --json", "--version", "--help"])
def test_data_stdout_cannot_take_is_exit_7_said_on_stderr(
    cdn: CdnServer, tmp_path: Path, args: str
) -> None:
    url = cdn.add_file("/m/model.bin", DATA)
    (tmp_path / "catalog.toml").write_text(f'[models.m]\nfiles = [{{ url = "{url}" }}]\n')
    done = shell(f'"$@" {args} >/dev/full', tmp_path)
    assert done.returncode == 7, done.stderr
    assert "mdl: error: no space left on device" in done.stderr
    assert "Traceback" not in done.stderr and "internal error" not in done.stderr


def test_a_pull_with_stdout_closed_at_start_installs_and_writes_into_no_file(
    cdn: CdnServer, tmp_path: Path
) -> None:
    url = cdn.add_file("/m/model.bin", DATA)
    (tmp_path / "catalog.toml").write_text(f'[models.m]\nfiles = [{{ url = "{url}" }}]\n')
    done = shell('"$@" pull m --dest models >&-', tmp_path, closed=True)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "models" / "m" / "model.bin").read_bytes() == DATA  # (nothing written in)


def test_unpack_of_a_stdin_closed_at_start_is_an_empty_stdin(tmp_path: Path) -> None:
    done = shell('"$@" unpack - -d out <&-', tmp_path, closed=True)
    assert done.returncode == 2, done.stderr
    assert "stdin is empty" in done.stderr and "Traceback" not in done.stderr


def test_a_ctrl_c_past_the_translator_is_130_said_in_one_line(tmp_path: Path) -> None:
    """A Ctrl-C as the command ends (or one mdl.cli.swallowed sent again) lands after the one
    translator: still exit 130, one line, no traceback. (Its own interpreter: the end is
    os._exit.)"""
    script = (
        "import sys\n"
        "import mdl.cli.run\n"
        "def late(app): raise KeyboardInterrupt  # (as if the translator had ended: past it)\n"
        "mdl.cli.run.invoke = late\n"
        "sys.argv = ['mdl', '--version']\n"
        "from mdl.__main__ import main\n"
        "main()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 130, done.stderr
    assert done.stderr.strip().endswith("mdl: error: interrupted"), done.stderr
    assert "Traceback" not in done.stderr
