"""Per-file outcomes of pull, verify and get, and the exit code they add up to."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mdl.errors import ExitCode, MdlError, worst_exit_code


@dataclass(frozen=True)
class FileOutcome:
    """What happened to one file (or to a whole model that failed before its files were known)."""

    model: str
    path: str | None
    dest: str | None
    size: int | None
    sha256: str | None
    action: str
    error: str | None = None
    exit_code: int = 0
    reason: str = ""
    fetched: int = 0
    mirror: str | None = None  # the mirror the bytes came from (redacted), when not the origin

    def to_json(self) -> dict[str, Any]:
        """The contract's per-file shape (plus ``reason``, and ``mirror`` when one served the file)."""
        doc: dict[str, Any] = {
            "model": self.model,
            "path": self.path,
            "dest": self.dest,
            "size": self.size,
            "sha256": self.sha256,
            "action": self.action,
            "error": self.error,
            "reason": self.reason,
        }
        if self.mirror is not None:
            doc["mirror"] = self.mirror
        return doc


@dataclass(frozen=True)
class RunReport:
    """The outcome of a pull, verify or get."""

    files: tuple[FileOutcome, ...]
    dry_run: bool = False

    @property
    def exit_code(self) -> int:
        """The lowest non-zero code above 1 among the failures (product contract)."""
        return worst_exit_code([f.exit_code for f in self.files])

    @property
    def ok(self) -> bool:
        """Everything asked for is present and verified."""
        return self.exit_code == ExitCode.OK

    def to_json(self) -> dict[str, Any]:
        """``{"ok", "files": [...]}`` (plus ``dry_run``)."""
        doc: dict[str, Any] = {"ok": self.ok, "files": [f.to_json() for f in self.files]}
        if self.dry_run:
            doc["dry_run"] = True
        return doc


def failed(model: str, path: str | None, exc: MdlError, *, dest: Path | None = None) -> FileOutcome:
    """An outcome for a failure, keeping the error's message and exit code."""
    return FileOutcome(
        model=model,
        path=path,
        dest=str(dest) if dest is not None else None,
        size=None,
        sha256=None,
        action="failed",
        error=exc.message,
        exit_code=int(exc.exit_code),
    )
