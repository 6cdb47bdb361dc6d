"""The per-model record of verified files: its data, its JSON form on disk, reading it back and merging changes."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mdl.redact import record_text

log = logging.getLogger("mdl.store")

RECORD_VERSION = 1


@dataclass(frozen=True)
class FileRecord:
    """What mdl fetched and verified for one file (no secrets: ``source`` is redacted)."""

    path: str
    size: int
    sha256: str
    mtime_ns: int
    source: str = ""
    git_oid: str | None = None
    etag: str | None = None
    commit: str | None = None
    fetched_at: str = ""


@dataclass(frozen=True)
class ModelRecord:
    """The per-model record that lets ``list``, ``verify`` and re-runs work offline."""

    name: str
    revision: str | None = None
    commit: str | None = None
    files: dict[str, FileRecord] = field(default_factory=dict)
    updated_at: str = ""

    def to_json(self) -> dict[str, Any]:
        """The record as stored on disk: server-provided text passes ``record_text`` (printable, no secrets)."""
        return {
            "version": RECORD_VERSION,
            "name": self.name,
            "revision": record_text(self.revision),
            "commit": record_text(self.commit),
            "updated_at": self.updated_at,
            "files": {path: _file_json(rec) for path, rec in sorted(self.files.items())},
        }


def _file_json(rec: FileRecord) -> dict[str, Any]:
    """One file's entry: its source URL, ETag and commit came from servers or the catalog."""
    doc = asdict(rec)
    for key in ("source", "etag", "commit", "git_oid"):
        doc[key] = record_text(doc[key])
    return doc


def now_iso() -> str:
    """UTC time for records."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_record(model: str, path: Path) -> ModelRecord | None:
    """The record stored at ``path``, or None if absent or unreadable (then files are re-checked, never trusted)."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        files = {
            p: FileRecord(**{k: v for k, v in rec.items() if k in FileRecord.__dataclass_fields__})
            for p, rec in raw.get("files", {}).items()
        }
        return ModelRecord(
            name=model,
            revision=raw.get("revision"),
            commit=raw.get("commit"),
            files=files,
            updated_at=raw.get("updated_at", ""),
        )
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError, AttributeError) as exc:
        log.warning("ignoring unreadable record %s: %s", path, exc)
        return None


def merge_record(
    current: ModelRecord,
    *,
    revision: str | None,
    commit: str | None,
    puts: tuple[FileRecord, ...],
    remove: tuple[str, ...],
) -> ModelRecord:
    """``current`` with files removed, then added or replaced; a revision or commit of None keeps the old one."""
    files = dict(current.files)
    for path in remove:
        files.pop(path, None)
    for one in puts:
        files[one.path] = one
    return ModelRecord(
        name=current.name,
        revision=revision if revision is not None else current.revision,
        commit=commit if commit is not None else current.commit,
        files=files,
        updated_at=now_iso(),
    )
