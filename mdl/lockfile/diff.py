"""What ``mdl lock --upgrade`` moved, per model: the commit, and files added, removed and changed."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mdl.lockfile.model import LockedFile, LockedModel


@dataclass(frozen=True)
class ModelChange:
    """One model's difference between two locks (``old`` None: newly locked; ``new`` None: dropped)."""

    name: str
    old_commit: str | None
    new_commit: str | None
    added: tuple[LockedFile, ...] = ()
    removed: tuple[LockedFile, ...] = ()
    changed: tuple[tuple[LockedFile, LockedFile], ...] = ()
    status: str = "changed"  # added | removed | changed | unchanged
    # Same bytes pinned to another commit, when the model has no one commit that says so (files from several
    # repos): the lock moved them, so the model is not "unchanged".
    repinned: tuple[tuple[LockedFile, LockedFile], ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status,
            "old_commit": self.old_commit,
            "new_commit": self.new_commit,
            "added": [{"path": f.path, "size": f.size} for f in self.added],
            "removed": [{"path": f.path, "size": f.size} for f in self.removed],
            "changed": [_moved(old, new, "size", "sha256") for old, new in self.changed],
            "repinned": [_moved(old, new, "source") for old, new in self.repinned],
        }


def _moved(old: LockedFile, new: LockedFile, *keys: str) -> dict[str, Any]:
    """A file's path and, per key, its old and new value."""
    doc: dict[str, Any] = {"path": new.path}
    for key in keys:
        doc.update({f"old_{key}": getattr(old, key), f"new_{key}": getattr(new, key)})
    return doc


def diff_locks(old: Mapping[str, LockedModel], new: Mapping[str, LockedModel]) -> list[ModelChange]:
    """Per model in either lock, sorted by name, what changed (``unchanged`` ones included)."""
    changes: list[ModelChange] = []
    for name in sorted(set(old) | set(new)):
        before, after = old.get(name), new.get(name)
        if before is None:
            assert after is not None
            changes.append(ModelChange(name, None, after.commit, added=after.files, status="added"))
            continue
        if after is None:
            changes.append(ModelChange(name, before.commit, None, removed=before.files, status="removed"))
            continue
        was = {f.path: f for f in before.files}
        now = {f.path: f for f in after.files}
        added = tuple(now[p] for p in sorted(set(now) - set(was)))
        removed = tuple(was[p] for p in sorted(set(was) - set(now)))
        both = [(was[p], now[p]) for p in sorted(set(was) & set(now))]
        changed = tuple((a, b) for a, b in both if (a.sha256, a.size) != (b.sha256, b.size))
        repinned = tuple((a, b) for a, b in both if a.source != b.source and (a.sha256, a.size) == (b.sha256, b.size))
        if before.commit is not None and before.commit != after.commit:
            repinned = ()  # the model's commit moved, and the line says so: its files followed it
        moved = before.commit != after.commit or added or removed or changed or repinned
        status = "changed" if moved else "unchanged"
        changes.append(ModelChange(name, before.commit, after.commit, added, removed, changed, status, repinned))
    return changes
