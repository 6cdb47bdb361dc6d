"""What the offline commands return: the catalog's models with their state, one model, the partials cleaned."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mdl.store.cleaning import CleanedFile
from mdl.store.inventory import ModelStatus


@dataclass(frozen=True)
class ModelList:
    """The catalog's models with their local status, and the download root they were looked for in."""

    models: tuple[ModelStatus, ...]
    dest: Path

    def to_json(self) -> dict[str, Any]:
        """``{"models": [...], "dest"}``, as ``mdl list --json``."""
        return {"models": [m.list_json() for m in self.models], "dest": str(self.dest)}


@dataclass(frozen=True)
class ModelInfo:
    """One model's files and local state, and the folder its files go into (None: several, see each file's dest).

    In the Hugging Face cache layout that is the snapshot folder ``…/hub/models--o--r/snapshots/<commit>``."""

    status: ModelStatus
    folder: Path | None
    warning: str | None = None  # why the model is not shown as a lock pins it (the lock is out of date for it)
    commit: str | None = None  # the commit a lock pins, shown when nothing is recorded yet

    def to_json(self) -> dict[str, Any]:
        """``{"models": [one]}``, as ``mdl show --json``."""
        doc = self.status.show_json()
        if doc.get("commit") is None and self.commit is not None:
            doc["commit"] = self.commit
        if self.warning is not None:
            doc["warning"] = self.warning
        return {"models": [doc]}


@dataclass(frozen=True)
class CleanReport:
    """The partial downloads clean removed (or, with dry_run, would remove)."""

    files: tuple[CleanedFile, ...]
    dry_run: bool = False

    @property
    def freed(self) -> int:
        """Bytes freed (or that would be)."""
        return sum(c.size for c in self.files)

    def to_json(self) -> dict[str, Any]:
        """``{"ok", "dry_run", "freed", "files": [...]}``, as ``mdl clean --json``."""
        files = [{"path": str(c.path), "size": c.size, "source": c.label, "removed": c.removed} for c in self.files]
        return {"ok": True, "dry_run": self.dry_run, "freed": self.freed, "files": files}
