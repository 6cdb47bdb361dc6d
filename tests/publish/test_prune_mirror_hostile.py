"""``prune --mirror`` on a shared folder against another user of it: a mark planted beside an
object mdl did not write, an object replaced between prune's look and its removal."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from mdl.buckets import FolderWriter
from mdl.buckets.folder import file_etag
from mdl.buckets.protocol import mark_uri
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
    mark = Path(mark_uri(f"file://{theirs}", root=root).removeprefix("file://"))
    mark.parent.mkdir(parents=True)
    mark.write_text(file_etag(theirs.stat()))
    os.chown(mark, 4343, 4343)  # a third user planted it
    template = root + "{model}/{path}"
    report = prune_mirror(FolderWriter(), template, Named({}, {}, None), keep_days=7)
    assert report.removed == () and theirs.read_bytes() == b"another team's"
    assert [e.reason for e in report.kept] == ["not written by mdl (it carries no mdl mark)"]
    os.chown(mark, 4242, 4242)  # the object's own user marked it: theirs to remove
    report = prune_mirror(FolderWriter(), template, Named({}, {}, None), keep_days=7)
    assert [e.uri for e in report.removed] == [f"file://{theirs}"] and not theirs.exists()
