"""pack and unpack show their long work: stamped lines off a terminal, a total bar on one (a
pty).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from runfixtures import make_hf_run
from terminal import STAMP, TOTAL, run_mdl

MiB = 1024 * 1024


@pytest.fixture
def world(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    run = tmp_path / "run"
    make_hf_run(run, steps=(100,))
    (run / "big.safetensors").write_bytes(os.urandom(32 * MiB))
    return tmp_path, dict(os.environ)


def lines(stderr: str) -> list[str]:
    return [STAMP.sub("", line) for line in stderr.splitlines() if STAMP.match(line)]


@pytest.mark.slow
def test_pack_to_a_file_off_a_terminal_says_writing_and_checksumming(
    world: tuple[Path, dict[str, str]],
) -> None:
    cwd, env = world
    ran = run_mdl(["pack", "run", "-o", "run.zip"], env=env, tty=False, cwd=cwd)
    assert ran.code == 0, ran.stderr
    said = lines(ran.stderr)
    assert any(line.startswith("start big.safetensors (") for line in said), ran.stderr
    assert any(line.startswith("done big.safetensors ") for line in said), ran.stderr
    # The archive's own sha256 is a pass over the whole file: it shows too.
    assert any(line.startswith("start checksumming run.zip (") for line in said), ran.stderr
    assert said.index(next(x for x in said if x.startswith("start big.safetensors"))) < said.index(
        next(x for x in said if x.startswith("start checksumming"))
    )


@pytest.mark.slow
def test_pack_to_a_pipe_on_a_terminal_shows_a_total_bar(world: tuple[Path, dict[str, str]]) -> None:
    cwd, env = world
    ran = run_mdl(["pack", "run", "-o", "-"], env=env, tty=True, cwd=cwd)
    assert ran.code == 0, ran.screen
    # the archive went to stdout, the bars to the terminal
    assert ran.stdout.startswith(b"PK\x03\x04")
    assert TOTAL.search(ran.screen), ran.screen


@pytest.mark.slow
def test_pack_to_a_pipe_off_a_terminal_hashes_then_writes_each_file(
    world: tuple[Path, dict[str, str]],
) -> None:
    cwd, env = world
    ran = run_mdl(["pack", "run", "-o", "-"], env=env, tty=False, cwd=cwd)
    assert ran.code == 0, ran.stderr
    said = lines(ran.stderr)
    hashing = said.index(next(x for x in said if x.startswith("start hashing big.safetensors (")))
    writing = said.index(next(x for x in said if x.startswith("start big.safetensors (")))
    assert hashing < writing
    begins = [x for x in said if x.startswith("begin ")]
    # one batch to hash, the same one to write
    assert len(begins) == 2 and begins[0] == begins[1], begins


@pytest.mark.slow
def test_unpack_shows_extracting_on_a_terminal_and_off_it(
    world: tuple[Path, dict[str, str]],
) -> None:
    cwd, env = world
    assert run_mdl(["pack", "run", "-o", "run.zip"], env=env, tty=False, cwd=cwd).code == 0
    plain = run_mdl(["unpack", "run.zip", "-d", "plain"], env=env, tty=False, cwd=cwd)
    assert plain.code == 0, plain.stderr
    said = lines(plain.stderr)
    assert any(line.startswith("start run/big.safetensors (") for line in said), plain.stderr
    assert any(line.startswith("done run/big.safetensors ") for line in said), plain.stderr
    live = run_mdl(["unpack", "run.zip", "-d", "live"], env=env, tty=True, cwd=cwd)
    assert live.code == 0, live.screen
    assert TOTAL.search(live.screen), live.screen
    assert (cwd / "live" / "run" / "big.safetensors").read_bytes() == (
        cwd / "run" / "big.safetensors"
    ).read_bytes()
