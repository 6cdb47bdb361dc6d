"""MDL_DEBUG is read by the settings table's one boolean rule (mdl.setting.ON, OFF), as every other
switch: 1, true, yes, on let an internal error's traceback through; 0, false, no, off (and unset)
do not; anything else is exit 2 naming it when a command starts (as uv and pip refuse a boolean
variable they cannot read), before it could surprise anyone."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from zygote import forked_mdl

from mdl.cli.run import Exit, Run, guarded
from mdl.cli.translate import translate


@pytest.mark.parametrize("text", ["0", "false", "no", "off", " False ", ""])
def test_a_false_mdl_debug_keeps_the_traceback_in(
    text: str, capsys: pytest.CaptureFixture[str]
) -> None:
    run = Run(command="pull", environ={"MDL_DEBUG": text})
    assert translate(RuntimeError("a bug"), run) == 1
    assert "internal error: RuntimeError: a bug" in capsys.readouterr().err


@pytest.mark.parametrize("text", ["1", "true", "yes", "on", "TRUE"])
def test_a_true_mdl_debug_lets_the_traceback_through(text: str) -> None:
    run = Run(command="pull", environ={"MDL_DEBUG": text})
    with pytest.raises(RuntimeError, match="a bug"):
        translate(RuntimeError("a bug"), run)


def test_a_wrong_mdl_debug_is_a_usage_error_when_a_command_starts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stderr = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stderr)
    run = Run(command="list", environ={"MDL_DEBUG": "garbage"})
    ran = []
    with pytest.raises(Exit) as ended, guarded(run):
        ran.append(True)
    assert ended.value.exit_code == 2 and not ran
    assert "$MDL_DEBUG: expected 1, true, yes, on or 0, false, no, off, got 'garbage'" in (
        stderr.getvalue()
    )


@pytest.mark.slow
def test_mdl_debug_false_from_the_shell(tmp_path: Path) -> None:
    env = {**os.environ, "MDL_LOG_FILE": str(tmp_path / "mdl.log")}
    for text, code in (("false", 0), ("0", 0), ("garbage", 2)):
        done = subprocess.run(
            [forked_mdl(), "list", "--catalog", str(tmp_path / "none.toml")],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env={**env, "MDL_DEBUG": text},
            timeout=60,
        )
        assert done.returncode == 2, (text, done.stderr)  # no such catalog, or MDL_DEBUG itself
        assert ("MDL_DEBUG" in done.stderr) == (code == 2), (text, done.stderr)
