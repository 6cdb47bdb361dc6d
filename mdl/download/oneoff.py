"""What a one-off ``mdl get`` leaves in a folder's ``.mdl/``: none of its own state once done, nobody else's touched.

A ``mdl pull --dest D`` may be using ``D/.mdl`` while a ``mdl get -d D`` runs, so get never removes a tree: it
removes its own idle lock files, then the state folders it created (or that held only get's own files) when
they are empty. ``rmdir`` fails on a folder that is not empty, so nothing another run keeps there is lost.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from mdl.store import Store

# Store keys of files that belong to no model ("-<16 hex>-<name>"): get's partial downloads and locks.
_OWN = re.compile(r"^-[0-9a-f]{16}-")
_SUBFOLDERS = ("partial", "locks", "records")


@dataclass(frozen=True)
class StateBefore:
    """The state folders that existed before the get, and whether anyone but get kept files there."""

    existed: frozenset[Path]
    only_get: bool


def look_before(store: Store) -> StateBefore:
    """Note what ``<dest>/.mdl`` holds before a get touches it."""
    folders = (store.state_dir, *(store.state_dir / sub for sub in _SUBFOLDERS))
    existed = frozenset(f for f in folders if f.is_dir())
    return StateBefore(existed, only_get=not _others_in(store.state_dir))


def tidy_after(store: Store, before: StateBefore, *, names: Iterable[str]) -> None:
    """Remove get's own idle lock files, then the empty state folders get may remove (deepest first)."""
    for name in names:
        _remove_idle_lock(store.lock_path("", name))
    for folder in (*(store.state_dir / sub for sub in _SUBFOLDERS), store.state_dir):
        if folder in before.existed and not before.only_get:
            continue  # a pull's folder: not ours to remove, even empty
        with contextlib.suppress(OSError):
            folder.rmdir()  # only if empty


def _others_in(state_dir: Path) -> bool:
    """Whether anything but get's own partials and locks is in ``state_dir`` (records mean a pull uses it)."""
    if not state_dir.is_dir():
        return False
    try:
        for entry in state_dir.iterdir():
            if entry.name not in ("partial", "locks") or not entry.is_dir():
                return True
            if any(not _OWN.match(child.name) for child in entry.iterdir()):
                return True
    except OSError:
        return True  # cannot tell: leave everything as it is
    return False


def _remove_idle_lock(path: Path) -> None:
    """Delete one of get's lock files unless another run holds it right now."""
    from filelock import FileLock, Timeout

    if not path.exists():
        return
    lock = FileLock(path, thread_local=False)
    try:
        lock.acquire(timeout=0)
    except (Timeout, OSError):
        return
    try:
        with contextlib.suppress(OSError):
            path.unlink()
    finally:
        lock.release()
