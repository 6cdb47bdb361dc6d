"""Which local files of a model may be published: those mdl verified, re-hashed first when their record is stale."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from mdl.catalog import ModelSpec
from mdl.errors import IntegrityError, MdlError, NotFoundError
from mdl.progress import Progress
from mdl.report import FileOutcome, failed
from mdl.store import INSTALLED, Layout, ModelRecord, PinnedFile, model_status, verify_file


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

    A model never pulled, a missing or unfinished file is ``missing`` (exit 4, as ``verify``); other bytes than
    recorded or pinned are an integrity failure (exit 6): nothing of the model is published then.
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
    if not status.files:
        error = NotFoundError(f"{spec.name}: no files recorded", hint=f"run `mdl pull {spec.name}` first")
        failures.append(_missing(failed(spec.name, None, error, dest=status.folder)))
    return LocalModel(spec, record, tuple(ready), tuple(failures))


def _missing(outcome: FileOutcome) -> FileOutcome:
    return replace(outcome, action="missing")
