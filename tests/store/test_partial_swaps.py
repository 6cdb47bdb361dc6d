"""A partial is moved into place only if it is the file mdl wrote and checked (engine rule 14).
Whoever may write the partial folder (a co-tenant who made ``.mdl/`` first in a shared folder such
as ``/tmp``) can swap the name between mdl's look at it and its rename: a swap is refused, or moved
back out, never left at the final name, and the run does not say the file verified."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from runfixtures import mdl
from servers import CdnServer

from mdl.errors import UnsafePathError
from mdl.store import confined

CHECKED, PLANTED = b"the bytes mdl checked", b"a co-tenant's bytes!"


def _written(root: Path, path: Path, data: bytes) -> os.stat_result:
    fd = confined.open_file(root, path, os.O_WRONLY | os.O_CREAT)
    try:
        os.write(fd, data)
        return os.fstat(fd)
    finally:
        os.close(fd)


def _plant(part: Path) -> None:
    """The co-tenant's move: another file under the partial's name (its own inode)."""
    planted = part.with_name("planted")
    planted.write_bytes(PLANTED)
    os.replace(planted, part)


def _swapping_at_the_rename(
    monkeypatch: pytest.MonkeyPatch, name: Callable[[str], bool]
) -> list[str]:
    """os.rename swapping the source (a name ``name`` accepts) just before it moves it, as a
    co-tenant's swap between mdl's look and its rename lands; the names swapped, in order."""
    real, swapped = os.rename, []

    def rename(src: str, dst: str, **fds: int | None) -> None:
        if isinstance(src, str) and name(src) and not swapped:
            folder = fds.get("src_dir_fd")
            with open(os.open("planted", os.O_WRONLY | os.O_CREAT, dir_fd=folder), "wb") as f:
                f.write(PLANTED)
            real("planted", src, src_dir_fd=folder, dst_dir_fd=folder)
            swapped.append(src)
        real(src, dst, **fds)

    monkeypatch.setattr(confined.os, "rename", rename)
    return swapped


def test_a_partial_swapped_before_the_rename_is_refused(tmp_path: Path) -> None:
    part, final = tmp_path / ".mdl" / "partial" / "x.part", tmp_path / "m" / "x.bin"
    written = _written(tmp_path, part, CHECKED)
    _plant(part)
    with pytest.raises(UnsafePathError, match="no longer the file mdl wrote") as caught:
        confined.rename(tmp_path, part, final, written=written)
    assert str(part) in caught.value.message
    assert not final.exists()
    assert part.read_bytes() == PLANTED  # left where it was put


def test_a_partial_swapped_during_the_rename_is_moved_back_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    part, final = tmp_path / ".mdl" / "partial" / "x.part", tmp_path / "m" / "x.bin"
    final.parent.mkdir()
    final.write_bytes(b"the version before")
    written = _written(tmp_path, part, CHECKED)
    swapped = _swapping_at_the_rename(monkeypatch, lambda src: src == part.name)
    with pytest.raises(UnsafePathError, match="no longer the file mdl wrote"):
        confined.rename(tmp_path, part, final, written=written)
    assert swapped == [part.name]
    assert not final.exists()  # never left at the final name: the next run fetches it again
    assert part.read_bytes() == PLANTED


def test_the_partial_mdl_wrote_is_moved_into_place(tmp_path: Path) -> None:
    part, final = tmp_path / ".mdl" / "partial" / "x.part", tmp_path / "m" / "x.bin"
    written = _written(tmp_path, part, CHECKED)
    confined.rename(tmp_path, part, final, written=written)
    assert final.read_bytes() == CHECKED
    assert os.stat(final).st_ino == written.st_ino
    assert not part.exists()


@pytest.mark.parametrize("size", [4096, 3 << 20], ids=["held-in-memory", "streamed"])
def test_a_get_whose_partial_is_swapped_never_says_it_verified(
    cdn: CdnServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, size: int
) -> None:
    data = os.urandom(size)
    url = cdn.add_file("/w.bin", data)
    sha256 = hashlib.sha256(data).hexdigest()
    monkeypatch.chdir(tmp_path)
    swapped = _swapping_at_the_rename(monkeypatch, lambda src: src.endswith(".part"))
    result = mdl("get", url, "--sha256", sha256, "-d", "out", "--json")
    assert swapped, "the partial was renamed into place"
    assert result.exit_code == 2, result.stderr
    assert "no longer the file mdl wrote" in result.stderr
    assert result.stdout == "" or '"downloaded"' not in result.stdout
    assert not (tmp_path / "out" / "w.bin").exists()
    # the next run fetches it again, untouched
    monkeypatch.undo()
    monkeypatch.chdir(tmp_path)
    again = mdl("get", url, "--sha256", sha256, "-d", "out")
    assert again.exit_code == 0, again.stderr
    assert (tmp_path / "out" / "w.bin").read_bytes() == data


def test_a_swapped_partial_that_cannot_go_back_is_removed_from_the_final_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its folder's writer can make the move back fail (a folder put at the partial's name, its
    folder made read-only): the file still never stays at the final name."""
    part, final = tmp_path / ".mdl" / "partial" / "x.part", tmp_path / "m" / "x.bin"
    written = _written(tmp_path, part, CHECKED)
    swapped = _swapping_at_the_rename(monkeypatch, lambda src: src == part.name)
    swapping = confined.os.rename

    def rename(src: str, dst: str, **fds: int | None) -> None:
        if src == final.name:  # the move back: refused
            raise PermissionError(13, "Permission denied")
        swapping(src, dst, **fds)

    monkeypatch.setattr(confined.os, "rename", rename)
    with pytest.raises(UnsafePathError, match="no longer the file mdl wrote"):
        confined.rename(tmp_path, part, final, written=written)
    assert swapped == [part.name]
    assert not final.exists()
