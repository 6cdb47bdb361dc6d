"""What is on disk, judged from records and ``lstat`` alone, in the one state vocabulary
(mdl.store.states) that ``show``, ``list``, ``verify``, ``publish`` and ``pull --dry-run`` share, so
they never disagree; and the offline commands built on it: ``list``, ``show`` and ``clean``
(``verify`` is in verify.py)."""

from __future__ import annotations

import contextlib
import os
import stat as st
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from mdl.catalog.settings import Settings
from mdl.catalog.specs import FileSpec, ModelSpec
from mdl.errors import LocalFSError, MdlError, UnsafePathError
from mdl.redact import redact_url
from mdl.report import Done
from mdl.store import confined
from mdl.store.expected import ExpectedFile
from mdl.store.filesystem import stat_file
from mdl.store.layout import Layout, Placement, hub_source, parse_hub_source, repo_folder, selected
from mdl.store.records import FileRecord, ModelRecord
from mdl.store.states import INSTALLED, MISSING, MODIFIED_MAYBE, OUTDATED, PARTIAL, judge
from mdl.store.store import Store, key_pattern


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
        signed_out = _signer_leaves_out(spec, path)
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
        intact = any(
            f.path == kept.file and f.state == INSTALLED and f.sha256 == kept.sha256
            for f in self.files
        )
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
        return self._json(
            repo=self.spec.repo,
            repo_type=self.spec.repo_type if self.spec.is_snapshot else None,
            revision=(self.record and self.record.revision)
            or (self.spec.revision if self.spec.is_snapshot else None),
            commit=self.record.commit if self.record else None,
            status=self.status,
            unverified=self.unverified,
            dest=str(self.folder) if self.folder is not None else None,
            files=[
                {
                    "path": f.path,
                    "dest": str(f.dest),
                    "url": f.source,
                    "size": f.size,
                    "sha256": f.sha256,
                    "state": f.state,
                    "verified": f.verified,
                    # how this version's bytes came (null: not known): its Xet hash, bytes
                    # fetched and reused
                    **{key: getattr(f.recorded, key, None) for key in ("xet", "fetched", "reused")},
                }
                for f in self.files
            ],
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
    except UnsafePathError:  # a link on the way: refused, as by every command
        raise
    except MdlError:  # where it goes cannot be known yet (a Hub file never pulled, hf-cache)
        return MISSING, None
    placement, stat = _look_at(placement)
    if stat is None or not st.S_ISREG(stat.st_mode):
        part, state = placement.store.part_paths(model, path)
        return (PARTIAL if part.exists() and state.exists() else MISSING), placement
    judged = judge(entry, stat.st_size, stat.st_mtime_ns)
    if judged in (INSTALLED, MODIFIED_MAYBE) and not placement.linked():
        return PARTIAL, placement  # the blob is there, the snapshot entry programs open is not
    return judged, placement


def _look_at(placement: Placement) -> tuple[Placement, os.stat_result | None]:
    """``lstat`` of where the file's bytes are (None: nothing there)."""
    try:
        stat = stat_file(placement.final)
    except LocalFSError:  # a name the filesystem refuses (too long, ...): no file can be there
        stat = None
    link = placement.link
    if stat is not None or link is None or not link.is_symlink():
        return placement, stat
    # The record names a blob that is not there, yet the snapshot entry leads to one (an older mdl
    # stored unverified bytes under the expected name): judge the blob programs actually open,
    # never call it missing.
    with contextlib.suppress(OSError):
        placement = placement._replace(final=link.resolve(strict=True))
        return placement, stat_file(placement.final)
    return placement, None


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
    unplaced = _unplaced_folder(layout, spec)  # where a file goes before its commit is known
    files: list[LocalFile] = []
    folders: set[Path] = set()
    for want in expected:
        file, placement = _local_file(layout, spec.name, record, want, unplaced)
        files.append(file)
        if placement is not None:
            folders.add(_folder_of(layout, placement, spec.name))
    # Extra files only when the model's file list is known whole (a lock or an expected set).
    whole = whole or (record is not None and record.expected is not None)
    extra = _extra(record, expected) if whole else ()
    folder = (folders.pop() if len(folders) == 1 else None) if folders else unplaced
    status = _overall({f.state for f in files}, layout, spec.name)
    return ModelStatus(spec, record, tuple(files), status, folder, extra)


def _local_file(
    layout: Layout, model: str, record: ModelRecord | None, want: ExpectedFile, unplaced: Path
) -> tuple[LocalFile, Placement | None]:
    """One expected file's state and where it is (``unplaced``: not known yet)."""
    entry = None
    if record is not None:
        entry = record.entry_for(want.path, sha256=want.sha256, git_oid=want.git_oid)
    state, placement = file_state(layout, model, want.path, want.source, entry)
    # what mdl fetched of it
    known = entry if entry is not None and _same_version(entry, want) else None
    if entry is not None and state not in (MISSING, PARTIAL) and known is None:
        state = OUTDATED
    shown, final = (placement.shown, placement.final) if placement else (unplaced, unplaced)
    if placement is None and (want.sha256 or want.git_oid):  # named by where it would be opened
        with contextlib.suppress(MdlError):
            shown = layout.place(
                model, want.path, source=want.source, sha256=want.sha256, git_oid=want.git_oid
            ).shown
    verified = entry.verified if entry is not None else None
    size, sha256 = _size_and_sha256(want, known)
    return LocalFile(
        want.path,
        shown,
        final,
        size,
        sha256,
        want.source,
        state,
        placement is not None,
        verified,
        want.sha256,
        known,
    ), placement


def _size_and_sha256(want: ExpectedFile, known: FileRecord | None) -> tuple[int | None, str | None]:
    """As the listing, lock or catalog says, else as its record of this version says."""
    if known is None:
        return want.size, want.sha256
    return (known.size if want.size is None else want.size), want.sha256 or known.sha256


def _extra(record: ModelRecord | None, expected: Sequence[ExpectedFile]) -> tuple[str, ...]:
    """The recorded files the model no longer names."""
    names = {want.path for want in expected}
    recorded = record.files if record is not None else {}
    return tuple(sorted(path for path in recorded if path not in names))


def _overall(found: set[str], layout: Layout, model: str) -> str:
    """installed: every file at its verified size (modified? counts, reported as unverified);
    missing: no file and no partial download; else partial."""
    if found and found <= {INSTALLED, MODIFIED_MAYBE}:
        return INSTALLED
    if found - {MISSING} or any(_has_partials(s, model) for s in layout.stores):
        return PARTIAL
    return MISSING


def _has_partials(store: Store, model: str) -> bool:
    folder = store.state_dir / "partial"
    # one stat for a destination with nothing under way (list asks it for every model)
    if not folder.is_dir():
        return False
    pattern = key_pattern(model, "part")
    return any(pattern.fullmatch(p.name) for p in folder.iterdir())


def _signer_leaves_out(spec: ModelSpec, path: str) -> bool:
    """Whether ``path`` is one of git's own files a signed model's signer leaves out."""
    if spec.signature is None:
        return False
    from mdl.signing.statement import (
        git_path,  # (here: a model that names no signer loads no signing)
    )

    return git_path(path)


def _expected_files(
    spec: ModelSpec, record: ModelRecord | None, pinned: Sequence[ExpectedFile] | None
) -> list[ExpectedFile]:
    # a signed model's git files (.gitattributes) are left out by its signer: never installed
    if pinned is not None:
        return [pin for pin in pinned if not _signer_leaves_out(spec, pin.path)]
    return model_files(spec, known_files(spec, record))


def known_files(spec: ModelSpec, record: ModelRecord | None) -> dict[str, ExpectedFile]:
    """What a model's record says it should have, by path: the expected set its last pull wrote,
    else (a record from before expected sets) what it recorded; nothing for a whole repo the
    record is not of the revision of (pulled at another, the catalog's changed since)."""
    if record is None or (spec.is_snapshot and not record.holds(spec.revision)):
        return {}
    if record.expected is not None:
        return dict(record.expected)
    return {
        p: ExpectedFile(p, r.size, r.sha256, r.git_oid, r.source) for p, r in record.files.items()
    }


def model_files(spec: ModelSpec, known: Mapping[str, ExpectedFile]) -> list[ExpectedFile]:
    """The files a model should have, as known without asking upstream (``known``: what its record
    says, by path): the one rule ``list``, ``show``, ``verify`` and an offline ``pull --dry-run``
    share. A model of listed files is the catalog's files now (one added or renamed since its last
    pull is a file it lacks), each as ``known`` when of the version the catalog pins, and its
    signature when known; any other (a whole repo, a registry's) is what its last pull listed."""
    if not spec.files:
        return [known[path] for path in sorted(known)]
    files = [_catalog_file(file, known.get(file.save_path)) for file in spec.files]
    sig = known.get(spec.signature.installed_as) if spec.signature is not None else None
    if sig is not None and sig.path not in {f.path for f in files}:
        files.append(sig)
    return files


def signature_beside(
    spec: ModelSpec, layout: Layout, pinned: Sequence[ExpectedFile] | None
) -> Sequence[ExpectedFile] | None:
    """A lock's pins (``pinned``) with the signature a pull of that lock installed, when the lock
    pins none though the catalog names a signer (a lock made before its signer: the version's
    signature, its manifest's), as the record expects it: the files are then judged by it as by any
    signature (none expected: the model is not as signed)."""
    trust = spec.signature
    if trust is None or pinned is None or any(p.path == trust.installed_as for p in pinned):
        return pinned
    record = layout.records.read_record(spec.name)
    kept = record.expected.get(trust.installed_as) if record and record.expected else None
    return pinned if kept is None else [*pinned, kept]


def _catalog_file(file: FileSpec, known: ExpectedFile | None) -> ExpectedFile:
    """A file the catalog lists: as ``known`` when it is the version the catalog pins (its sha256
    and size, when it names them), else as the catalog says."""
    if (
        known is not None
        and file.sha256 in (None, known.sha256)
        and file.size in (None, known.size)
    ):
        return known
    in_hub = hub_source(file.repo or "", file.repo_type or "model", None, file.path or "")
    source = redact_url(file.url) if file.url else in_hub
    return ExpectedFile(file.save_path, file.size, file.sha256, None, source)


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
    if layout.cache_root is None:
        return layout.plain.model_dir(spec.name)
    if spec.repo is not None:
        return layout.cache_root / repo_folder(spec.repo, spec.repo_type)
    repos = {(f.repo, f.repo_type or "model") for f in spec.files if f.repo}
    if len(repos) == 1 and all(f.url is None for f in spec.files):
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
class ModelList(Done):
    """The catalog's models with their local status, and the download root they were looked for
    in.
    """

    models: tuple[ModelStatus, ...]
    dest: Path
    # what ``get`` fetched (mdl.store.oneoffs.OneOff: the register's places, judged)
    one_offs: tuple[Any, ...] = ()
    # by model: bytes its older revisions still hold (the Hugging Face cache; prune frees them)
    earlier: Mapping[str, int] = field(default_factory=dict)

    @property
    def on_disk(self) -> int:
        """Bytes of the models' files as recorded, and of what get fetched."""
        return sum(_on_disk(m) for m in self.models) + sum(int(o.size) for o in self.one_offs)

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": True,
            "models": [
                {**m.list_json(), "earlier": self.earlier.get(m.spec.name, 0)} for m in self.models
            ],
            "dest": str(self.dest),
            "one_offs": [o.to_json() for o in self.one_offs],
            "total": {
                "size": self.on_disk,
                "earlier": sum(self.earlier.values()) + sum(o.earlier for o in self.one_offs),
            },
        }


def _on_disk(model: ModelStatus) -> int:
    return sum(f.size or 0 for f in model.files if f.state in (INSTALLED, MODIFIED_MAYBE))


@dataclass(frozen=True)
class ModelInfo(Done):
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
        return {"ok": True, "models": [doc]}


@dataclass(frozen=True)
class CleanedFile:
    """A partial download that clean removed (or would remove)."""

    path: Path
    size: int
    label: str
    removed: bool


@dataclass(frozen=True)
class CleanReport(Done):
    """The partial downloads clean removed (or, with dry_run, would remove)."""

    files: tuple[CleanedFile, ...]
    dry_run: bool = False

    @property
    def freed(self) -> int:
        return sum(c.size for c in self.files)

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": True,
            "dry_run": self.dry_run,
            "freed": self.freed,
            "files": [
                {"path": str(c.path), "size": c.size, "source": c.label, "removed": c.removed}
                for c in self.files
            ],
        }


def clean(settings: Settings, *, also: Sequence[Path] = ()) -> list[CleanedFile]:
    """Remove partial downloads and resume records that no running mdl holds a lock on (or list
    them: dry_run), in the destination and the folders ``also`` names (those a get wrote into).
    """
    cleaned: list[CleanedFile] = []
    stores = Layout(settings).stores
    seen = {store.dest for store in stores}
    for store in [*stores, *(Store(p) for p in dict.fromkeys(also) if p not in seen)]:
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
            for key in lock_keys(store):
                if (held := store.try_file_lock(key)) is not None:
                    held.release()
    return cleaned


def lock_keys(store: Store) -> list[str]:
    """The store keys of the lock files in ``store`` (regular files ``<key>.lock``: a link or a
    folder is none)."""
    return [
        name.removesuffix(".lock")
        for name, found in confined.entries(store.dest, store.state_dir / "locks")
        if name.endswith(".lock") and st.S_ISREG(found.st_mode)
    ]
