"""Folders opened once (``confined.reused``) shared by two pulls of one process (the API's, or a
fleet of machines in one test process): the first to end leaves the other's descriptors open."""

from __future__ import annotations

import errno
import os
import threading
from pathlib import Path

from mdl.store.confined import folder, reused


def test_a_pull_that_ends_first_leaves_the_others_folders_open(tmp_path: Path) -> None:
    """Two blocks at once, each in its own thread: the first ends while the second holds a
    folder's descriptor; it still names that folder (a rename in it succeeds), and every
    descriptor is closed once the last block ends."""
    (tmp_path / "records").mkdir()
    holding, first_done, second_done = threading.Event(), threading.Event(), threading.Event()
    seen: list[object] = []

    def second() -> None:
        with reused(), folder(tmp_path, tmp_path / "records") as fd:
            holding.set()
            assert first_done.wait(30)
            try:
                (tmp_path / "records" / "a.tmp").write_bytes(b"x")
                os.rename("a.tmp", "a.json", src_dir_fd=fd, dst_dir_fd=fd)
                seen.append(os.fstat(fd).st_ino)
            except OSError as exc:
                seen.append(exc)
        second_done.set()

    worker = threading.Thread(target=second)
    with reused():
        worker.start()
        assert holding.wait(30)
    first_done.set()
    assert second_done.wait(30)
    worker.join(30)
    assert seen == [(tmp_path / "records").stat().st_ino], seen
    assert (tmp_path / "records" / "a.json").read_bytes() == b"x"


def test_a_look_outside_any_block_keeps_its_folder_open_when_the_last_block_ends(
    tmp_path: Path,
) -> None:
    """A thread outside any ``reused`` block (another command of the process: a verify beside a
    pull's last thread) is handed the shared folder's descriptor; the last block ends meanwhile. The
    descriptor still names that folder until the look ends (closed under it, its number was soon
    another file's: a record read through it failed EBADF), and then it is closed."""
    (tmp_path / "records").mkdir()
    looking, block_done, look_done = threading.Event(), threading.Event(), threading.Event()
    seen: list[object] = []

    def look() -> None:
        with folder(tmp_path, tmp_path / "records") as fd:
            looking.set()
            assert block_done.wait(30)
            other = os.open(tmp_path, os.O_RDONLY)  # a number freed by a close would be this one's
            try:
                os.rename("a.tmp", "a.json", src_dir_fd=fd, dst_dir_fd=fd)
                seen.append(os.fstat(fd).st_ino)
            except OSError as exc:
                seen.append(exc)
            finally:
                os.close(other)
            seen.append(fd)
        look_done.set()

    (tmp_path / "records" / "a.tmp").write_bytes(b"x")
    worker = threading.Thread(target=look)
    with reused():
        worker.start()
        assert looking.wait(30)
    block_done.set()
    assert look_done.wait(30)
    worker.join(30)
    assert seen[:1] == [(tmp_path / "records").stat().st_ino], seen
    assert (tmp_path / "records" / "a.json").exists()
    try:  # closed once the look ended
        os.fstat(seen[1])
    except OSError as exc:
        assert exc.errno == errno.EBADF
    else:
        raise AssertionError(f"descriptor {seen[1]} of the look still open")
