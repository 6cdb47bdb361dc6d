"""The README's crontab job, run as cron runs it (its `\\%` made `%`, /bin/sh, stdout and stderr
appended to one log): every line of the log has a time stamp and the lines stand in the order things
happened (issue 50, F); and stdout's data lines, when a log takes them too, come before the summary
that follows them."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from servers import HubServer, make_data

ROOT = Path(__file__).parents[2]
TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ ")
README_JOB = re.search(
    r"^```cron\n(?:.*\n)*?(\S+ \S+ \S+ \S+ \S+ +(.*))\n", (ROOT / "README.md").read_text(), re.M
)


def run_as_cron(command: str, env: dict[str, str]) -> int:
    """What cron does with a job's command: a `\\%` becomes `%`, the rest goes to /bin/sh as it
    is.
    """
    return subprocess.run(
        ["/bin/sh", "-c", command.replace("\\%", "%")], env=env, timeout=300, check=False
    ).returncode


def mdl_on_path(folder: Path) -> str:
    folder.mkdir()
    script = folder / "mdl"
    script.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m mdl "$@"\n')
    script.chmod(0o755)
    return f"{folder}{os.pathsep}{os.environ['PATH']}"


@pytest.mark.slow
def test_the_readme_cron_job_logs_every_line_stamped_and_in_order(
    hub: HubServer, tmp_path: Path
) -> None:
    assert README_JOB is not None
    log = tmp_path / "mdl-cron.log"
    command = README_JOB[2].replace("/var/log/mdl-cron.log", str(log))
    hub.add_repo("org/tiny", {"config.json": b"{}", "model.bin": make_data(50_000, seed=71)})
    catalog = tmp_path / "catalog.toml"
    catalog.write_text('[models.tiny]\nrepo = "org/tiny"\n')
    env = {**os.environ, "PATH": mdl_on_path(tmp_path / "bin"), "HF_ENDPOINT": hub.url}
    env.pop("PYTHONUNBUFFERED", None)  # cron sets no such thing
    env |= {
        "MDL_CATALOG": str(catalog),
        "MDL_DEST": str(tmp_path / "models"),
        "MDL_LOG_FILE": str(tmp_path / "l"),
    }
    assert run_as_cron(command, env) == 0
    catalog.write_text(catalog.read_text() + '[models.gone]\nrepo = "org/gone"\n')
    assert run_as_cron(command, env) == 0  # the job's own exit: its failure is in the log
    lines = log.read_text().splitlines()
    assert lines, "nothing logged"
    assert [line for line in lines if not TIME.match(line)] == [], log.read_text()
    said = [TIME.sub("", line) for line in lines]
    assert said[0].startswith("[") and "pulled 1 model" in said[0], said
    assert said[-1] == "mdl pull failed with exit 4", said
    assert any("mdl: error: gone" in line for line in said), said


@pytest.mark.slow
def test_stdout_lines_come_before_the_summary_in_a_log_that_takes_both(
    hub: HubServer, tmp_path: Path
) -> None:
    hub.add_repo("org/tiny", {"config.json": b"{}"})
    catalog = tmp_path / "catalog.toml"
    catalog.write_text('[models.tiny]\nrepo = "org/tiny"\n')
    log = tmp_path / "both.log"
    env = {
        **os.environ,
        "HF_ENDPOINT": hub.url,
        "MDL_CATALOG": str(catalog),
        "MDL_DEST": str(tmp_path / "models"),
    }
    env["MDL_LOG_FILE"] = str(tmp_path / "l")
    # as under cron: stdout on a file is block-buffered unless mdl flushes it
    env.pop("PYTHONUNBUFFERED", None)
    with log.open("a") as sink:
        args = [sys.executable, "-m", "mdl", "pull", "tiny", "--no-progress"]
        assert (
            subprocess.run(
                args, stdout=sink, stderr=sink, env=env, timeout=300, check=False
            ).returncode
            == 0
        )
    lines = log.read_text().splitlines()
    assert lines[0] == str(tmp_path / "models" / "tiny"), lines  # the data, where it was said
    assert "pulled 1 model" in lines[-1], lines
