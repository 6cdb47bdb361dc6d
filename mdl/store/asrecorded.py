"""Whether an entry on disk is what mdl wrote there (prune's judge, apart from its removals): the
file it recorded (by size and mtime, else by its hash, read by descriptor) or the link it made to
its blob; judged on an ``lstat`` taken inside the root, never through a link on the way, and
removed only as the object judged (:func:`unchanged`)."""

from __future__ import annotations

import contextlib
import os
import stat as st
from collections.abc import Callable
from pathlib import Path

from mdl.errors import MdlError, UnsafePathError
from mdl.store import confined
from mdl.store.filesystem import hash_descriptor
from mdl.store.layout import Layout, Placement
from mdl.store.records import FileRecord
from mdl.store.states import INSTALLED, MODIFIED_MAYBE, judge


def place_of(layout: Layout, model: str, entry: FileRecord) -> Placement | None:
    """Where mdl wrote a record entry of ``model`` (None: nowhere it could be)."""
    try:
        return layout.place(
            model, entry.path, source=entry.source, sha256=entry.sha256, git_oid=entry.git_oid
        )
    except UnsafePathError:  # a link on the way: refused, as by every command
        raise
    except MdlError:
        return None


def why_kept(
    root: Path, path: Path, found: os.stat_result, entry: FileRecord, link: Placement | None
) -> tuple[str | None, os.stat_result]:
    """Why the entry at ``path`` is not what mdl wrote (None: it is), and the ``stat`` of the
    object judged."""
    if link is None:
        return _not_as_recorded(root, path, found, entry)
    if not st.S_ISLNK(found.st_mode) or not leads_to(path, link.blob):
        return "not the link mdl made to its blob", found
    return None, found


def _not_as_recorded(
    root: Path, path: Path, found: os.stat_result, entry: FileRecord
) -> tuple[str | None, os.stat_result]:
    """Why the entry at ``path`` is not the file mdl recorded (None: it is, by size and mtime or by
    its hash), and the ``stat`` of the object judged (the one hashed, when it was)."""
    if not st.S_ISREG(found.st_mode):
        return "not the file mdl wrote (a link or no file)", found
    if (state := judge(entry, found.st_size, found.st_mtime_ns)) == INSTALLED:
        return None, found
    changed = "changed since mdl wrote it"
    if state != MODIFIED_MAYBE:
        return changed, found
    # hashed by descriptor, never by name again
    fd = confined.open_file(root, path, os.O_RDONLY | os.O_NONBLOCK)
    # taken before the bytes: a write meanwhile moves its mtime, and it is no longer this
    hashed = os.fstat(fd)
    _, sha256, _ = hash_descriptor(fd, path)
    return (None if sha256 == entry.sha256 else changed), hashed


def unchanged(checked: os.stat_result) -> Callable[[os.stat_result], bool]:
    """The judge of :func:`confined.unlink_checked`: whether the ``lstat`` of what is about to be
    removed is the object ``checked``, unchanged since."""
    return lambda now: _identity(now) == _identity(checked)


def _identity(found: os.stat_result) -> tuple[int, ...]:
    return found.st_dev, found.st_ino, st.S_IFMT(found.st_mode), found.st_size, found.st_mtime_ns


def lstat_in(root: Path, path: Path) -> os.stat_result | None:
    """``lstat`` of ``path`` inside ``root``, never through a link on the way (UnsafePathError
    names it)."""
    try:
        with confined.folder(root, path.parent, create=False) as dir_fd:
            return os.stat(path.name, dir_fd=dir_fd, follow_symlinks=False)
    except (FileNotFoundError, NotADirectoryError):
        return None


def leads_to(link: Path, blob: Path) -> bool:
    """Whether the symlink ``link`` names ``blob`` (read, never followed)."""
    with contextlib.suppress(OSError):
        return os.path.normpath(link.parent / link.readlink()) == os.path.normpath(blob)
    return False
