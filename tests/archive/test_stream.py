"""``mdl pack -o -``: stored entries carry sizes and CRC in their local headers (no data
descriptor), so streaming readers (Java's ZipInputStream, unzip from a pipe) read them; a
regular-file stdout is one pass."""

from __future__ import annotations

import hashlib
import io
import os
import pty
import select
import shutil
import struct
import subprocess
import sys
import threading
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from runfixtures import RecordingProgress, make_hf_run, write
from zygote import forked_mdl

from mdl.archive import _zipwriter as zipstream
from mdl.archive.packer import PackOptions, PackResult, pack_run
from mdl.archive.unpack import unpack_archive
from mdl.errors import ExitCode, MdlError, UsageError
from mdl.progress import NullProgress

JAVA_READER = """
import java.io.*;
import java.util.zip.*;

public class ReadZip {
    public static void main(String[] args) throws Exception {
        try (ZipInputStream zip = new ZipInputStream(new BufferedInputStream(new FileInputStream(args[0])))) {
            byte[] buf = new byte[1 << 16];
            ZipEntry entry;
            while ((entry = zip.getNextEntry()) != null) {
                long total = 0;
                int n;
                while ((n = zip.read(buf)) > 0) total += n;
                System.out.println(entry.getName() + " " + total);
            }
        }
    }
}
"""


@dataclass
class Local:
    name: str
    flags: int
    method: int
    crc: int
    size: int
    data: bytes  # uncompressed


def walk_local_headers(data: bytes) -> list[Local]:
    """Read the archive front to back as a streaming reader does, never looking at the central
    directory.
    """
    found: list[Local] = []
    pos = 0
    while data[pos : pos + 4] == b"PK\x03\x04":
        _, flags, method, _, _, crc, csize, usize, name_len, extra_len = struct.unpack_from(
            "<HHHHHLLLHH", data, pos + 4
        )
        name = data[pos + 30 : pos + 30 + name_len].decode()
        extra = data[pos + 30 + name_len : pos + 30 + name_len + extra_len]
        zip64 = extra[:2] == b"\x01\x00"
        if zip64 and csize == usize == 0xFFFFFFFF:
            usize, csize = struct.unpack_from("<QQ", extra, 4)
        start = pos + 30 + name_len + extra_len
        if flags & 0x8:
            assert method == 8, f"{name}: a stored entry with a data descriptor"
            inflater = zlib.decompressobj(-15)
            body = inflater.decompress(data[start:])
            end = len(data) - len(inflater.unused_data)
            fmt = "<4sLQQ" if zip64 else "<4sLLL"
            sig, crc, csize, usize = struct.unpack_from(fmt, data, end)
            assert sig == b"PK\x07\x08" and csize == end - start and usize == len(body)
            pos = end + struct.calcsize(fmt)
        else:
            raw = data[start : start + csize]
            body = raw if method == 0 else zlib.decompress(raw, -15)
            pos = start + csize
        assert zlib.crc32(body) == crc and len(body) == usize, name
        found.append(Local(name, flags, method, crc, usize, body))
    assert data[pos : pos + 4] == b"PK\x01\x02", (
        "the entries do not run up to the central directory"
    )
    return found


def pack_into_pipe(
    root: Path, checkpoint: str | None = None, **kwargs: Any
) -> tuple[PackResult, bytes]:
    """pack_run with stdout the write end of a real pipe (not seekable), read by a thread."""
    read_fd, write_fd = os.pipe()
    received: list[bytes] = []

    def drain() -> None:
        with os.fdopen(read_fd, "rb") as fh:
            received.append(fh.read())

    reader = threading.Thread(target=drain)
    reader.start()
    try:
        with os.fdopen(write_fd, "wb") as out:
            options = PackOptions(
                run_dir=Path("run"), output=Path("-"), checkpoint=checkpoint, cwd=root, **kwargs
            )
            result = pack_run(options, progress=NullProgress(), stdout=out)
    finally:
        reader.join()
    return result, received[0]


def check_readers(archive: Path, expected: int, *, streaming: bool = True) -> None:
    with zipfile.ZipFile(archive) as zf:
        assert zf.testzip() is None and len(zf.infolist()) == expected
    if shutil.which("unzip"):
        tested = subprocess.run(["unzip", "-t", "-q", str(archive)], capture_output=True, text=True)
        assert tested.returncode == 0, tested.stdout + tested.stderr
    if shutil.which("7z"):
        tested = subprocess.run(["7z", "t", str(archive)], capture_output=True, text=True)
        assert tested.returncode == 0, tested.stdout
    if streaming and shutil.which("java"):  # reads from the first byte: no stub before the archive
        source = archive.parent / "ReadZip.java"
        source.write_text(JAVA_READER)
        read = subprocess.run(
            ["java", str(source), str(archive)], capture_output=True, text=True, timeout=120
        )
        # "only DEFLATED entries can have EXT descriptor" before the fix
        assert read.returncode == 0, read.stderr
        assert len(read.stdout.splitlines()) == expected


@pytest.mark.slow
def test_a_piped_pack_has_no_descriptor_on_stored_entries(tmp_path: Path) -> None:
    make_hf_run(tmp_path / "run", steps=(100,))
    result, data = pack_into_pipe(tmp_path, checkpoint="latest", with_logs=True)
    assert result.size == len(data) and result.sha256 == hashlib.sha256(data).hexdigest()
    locals_ = walk_local_headers(data)
    stored = [e for e in locals_ if e.method == 0]
    assert stored and all(e.flags & 0x8 == 0 for e in stored)
    assert any(e.method == 8 for e in locals_)  # text is deflated, with a descriptor
    assert locals_[0].name == "run-checkpoint-100/mdl-manifest.json" and locals_[0].method == 0
    by_name = {e.name.split("/", 1)[1]: e for e in locals_}
    for item in result.files:
        assert hashlib.sha256(by_name[item.path].data).hexdigest() == item.sha256
    archive = tmp_path / "piped.zip"
    archive.write_bytes(data)
    check_readers(archive, len(result.files) + 1)
    unpacked = unpack_archive(
        archive, dest=tmp_path / "out", force=False, progress=NullProgress(), cwd=tmp_path
    )
    assert unpacked.manifest


def test_a_piped_pack_is_deterministic(tmp_path: Path) -> None:
    make_hf_run(tmp_path / "run", steps=(100,))
    first = pack_into_pipe(tmp_path, checkpoint="latest")[1]
    assert pack_into_pipe(tmp_path, checkpoint="latest")[1] == first


@pytest.mark.slow
@pytest.mark.parametrize("deflated_zip64", [False, True])
def test_zip64_fields_in_a_stream_are_read_everywhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, deflated_zip64: bool
) -> None:
    """ZIP64 from 1 KiB instead of 4 GiB: the same code paths as a 5 GB shard, on small files."""
    monkeypatch.setattr(zipstream, "ZIP64_FROM", 1024)
    run = tmp_path / "run"
    write(run / "big.safetensors", os.urandom(5000))
    write(run / "notes.txt", "text " * (2000 if deflated_zip64 else 100))
    write(run / "tiny.json", "{}")
    result, data = pack_into_pipe(tmp_path)
    locals_ = walk_local_headers(data)
    assert all(e.flags & 0x8 == 0 for e in locals_ if e.method == 0)
    assert b"PK\x06\x06" in data[-200:]  # the ZIP64 end record
    archive = tmp_path / "zip64.zip"
    archive.write_bytes(data)
    # Java reads an 8-byte descriptor only when the real sizes pass 4 GiB, so a deflated entry
    # declared ZIP64 but smaller is beyond it; with the real threshold that is a window of ~1 MB
    # just under 4 GiB.
    check_readers(archive, len(result.files) + 1, streaming=not deflated_zip64)
    unpack_archive(
        archive, dest=tmp_path / "out", force=False, progress=NullProgress(), cwd=tmp_path
    )
    assert (tmp_path / "out" / "run" / "big.safetensors").read_bytes() == (
        run / "big.safetensors"
    ).read_bytes()


def test_the_cli_streams_to_a_pipe(tmp_path: Path) -> None:
    make_hf_run(tmp_path / "run", steps=(100,))
    env = {**os.environ, "MDL_LOG_FILE": str(tmp_path / "mdl.log")}
    done = subprocess.run(
        [forked_mdl(), "pack", "run", "--checkpoint", "latest", "-o", "-"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert all(e.flags & 0x8 == 0 for e in walk_local_headers(done.stdout) if e.method == 0)


def test_stdout_that_is_a_regular_file_is_written_in_one_pass(tmp_path: Path) -> None:
    make_hf_run(tmp_path / "run", steps=(100,))
    out_path = tmp_path / "redirected.zip"
    progress = RecordingProgress()
    with out_path.open("wb") as out:
        out.write(b"#!stub\n")  # something before the archive, as in `{ echo; mdl pack -o -; } > f`
        options = PackOptions(
            run_dir=Path("run"), output=Path("-"), checkpoint="latest", cwd=tmp_path
        )
        result = pack_run(options, progress=progress, stdout=out)
        out.write(b"")
    data = out_path.read_bytes()
    assert data.startswith(b"#!stub\n") and result.size == len(data) - 7
    assert result.sha256 == hashlib.sha256(data[7:]).hexdigest()
    total = sum(f.size for f in result.files)
    # Each source byte read once; then the archive's own checksum pass, a batch of its own.
    assert progress.batches == [(total, len(result.files)), (result.size, 1)]
    assert sum(n for key, n in progress.by_key.items() if not key.startswith("sha256:")) == total
    assert progress.by_key["sha256:redirected.zip"] == result.size
    # the archive's own bytes (offsets from its start) are a pipe's: read on their own
    archive = tmp_path / "archive.zip"
    archive.write_bytes(data[7:])
    assert data[7:] == pack_into_pipe(tmp_path, checkpoint="latest")[1]
    check_readers(archive, len(result.files) + 1)
    unpack_archive(
        archive, dest=tmp_path / "out", force=False, progress=NullProgress(), cwd=tmp_path
    )


def test_stdout_opened_for_append_falls_back_to_the_stream(tmp_path: Path) -> None:
    make_hf_run(tmp_path / "run", steps=(100,))
    out_path = tmp_path / "appended.zip"
    with out_path.open("ab") as out:
        options = PackOptions(
            run_dir=Path("run"), output=Path("-"), checkpoint="latest", cwd=tmp_path
        )
        result = pack_run(options, progress=NullProgress(), stdout=out)
    assert result.sha256 == hashlib.sha256(out_path.read_bytes()).hexdigest()
    assert all(
        e.flags & 0x8 == 0 for e in walk_local_headers(out_path.read_bytes()) if e.method == 0
    )


@pytest.mark.parametrize("deflate", [False, True])
def test_an_entry_that_is_not_the_size_it_announced_is_never_finished(deflate: bool) -> None:
    """The stored header (or the descriptor and central record) carries the announced size: bytes
    that differ stop.
    """
    writer = zipstream.StreamZipWriter(io.BytesIO(), zipstream.zip_date_time(0))
    writer.start("run/a.bin", size=3, crc=zlib.crc32(b"abc"), deflate=deflate)
    writer.write(b"ab")
    with pytest.raises(MdlError, match=r"'run/a\.bin' got 2 bytes, its header says 3"):
        writer.end()


def test_a_terminal_on_stdout_is_refused(tmp_path: Path) -> None:
    """`mdl pack run -o -` typed at a prompt: exit 2 with the hint, no zip bytes on the screen (a
    run small enough that the terminal's buffer would take them all)."""
    write(tmp_path / "run" / "model.safetensors", b"x")
    master, slave = pty.openpty()
    try:
        with os.fdopen(slave, "wb") as terminal:
            options = PackOptions(
                run_dir=Path("run"), output=Path("-"), checkpoint=None, cwd=tmp_path
            )
            with pytest.raises(UsageError) as err:
                pack_run(options, progress=NullProgress(), stdout=terminal)
            assert select.select([master], [], [], 0)[0] == [], "nothing was written to it"
        assert err.value.exit_code == ExitCode.USAGE
        assert "onto a terminal" in err.value.message and "-o FILE" in (err.value.hint or "")
    finally:
        os.close(master)


def test_a_file_and_a_pipe_get_the_same_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`-o run.zip` and `-o - | cat > run.zip`: one archive, deflated entries (with their
    descriptors), ZIP64 ones and empty folders included."""
    monkeypatch.setattr(zipstream, "ZIP64_FROM", 1024)
    make_hf_run(tmp_path / "run", steps=(100,))
    write(tmp_path / "run" / "checkpoint-100" / "notes.txt", "text " * 1000)
    (tmp_path / "run" / "checkpoint-100" / "empty").mkdir()
    archive = tmp_path / "run-checkpoint-100.zip"  # the name a pipe's top folder has
    options = PackOptions(
        run_dir=Path("run"), output=Path(archive.name), checkpoint="latest", cwd=tmp_path
    )
    result = pack_run(options, progress=NullProgress())
    piped, data = pack_into_pipe(tmp_path, checkpoint="latest")
    written = archive.read_bytes()
    assert hashlib.sha256(written).hexdigest() == result.sha256 == piped.sha256
    assert written == data and result.files == piped.files and result.folders == ("empty/",)
    locals_ = walk_local_headers(written)
    assert any(e.method == 8 for e in locals_) and b"PK\x06\x06" in written[-200:]
    check_readers(archive, len(result.files) + 2, streaming=False)


@pytest.mark.parametrize(
    "args",
    [
        ["pack", "run", "-o", "-"],
        ["list"],
        ["verify", "--quick", "--all"],
        [
            "verify",
            "--quick",
            "--all",
            "--dest",
            "models",
        ],  # (a line the plain path leaves to Typer)
    ],
    ids=["pack", "list", "probe", "probe-typer"],
)
def test_a_stdout_closed_at_start_is_refused_by_commands_that_only_print(
    tmp_path: Path, args: list[str]
) -> None:
    # a process of its own: the descriptor closed before mdl starts (>&-) is the point; python -m
    # mdl, as the zygote's shim would take fd 1 for its own socket
    write(tmp_path / "run" / "model.safetensors", b"x")
    write(tmp_path / "catalog.toml", b"")
    env = {**os.environ, "MDL_LOG_FILE": str(tmp_path / "mdl.log")}
    done = subprocess.run(
        ["sh", "-c", 'exec "$0" -m mdl "$@" >&-', sys.executable, *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if "--quick" in args:  # a probe's answer is its exit code: not refused (no models here)
        assert "stdout is closed" not in done.stderr and "names no models" in done.stderr
        return
    assert done.returncode == ExitCode.USAGE, done.stderr
    assert "stdout is closed" in done.stderr and "wrote" not in done.stderr
    assert not list(tmp_path.glob("*.zip*"))
