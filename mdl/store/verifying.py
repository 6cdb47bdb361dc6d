"""``mdl verify``: re-hash what is on disk against the record and what the model should be (offline)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path

from mdl.catalog import ModelSpec, Settings
from mdl.errors import IntegrityError, LocalFSError, MdlError, NotFoundError
from mdl.progress import Progress
from mdl.report import FileOutcome, RunReport, failed
from mdl.store.filesystem import hash_file, not_a_file, not_a_file_error
from mdl.store.inventory import MISSING, PARTIAL, LocalFile, model_status
from mdl.store.layout import BLOB_NAME, Layout, ref_revision, write_ref
from mdl.store.records import ExpectedFile, ModelRecord
from mdl.store.store import Store


def verify_models(
    models: Sequence[ModelSpec],
    settings: Settings,
    *,
    progress: Progress,
    on_file: Callable[[FileOutcome], None] | None = None,
    pinned: Mapping[str, Sequence[ExpectedFile]] | None = None,
) -> RunReport:
    """Re-hash every recorded file against its record and the catalog (or, for ``pinned`` models, the lock);
    ``on_file`` sees each outcome as soon as it is known (``verify --all | head -1`` shows its first row at once)."""
    layout = Layout(settings)
    store = layout.records
    outcomes: list[FileOutcome] = []
    pins = pinned or {}
    statuses = [model_status(spec, layout, pinned=pins.get(spec.name)) for spec in models]
    hashed = [
        status.record.files[f.path].size
        for status in statuses
        if status.record is not None
        for f in status.files
        if f.path in status.record.files and f.state not in (MISSING, PARTIAL)
    ]
    progress.begin(total_bytes=sum(hashed), files=len(hashed))  # a total bar and an ETA

    def add(outcome: FileOutcome) -> None:
        outcomes.append(outcome)
        if on_file is not None:
            on_file(outcome)

    for spec, status in zip(models, statuses, strict=True):
        if status.record is None:
            record_path = store.record_path(spec.name)
            kind = not_a_file(record_path)
            error: MdlError = NotFoundError(
                f"{spec.name}: not on this disk (never pulled into {status.folder or layout.plain.dest})",
                hint=f"run `mdl pull {spec.name}`",
            )
            if kind is not None:  # never opened: pull replaces it (a folder excepted)
                error = _not_a_file(record_path, kind, spec.name, "its record ")
            elif record_path.exists():
                why = f"its record {record_path} is damaged (the log says how), so no file is trusted"
                error = IntegrityError(f"{spec.name}: {why}", hint=f"run `mdl pull {spec.name}`")
            outcome = failed(spec.name, None, error, dest=status.folder)
            add(replace(outcome, action="missing") if isinstance(error, NotFoundError) else outcome)
            continue
        locked = pins.get(spec.name) is not None
        catalog_sha = {f.save_path: f.sha256 for f in spec.files if f.sha256}
        for file in status.files:
            if not locked and file.path in catalog_sha:
                want: tuple[str | None, str] = (catalog_sha[file.path], "catalog")
            else:
                want = (file.sha256, "catalog.lock" if locked else "listing the pull resolved")
            add(verify_file(store, spec.name, file, status.record, want, progress))
        if status.files and not any(o.failing for o in outcomes if o.model == spec.name):
            for file in status.files:  # verified whole, in the Hugging Face cache: refs/<revision> names its commit
                revision = ref_revision(spec, status.record, file.path)
                ref = layout.ref_for(file.source, revision, label=f"{spec.name}/{file.path}")
                if ref is not None:
                    write_ref(layout.records.dest, *ref)
    return RunReport(tuple(outcomes))


def _not_a_file(path: Path, kind: str, model: str, where: str) -> LocalFSError:
    fix = f"remove it, then run `mdl pull {model}`" if kind == "a folder" else f"`mdl pull {model}` replaces it"
    return not_a_file_error(path, kind, where=where, hint=fix)


def verify_file(
    store: Store,
    model: str,
    file: LocalFile,
    record: ModelRecord,
    expected: tuple[str | None, str],
    progress: Progress,
) -> FileOutcome:
    """Re-hash one file against its record and ``expected`` (sha256 or None, who pins it); record a new mtime."""
    label = f"{model}/{file.path}"
    entry = record.files.get(file.path)
    expected_sha, pinned_by = expected
    if file.state in (MISSING, PARTIAL):
        for path in dict.fromkeys((file.dest, file.final)) if file.placed else ():
            try:  # lstat: a FIFO or device there is never opened
                kind = not_a_file(path)
            except LocalFSError:  # a name the filesystem cannot hold: no file can be there, it is missing
                kind = None
            if kind is not None:
                return failed(model, file.path, _not_a_file(path, kind, model, f"{label}: "), dest=file.dest)
        what = "missing"
        if file.state == PARTIAL:
            unlinked = file.final != file.dest and file.final.is_file()
            what = "missing (its blob is there, the snapshot entry is not)" if unlinked else "not finished"
        absent = NotFoundError(f"{label}: {what} ({file.dest})", hint=f"run `mdl pull {model}`")
        return replace(failed(model, file.path, absent, dest=file.dest), action="missing")
    try:
        if entry is None:
            raise IntegrityError(f"{label}: present but never verified by mdl (run `mdl pull {model}`)")
        progress.start(label, label=label, total=entry.size, model=model, path=file.path)
        blob_name = file.final.name if file.final != file.dest and BLOB_NAME.match(file.final.name) else None
        git = blob_name is not None and len(blob_name) == 40
        size, sha256, git_oid = hash_file(file.final, git=git, on_bytes=functools.partial(progress.advance, label))
        if blob_name is not None and blob_name not in (sha256, git_oid):
            # A Hugging Face cache blob is named by its content: other bytes under that name are corruption,
            # whatever the record says (hf_hub_download would serve them as this file).
            actual = f"sha256 {sha256}" if len(blob_name) == 64 else f"git blob id {git_oid}"
            raise IntegrityError(f"{label}: corrupt: its blob {file.final} holds bytes with {actual}")
        if size != entry.size:
            raise IntegrityError(f"{label}: size is {size} bytes, expected {entry.size}")
        want = expected_sha or entry.sha256
        if sha256 == entry.sha256 and sha256 != want:  # intact as pulled, but another version than pinned
            raise IntegrityError(
                f"{label}: outdated: {pinned_by} pins sha256 {want}, this file is the version with {sha256}",
                hint=f"run `mdl pull {model}`",
            )
        if sha256 != want:
            raise IntegrityError(f"{label}: sha256 mismatch: expected {want}, got {sha256}")
        if expected_sha and entry.sha256 != expected_sha:
            raise IntegrityError(f"{label}: sha256 {entry.sha256} differs from the {pinned_by}'s {expected_sha}")
        if file.state != "installed" and file.final != file.dest:
            raise IntegrityError(f"{label}: {file.dest} does not lead to its blob (run `mdl pull {model}`)")
    except MdlError as exc:
        progress.finish(label, ok=False, message=exc.message)
        return failed(model, file.path, exc, dest=file.dest)
    except OSError as exc:
        error = IntegrityError(f"{label}: cannot read {file.dest}: {exc.strerror or exc}")
        progress.finish(label, ok=False, message=error.message)
        return failed(model, file.path, error, dest=file.dest)
    progress.finish(label, ok=True)
    mtime_ns = file.final.stat().st_mtime_ns
    if entry.mtime_ns != mtime_ns:  # re-verified: trust the new mtime from now on
        store.update_record(model, revision=None, commit=None, put=replace(entry, mtime_ns=mtime_ns))
    return FileOutcome(model, file.path, str(file.dest), size, sha256, "verified")
