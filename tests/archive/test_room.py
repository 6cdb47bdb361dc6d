"""pack and unpack check the room they need before writing: what the archive (or its files) can
take, no more; a read-only filesystem said as one, not as a full one; a filesystem that counts no
blocks (/proc) left to its write to say what fails. The filesystem's answer (os.statvfs) is faked
for the output folder only: a disk of exactly that size cannot be made without root."""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from runfixtures import make_hf_run

from mdl.archive.collect import PackOptions
from mdl.archive.packer import PackResult, pack_run
from mdl.archive.unpack import unpack_archive
from mdl.errors import ExitCode, LocalFSError, NoSpaceError
from mdl.progress import NullProgress

BLOCK = 512


def pack(root: Path, output: str) -> PackResult:
    options = PackOptions(run_dir=Path("run"), output=Path(output), checkpoint="latest", cwd=root)
    return pack_run(options, progress=NullProgress())


def fake_disk(
    monkeypatch: pytest.MonkeyPatch, folder: Path, *, free: int, read_only: bool = False
) -> None:
    """``folder`` on a disk with ``free`` bytes free (rounded down to a block), read-only or not."""
    real: Callable[[str | os.PathLike[str]], os.statvfs_result] = os.statvfs

    def statvfs(path: str | os.PathLike[str]) -> os.statvfs_result:
        got = real(path)
        if Path(path).resolve() != folder.resolve():
            return got
        flag = got.f_flag | os.ST_RDONLY if read_only else got.f_flag & ~os.ST_RDONLY
        blocks = free // BLOCK
        return os.statvfs_result(
            (BLOCK, BLOCK, blocks + 1000, blocks, blocks, 1000, 1000, 1000, flag, 255)
        )

    monkeypatch.setattr(os, "statvfs", statvfs)


def test_pack_needs_the_room_its_archive_takes_not_a_mebibyte_more(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_hf_run(tmp_path / "run", steps=(100,))
    size = pack(tmp_path, "first/run.zip").size
    assert size is not None and size < 1 << 20
    small = tmp_path / "small"
    small.mkdir()
    fake_disk(monkeypatch, small, free=size + 4 * BLOCK)
    assert pack(tmp_path, "small/run.zip").size == size
    (small / "again").mkdir()
    fake_disk(monkeypatch, small / "again", free=size // 2)
    with pytest.raises(NoSpaceError) as err:
        pack(tmp_path, "small/again/run.zip")
    assert err.value.exit_code == ExitCode.LOCAL
    match = re.search(r"the archive needs up to (\d+) bytes", err.value.message)
    assert match and size <= int(match.group(1)) < size + 4 * BLOCK, err.value.message
    assert list((small / "again").iterdir()) == []


def test_pack_onto_a_read_only_filesystem_says_read_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_hf_run(tmp_path / "run", steps=(100,))
    (tmp_path / "ro").mkdir()
    fake_disk(monkeypatch, tmp_path / "ro", free=1 << 30, read_only=True)
    with pytest.raises(LocalFSError) as err:
        pack(tmp_path, "ro/run.zip")
    assert not isinstance(err.value, NoSpaceError) and err.value.exit_code == ExitCode.LOCAL
    assert f"in '{tmp_path / 'ro'}': a read-only filesystem" in err.value.message
    assert list((tmp_path / "ro").iterdir()) == []


def test_pack_into_proc_is_no_space_problem(tmp_path: Path) -> None:
    """/proc counts no blocks: nothing to compare, the write says what fails (naming the file)."""
    make_hf_run(tmp_path / "run", steps=(100,))
    with pytest.raises(LocalFSError) as err:
        pack(tmp_path, "/proc/self/run.zip")
    assert not isinstance(err.value, NoSpaceError), err.value.message
    assert "/proc/self/run.zip" in err.value.message and "space" not in err.value.message


def test_unpack_needs_the_room_its_files_take(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_hf_run(tmp_path / "run", steps=(100,))
    result = pack(tmp_path, "run.zip")
    total = sum(f.size for f in result.files) + len((tmp_path / "run.zip").read_bytes()) // 100
    for name, free, read_only in (("fits", total + 64 * BLOCK, False), ("ro", 1 << 30, True)):
        (tmp_path / name).mkdir()
        fake_disk(monkeypatch, tmp_path / name, free=free, read_only=read_only)
        refused = pytest.raises(LocalFSError, match="a read-only filesystem")
        with refused if read_only else contextlib.nullcontext():
            unpack_archive(
                tmp_path / "run.zip",
                dest=Path(name),
                force=False,
                progress=NullProgress(),
                cwd=tmp_path,
            )
        if read_only:
            continue
        assert (tmp_path / name / "run" / "model.safetensors").is_file()
