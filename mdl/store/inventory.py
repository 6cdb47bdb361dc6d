"""What is on disk (list, show, verify, clean; all offline), and resolve for what is upstream."""

from __future__ import annotations

import contextlib
import functools
import re
import stat as st
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import Any

from mdl.catalog import Catalog, ModelSpec, Settings
from mdl.errors import IntegrityError, MdlError, NotFoundError
from mdl.progress import Progress
from mdl.redact import redact_url
from mdl.report import FileOutcome, RunReport, failed
from mdl.store.filesystem import hash_file, stat_file
from mdl.store.layout import Layout, Placement, repo_folder
from mdl.store.records import FileRecord, ModelRecord
from mdl.store.states import INSTALLED, MISSING, MODIFIED_MAYBE, PARTIAL, judge, model_state
from mdl.store.store import Store, key_prefix

_BLOB_NAME = re.compile(r"^(?:[0-9a-f]{40}|[0-9a-f]{64})$")  # a cache blob's name: sha256 or git blob id


@dataclass(frozen=True)
class LocalFile:
    """One expected file of a model and its state on disk."""

    path: str
    dest: Path  # the path programs open (a snapshot entry in the Hugging Face cache)
    final: Path  # where the bytes are (the blob in the Hugging Face cache; else the same as dest)
    size: int | None
    sha256: str | None
    source: str
    state: str  # one of mdl.store.states.FILE_STATES


@dataclass(frozen=True)
class PinnedFile:
    """A file a lock pins for a model: its save path, size, sha256 and source (what verify and show compare to)."""

    path: str
    size: int
    sha256: str
    source: str


OUTDATED = "outdated"  # recorded and intact, but not the version the lock pins (pull fetches the pinned one)


@dataclass(frozen=True)
class ModelStatus:
    """A catalog model and its local state."""

    spec: ModelSpec
    record: ModelRecord | None
    files: tuple[LocalFile, ...]
    status: str  # installed | partial | missing
    folder: Path | None = None  # the one folder holding the model's files; None when they are in several

    @property
    def unverified(self) -> int:
        """Files of an installed model touched since they were verified (``modified?``): a re-hash must tell."""
        return sum(1 for f in self.files if f.state == MODIFIED_MAYBE)

    @property
    def size(self) -> int | None:
        """Total size when every file's size is known."""
        sizes = [f.size for f in self.files]
        return sum(s for s in sizes if s is not None) if sizes and None not in sizes else None

    def list_json(self) -> dict[str, Any]:
        """The ``list`` entry."""
        return {
            "name": self.spec.name,
            "description": self.spec.description,
            "tags": list(self.spec.tags),
            "status": self.status,
            "unverified": self.unverified,
            "files": len(self.files),
            "size": self.size,
            "kind": "snapshot" if self.spec.is_snapshot else "files",
        }

    def show_json(self) -> dict[str, Any]:
        """The ``show`` entry."""
        return {
            "name": self.spec.name,
            "description": self.spec.description,
            "tags": list(self.spec.tags),
            "repo": self.spec.repo,
            "repo_type": self.spec.repo_type if self.spec.is_snapshot else None,
            "revision": self.record.revision if self.record and self.record.revision else _revision(self.spec),
            "commit": self.record.commit if self.record else None,
            "status": self.status,
            "unverified": self.unverified,
            "dest": str(self.folder) if self.folder is not None else None,
            "files": [
                {
                    "path": f.path,
                    "dest": str(f.dest),
                    "url": f.source,
                    "size": f.size,
                    "sha256": f.sha256,
                    "state": f.state,
                }
                for f in self.files
            ],
        }


def _revision(spec: ModelSpec) -> str | None:
    return spec.revision if spec.is_snapshot else None


def _placement(layout: Layout, model: str, path: str, source: str, entry: FileRecord | None) -> Placement | None:
    """Where the file is in this layout; None when that cannot be known yet (a Hub file never pulled, hf-cache)."""
    try:
        return layout.place(
            model,
            path,
            source=entry.source if entry else source,
            sha256=entry.sha256 if entry else None,
            git_oid=entry.git_oid if entry else None,
        )
    except MdlError:
        return None


def file_state(
    layout: Layout, model: str, path: str, source: str, entry: FileRecord | None
) -> tuple[str, Placement | None]:
    """The file's state (mdl.store.states) and where it is, from its record and ``lstat`` only."""
    placement = _placement(layout, model, path, source, entry)
    if placement is None:
        return MISSING, None
    stat = stat_file(placement.final)
    if stat is None and placement.link is not None and placement.link.is_symlink():
        # The record names a blob that is not there, yet the snapshot entry leads to one (an older mdl stored
        # unverified bytes under the expected name): judge the blob programs actually open, never call it missing.
        with contextlib.suppress(OSError):
            blob = placement.link.resolve(strict=True)
            placement = replace(placement, final=blob)
            stat = stat_file(blob)
    if stat is None or not st.S_ISREG(stat.st_mode):
        part, state = placement.store.part_paths(model, path)
        return (PARTIAL if part.exists() and state.exists() else MISSING), placement
    judged = judge(entry, stat.st_size, stat.st_mtime_ns)
    if judged in (INSTALLED, MODIFIED_MAYBE) and not placement.linked():
        return PARTIAL, placement  # the blob is there, the snapshot entry programs open is not
    return judged, placement


def model_status(spec: ModelSpec, layout: Layout, *, pinned: Sequence[PinnedFile] | None = None) -> ModelStatus:
    """The local state of one model, from its record and ``lstat`` only (no network, no hashing); ``pinned``: the
    files a lock pins (they are the model's files, and a recorded file of another sha256 is ``outdated``)."""
    store = layout.records
    record = store.read_record(spec.name)
    recorded = record.files if record is not None else {}
    expected: list[tuple[str, int | None, str | None, str]] = []
    if pinned is not None:
        expected = [(p.path, p.size, p.sha256, p.source) for p in pinned]
    elif spec.is_snapshot:
        for path, rec in sorted(recorded.items()):
            expected.append((path, rec.size, rec.sha256, rec.source))
    else:
        for file in spec.files:
            entry = recorded.get(file.save_path)
            source = entry.source if entry else (redact_url(file.url) if file.url else f"hf://{file.repo}/{file.path}")
            size = entry.size if entry else file.size
            expected.append((file.save_path, size, entry.sha256 if entry else file.sha256, source))
    files: list[LocalFile] = []
    folders: set[Path | None] = set()
    unplaced = _unplaced_folder(layout, spec)  # where a file goes before its commit is known
    for path, size, sha256, source in expected:
        state, placement = file_state(layout, spec.name, path, source, recorded.get(path))
        entry = recorded.get(path)
        if pinned is not None and entry is not None and state != MISSING and entry.sha256 != sha256:
            state = OUTDATED
        shown = placement.shown if placement else unplaced
        final = placement.final if placement else shown
        files.append(LocalFile(path, shown, final, size, sha256, source, state))
        if placement is not None:
            folders.add(_folder_of(layout, placement, path))
    partials = any(_has_partials(s, spec.name) for s in layout.stores())
    status = model_state((f.state for f in files), partials=partials)
    folder = (folders.pop() if len(folders) == 1 else None) if folders else unplaced
    return ModelStatus(spec, record, tuple(files), status, folder)


def unplaced_path(layout: Layout, model: str) -> Path:
    """What to show as the destination of a file whose place is not known yet."""
    return layout.cache_root if layout.cache_root is not None else layout.plain.model_dir(model)


def _unplaced_folder(layout: Layout, spec: ModelSpec) -> Path:
    """A model's folder before its commit is known: the repo's folder in the Hugging Face cache, else plain."""
    if layout.cache_root is not None and spec.repo is not None:
        return layout.cache_root / repo_folder(spec.repo, spec.repo_type)
    if layout.cache_root is not None and spec.files and all(f.url is None for f in spec.files):
        repos = {(f.repo, f.repo_type or "model") for f in spec.files if f.repo}
        if len(repos) == 1:
            return layout.cache_root / repo_folder(*repos.pop())
    return layout.plain.model_dir(spec.name)


def _folder_of(layout: Layout, placement: Placement, path: str) -> Path | None:
    """The folder a file's shown path sits in: the snapshot folder ``…/models--o--r/snapshots/<commit>`` (Hugging
    Face cache), else the model's folder once the file's path is taken off (None when they do not match)."""
    shown = placement.shown
    if placement.link is not None and layout.cache_root is not None:
        with contextlib.suppress(ValueError):
            repo_dir, snapshots, commit, *_ = shown.relative_to(layout.cache_root).parts
            return layout.cache_root / repo_dir / snapshots / commit
        return None
    rel = PurePosixPath(path).parts
    if len(shown.parts) <= len(rel) or shown.parts[-len(rel) :] != rel:
        return None
    return shown.parents[len(rel) - 1]


def _has_partials(store: Store, model: str) -> bool:
    folder = store.state_dir / "partial"
    if not folder.is_dir():
        return False
    # Partial names are "<model>-<16 hex>-<file>.part": match the digest too, so "foo" is not "foo-bar".
    pattern = re.compile(re.escape(key_prefix(model)) + r"-[0-9a-f]{16}-.*\.part$")
    return any(pattern.match(p.name) for p in folder.iterdir())


def list_models(catalog: Catalog, layout: Layout, *, status: str | None, tag: str | None) -> list[ModelStatus]:
    """Every catalog model with its local status, filtered by status and tag."""
    found = [model_status(spec, layout) for spec in catalog.models if tag is None or tag in spec.tags]
    return [m for m in found if status is None or m.status == status]


def verify_models(
    models: Sequence[ModelSpec],
    settings: Settings,
    *,
    progress: Progress,
    on_file: Callable[[FileOutcome], None] | None = None,
    pinned: Mapping[str, Sequence[PinnedFile]] | None = None,
) -> RunReport:
    """Re-hash every recorded file against its record and the catalog (offline); ``on_file`` sees each outcome
    as soon as it is known (``verify --all | head -1`` prints its first row before the rest is hashed).
    ``pinned``: per model, the files a lock pins; they are compared to the lock's sha256 instead of the catalog's."""
    layout = Layout(settings)
    store = layout.records
    outcomes: list[FileOutcome] = []
    pins = pinned or {}
    begin_hashing(models, layout, progress, pinned=pins)

    def add(outcome: FileOutcome) -> None:
        outcomes.append(outcome)
        if on_file is not None:
            on_file(outcome)

    for spec in models:
        status = model_status(spec, layout, pinned=pins.get(spec.name))
        if status.record is None:
            record_path = store.record_path(spec.name)
            if record_path.exists():
                why = f"its record {record_path} is damaged (the log says how), so no file is trusted"
                damaged = IntegrityError(f"{spec.name}: {why}", hint=f"run `mdl pull {spec.name}`")
                add(failed(spec.name, None, damaged, dest=status.folder))
            else:
                error = NotFoundError(
                    f"{spec.name}: not on this disk (never pulled into {status.folder or layout.plain.dest})",
                    hint=f"run `mdl pull {spec.name}`",
                )
                add(replace(failed(spec.name, None, error, dest=status.folder), action="missing"))
            continue
        locked = pins.get(spec.name)
        catalog_sha = {f.save_path: f.sha256 for f in spec.files if f.sha256}
        expected = {p.path: p.sha256 for p in locked} if locked is not None else catalog_sha
        source = "catalog.lock" if locked is not None else "catalog"
        for file in status.files:
            add(verify_file(store, spec.name, file, status.record, (expected.get(file.path), source), progress))
    return RunReport(tuple(outcomes))


def begin_hashing(
    models: Sequence[ModelSpec],
    layout: Layout,
    progress: Progress,
    *,
    pinned: Mapping[str, Sequence[PinnedFile]] | None = None,
) -> None:
    """Tell the display how much verify will hash: the recorded files on disk (a total bar, an ETA)."""
    total = files = 0
    for spec in models:
        status = model_status(spec, layout, pinned=(pinned or {}).get(spec.name))
        recorded = status.record.files if status.record is not None else {}
        for file in status.files:
            entry = recorded.get(file.path)
            if entry is not None and file.state not in (MISSING, PARTIAL):
                total += entry.size
                files += 1
    progress.begin(total_bytes=total, files=files)


def verify_file(
    store: Store,
    model: str,
    file: LocalFile,
    record: ModelRecord,
    expected: tuple[str | None, str],
    progress: Progress,
) -> FileOutcome:
    """Re-hash one file against its record and ``expected`` (sha256 or None, and who pins it); ``verified``, or
    a failed / ``missing`` outcome saying why. A file that passes gets its new mtime recorded."""
    label = f"{model}/{file.path}"
    entry = record.files.get(file.path)
    expected_sha, pinned_by = expected
    if file.state in (MISSING, PARTIAL):
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
        blob_name = file.final.name if file.final != file.dest and _BLOB_NAME.match(file.final.name) else None
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
        fresh = FileRecord(**{**entry.__dict__, "mtime_ns": mtime_ns})
        store.update_record(model, revision=None, commit=None, put=fresh)
    return FileOutcome(model, file.path, str(file.dest), size, sha256, "verified")
