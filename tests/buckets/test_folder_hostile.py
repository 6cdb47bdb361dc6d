"""A shared folder's mirror against another user of it: what they may put where mdl lists."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mdl.buckets.folder import FolderWriter
from mdl.buckets.lease import look, take
from mdl.buckets.names import Generation
from mdl.upload.mirrorprune import Named, prune_mirror

DEPTH = sys.getrecursionlimit() + 100  # deeper than any recursion goes


@pytest.fixture
def deep(tmp_path: Path) -> Iterator[Callable[[Path], Path]]:
    """A function returning the top of a tree of folders ``DEPTH`` deep made under a folder (one
    name at a time: the whole path stays under PATH_MAX); removed bottom up after."""
    made: list[Path] = []

    def make(top: Path) -> Path:
        top.mkdir(parents=True, exist_ok=True)
        fd = os.open(top, os.O_RDONLY)
        for _ in range(DEPTH):
            os.mkdir("a", dir_fd=fd)
            child = os.open("a", os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = child
        os.close(fd)
        made.append(top / "a")
        return top

    yield make
    for tree in made:  # rmtree recurses: removed from the bottom, one level at a time
        for level in range(DEPTH, 0, -1):
            os.rmdir(tree.parent / "/".join(["a"] * level))


def test_a_tree_of_any_depth_at_a_lease_is_no_generation(
    deep: Callable[[Path], Path], tmp_path: Path
) -> None:
    """Another user of the share makes folders 1100 deep under an object's leases: a look raised
    RecursionError (exit 1 of every fill of that file). Now it is no generation: taken at 1."""
    deep(tmp_path / "hub" / ".mdl" / "leases" / "m" / "w.bin")
    lease = Generation.of(f"file://{tmp_path}/hub/.mdl/", f"file://{tmp_path}/hub/m/w.bin")
    writer = FolderWriter()
    assert look(writer, lease).state == "none"
    lease = take(writer, lease, holder="me")
    assert lease is not None and lease.number == 1


def test_prune_lists_a_mirror_holding_a_tree_of_any_depth(
    deep: Callable[[Path], Path], tmp_path: Path
) -> None:
    """Another team's deep folders beside the models: prune lists past them, keeping all."""
    mirror = tmp_path / "mirror"
    (mirror / "m").mkdir(parents=True)
    (mirror / "m" / "w.bin").write_bytes(b"w")
    deep(mirror / "theirs")
    template = f"file://{mirror}/{{model}}/{{path}}"
    report = prune_mirror(FolderWriter(), template, Named({}, {}, None), keep_days=0)
    assert report.removed == () and report.errors == ()
    assert [e.uri for e in report.kept] == [f"file://{mirror}/m/w.bin"]


def test_a_look_at_a_lease_folder_of_any_size_reads_a_bounded_part(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another user fills an object's lease folder with names (an inode each, no data): every look
    of every waiting machine read and sorted them all (200,000: +50 MB a look); later, it read a
    little more than it could judge and called the lease unknown (issue 75: every machine went
    to the origin). A generation is looked up by its name now: the folder is never listed."""
    folder = tmp_path / "hub" / ".mdl" / "leases" / "m" / "w.bin"
    folder.mkdir(parents=True)
    many = 3 * 1000
    for n in range(many):
        (folder / f"x{n:06d}").touch()
    read: list[str] = []
    real = os.scandir

    class Counted:
        def __init__(self, path: object) -> None:
            self.entries = real(path)  # type: ignore[call-overload]

        def __enter__(self) -> Counted:
            return self

        def __exit__(self, *exc: object) -> None:
            self.entries.close()

        def __iter__(self) -> Counted:
            return self

        def __next__(self) -> os.DirEntry[str]:
            entry: os.DirEntry[str] = next(self.entries)
            read.append(entry.name)
            return entry

        def close(self) -> None:
            self.entries.close()

    monkeypatch.setattr(os, "scandir", Counted)
    name = Generation.of(f"file://{tmp_path}/hub/.mdl/", f"file://{tmp_path}/hub/m/w.bin")
    assert look(FolderWriter(), name).state == "none"
    lease = take(FolderWriter(), name, holder="me")
    assert lease is not None and lease.number == 1
    assert look(FolderWriter(), name).state == "live"
    assert read == []
