"""``prune --mirror`` on a shared folder against another user of it: a mark planted beside an
object mdl did not write, an object replaced between prune's look and its removal."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import pytest

from mdl.buckets.folder import FolderWriter, file_etag
from mdl.buckets.names import Mark
from mdl.upload.mirrorprune import Named, prune_mirror

DAY = 86_400.0
OLD = 30 * DAY


def _old(path: Path) -> None:
    stamp = time.time() - OLD
    os.utime(path, (stamp, stamp))


@pytest.mark.skipif(os.geteuid() != 0, reason="gives files to other users (root only)")
def test_a_mark_another_user_planted_never_removes_what_mdl_did_not_write(tmp_path: Path) -> None:
    """Anyone who can stat another team's object can copy its version (inode, mtime, size) into a
    mark under ``.mdl/marks/``: prune (run by a user who may remove it) removed that team's file.
    A mark counts only when its owner is the object's (the one user who wrote both)."""
    base = tmp_path / "mirror"
    theirs = base / "other" / "data.bin"
    theirs.parent.mkdir(parents=True)
    theirs.write_bytes(b"another team's")
    os.chown(theirs, 4242, 4242)
    _old(theirs)
    root = f"file://{base}/"
    mark = Path(Mark.of(f"file://{theirs}", root=root).uri.removeprefix("file://"))
    mark.parent.mkdir(parents=True)
    mark.write_text(file_etag(theirs.stat()))
    os.chown(mark, 4343, 4343)  # a third user planted it
    template = root + "{model}/{path}"
    report = prune_mirror(FolderWriter(), template, Named({}, {}, None), keep_days=7)
    assert report.removed == () and theirs.read_bytes() == b"another team's"
    assert [e.reason for e in report.kept] == [
        "not written by mdl at this name (no mdl mark made for it: a copy, another tool's)"
    ]
    os.chown(mark, 4242, 4242)  # the object's own user marked it: theirs to remove
    report = prune_mirror(FolderWriter(), template, Named({}, {}, None), keep_days=7)
    assert [e.uri for e in report.removed] == [f"file://{theirs}"] and not theirs.exists()


@pytest.mark.parametrize("swap_before", ["unlink", "rename"])
def test_an_object_replaced_between_prunes_look_and_its_removal_stays(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, swap_before: str
) -> None:
    """A folder has no conditional delete: prune compared the version, then unlinked the name,
    removing a new object another writer renamed in between. Now the file is renamed aside and
    its version checked there: the new object stays, whenever the other writer comes."""
    base = tmp_path / "mirror"
    uri = f"file://{base}/m/w.bin"
    source = tmp_path / "w"
    source.write_bytes(b"old")
    writer = FolderWriter()
    sha = hashlib.sha256(b"old").hexdigest()
    assert writer.upload(uri, source, size=3, sha256=sha, root=f"file://{base}/")
    target = base / "m" / "w.bin"
    _old(target)
    seen = writer.head(uri)
    assert seen is not None
    real = getattr(os, swap_before)
    swapped: list[bool] = []

    def another_writer_first(*args: object, **kwargs: object) -> object:
        if not swapped:  # once: another user of the share renames a new file over the object
            swapped.append(True)
            (tmp_path / "new").write_bytes(b"new version")
            os.replace(tmp_path / "new", target)
        return real(*args, **kwargs)

    monkeypatch.setattr(os, swap_before, another_writer_first)
    # before the rename: changed, kept; after it: the old version went, the new one came after
    assert writer.delete(uri, etag=seen.etag) is (swap_before == "unlink")
    monkeypatch.undo()
    assert target.read_bytes() == b"new version"
    assert sorted(p.name for p in target.parent.iterdir()) == ["w.bin"]  # nothing left aside
