"""``mdl clean``: partial downloads and resume records no running mdl holds, removed (or listed with dry_run).

Only regular files with mdl's own names under ``.mdl/partial`` are candidates (``Store.partials``), each
removed as the entry it is, never through a link; a folder on the way that is a link is refused (exit 2).
Idle lock files need no clean-up of their own: a lock file is removed by its holder's release, and one a
killed run left behind goes once clean takes and releases it.
"""

from __future__ import annotations

import stat
from dataclasses import dataclass
from pathlib import Path

from mdl.catalog import Settings
from mdl.store import confined
from mdl.store.layout import Layout
from mdl.store.store import Store


@dataclass(frozen=True)
class CleanedFile:
    """A partial download that clean removed (or would remove)."""

    path: Path
    size: int
    label: str
    removed: bool


def clean(settings: Settings) -> list[CleanedFile]:
    """Remove partial downloads and resume records that no running mdl holds a lock on."""
    cleaned: list[CleanedFile] = []
    for store in Layout(settings).stores():
        for partial in store.partials():
            key = partial.part_path.name.split(".part")[0]
            held = store.try_file_lock(key)
            if held is None:
                continue  # a run is using it right now
            try:
                if not settings.dry_run:
                    store.remove_partial(partial)
                cleaned.append(CleanedFile(partial.part_path, partial.size, partial.label, not settings.dry_run))
            finally:
                held.release()
        if not settings.dry_run:
            _remove_idle_locks(store)
    return cleaned


def _remove_idle_locks(store: Store) -> None:
    """Lock files nobody holds (a killed run's) are removed by taking and releasing them."""
    folder = store.state_dir / "locks"
    for name, found in confined.entries(store.dest, folder):
        if name.endswith(".lock") and stat.S_ISREG(found.st_mode):
            held = store.try_file_lock(name.removesuffix(".lock"))
            if held is not None:
                held.release()
