"""Issue 37, class C: a job-output JSON document (a file, or stdin) has a bound on the whole,
checked before it is parsed and never read past: exit 2 naming the source and the limit."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from runfixtures import mdl
from zygote import forked_mdl

from mdl.errors import ExitCode, JobOutputError
from mdl.sources import joboutput
from mdl.sources.joboutput import parse_job_output, read_job_output

SMALL = json.dumps({"type": "file_data", "filename": "a.txt", "data": "aGk="})  # "hi"


def test_an_oversize_job_output_file_is_exit_2_naming_it_and_the_limit(tmp_path: Path) -> None:
    job = tmp_path / "job.json"
    # sparse: reading it would take a while, parsing it would say "not JSON"
    with job.open("wb") as handle:
        handle.truncate(joboutput.MAX_JOB_OUTPUT_BYTES + 1)
    result = mdl("get", str(job), "-d", str(tmp_path / "out"))
    assert result.exit_code == ExitCode.USAGE == 2, result.output
    assert f"{job}: more than the 256 MiB a job output may be; not read" in result.stderr
    assert not (tmp_path / "out").exists()


def test_an_oversize_job_output_on_stdin_is_read_only_to_one_byte_past_the_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(joboutput, "MAX_JOB_OUTPUT_BYTES", len(SMALL) - 1)
    result = mdl("get", "-", "-d", str(tmp_path / "out"), stdin=SMALL)
    assert result.exit_code == 2, result.output
    assert "stdin: more than the 0 MiB a job output may be" in result.stderr
    monkeypatch.setattr(joboutput, "MAX_JOB_OUTPUT_BYTES", len(SMALL))
    result = mdl("get", "-", "-d", str(tmp_path / "out"), stdin=SMALL)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "a.txt").read_bytes() == b"hi"


@pytest.mark.slow
def test_an_endless_pipe_on_stdin_stops_at_the_limit(tmp_path: Path) -> None:
    """`yes | mdl get -`: a writer that never stops is cut off at the bound, and mdl exits 2 at
    once.
    """
    writer = subprocess.Popen(["yes", "x" * 1000], stdout=subprocess.PIPE)
    try:
        done = subprocess.run(
            [forked_mdl(), "get", "-", "-d", str(tmp_path / "out")],
            stdin=writer.stdout,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            env={**os.environ, "MDL_LOG_FILE": str(tmp_path / "mdl.log")},
        )
    finally:
        writer.kill()
        writer.wait()
    assert done.returncode == 2, done.stderr
    assert "stdin: more than the 256 MiB a job output may be; not read" in done.stderr


def test_text_from_any_reader_is_bounded_before_it_is_parsed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(joboutput, "MAX_JOB_OUTPUT_BYTES", 10)
    with pytest.raises(JobOutputError, match=r"job\.json: more than the 0 MiB a job output may be"):
        parse_job_output("[" + " " * 20 + "]", where="job.json")


def test_a_job_output_that_is_not_utf8_is_exit_2_naming_it(tmp_path: Path) -> None:
    job = tmp_path / "job.json"
    job.write_bytes(b'{"type": "\xff"}')
    with pytest.raises(JobOutputError, match=r"job\.json: not UTF-8 text") as info:
        read_job_output(str(job))
    assert info.value.exit_code == 2
