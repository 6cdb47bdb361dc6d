"""``mdl prune``: remove from the destination what the catalog no longer names, and only what mdl
recorded — the files, records and (in the Hugging Face cache) snapshot entries and blobs of models
taken out of the catalog, and the files a model no longer names (``show``'s extra files). A file
changed since mdl wrote it, a file mdl found in place and adopted (never wrote), anything mdl never
recorded, and a model another catalog pulled (catalogs without ``dest`` share one destination) stay.
Each model is pruned holding its files' locks: a model another run is pulling is skipped, and a pull
starting meanwhile waits. Every removal goes through :mod:`mdl.store.confined`: a planted link is
never followed."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import stat as st
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from mdl.catalog.settings import Settings
from mdl.catalog.specs import ModelSpec, is_model_name
from mdl.errors import LocalFSError, LockTimeoutError, MdlError, worst_exit_code
from mdl.paths import GIT_OID_HEX
from mdl.store import confined
from mdl.store.asrecorded import leads_to, lstat_in, place_of, unchanged, why_kept
from mdl.store.filelocks import HeldLocks
from mdl.store.inventory import CleanedFile, lock_keys, model_status
from mdl.store.layout import Layout, Placement
from mdl.store.records import ONE_OFF_CATALOG, FileRecord, ModelRecord
from mdl.store.store import Store, key_pattern
from mdl.wait import Wait

log = logging.getLogger("mdl.store")

GONE = "not in the catalog"  # the reason for every file of a model taken out of the catalog
EXTRA = "no longer part of the model"  # a recorded file the model's last pull no longer named
# the Hugging Face cache: a file of a commit the model moved from
EARLIER = "of another commit than the model's"
# a recorded file mdl adopted (FileRecord.adopted): kept
ADOPTED = "found in place, not written by mdl"
# + its path: a model whose record names another catalog: kept
OTHER_CATALOG = "pulled with another catalog: "
# what became of one entry prune looked at
_REMOVED, _GONE, _KEPT, _FAILED = "removed", "gone", "kept", "failed"
FINISHED = "set aside by a killed prune, its name taken since: the removal finished"
LEFT_ASIDE = "set aside by a killed prune, its name taken since, and not what mdl recorded"
# how long a prune holds an entry set aside (microseconds: from its rename to its unlink): one
# whose rename (ctime) is older was left by a killed run
ASIDE_LEFT_AFTER = 60.0  # seconds


@dataclass(frozen=True)
class PrunedPath:
    """A path prune removed (or, with dry_run, would remove)."""

    path: Path
    size: int
    model: str
    reason: str
    linked: bool = False  # another hard link keeps its bytes: removing this name frees none of them


@dataclass(frozen=True)
class KeptPath:
    """A path prune left alone although it sits where it worked: mdl did not write it, or it changed
    since; ``catalog``: the other catalog whose model it is (that catalog's prune removes it)."""

    path: Path
    model: str | None
    reason: str
    catalog: str | None = None


@dataclass(frozen=True)
class PruneReport:
    """What prune removed (or would remove), what it kept, and the models it skipped or could not
    finish."""

    removed: tuple[PrunedPath, ...]
    kept: tuple[KeptPath, ...] = ()
    warnings: tuple[str, ...] = ()
    errors: tuple[MdlError, ...] = ()
    dry_run: bool = False

    @property
    def freed(self) -> int:
        """The bytes removing these paths gives back: none of a file another hard link keeps."""
        return sum(r.size for r in self.removed if not r.linked)

    @property
    def other_catalogs(self) -> list[str]:
        """The other catalogs whose models prune kept (each once, in the order met)."""
        return list(dict.fromkeys(k.catalog for k in self.kept if k.catalog is not None))

    @property
    def exit_code(self) -> int:
        return worst_exit_code([int(e.exit_code) for e in self.errors])

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "dry_run": self.dry_run,
            "freed": self.freed,
            "removed": [
                {"path": str(r.path), "size": r.size, "model": r.model, "reason": r.reason}
                | {"removed": not self.dry_run, "linked": r.linked}
                for r in self.removed
            ],
            "kept": [{**asdict(k), "path": str(k.path)} for k in self.kept],
            "warnings": list(self.warnings),
            "errors": [e.message for e in self.errors],
        }


@dataclass(eq=False, repr=False)
class _Pruning:
    """One prune's running tally, and the paths of the files that stay (another model still uses
    them)."""

    layout: Layout
    dry_run: bool
    used: set[Path]
    removed: list[PrunedPath] = field(default_factory=list)
    kept: list[KeptPath] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    errors: list[MdlError] = field(default_factory=list)


def prune(
    specs: Sequence[ModelSpec], settings: Settings, *, only: str | None = None
) -> PruneReport:
    """Remove what the catalog (``specs``) no longer names and mdl recorded (``only``: that
    model's alone)."""
    layout = Layout(settings)
    catalog = {spec.name: spec for spec in specs}
    records = {name: layout.records.read_record(name) for name in recorded_models(layout.records)}
    # the models another catalog pulled, with that catalog's path
    others = {
        name: other
        for name, record in records.items()
        if record is not None
        and (other := other_catalog(record, settings.catalog_path)) is not None
    }
    run = _Pruning(layout, settings.dry_run, _used_paths(layout, catalog, records, others))
    # what a killed prune left set aside: back, or gone, before anything is judged
    asides = recover_asides(layout, records, dry_run=settings.dry_run)
    run.removed.extend(asides.removed)
    run.kept.extend(asides.kept)
    run.warnings.extend(
        f"{path}: put back where a killed prune left it" for path in asides.restored
    )
    for name, record in records.items():
        if only is None or name == only:
            _prune_recorded(run, name, record, catalog.get(name), others.get(name))
    if only is None:
        _note_unrecorded(run, catalog, records)
    return PruneReport(
        tuple(run.removed),
        tuple(run.kept),
        tuple(run.warnings),
        tuple(run.errors),
        settings.dry_run,
    )


def _used_paths(
    layout: Layout,
    catalog: Mapping[str, ModelSpec],
    records: Mapping[str, ModelRecord | None],
    others: Mapping[str, str],
) -> set[Path]:
    """The files of the models that stay: this catalog's, and every model another catalog
    pulled."""
    used: set[Path] = set()
    for name, record in records.items():
        if record is None or (name not in catalog and name not in others):
            continue
        if others.get(name) == ONE_OFF_CATALOG:  # a get's repo: its files, not its older ones
            record = record._replace(earlier={})
        used.update(_paths_in_use(layout, None if name in others else catalog[name], record))
    return used


def _prune_recorded(
    run: _Pruning, name: str, record: ModelRecord | None, spec: ModelSpec | None, other: str | None
) -> None:
    """Prune one recorded model: all of it when the catalog (``spec``) no longer names it, else its
    extra files; kept whole when ``other`` catalog pulled it."""
    if record is None:
        run.warnings.append(
            f"{name}: its record cannot be read (the log says why); its files are kept"
        )
        return
    layout = run.layout
    paths = sorted(record.files) if spec is None else list(model_status(spec, layout).extra)
    targets = {path: record.files[path] for path in paths}
    earlier = {} if layout.cache is None else _earlier_unused(record, signed=spec is not None)
    if not (targets or earlier or spec is None):
        return
    if other is None:
        _prune_model(run, record, targets, earlier, whole=spec is None)
        return
    if other == ONE_OFF_CATALOG:  # a get's repo in the cache: its older revisions go, nothing else
        if earlier:
            _prune_model(run, record, {}, earlier, whole=False)
        return
    # named by its folder in the destination, else (all in the Hugging Face cache) its record
    folder = layout.plain.model_dir(name)
    where = folder if os.path.lexists(folder) else layout.records.record_path(name)
    run.kept.append(KeptPath(where, name, OTHER_CATALOG + other, other))


def _note_unrecorded(
    run: _Pruning, catalog: Mapping[str, ModelSpec], records: Mapping[str, ModelRecord | None]
) -> None:
    """The folders in the destination neither in the catalog nor recorded: kept, and said so."""
    dest = run.layout.plain.dest
    for name, info in confined.entries(dest, dest):
        if not (name == ".mdl" or name in catalog or name in records) and st.S_ISDIR(info.st_mode):
            run.kept.append(KeptPath(dest / name, None, "not recorded by mdl"))


def recorded_models(store: Store) -> list[str]:
    """The models with a record in ``store`` (regular files ``<model>.json`` under ``records/``)."""
    found = confined.entries(store.dest, store.state_dir / "records")
    names = (
        name.removesuffix(".json")
        for name, info in found
        if st.S_ISREG(info.st_mode) and name.endswith(".json")
    )
    return [name for name in names if is_model_name(name)]


def other_catalog(record: ModelRecord, catalog: Path | None) -> str | None:
    """The catalog that pulled the model when it is not ``catalog`` (the one prune works for); None:
    this catalog's to prune. A record naming no catalog (an older mdl's) counts as this catalog's:
    upgrading users can still prune."""
    if record.catalog is None or catalog is None or record.catalog == str(catalog):
        return None
    return record.catalog


def _paths_in_use(layout: Layout, spec: ModelSpec | None, record: ModelRecord) -> Iterator[Path]:
    """Where the files of a model that stays are (a blob or snapshot entry may be shared with a
    removed model); ``spec`` None: all of them (another catalog's model, its other commits' too),
    else all but its extra files."""
    extra = set(model_status(spec, layout).extra) if spec is not None else set()
    files = record.files if spec is not None else {**record.files, **record.earlier}
    for path, entry in files.items():
        if path not in extra and (placement := place_of(layout, record.name, entry)) is not None:
            yield placement.final
            yield placement.shown


def _prune_model(
    run: _Pruning,
    record: ModelRecord,
    files: dict[str, FileRecord],
    earlier: dict[str, FileRecord],
    *,
    whole: bool,
) -> None:
    """Remove ``files`` (recorded files, by path) and ``earlier`` (the files of other commits mdl
    wrote into the Hugging Face cache, by ``<commit>/<path>``) of one model under its locks, then
    their record entries (``whole``: the record itself, and the model's folder once empty)."""
    model = record.name
    targets = _targets(run.layout, model, files, earlier, whole=whole)
    placements = {t.key: t.placement for t in targets}
    if (held := _take_locks(run, model, placements)) is None:
        return
    with held:
        dropped = _remove_targets(run, model, targets)
        if whole:
            _note_left_in(run, model, run.layout.plain.model_dir(model))
        if run.dry_run:
            return
        # a folder left behind is no failure (a link there stays)
        with contextlib.suppress(OSError, MdlError):
            _tidy(run, model, placements, whole=whole)
        _drop_from_record(run, model, dropped, whole=whole)


class _Target(NamedTuple):
    """One record entry prune removes: its key (``files`` or ``earlier``, and its key there), where
    it is (None: nowhere it could be), and why it goes."""

    key: tuple[str, str]
    entry: FileRecord
    placement: Placement | None
    reason: str


def _targets(
    layout: Layout,
    model: str,
    files: dict[str, FileRecord],
    earlier: dict[str, FileRecord],
    *,
    whole: bool,
) -> list[_Target]:
    """The record entries to remove, each with where it is and why it goes."""
    parts = {
        "files": (files, GONE if whole else EXTRA),
        "earlier": (earlier, GONE if whole else EARLIER),
    }
    return [
        _Target((kind, key), entry, place_of(layout, model, entry), reason)
        for kind, (entries, reason) in parts.items()
        for key, entry in entries.items()
    ]


def _drop_from_record(
    run: _Pruning, model: str, dropped: Sequence[tuple[str, str]], *, whole: bool
) -> None:
    """Take the entries mdl no longer answers for out of the model's record (``whole``: the
    record itself)."""
    paths = tuple(key for kind, key in dropped if kind == "files")
    forget = tuple(key for kind, key in dropped if kind == "earlier")
    try:
        run.layout.records.drop_from_record(model, paths, whole=whole, forget=forget)
    except MdlError as exc:
        run.errors.append(exc)


def _take_locks(
    run: _Pruning, model: str, placements: dict[tuple[str, str], Placement | None]
) -> HeldLocks | None:
    """The model's locks (:func:`_lock_model`); None, and a warning, when the model is skipped."""
    try:
        return _lock_model(run.layout, model, placements)
    except LockTimeoutError as exc:
        log.info("%s", exc.message)
        run.warnings.append(
            f"{model}: skipped: another mdl run is pulling it (its files are locked)"
        )
    # a lock file or folder mdl cannot use (a planted link): nothing removed
    except MdlError as exc:
        run.warnings.append(f"{model}: skipped: {exc.message}")
    return None


def _remove_targets(run: _Pruning, model: str, targets: Sequence[_Target]) -> list[tuple[str, str]]:
    """Remove each target, then the blobs of the snapshot entries removed that nothing else leads
    to; the keys of the entries mdl no longer answers for (removed, gone, or changed since)."""
    dropped: list[tuple[str, str]] = []
    blobs: dict[Path, tuple[Placement, FileRecord, str]] = {}
    for target in targets:
        if _remove_target(run, model, target, blobs) != _FAILED:
            dropped.append(target.key)
    for placement, entry, reason in blobs.values():
        if not _linked_elsewhere(run, model, placement):
            _remove_entry(run, model, placement.store.dest, placement.final, entry, reason)
    return dropped


def _remove_target(
    run: _Pruning, model: str, target: _Target, blobs: dict[Path, tuple[Placement, FileRecord, str]]
) -> str:
    """Remove one target's file or snapshot entry (its blob joins ``blobs``); what became of it."""
    placement, entry, reason = target.placement, target.entry, target.reason
    if placement is None:  # nowhere it could be (a Hub file never placed): nothing on disk
        return _GONE
    # found in place, never written by mdl: neither it nor its blob is mdl's to remove
    if entry.adopted:
        if placement.shown not in run.used and os.path.lexists(placement.shown):
            run.kept.append(KeptPath(placement.shown, model, ADOPTED))
        return _KEPT
    root = placement.store.dest
    if placement.link is not None:
        done = _remove_entry(run, model, root, placement.shown, entry, reason, link=placement)
        # a shared one: hf's to collect
        if done in (_REMOVED, _GONE) and placement.shared_via is None:
            blobs.setdefault(placement.final, (placement, entry, reason))
        return done
    # never outside the cache: a plain file of another commit is overwritten
    if target.key[0] == "earlier":
        return _KEPT
    return _remove_entry(run, model, root, placement.final, entry, reason)


def _lock_model(
    layout: Layout, model: str, placements: dict[tuple[str, str], Placement | None]
) -> HeldLocks:
    """Every lock of the model's files, at once or not at all (LockTimeoutError): the files prune
    removes, with their blobs' locks, and any other file of the model a run is fetching now (its
    lock file is there)."""
    held = HeldLocks([])
    try:
        _lock_running(layout, model, _lock_files(layout, model, placements, held), held)
    except BaseException:
        held.release()
        raise
    return held


def _lock_files(
    layout: Layout, model: str, placements: dict[tuple[str, str], Placement | None], held: HeldLocks
) -> set[Path]:
    """Take the locks of the files prune removes, with their blobs' (into ``held``); their
    paths."""
    taken: set[Path] = set()
    for (_, path), placement in placements.items():
        store = placement.store if placement is not None else layout.plain
        shared = placement.lock if placement is not None and placement.lock not in taken else None
        held.locks.extend(
            store.acquire_file_lock(model, path, Wait.within(0), shared_lock=shared).locks
        )
        taken |= {store.lock_path(model, path), *((shared,) if shared else ())}
    return taken


def _lock_running(layout: Layout, model: str, taken: set[Path], held: HeldLocks) -> None:
    """Take the lock of any other file of the model a run is fetching now (its lock file is
    there), into ``held``: LockTimeoutError when a run holds one."""
    pattern = key_pattern(model, "lock")
    for store in layout.stores:
        for key in lock_keys(store):
            path = store.state_dir / "locks" / f"{key}.lock"
            if not pattern.fullmatch(path.name) or path in taken:
                continue
            if (other := store.try_file_lock(key)) is None:
                raise LockTimeoutError(f"{model}: a run holds {path}")
            held.locks.extend(other.locks)


def _remove_entry(
    run: _Pruning,
    model: str,
    root: Path,
    path: Path,
    entry: FileRecord,
    reason: str,
    *,
    link: Placement | None = None,
) -> str:
    """Remove ``path`` if it is what mdl wrote: the file it recorded, or (``link``) the snapshot
    entry leading to its blob. Anything else there is kept as the user's; a link on the way is never
    followed. What is removed is the object checked, never whatever has its name by then
    (:func:`confined.unlink_checked`)."""
    if path in run.used:
        return _KEPT  # another model's file too (the same blob or snapshot entry): it stays
    try:
        if (found := lstat_in(root, path)) is None:
            return _GONE
        why, checked = why_kept(root, path, found, entry, link)
        if why is None and not run.dry_run:
            removal = confined.unlink_checked(root, path, unchanged(checked))
            if removal.found is None:
                return _GONE
            found = removal.found
            if not removal.removed:
                why, path = "replaced while prune checked it", removal.kept_at or path
        if why is not None:
            run.kept.append(KeptPath(path, model, why))
            return _KEPT
    except MdlError as exc:  # a link on the way (exit 2's refusal): never followed, the entry stays
        run.warnings.append(f"{model}/{entry.path}: kept: {exc.message}")
        return _FAILED
    except OSError as exc:
        run.errors.append(
            LocalFSError(f"{model}/{entry.path}: cannot remove {path}: {exc.strerror or exc}")
        )
        return _FAILED
    run.removed.append(_pruned(path, found, model, reason, symlink=link is not None))
    return _REMOVED


def _pruned(
    path: Path, found: os.stat_result, model: str, reason: str, *, symlink: bool
) -> PrunedPath:
    """What removing ``path`` frees: nothing of a snapshot entry's, nothing of a file another hard
    link keeps (its links counted before the unlink: the name removed is one of them)."""
    size, linked = (0, False) if symlink else (found.st_size, found.st_nlink > 1)
    return PrunedPath(path, size, model, reason, linked)


def _linked_elsewhere(run: _Pruning, model: str, placement: Placement) -> bool:
    """Whether a snapshot entry prune does not remove leads to the blob (another revision,
    huggingface_hub's own)."""
    blob, snapshots = placement.blob, placement.blob.parent.parent / "snapshots"
    if snapshots.is_symlink():
        return True  # never walked: kept
    leaving = {r.path for r in run.removed if r.model == model}
    # links are listed, never followed (followlinks=False)
    entries = (
        Path(at) / name for at, dirs, files in os.walk(snapshots) for name in (*files, *dirs)
    )
    return any(e not in leaving and e.is_symlink() and leads_to(e, blob) for e in entries)


def _tidy(
    run: _Pruning, model: str, placements: dict[tuple[str, str], Placement | None], *, whole: bool
) -> None:
    """Remove the folders prune emptied: a removed model's folder; in the Hugging Face cache,
    emptied snapshots (with the refs naming them: huggingface_hub calls a ref to no snapshot a
    corrupted cache) and emptied repos."""
    plain = run.layout.plain
    for placement in placements.values():
        if placement is None:
            continue
        if placement.link is None:
            _rmdir_up(plain.dest, placement.final.parent, plain.model_dir(model), including=whole)
            continue
        root, repo = placement.store.dest, placement.blob.parent.parent
        commit_dir = repo / "snapshots" / placement.shown.relative_to(repo / "snapshots").parts[0]
        _rmdir_up(root, placement.shown.parent, commit_dir, including=True)
        if not os.path.lexists(commit_dir):
            _drop_refs(run, model, root, repo, commit_dir.name)
        _drop_empty_repo(root, repo)
    if whole:
        confined.rmdir_empty(plain.dest, plain.model_dir(model))


def _rmdir_up(root: Path, folder: Path, top: Path, *, including: bool) -> None:
    """Remove ``folder`` and its parents while they are empty, up to ``top`` (``including`` it)."""
    while folder.is_relative_to(top) and (including or folder != top):
        confined.rmdir_empty(root, folder)
        if os.path.lexists(folder):
            return
        folder = folder.parent


def _earlier_unused(record: ModelRecord, *, signed: bool) -> dict[str, FileRecord]:
    """The files of other commits mdl wrote in the Hugging Face cache (only it keeps them), but
    those of the signed version a pull installed whole while the model is still in the catalog: it
    is what ``list`` calls installed."""
    vouched = (record.signed_files or {}) if signed else {}

    def needed(key: str, entry: FileRecord) -> bool:
        path = key.partition("/")[2]
        current = record.files.get(path)
        return vouched.get(path) == entry.sha256 and (
            current is None or current.sha256 != entry.sha256
        )

    return {key: entry for key, entry in record.earlier.items() if not needed(key, entry)}


def _drop_refs(run: _Pruning, model: str, root: Path, repo: Path, commit: str) -> None:
    """Remove the refs naming ``commit``, whose snapshot prune removed (read and removed as
    entries, never followed)."""
    if not GIT_OID_HEX.fullmatch(commit):
        return
    refs = repo / "refs"
    if refs.is_symlink():
        return
    for folder, _, files in os.walk(refs):
        for name in files:
            ref = Path(folder) / name
            try:
                checked = lstat_in(root, ref)
                if (
                    checked is None
                    or confined.read_bytes(root, ref, limit=256, head=True) != commit.encode()
                ):
                    continue
                removal = confined.unlink_checked(root, ref, unchanged(checked))
                # replaced since it was read: kept (under its set-aside name if one took it)
                if not removal.removed:
                    if removal.kept_at is not None:
                        run.kept.append(
                            KeptPath(removal.kept_at, model, "replaced while prune checked it")
                        )
                    continue
            except (OSError, MdlError):
                continue  # not a ref mdl can read as its own: kept
            run.removed.append(
                PrunedPath(ref, len(commit), model, "names a snapshot prune removed")
            )
            _rmdir_up(root, ref.parent, refs, including=False)


def _drop_empty_repo(root: Path, repo: Path) -> None:
    """The repo's folder once blobs, snapshots and refs are all empty and nothing else is in it."""
    parts = ("blobs", "snapshots", "refs")
    entries = confined.entries(root, repo)
    if any(name not in parts or not st.S_ISDIR(info.st_mode) for name, info in entries):
        return
    if any(confined.entries(root, repo / name) for name, _ in entries):
        return
    for name, _ in entries:
        confined.rmdir_empty(root, repo / name)
    confined.rmdir_empty(root, repo)


def _note_left_in(run: _Pruning, model: str, folder: Path) -> None:
    """The files mdl did not write left in a removed model's folder (they stay, and so does the
    folder)."""
    if folder.is_symlink():
        run.kept.append(KeptPath(folder, model, "a link mdl did not make"))
        return
    known = {p.path for p in run.kept} | {p.path for p in run.removed if p.model == model}
    note_strays(run, model, folder, known=known, why="not written by mdl")


def note_strays(run: _Pruning, model: str, folder: Path, *, known: set[Path], why: str) -> None:
    """The files in ``model``'s ``folder`` that are not ``known``: they stay, said with ``why``. A
    link is listed, never followed; a killed prune's hidden entries are ``clean``'s."""
    for where, dirs, files in os.walk(folder):
        for name in sorted((*files, *(d for d in dirs if (Path(where) / d).is_symlink()))):
            path = Path(where) / name
            if path in known or re.fullmatch(confined.ASIDE_NAME, name):
                continue
            if os.path.lexists(path):
                run.kept.append(KeptPath(path, model, why))


class Asides(NamedTuple):
    """What became of the entries killed prunes left set aside: put back under their names,
    removed (their names taken since, by what mdl wrote again), or kept (not what mdl recorded)."""

    restored: tuple[Path, ...] = ()
    removed: tuple[PrunedPath, ...] = ()
    kept: tuple[KeptPath, ...] = ()


def recover_asides(
    layout: Layout, records: Mapping[str, ModelRecord | None], *, dry_run: bool
) -> Asides:
    """Find what a prune killed between its rename aside and its unlink left
    (``.<name>.<hex>.mdl-prune``, hidden, as big as the file) under the destination and the cache,
    and end it: put back under its name when that name is free (what prune then decides is
    decided anew); else removed if it is what mdl recorded at that name (the file, or the link to
    its blob), else kept and said. ``dry_run``: only said."""
    recorded = _recorded_paths(layout, records)
    restored: list[Path] = []
    removed: list[PrunedPath] = []
    kept: list[KeptPath] = []
    for root, aside, info, start in _asides(layout):
        name = _original(aside.parent, start, recorded)
        try:
            free = name is not None and not os.path.lexists(aside.parent / name)
            if free and (dry_run or confined.put_back(root, aside, str(name))):
                restored.append(aside.parent / str(name))
                continue
            model, why = _why_left(root, aside, info, recorded.get(aside.parent / (name or "")))
            if why is not None:
                kept.append(KeptPath(aside, model, why))
                continue
            if not dry_run:
                confined.unlink(root, aside)
        except (OSError, MdlError) as exc:
            kept.append(KeptPath(aside, None, f"{LEFT_ASIDE} ({exc})"))
            continue
        removed.append(
            _pruned(aside, info, model or "", FINISHED, symlink=st.S_ISLNK(info.st_mode))
        )
    return Asides(tuple(restored), tuple(removed), tuple(kept))


def _asides(layout: Layout) -> Iterator[tuple[Path, Path, os.stat_result, str]]:
    """Each entry a killed prune left set aside, with the root it lies under, its ``lstat``
    (links are listed, never followed) and the start of its name it kept (``ASIDE_NAME``)."""
    left_before = time.time() - ASIDE_LEFT_AFTER
    for store in layout.stores:
        for where, _, files in os.walk(store.dest):
            for name in files:
                path = Path(where) / name
                if (aside := re.fullmatch(confined.ASIDE_NAME, name)) is None:
                    continue
                with contextlib.suppress(OSError):
                    info = path.lstat()
                    if info.st_ctime < left_before:
                        yield store.dest, path, info, aside["start"]


def _recorded_paths(
    layout: Layout, records: Mapping[str, ModelRecord | None]
) -> dict[Path, tuple[str, Placement, FileRecord]]:
    """Every path mdl recorded (files, blobs, snapshot entries), with its model, placement and
    record entry."""
    found: dict[Path, tuple[str, Placement, FileRecord]] = {}
    for name, record in records.items():
        for entry in [] if record is None else [*record.files.values(), *record.earlier.values()]:
            if (placement := place_of(layout, name, entry)) is not None:
                found[placement.final] = found[placement.shown] = (name, placement, entry)
    return found


def _original(
    folder: Path, start: str, recorded: Mapping[Path, tuple[str, Placement, FileRecord]]
) -> str | None:
    """The name an aside had: its start when whole, else the one recorded name it begins
    (None: no such name, or more than one)."""
    if len(start) < confined.ASIDE_KEEPS:
        return start
    names = {p.name for p in recorded if p.parent == folder and p.name.startswith(start)}
    return names.pop() if len(names) == 1 else None


def _why_left(
    root: Path,
    aside: Path,
    info: os.stat_result,
    recorded: tuple[str, Placement, FileRecord] | None,
) -> tuple[str | None, str | None]:
    """The model an aside is of, and why it stays (None: it is what mdl recorded at its name)."""
    if recorded is None:
        return None, LEFT_ASIDE
    model, placement, entry = recorded
    shown = placement.link is not None and aside.parent == placement.shown.parent
    why, _ = why_kept(root, aside, info, entry, placement if shown else None)
    return model, None if why is None else LEFT_ASIDE


def clean_asides(settings: Settings) -> list[CleanedFile]:
    """``mdl clean``'s share of :func:`recover_asides`: the asides removed (or, dry run, to be);
    those put back, or kept, said in the log."""
    layout = Layout(settings)
    records = {name: layout.records.read_record(name) for name in recorded_models(layout.records)}
    asides = recover_asides(layout, records, dry_run=settings.dry_run)
    for path in asides.restored:
        log.info("%s: put back where a killed prune left it", path)
    for kept in asides.kept:
        log.warning("%s: kept: %s", kept.path, kept.reason)
    return [
        CleanedFile(r.path, r.size, "left by a killed prune", not settings.dry_run)
        for r in asides.removed
    ]
