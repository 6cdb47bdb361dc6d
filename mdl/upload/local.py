"""Which local files of a model may be published: those mdl verified, re-hashed first when their record is stale."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from mdl.catalog import ModelSpec
from mdl.errors import IntegrityError, MdlError, NotFoundError
from mdl.progress import Progress
from mdl.report import FileOutcome, failed
from mdl.store import (
    INSTALLED,
    MODIFIED_MAYBE,
    Layout,
    ModelRecord,
    ModelStatus,
    PinnedFile,
    model_status,
    verify_file,
)

SHOWN = 5  # unfinished files named in the error; a model of thousands says how many more


@dataclass(frozen=True)
class ReadyFile:
    """A verified local file of a model: where its bytes are, and what they are."""

    model: str
    path: str  # save path in the model folder (the object key under <prefix>/<model>/)
    local: Path  # where the bytes are (a blob in the Hugging Face cache layout)
    size: int
    sha256: str
    source: str


@dataclass(frozen=True)
class LocalModel:
    """A model's publishable files, its record (commit, revision), and the failures that keep it back."""

    spec: ModelSpec
    record: ModelRecord | None
    ready: tuple[ReadyFile, ...]
    failures: tuple[FileOutcome, ...]


def local_model(
    spec: ModelSpec, layout: Layout, *, pinned: Sequence[PinnedFile] | None, progress: Progress
) -> LocalModel:
    """The model's files as mdl recorded them. A file whose size and mtime still match its record is trusted
    without reading it (as ``pull`` does); any other is re-hashed, and only the same bytes are published.

    A model never pulled or not fully installed (a file missing, unfinished, of another size or version) is
    ``missing`` (exit 4), and none of its files is offered; a file of other bytes than recorded or pinned is an
    integrity failure (exit 6). A model with any failure gets no manifest.
    """
    status = model_status(spec, layout, pinned=pinned)
    record = status.record
    if record is None:
        error: MdlError = NotFoundError(
            f"{spec.name}: not on this disk (never pulled into {status.folder or layout.plain.dest})",
            hint=f"run `mdl pull {spec.name}` first",
        )
        if layout.records.record_path(spec.name).exists():
            error = IntegrityError(
                f"{spec.name}: its record is damaged (the log says how), so no file is trusted",
                hint=f"run `mdl pull {spec.name}`",
            )
        outcome = failed(spec.name, None, error, dest=status.folder)
        return LocalModel(spec, None, (), (outcome if isinstance(error, IntegrityError) else _missing(outcome),))
    if status.status != INSTALLED:
        return LocalModel(
            spec, record, (), (_missing(failed(spec.name, None, _unfinished(status), dest=status.folder)),)
        )
    expected = {p.path: p.sha256 for p in pinned} if pinned is not None else {f.save_path: f.sha256 for f in spec.files}
    pinned_by = "catalog.lock" if pinned is not None else "catalog"
    ready: list[ReadyFile] = []
    failures: list[FileOutcome] = []
    for file in status.files:
        entry = record.files.get(file.path)
        want = expected.get(file.path)
        if file.state == INSTALLED and entry is not None and (want is None or want == entry.sha256):
            ready.append(ReadyFile(spec.name, file.path, file.final, entry.size, entry.sha256, entry.source))
            continue
        checked = verify_file(layout.records, spec.name, file, record, (want, pinned_by), progress)
        if checked.failing or checked.sha256 is None or checked.size is None:
            failures.append(checked)
            continue
        ready.append(ReadyFile(spec.name, file.path, file.final, checked.size, checked.sha256, file.source))
    return LocalModel(spec, record, tuple(ready), tuple(failures))


def _unfinished(status: ModelStatus) -> NotFoundError:
    """Why a model is not fully installed, naming its files that are not (the first few)."""
    name = status.spec.name
    files = [f"{f.path} ({f.state})" for f in status.files if f.state not in (INSTALLED, MODIFIED_MAYBE)]
    listed = ", ".join(files[:SHOWN]) + (f" and {len(files) - SHOWN} more" if len(files) > SHOWN else "")
    return NotFoundError(
        f"{name}: not fully installed ({status.status}): {listed or 'no files, or a download is unfinished'}",
        hint=f"run `mdl pull {name}` to finish it, then publish again",
    )


def _missing(outcome: FileOutcome) -> FileOutcome:
    return replace(outcome, action="missing")
