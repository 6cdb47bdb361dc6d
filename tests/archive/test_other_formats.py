"""An archive in another format given to ``unpack`` (issue 88: a ``.tgz`` said only "not a readable
zip archive"): the format it is, that unpack reads zip only, and the tool's line that unpacks it,
exit 2; from a file and from stdin alike."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import tarfile
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from runfixtures import mdl


def tar_bytes() -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        data = b'{"a": 1}' * 200
        info = tarfile.TarInfo("run/config.json")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


FORMATS: list[tuple[str, Callable[[bytes], bytes], str, str]] = [
    ("exp1.tgz", gzip.compress, "this is a gzip file (a .tar.gz or .tgz?)", "tar -xzf FILE"),
    ("exp1.tar", lambda b: b, "this is a tar archive", "tar -xf FILE"),
    ("exp1.tar.bz2", bz2.compress, "this is a bzip2 file", "tar -xjf FILE"),
    ("exp1.tar.xz", lzma.compress, "this is a xz file", "tar -xJf FILE"),
]


@pytest.mark.parametrize(("name", "pack", "said", "line"), FORMATS)
def test_another_format_is_named_with_its_tool(
    tmp_path: Path, name: str, pack: Callable[[bytes], bytes], said: str, line: str
) -> None:
    archive = tmp_path / name
    archive.write_bytes(pack(tar_bytes()))
    result = mdl("unpack", str(archive), "-d", str(tmp_path / "out"))
    assert result.exit_code == 2, result.stderr
    assert said in result.stderr and "mdl unpack reads zip archives only" in result.stderr
    assert line in result.stderr
    assert not (tmp_path / "out" / "run").exists()


def test_a_corrupt_zip_is_still_said_as_one(tmp_path: Path) -> None:
    archive = tmp_path / "broken.zip"
    archive.write_bytes(b"PK\x03\x04" + b"\x00" * 100)
    result = mdl("unpack", str(archive), "-d", str(tmp_path / "out"))
    assert result.exit_code == 2
    assert "not a readable zip archive" in result.stderr and "this is a" not in result.stderr


def test_an_empty_zip_is_exit_2_naming_it_and_one_file_is_one(tmp_path: Path) -> None:
    archive = tmp_path / "empty.zip"
    archive.write_bytes(b"PK\x05\x06" + bytes(18))  # no entries: unzip says "zipfile is empty"
    result = mdl("unpack", str(archive), "-d", str(tmp_path / "out"))
    assert result.exit_code == 2 and "empty.zip holds no files" in result.stderr
    assert not (tmp_path / "out").exists()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("run/config.json", b"{}")
    result = mdl("unpack", str(archive), "-d", str(tmp_path / "out"))
    assert result.exit_code == 0 and "extracted 1 file into" in result.stderr
