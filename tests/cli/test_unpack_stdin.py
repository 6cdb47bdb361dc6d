"""`mdl unpack -`: the archive from a pipe (`mdl pack RUN -o - | ssh gpu mdl unpack - -d /models`).

Real processes and a real shell pipe: the bytes arrive identical, the spool (a hidden temp file on
the destination's filesystem) is gone afterwards whatever happened, and a terminal, an empty or a
non-zip stdin are refused as usage errors naming stdin.
"""

from __future__ import annotations

import io
import os
import pty
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from runfixtures import HANG, make_hf_run, wait_for
from terminal import STAMP
from zygote import forked_mdl

from mdl import api
from mdl.errors import UsageError

MiB = 1024 * 1024


def spools(folder: Path) -> list[str]:
    """Spool files mdl left in ``folder`` (hidden temp names)."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".stdin.zip."))


def tree(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    run = tmp_path / "run"
    make_hf_run(run, steps=(100,))
    # big enough for progress to have to move
    (run / "big.safetensors").write_bytes(os.urandom(24 * MiB))
    return run


@pytest.mark.slow
def test_pack_to_stdout_piped_into_unpack_from_stdin_gives_identical_bytes(
    run_dir: Path, tmp_path: Path
) -> None:
    dest = tmp_path / "deploy" / "models"
    mdl = shlex.quote(str(forked_mdl()))
    done = subprocess.run(
        f"{mdl} pack run -o - | {mdl} unpack - -d {shlex.quote(str(dest))}",
        shell=True,
        cwd=tmp_path,
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()
    unpacked = tree(dest / "run")
    for name, data in tree(run_dir).items():
        if name in unpacked:
            assert unpacked[name] == data, name
    assert unpacked["big.safetensors"] == (run_dir / "big.safetensors").read_bytes()
    err = done.stderr.decode()
    # Off a terminal: stamped lines for reading stdin, then for extracting.
    lines = [STAMP.sub("", line) for line in err.splitlines() if STAMP.match(line)]
    assert "start reading stdin (size unknown)" in lines, err
    assert any(line.startswith("done reading stdin ") for line in lines), err
    assert any(line.startswith("start run/big.safetensors (") for line in lines), err
    assert spools(dest) == [] and spools(dest.parent) == [] and spools(tmp_path) == []


@pytest.mark.slow
def test_unpack_from_stdin_into_an_existing_folder_leaves_only_the_archive(
    run_dir: Path, tmp_path: Path
) -> None:
    dest = tmp_path / "out"
    dest.mkdir()
    packed = subprocess.run(
        [forked_mdl(), "pack", "run", "-o", "-"], cwd=tmp_path, capture_output=True, check=True
    )
    done = subprocess.run(
        [forked_mdl(), "unpack", "-", "-d", str(dest), "--json"],
        input=packed.stdout,
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()
    assert sorted(p.name for p in dest.iterdir()) == ["run"]  # no spool, no staging folder


@pytest.mark.slow
def test_an_interrupted_stdin_leaves_no_spool_and_nothing_in_the_destination(
    run_dir: Path, tmp_path: Path
) -> None:
    archive = subprocess.run(
        [forked_mdl(), "pack", "run", "-o", "-"], cwd=tmp_path, capture_output=True, check=True
    ).stdout
    dest = tmp_path / "target" / "models"
    # python -m mdl: its stdin is closed right after the Ctrl-C, which a shim's mdl would get late
    proc = subprocess.Popen(
        [sys.executable, "-m", "mdl", "unpack", "-", "-d", str(dest)],
        cwd=tmp_path,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdin is not None
    # the writer is still going when the user presses Ctrl-C
    proc.stdin.write(archive[: len(archive) // 2])
    proc.stdin.flush()
    # DIR does not exist yet: the spool is beside it
    wait_for(lambda: bool(spools(tmp_path)) or proc.poll() is not None, what="the spool")
    assert spools(tmp_path), "no spool appeared"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=HANG)
    assert proc.returncode == 130, err.decode()
    assert spools(tmp_path) == []
    assert not (tmp_path / "target").exists(), "nothing may be created in or for the destination"


def test_a_terminal_on_stdin_is_refused(tmp_path: Path) -> None:
    master, slave = pty.openpty()
    try:
        done = subprocess.run(
            [forked_mdl(), "unpack", "-", "-d", str(tmp_path / "d")],
            stdin=slave,
            capture_output=True,
            timeout=60,
            check=False,
        )
    finally:
        os.close(slave)
        os.close(master)
    assert done.returncode == 2
    assert "reading an archive from stdin needs a pipe" in done.stderr.decode()
    assert not (tmp_path / "d").exists() and spools(tmp_path) == []


@pytest.mark.slow
@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "stdin is empty: expected a zip archive"),
        (b"hello, this is not a zip\n", "stdin: not a readable zip archive"),
    ],
)
def test_empty_or_non_zip_stdin_is_a_usage_error_naming_stdin(
    tmp_path: Path, data: bytes, message: str
) -> None:
    done = subprocess.run(
        [forked_mdl(), "unpack", "-", "-d", str(tmp_path / "d")],
        input=data,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr.decode()
    assert message in done.stderr.decode()
    assert not (tmp_path / "d").exists() and spools(tmp_path) == []


def test_api_unpack_accepts_a_binary_stream(
    run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    buffer = io.BytesIO()
    api.pack("run", stream=buffer)
    result = api.unpack(io.BytesIO(buffer.getvalue()), dest="api-out")
    assert (tmp_path / "api-out" / "run" / "big.safetensors").read_bytes() == (
        run_dir / "big.safetensors"
    ).read_bytes()
    assert result.dest == str(tmp_path / "api-out")
    assert spools(tmp_path) == [] and spools(tmp_path / "api-out") == []
    with pytest.raises(UsageError, match="stdin is empty"):
        api.unpack(io.BytesIO(b""), dest="empty")


def test_a_spool_a_kill_left_goes_with_the_next_unpack_or_clean_never_a_running_ones(
    run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """kill -9 (or a hang-up) during `unpack -` leaves its copy of stdin (as big as the archive):
    the next unpack into that folder, or `mdl clean --dest` it, removes it; a running unpack's
    spool (locked) and one just made (younger than SPOOL_AGE) stay."""
    from mdl.archive.staging import SPOOL_AGE, stale_spools

    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    left = out / ".stdin.zip.0123456789abcdef.mdl-tmp"
    left.write_bytes(b"PK" * 1000)
    young = out / ".stdin.zip.fedcba9876543210.mdl-tmp"
    young.write_bytes(b"PK")
    ahead = young.stat().st_mtime + 100 * SPOOL_AGE  # (young however slow this run is)
    os.utime(young, (ahead, ahead))
    old = left.stat().st_mtime - 2 * SPOOL_AGE
    os.utime(left, (old, old))
    # while an unpack of stdin runs: its own spool is locked, the stale one goes
    seen: dict[str, list[tuple[Path, int]]] = {}

    class Stdin(io.BytesIO):
        def read(self, size: int | None = -1) -> bytes:
            if "running" not in seen:  # (its spool exists, locked, and is as old as the stale)
                [mine] = [p for p in out.iterdir() if p not in (left, young)]
                os.utime(mine, (old, old))
                seen["running"] = stale_spools(out, dry_run=True)
            return super().read(size)

    buffer = io.BytesIO()
    api.pack("run", stream=buffer)
    api.unpack(Stdin(buffer.getvalue()), dest="out")
    assert seen["running"] == [(left, 2000)]  # not its own: a running unpack's, locked
    assert spools(out) == [young.name]  # the stale one went with this unpack; the young stays
    os.utime(young, (old, old))
    cleaned = api.clean(dest=str(out), dry_run=False)
    assert [(f.path, f.size) for f in cleaned.files] == [(young, 2)]
    assert spools(out) == []
    # spooled where `-d` did not exist yet (its nearest folder), and seen through a link to it
    (tmp_path / "link").symlink_to(out)
    for folder in (tmp_path, out):
        (folder / left.name).write_bytes(b"PK")
        os.utime(folder / left.name, (old, old))
    assert stale_spools(tmp_path / "link") == [(tmp_path / "link" / left.name, 2)]
    api.unpack(io.BytesIO(buffer.getvalue()), dest="new")
    assert spools(tmp_path) == [] and spools(tmp_path / "new") == []
