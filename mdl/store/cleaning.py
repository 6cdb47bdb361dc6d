"""``mdl clean``: partial downloads and resume records no running mdl holds, removed (or listed with dry_run).

Only regular files with mdl's own names under ``.mdl/partial`` are candidates (``Store.partials``), removed as
the entries they are, never through a link. A lock file a killed run left goes once clean takes and releases it.
"""

from __future__ import annotations

import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mdl.catalog import Settings
from mdl.store import confined
from mdl.store.layout import Layout


@dataclass(frozen=True)
class CleanedFile:
    """A partial download that clean removed (or would remove)."""

    path: Path
    size: int
    label: str
    removed: bool


@dataclass(frozen=True)
class CleanReport:
    """The partial downloads clean removed (or, with dry_run, would remove)."""

    files: tuple[CleanedFile, ...]
    dry_run: bool = False

    @property
    def freed(self) -> int:
        return sum(c.size for c in self.files)

    def to_json(self) -> dict[str, Any]:
        files = [{"path": str(c.path), "size": c.size, "source": c.label, "removed": c.removed} for c in self.files]
        return {"ok": True, "dry_run": self.dry_run, "freed": self.freed, "files": files}


def clean(settings: Settings) -> list[CleanedFile]:
    """Remove partial downloads and resume records that no running mdl holds a lock on."""
    cleaned: list[CleanedFile] = []
    for store in Layout(settings).stores():
        for partial in store.partials():
            held = store.try_file_lock(partial.part_path.name.split(".part")[0])
            if held is None:
                continue  # a run is using it right now
            with held:
                if not settings.dry_run:
                    store.remove_partial(partial)
                cleaned.append(CleanedFile(partial.part_path, partial.size, partial.label, not settings.dry_run))
        if not settings.dry_run:  # idle lock files (a killed run's) go by being taken and released
            for name, found in confined.entries(store.dest, store.state_dir / "locks"):
                if name.endswith(".lock") and stat.S_ISREG(found.st_mode):
                    held = store.try_file_lock(name.removesuffix(".lock"))
                    if held is not None:
                        held.release()
    return cleaned
