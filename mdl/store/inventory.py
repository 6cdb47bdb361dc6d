"""What is on disk, judged from records and ``lstat`` alone: the one state vocabulary that ``show``,
``list``, ``verify``, ``publish`` and ``pull --dry-run`` share, so they never disagree; and the
offline commands built on it: ``list`` and ``show``, ``verify`` (which rehashes what the records
vouch for) and ``clean``."""

from __future__ import annotations

import contextlib
import functools
import re
import stat as st
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from mdl.catalog import ModelSpec, Settings
from mdl.errors import IntegrityError, LocalFSError, MdlError, NotFoundError, UsageError
from mdl.progress import Progress
from mdl.redact import redact_url
from mdl.report import FileOutcome, RunReport, failed
from mdl.signing import (
    MAX_SIGNATURE_BYTES,
    SignedFile,
    SignedManifest,
    git_path,
    require_library,
    verify_signature,
)
from mdl.store import confined
from mdl.store.confined import read_bytes
from mdl.store.filesystem import hash_file, not_a_file, not_a_file_error, stat_file
from mdl.store.layout import (
    BLOB_NAME,
    Layout,
    Placement,
    parse_hub_source,
    ref_revision,
    repo_folder,
    selected,
    signed_name,
    write_ref,
)
from mdl.store.records import ExpectedFile, FileRecord, ModelRecord
from mdl.store.store import Store, key_prefix

INSTALLED = "installed"  # recorded, same size and mtime as when mdl verified it
# recorded, same size, but touched since it was verified: only a re-hash can tell
MODIFIED_MAYBE = "modified?"
MODIFIED = "modified"  # recorded, but its size is not the size mdl verified
UNRECORDED = "unrecorded"  # present, but mdl never verified it (no record)
# a partial download is waiting to be resumed (or the snapshot entry is not linked)
PARTIAL = "partial"
MISSING = "missing"  # not on disk
# recorded and intact, but not the version the lock pins (pull fetches the pinned one)
OUTDATED = "outdated"
# The mtime a record keeps for a file verify found wrong: no file has it, so pull and list re-check
# it, never trust it.
UNTRUSTED_MTIME = 0

# Why a present file must be hashed again before it is trusted (``pull --dry-run``'s reason for
# ``check``).
RECHECK_REASON = {
    MODIFIED_MAYBE: "modified? (same size, but changed since it was verified): re-hash it",
    MODIFIED: "modified (its size changed since it was verified): re-hash it",
    UNRECORDED: "unrecorded (present, never verified by mdl): hash it",
}


def judge(entry: FileRecord | None, size: int | None, mtime_ns: int | None) -> str:
    """A present-or-absent file's state against its record."""
    if size is None:
        return MISSING
    if entry is None:
        return UNRECORDED
    if size != entry.size:
        return MODIFIED
    if mtime_ns != entry.mtime_ns:
        return MODIFIED_MAYBE
    return INSTALLED


@dataclass(frozen=True)
class LocalFile:  # one expected file of a model and its state on disk
    path: str
    dest: Path  # the path programs open (a snapshot entry in the Hugging Face cache)
    final: Path  # where the bytes are (the blob in the Hugging Face cache; else the same as dest)
    # as the listing, lock or catalog says, else as its record of this version says
    size: int | None
    # likewise (mdl hashes every file it writes: a small Hub file's is in its record)
    sha256: str | None
    source: str
    state: str  # INSTALLED, MODIFIED_MAYBE, ... above
    # False: where it goes is not known yet (dest is the model's folder, not the file)
    placed: bool = True
    verified: bool | None = None  # its record's word (engine rule 15); None: not recorded
    # what the listing, lock or catalog pins (verify checks against it)
    expected_sha256: str | None = None
    # its record, when of this version: how its bytes came (Xet hash, reused)
    recorded: FileRecord | None = None


@dataclass(frozen=True)
class ModelStatus:
    spec: ModelSpec
    record: ModelRecord | None
    files: tuple[LocalFile, ...]
    status: str  # installed | partial | missing
    # the one folder holding the model's files; None when they are in several
    folder: Path | None = None
    # recorded files the model no longer names (see why_extra): never counted
    extra: tuple[str, ...] = ()
    # A signed model: its signed version is installed, but upstream has another (its last pull aimed
    # at it)
    update_available: bool = False

    def why_extra(self, path: str) -> str:
        """Why the recorded file ``path`` is no longer part of the model: the catalog no longer
        names it (a file taken out, a pattern or repo changed), or the repo the catalog still takes
        it from no longer has it."""
        spec, entry = self.spec, self.record.files.get(path) if self.record is not None else None
        ref = parse_hub_source(entry.source) if entry is not None else None
        same_repo = ref is not None and (ref.repo, ref.repo_type) == (spec.repo, spec.repo_type)
        # a signer leaves git's own files out
        signed_out = spec.signature is not None and git_path(path)
        if spec.is_snapshot and same_repo and not signed_out and selected(spec, [path]):
            return f"no longer in {spec.repo}"
        return "no longer in the catalog"

    @property
    def unverified(self) -> int:
        """Files touched since they were verified (``modified?``): a re-hash must tell."""
        return sum(1 for f in self.files if f.state == MODIFIED_MAYBE)

    @property
    def size(self) -> int | None:  # when every file's size is known
        sizes = [f.size for f in self.files]
        return sum(s for s in sizes if s is not None) if sizes and None not in sizes else None

    @property
    def signature(self) -> dict[str, Any] | None:
        """For a model whose catalog names a signer: whether its installed files are the ones its
        signature, verified by the last pull, signs (``verified``), and by whom (None: it was never
        verified here)."""
        if self.spec.signature is None:
            return None
        kept = self.record.signature if self.record is not None else None
        if kept is None:
            return {"verified": False, "by": None, "file": self.spec.signature.installed_as}
        sig = next((f for f in self.files if f.path == kept.file), None)
        intact = sig is not None and sig.state == INSTALLED and sig.sha256 == kept.sha256
        # verified by whom the catalog names now (another key there is another signer: `mdl pull`
        # checks it)
        try:
            same = kept.by == self.spec.signature.by()
        except MdlError:  # the key cannot be read: nothing vouches for it
            same = False
        return {
            "verified": self.status == INSTALLED and intact and same,
            "by": kept.by,
            "file": kept.file,
        }

    def _json(self, **middle: Any) -> dict[str, Any]:
        """The fields ``list`` and ``show`` share, around each one's own (``middle``), in the
        order they print.
        """
        spec, signed = self.spec, {}
        if spec.signature is not None:
            signed = {"signature": self.signature, "update_available": self.update_available}
        head = {"name": spec.name, "description": spec.description, "tags": list(spec.tags)}
        return {**head, **middle, "extra": list(self.extra), **signed}

    def list_json(self) -> dict[str, Any]:
        kind = "snapshot" if self.spec.is_snapshot else "files"
        files = {"files": len(self.files), "size": self.size, "kind": kind}
        return self._json(status=self.status, unverified=self.unverified, **files)

    def show_json(self) -> dict[str, Any]:
        files = [
            {
                "path": f.path,
                "dest": str(f.dest),
                "url": f.source,
                "size": f.size,
                "sha256": f.sha256,
                "state": f.state,
                "verified": f.verified,
                # how this version's bytes came (null: not known): its Xet hash, bytes fetched and
                # reused
                **{key: getattr(f.recorded, key, None) for key in ("xet", "fetched", "reused")},
            }
            for f in self.files
        ]
        return self._json(
            repo=self.spec.repo,
            repo_type=self.spec.repo_type if self.spec.is_snapshot else None,
            revision=(self.record and self.record.revision)
            or (self.spec.revision if self.spec.is_snapshot else None),
            commit=self.record.commit if self.record else None,
            status=self.status,
            unverified=self.unverified,
            dest=str(self.folder) if self.folder is not None else None,
            files=files,
        )


def file_state(
    layout: Layout, model: str, path: str, source: str, entry: FileRecord | None
) -> tuple[str, Placement | None]:
    """The file's state and where it is, from its record and ``lstat`` only."""
    sha256, git_oid = (entry.sha256, entry.git_oid) if entry else (None, None)
    try:
        placement = layout.place(
            model, path, source=entry.source if entry else source, sha256=sha256, git_oid=git_oid
        )
    except MdlError:  # where it goes cannot be known yet (a Hub file never pulled, hf-cache)
        return MISSING, None
    try:
        stat = stat_file(placement.final)
    except LocalFSError:  # a name the filesystem refuses (too long, ...): no file can be there
        stat = None
    if stat is None and placement.link is not None and placement.link.is_symlink():
        # The record names a blob that is not there, yet the snapshot entry leads to one (an older
        # mdl stored unverified bytes under the expected name): judge the blob programs actually
        # open, never call it missing.
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


def model_status(
    spec: ModelSpec, layout: Layout, *, pinned: Sequence[ExpectedFile] | None = None
) -> ModelStatus:
    """One model's state from its record and ``lstat`` only. Its files are those a lock pins, else
    the expected set its record keeps (written before a pull's first byte), else the recorded or
    catalog files. A recorded file of another version is ``outdated``; one the model no longer names
    is ``extra``, never counted.

    A signed model whose last pull aimed at another version upstream (re-published) and did not
    install it is still ``installed`` while the signed version a pull installed whole is on disk
    intact, as its record names it (the files its signature vouched for): ``update_available`` says
    the rest. A lock's pins are the version wanted, not news from upstream: against a lock, the
    pinned version is judged."""
    record = layout.records.read_record(spec.name)
    found = _status_of(
        spec, layout, record, _expected_files(spec, record, pinned), whole=pinned is not None
    )
    signed = (
        record.signed_files
        if record is not None and spec.signature is not None and pinned is None
        else None
    )
    if found.status == INSTALLED or not signed or record is None or record.signature is None:
        return found
    version = [_signed_file(path, sha256, record) for path, sha256 in sorted(signed.items())]
    kept = _status_of(spec, layout, record, version, whole=True)
    if kept.status != INSTALLED:
        return found
    # Extra (prune's to remove) only when neither version names it: the newer one's files fetched so
    # far are kept.
    return replace(
        kept, update_available=True, extra=tuple(p for p in kept.extra if p in found.extra)
    )


def _signed_file(path: str, sha256: str, record: ModelRecord) -> ExpectedFile:
    """One file of the signed version a pull installed whole, as its record has it (the source it
    came from).
    """
    entry = record.entry_for(
        path, sha256=sha256, git_oid=None
    )  # (in the Hugging Face cache: maybe an earlier commit's)
    return ExpectedFile(
        path, entry.size if entry else None, sha256, None, entry.source if entry else ""
    )


def _status_of(
    spec: ModelSpec,
    layout: Layout,
    record: ModelRecord | None,
    expected: Sequence[ExpectedFile],
    *,
    whole: bool,
) -> ModelStatus:
    """The model's state as ``expected`` (known ``whole``: any other recorded file is ``extra``)
    is on disk.
    """
    recorded = record.files if record is not None else {}
    files: list[LocalFile] = []
    folders: set[Path] = set()
    unplaced = _unplaced_folder(layout, spec)  # where a file goes before its commit is known
    for want in expected:
        entry = (
            None
            if record is None
            else record.entry_for(want.path, sha256=want.sha256, git_oid=want.git_oid)
        )
        state, placement = file_state(layout, spec.name, want.path, want.source, entry)
        if entry is not None and state not in (MISSING, PARTIAL) and not _same_version(entry, want):
            state = OUTDATED
        shown, final = (placement.shown, placement.final) if placement else (unplaced, unplaced)
        placed = placement is not None
        verified = entry.verified if entry is not None else None
        # what mdl fetched of it
        known = entry if entry is not None and _same_version(entry, want) else None
        size = want.size if want.size is not None or known is None else known.size
        sha256 = want.sha256 or (known.sha256 if known is not None else None)
        files.append(
            LocalFile(
                want.path,
                shown,
                final,
                size,
                sha256,
                want.source,
                state,
                placed,
                verified,
                want.sha256,
                known,
            )
        )
        if placement is not None:
            folders.add(_folder_of(layout, placement, spec.name))
    names = {want.path for want in expected}
    # Extra files only when the model's file list is known whole (a lock or an expected set).
    whole = whole or (record is not None and record.expected is not None)
    extra = tuple(sorted(path for path in recorded if path not in names)) if whole else ()
    # installed: every file at its verified size (modified? counts, reported as unverified);
    # missing: no file and no partial download; else partial.
    found, partials = (
        {f.state for f in files},
        any(_has_partials(s, spec.name) for s in layout.stores),
    )
    if found and found <= {INSTALLED, MODIFIED_MAYBE}:
        status = INSTALLED
    elif found - {MISSING} or partials:
        status = PARTIAL
    else:
        status = MISSING
    folder = (folders.pop() if len(folders) == 1 else None) if folders else unplaced
    return ModelStatus(spec, record, tuple(files), status, folder, extra)


def _has_partials(store: Store, model: str) -> bool:
    folder = store.state_dir / "partial"
    # one stat for a destination with nothing under way (list asks it for every model)
    if not folder.is_dir():
        return False
    # Partial names are "<model>-<16 hex>-<file>.part": match the digest too, so "foo" is not
    # "foo-bar".
    pattern = re.compile(re.escape(key_prefix(model)) + r"-[0-9a-f]{16}-.*\.part", re.DOTALL)
    return any(pattern.fullmatch(p.name) for p in folder.iterdir())


def _expected_files(
    spec: ModelSpec, record: ModelRecord | None, pinned: Sequence[ExpectedFile] | None
) -> list[ExpectedFile]:
    recorded = record.files if record is not None else {}
    # a signed model's git files (.gitattributes) are left out by its signer: never installed
    if pinned is not None:
        return [pin for pin in pinned if spec.signature is None or not git_path(pin.path)]
    if record is not None and record.expected is not None:
        return [record.expected[path] for path in sorted(record.expected)]
    if spec.is_snapshot:  # a record from before expected sets: what it recorded is all it knows
        return [
            ExpectedFile(p, r.size, r.sha256, r.git_oid, r.source)
            for p, r in sorted(recorded.items())
        ]
    found: list[ExpectedFile] = []
    for file in spec.files:
        entry = recorded.get(file.save_path)
        source = (
            entry.source
            if entry
            else (redact_url(file.url) if file.url else f"hf://{file.repo}/{file.path}")
        )
        size = entry.size if entry else file.size
        found.append(
            ExpectedFile(file.save_path, size, entry.sha256 if entry else file.sha256, None, source)
        )
    return found


def _same_version(entry: FileRecord, want: ExpectedFile) -> bool:
    """By sha256, git blob id, then size."""
    if want.sha256 is not None:
        return entry.sha256 == want.sha256
    if want.git_oid is not None and entry.git_oid is not None:
        return entry.git_oid == want.git_oid
    return want.size is None or entry.size == want.size


def unplaced_path(layout: Layout, model: str) -> Path:
    return layout.cache_root if layout.cache_root is not None else layout.plain.model_dir(model)


def _unplaced_folder(layout: Layout, spec: ModelSpec) -> Path:
    if layout.cache_root is not None and spec.repo is not None:
        return layout.cache_root / repo_folder(spec.repo, spec.repo_type)
    if layout.cache_root is not None and spec.files and all(f.url is None for f in spec.files):
        repos = {(f.repo, f.repo_type or "model") for f in spec.files if f.repo}
        if len(repos) == 1:
            return layout.cache_root / repo_folder(*repos.pop())
    return layout.plain.model_dir(spec.name)


def _folder_of(layout: Layout, placement: Placement, model: str) -> Path:
    """The snapshot folder (Hugging Face cache), else the model's folder."""
    if placement.link is None or layout.cache_root is None:
        return layout.plain.model_dir(model)
    repo_dir, snapshots, commit, *_ = placement.shown.relative_to(layout.cache_root).parts
    return layout.cache_root / repo_dir / snapshots / commit


def list_models(
    specs: Sequence[ModelSpec],
    layout: Layout,
    *,
    status: str | None,
    pinned: Mapping[str, Sequence[ExpectedFile]] | None = None,
) -> list[ModelStatus]:
    found = [model_status(spec, layout, pinned=(pinned or {}).get(spec.name)) for spec in specs]
    return [m for m in found if status is None or m.status == status]


@dataclass(frozen=True)
class ModelList:
    """The catalog's models with their local status, and the download root they were looked for
    in.
    """

    models: tuple[ModelStatus, ...]
    dest: Path

    def to_json(self) -> dict[str, Any]:
        return {"models": [m.list_json() for m in self.models], "dest": str(self.dest)}


@dataclass(frozen=True)
class ModelInfo:
    """One model's files and state, and the folder its files go into (None: several)."""

    status: ModelStatus
    folder: Path | None
    # why the model is not shown as a lock pins it (the lock is out of date for it)
    warning: str | None = None
    commit: str | None = None  # the commit a lock pins, shown when nothing is recorded yet

    def to_json(self) -> dict[str, Any]:
        doc = self.status.show_json()
        if doc.get("commit") is None and self.commit is not None:
            doc["commit"] = self.commit
        if self.warning is not None:
            doc["warning"] = self.warning
        return {"models": [doc]}


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
        files = [
            {"path": str(c.path), "size": c.size, "source": c.label, "removed": c.removed}
            for c in self.files
        ]
        return {"ok": True, "dry_run": self.dry_run, "freed": self.freed, "files": files}


def clean(settings: Settings) -> list[CleanedFile]:
    """Remove partial downloads and resume records that no running mdl holds a lock on (or list
    them: dry_run).
    """
    cleaned: list[CleanedFile] = []
    for store in Layout(settings).stores:
        for partial in store.partials():
            held = store.try_file_lock(partial.part_path.name.split(".part")[0])
            if held is None:
                continue  # a run is using it right now
            with held:
                if not settings.dry_run and not store.remove_partial(partial):
                    continue  # replaced since it was listed: not the file clean looked at, kept
                cleaned.append(
                    CleanedFile(
                        partial.part_path, partial.size, partial.label, not settings.dry_run
                    )
                )
        if not settings.dry_run:  # idle lock files (a killed run's) go by being taken and released
            for name, found in confined.entries(store.dest, store.state_dir / "locks"):
                if name.endswith(".lock") and st.S_ISREG(found.st_mode):
                    held = store.try_file_lock(name.removesuffix(".lock"))
                    if held is not None:
                        held.release()
    return cleaned


def verify_models(
    models: Sequence[ModelSpec],
    settings: Settings,
    *,
    progress: Progress,
    on_file: Callable[[FileOutcome], None] | None = None,
    pinned: Mapping[str, Sequence[ExpectedFile]] | None = None,
) -> RunReport:
    """Re-hash every recorded file against its record and the catalog (or, for ``pinned`` models,
    the lock); ``on_file`` sees each outcome as soon as it is known (``verify --all | head -1``
    shows its first row at once)."""
    layout = Layout(settings)
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

    signatures: dict[str, dict[str, Any]] = {}
    for spec, status in zip(models, statuses, strict=True):
        # said once the model's files are verified (below), as list and show say it
        if spec.signature is not None:
            signatures[spec.name] = {
                "verified": False,
                "by": None,
                "file": spec.signature.installed_as,
            }
        if status.record is None:
            record_path = layout.records.record_path(spec.name)
            error: MdlError = NotFoundError(
                f"{spec.name}: not on this disk (never pulled into"
                f" {status.folder or layout.plain.dest})",
                hint=f"run `mdl pull {spec.name}`",
            )
            # never opened: pull replaces it (a folder excepted)
            if (kind := not_a_file(record_path)) is not None:
                error = _not_a_file(record_path, kind, spec.name, "its record ")
            elif record_path.exists():
                why = (
                    f"its record {record_path} is damaged (the log says how), so no file is trusted"
                )
                error = IntegrityError(f"{spec.name}: {why}", hint=f"run `mdl pull {spec.name}`")
            outcome = failed(spec.name, None, error, dest=status.folder)
            add(replace(outcome, action="missing") if isinstance(error, NotFoundError) else outcome)
            continue
        locked = pins.get(spec.name) is not None
        catalog_sha = {f.save_path: f.sha256 for f in spec.files if f.sha256}
        signed = _signature_on_disk(spec, status, layout)
        if isinstance(signed, FileOutcome):
            add(signed)
        sig_file = spec.signature.installed_as if spec.signature is not None else None
        for file in status.files:
            if not locked and file.path in catalog_sha:
                want: tuple[str | None, str] = (catalog_sha[file.path], "catalog")
            else:
                want = (
                    file.expected_sha256,
                    "catalog.lock" if locked else "listing the pull resolved",
                )
            name = signed_name(file.path, file.source)
            one = signed.file(name, file.size) if isinstance(signed, SignedManifest) else None
            if isinstance(signed, SignedManifest) and one is None and file.path != sig_file:
                error = IntegrityError(
                    f"{spec.name}/{file.path}: is not covered by the model's signature"
                )
                add(failed(spec.name, file.path, error, dest=file.dest))
                continue
            # the signature pins it: held to what it signs
            if one is not None and one.sha256 is not None:
                want = (one.sha256, "signature")
            outcome = verify_file(layout.records, spec.name, file, status.record, want, progress)
            if one is not None and one.sha256 is None and not outcome.failing:
                outcome = _as_signed(spec.name, file, one, outcome)
            add(outcome)
        whole = status.files and not any(o.failing for o in outcomes if o.model == spec.name)
        if isinstance(signed, SignedManifest) and spec.signature is not None:
            # it verified with the key just read: who it is, as list says it
            with contextlib.suppress(MdlError):
                signatures[spec.name] |= {"verified": bool(whole), "by": spec.signature.by()}
        if layout.cache_root is not None and whole:
            # verified whole, in the Hugging Face cache: refs/<revision> names its commit
            for file in status.files:
                revision = ref_revision(spec, status.record, file.path)
                ref = layout.ref_for(file.source, revision, label=f"{spec.name}/{file.path}")
                if ref is not None:
                    write_ref(layout.records.dest, *ref)
    return RunReport(tuple(outcomes), signatures=signatures)


def _signature_on_disk(
    spec: ModelSpec, status: ModelStatus, layout: Layout
) -> SignedManifest | FileOutcome | None:
    """The statement the model's installed model.sig signs, verified again against the catalog's
    signer (offline: the signature and its trust are local files; keyless sigstore excepted, see the
    README); a failure's outcome."""
    if spec.signature is None:
        return None
    require_library()
    path = spec.signature.installed_as
    what = f"{spec.name}/{path}"
    sig = next((f for f in status.files if f.path == path), None)
    try:
        if sig is None or sig.state in (MISSING, PARTIAL):
            raise IntegrityError(
                f"{what}: the model's signature is not here", hint=f"run `mdl pull {spec.name}`"
            )
        data = read_signature(layout.store_for(sig.source).dest, sig.final, what=what)
        return verify_signature(data, spec.signature, what=what)
    except MdlError as exc:
        return failed(spec.name, path, exc, dest=sig.dest if sig is not None else status.folder)


def read_signature(root: Path, path: Path, *, what: str) -> bytes:
    """A model.sig's bytes, read as mdl's own state (no link followed, no FIFO opened), bounded:
    IntegrityError (exit 6) naming ``what`` when it is missing, unreadable or bigger than any
    signature."""
    try:
        return read_bytes(root, path, limit=MAX_SIGNATURE_BYTES)
    except FileNotFoundError:
        raise IntegrityError(f"{what}: the model's signature is missing") from None
    except UsageError:
        raise IntegrityError(
            f"{what}: more than {MAX_SIGNATURE_BYTES} bytes is not a model signature"
        ) from None
    except OSError as exc:
        raise IntegrityError(f"{what}: cannot read {path}: {exc.strerror or exc}") from None


def _as_signed(
    model: str, file: LocalFile, signed: SignedFile, outcome: FileOutcome
) -> FileOutcome:
    """A file its signature hashes otherwise than by sha256 (shards, BLAKE2/3): read once more,
    as it says.
    """
    try:
        signed.check_path(file.final)
    except IntegrityError as exc:
        return failed(model, file.path, IntegrityError(f"{model}/{exc.message}"), dest=file.dest)
    except OSError as exc:
        return failed(
            model,
            file.path,
            IntegrityError(f"{model}/{file.path}: cannot read it: {exc}"),
            dest=file.dest,
        )
    return outcome


def _not_a_file(path: Path, kind: str, model: str, where: str) -> LocalFSError:
    fix = (
        f"remove it, then run `mdl pull {model}`"
        if kind == "a folder"
        else f"`mdl pull {model}` replaces it"
    )
    return not_a_file_error(path, kind, where=where, hint=fix)


def verify_file(
    store: Store,
    model: str,
    file: LocalFile,
    record: ModelRecord,
    expected: tuple[str | None, str],
    progress: Progress,
) -> FileOutcome:
    """Re-hash one file against its record and ``expected`` (sha256 or None, who pins it); record
    a new mtime.
    """
    label = f"{model}/{file.path}"
    # (hf-cache: maybe an earlier one)
    entry = record.entry_for(file.path, sha256=file.expected_sha256, git_oid=None)
    expected_sha, pinned_by = expected
    if file.state in (MISSING, PARTIAL):
        for path in dict.fromkeys((file.dest, file.final)) if file.placed else ():
            try:  # lstat: a FIFO or device there is never opened
                kind = not_a_file(path)
            # a name the filesystem cannot hold: no file can be there, it is missing
            except LocalFSError:
                kind = None
            if kind is not None:
                return failed(
                    model, file.path, _not_a_file(path, kind, model, f"{label}: "), dest=file.dest
                )
        what = "missing"
        if file.state == PARTIAL:
            unlinked = file.final != file.dest and file.final.is_file()
            what = (
                "missing (its blob is there, the snapshot entry is not)"
                if unlinked
                else "not finished"
            )
        absent = NotFoundError(f"{label}: {what} ({file.dest})", hint=f"run `mdl pull {model}`")
        return replace(failed(model, file.path, absent, dest=file.dest), action="missing")
    try:
        if entry is None:
            raise IntegrityError(
                f"{label}: present but never verified by mdl", hint=f"run `mdl pull {model}`"
            )
        progress.start(label, label=label, total=entry.size, model=model, path=file.path)
        # a repo blob is named by its content (not an entry of huggingface_hub's shared store, named
        # by its Xet hash)
        named = file.final != file.dest and file.final.parent.name == "blobs"
        blob_name = file.final.name if named and BLOB_NAME.fullmatch(file.final.name) else None
        git = blob_name is not None and len(blob_name) == 40
        size, sha256, git_oid = hash_file(
            file.final, git=git, on_bytes=functools.partial(progress.advance, label)
        )
        if blob_name is not None and blob_name not in (sha256, git_oid):
            # A Hugging Face cache blob is named by its content: other bytes under that name are
            # corruption, whatever the record says (hf_hub_download would serve them as this file).
            actual = f"sha256 {sha256}" if len(blob_name) == 64 else f"git blob id {git_oid}"
            raise IntegrityError(
                f"{label}: corrupt: its blob {file.final} holds bytes with {actual}"
            )
        if size != entry.size:
            raise IntegrityError(f"{label}: size is {size} bytes, expected {entry.size}")
        want = expected_sha or entry.sha256
        # intact as pulled, but another version than pinned
        if sha256 == entry.sha256 and sha256 != want:
            raise IntegrityError(
                f"{label}: outdated: {pinned_by} pins sha256 {want}, this file is the version with"
                f" {sha256}",
                hint=f"run `mdl pull {model}`",
            )
        if sha256 != want:
            raise IntegrityError(f"{label}: sha256 mismatch: expected {want}, got {sha256}")
        if expected_sha and entry.sha256 != expected_sha:
            raise IntegrityError(
                f"{label}: sha256 {entry.sha256} differs from the {pinned_by}'s {expected_sha}"
            )
        if file.state != INSTALLED and file.final != file.dest:
            raise IntegrityError(f"{label}: {file.dest} does not lead to its blob")
    except (MdlError, OSError) as exc:
        # other bytes than recorded (not an unreadable file): the next pull must look at them
        if isinstance(exc, IntegrityError) and entry is not None and exc.hint is None:
            exc.hint = f"`mdl pull {model}` repairs it; `mdl pull {model} --force` fetches it again"
            if entry.mtime_ns != UNTRUSTED_MTIME:
                store.update_record(
                    model, revision=None, commit=None, put=replace(entry, mtime_ns=UNTRUSTED_MTIME)
                )
        if not isinstance(exc, MdlError):
            exc = IntegrityError(f"{label}: cannot read {file.dest}: {exc.strerror or exc}")
        progress.finish(label, ok=False, message=exc.message)
        return failed(model, file.path, exc, dest=file.dest)
    progress.finish(label, ok=True)
    mtime_ns = file.final.stat().st_mtime_ns
    if entry.mtime_ns != mtime_ns:  # re-verified: trust the new mtime from now on
        store.update_record(
            model, revision=None, commit=None, put=replace(entry, mtime_ns=mtime_ns)
        )
    # against a pinned hash it is verified now; else as verified as the record says the download was
    verified = bool(expected_sha) or entry.verified
    # as recorded, but its download was never checked against a hash
    word = None if verified else "intact"
    return FileOutcome(
        model, file.path, str(file.dest), size, sha256, "verified", verified=verified, word=word
    )
