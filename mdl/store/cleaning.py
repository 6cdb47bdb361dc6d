"""``mdl clean``: partial downloads and resume records no running mdl holds, removed (or listed with dry_run)."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

from mdl.catalog import Settings
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
    from filelock import FileLock, Timeout

    cleaned: list[CleanedFile] = []
    for store in Layout(settings).stores():
        for partial in store.partials():
            key = partial.part_path.name.removesuffix(".tmp").removesuffix(".json").removesuffix(".part")
            lock = FileLock(store.state_dir / "locks" / f"{key}.lock")
            try:
                lock.acquire(timeout=0)
            except Timeout:
                continue  # a run is using it right now
            try:
                if not settings.dry_run:
                    store.remove_partial(partial)
                cleaned.append(CleanedFile(partial.part_path, partial.size, partial.label, not settings.dry_run))
            finally:
                lock.release()
        if not settings.dry_run:
            _remove_idle_locks(store)
    return cleaned


def _remove_idle_locks(store: Store) -> None:
    """Lock files nobody holds are debris once their partial is gone."""
    from filelock import FileLock, Timeout

    folder = store.state_dir / "locks"
    if not folder.is_dir():
        return
    for path in folder.glob("*.lock"):
        lock = FileLock(path)
        try:
            lock.acquire(timeout=0)
        except Timeout:
            continue
        try:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        finally:
            lock.release()
