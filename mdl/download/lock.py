"""``mdl lock``: resolve the models (hashing what upstream does not say, through the same fetch
stage and mirrors as a pull) and record catalog.lock, as ``uv lock`` does (a fresh entry is kept
unless ``upgrade``; nothing is written if one model fails)."""

from __future__ import annotations

import contextlib
import logging
import stat
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from mdl.catalog.settings import Settings
from mdl.catalog.specs import Catalog, ModelSpec
from mdl.download._locksigned import checked_signatures, hashed_once, lock_signature
from mdl.download._ocisigned import referred_signatures
from mdl.download._plan import recorded, same_content
from mdl.download.lockcheck import LockReport, Scope, lock_path, read_lock_anew
from mdl.download.resolve import resolve
from mdl.download.session import PullSession, label_of
from mdl.errors import CatalogError, InterruptedByUserError, MdlError, NetworkError
from mdl.lockfile.checked import locked_from_resolved
from mdl.lockfile.io import ModelChange, diff_locks, exclusive
from mdl.lockfile.io import write_lock as write_lock_file
from mdl.lockfile.model import Lock, LockedFile, LockedModel
from mdl.lockfile.parts import PartHashes, hashed, kept, parts_beside, read_parts, write_parts
from mdl.paths import opened
from mdl.progress import Progress
from mdl.report import FileOutcome, failed
from mdl.signing.library import require_library
from mdl.sources.resolve import RemoteFile, ResolvedModel
from mdl.store.filesystem import stat_file
from mdl.store.inventory import file_state
from mdl.store.layout import Layout
from mdl.store.states import INSTALLED

log = logging.getLogger("mdl.lock")


def lock_catalog(
    catalog: Catalog,
    names: Sequence[str],
    settings: Settings,
    *,
    upgrade: bool,
    progress: Progress,
    path: Path | None = None,
) -> LockReport:
    """Lock the named models (every model, and drop entries the catalog no longer has, when
    ``names`` is empty) in ``path`` (--lock), else in the lock beside the catalog.
    """
    path = lock_path(catalog, given=path)
    scope = Scope(catalog, names)
    old, broken = read_lock_anew(path, anew=scope.everything)
    warnings = (broken,) if broken else ()
    if broken:
        log.warning("%s", broken)
    base = old or Lock()
    # the models to resolve: every one with ``upgrade``, else those the lock does not pin as the
    # catalog says now
    todo = [spec for spec in scope.specs if upgrade or base.fresh(spec) is None]
    fresh, failures, said = _lock_models(todo, settings, old=base, progress=progress)
    failures.extend(_kept_signed(scope, base, todo, settings, progress))
    warnings = (*warnings, *said)
    resolved = tuple(spec.name for spec in todo)
    if failures:
        return LockReport(
            path, False, resolved=resolved, failures=tuple(failures), warnings=warnings
        )
    sidecar = _Sidecar(path, settings, warnings)
    sidecar.hash_local(base.with_models(fresh, keep=scope.keeps), scope, progress)
    changed, changes = _write_merged(path, scope, fresh, sidecar)
    log.info(
        "%s: %s (%d model(s) resolved)", path, "written" if changed else "unchanged", len(resolved)
    )
    return LockReport(
        path,
        changed,
        changes,
        resolved=resolved,
        warnings=tuple(sidecar.warnings),
        parts_changed=sidecar.changed,
        parts=sidecar.count,
        hashed=len(sidecar.found),
        not_here=sidecar.not_here,
    )


@dataclass(frozen=True)
class _Here:
    """A file of the lock here to hash: its label, path, and the size and sha256 the lock pins;
    ``mtime_ns``: its record's, when a record of mdl's vouches for it (None: none does, and the
    read's sha256 alone decides)."""

    label: str
    path: Path
    size: int
    sha256: str
    mtime_ns: int | None


class _Sidecar:
    """The part hashes beside the lock: those it holds for bytes the lock still pins, plus those of
    the files in scope that are here and are the bytes the lock pins: installed and verified, or
    put there by another tool and proved by the same read (read and hashed now: a pull records
    none, since BLAKE3 on every pull would cost ~15-20 % more CPU)."""

    def __init__(self, lock: Path, settings: Settings, warnings: Iterable[str]) -> None:
        self.path, self.settings = parts_beside(lock), settings
        self.warnings = list(warnings)
        self.found: dict[str, PartHashes] = {}
        self.changed, self.count, self.not_here = False, 0, 0

    def written(self) -> dict[str, PartHashes]:
        """The part hashes on disk; bad ones are said once and written anew."""
        try:
            return read_parts(self.path)
        except CatalogError as exc:
            warning = f"{exc.message}; writing it again"
            if warning not in self.warnings:
                log.warning("%s", warning)
                self.warnings.append(warning)
            return {}

    def hash_local(self, lock: Lock, scope: Scope, progress: Progress) -> None:
        """Hash the files of the models in scope that have no part hashes yet and are installed
        here, verified (outside the lock's flock: this reads gigabytes; with progress)."""
        here = self._unhashed_here(lock, {spec.name for spec in scope.specs})
        if not here:
            return
        progress.begin(total_bytes=sum(one.size for one in here.values()), files=len(here))
        for sha256, one in here.items():
            if (got := self._hashed(one, progress)) is not None:
                self.found[sha256] = got

    def _unhashed_here(self, lock: Lock, names: set[str]) -> dict[str, _Here]:
        """By sha256, the files of the models ``names`` with no part hashes yet that are here
        (``_found``); those that are not are counted (``not_here``)."""
        have = self.written()
        todo: dict[str, list[tuple[str, LockedFile]]] = {}  # each bytes' files, and their models
        for model in lock.models.values():
            for f in model.files if model.name in names else ():
                if f.size > 0 and not (f.sha256 in have and have[f.sha256].size == f.size):
                    todo.setdefault(f.sha256, []).append((model.name, f))
        here = _found(self.settings, todo) if todo else {}
        self.not_here = len(todo) - len(here)
        return here

    def _hashed(self, one: _Here, progress: Progress) -> PartHashes | None:
        """The part hashes of the file ``one`` if it is the bytes the lock pins: its size (and
        the mtime its record gives), and the same sha256, computed from the same read."""
        label, path = one.label, one.path
        progress.start(label, label=f"hashing the parts of {label}", total=one.size)
        got: tuple[PartHashes, str] | None = None
        try:
            with opened(path) as (fd, now):
                mtime = now.st_mtime_ns if one.mtime_ns is None else one.mtime_ns
                if stat.S_ISREG(now.st_mode) and (now.st_size, now.st_mtime_ns) == (
                    one.size,
                    mtime,
                ):
                    got = hashed(fd, one.size, on_bytes=partial(progress.advance, label))
        except OSError as exc:
            log.info("%s: no part hashes: cannot read it: %s", label, exc.strerror or exc)
            progress.finish(label, ok=False, message="cannot read it")
            return None
        if got is not None and got[1] == one.sha256:
            progress.finish(label, ok=True, message="part hashes")
            return got[0]
        why = (
            "changed since it was verified"
            if one.mtime_ns is not None
            else f"is not the bytes the lock pins (sha256 {got[1] if got else 'unread'})"
        )
        warning = f"{label}: no part hashes: {path} {why}"
        log.warning("%s", warning)
        self.warnings.append(warning)
        progress.finish(label, ok=False, message=why.partition(" (")[0])
        return None

    def write(self, lock: Lock) -> None:
        """The part hashes of every file ``lock`` pins that has some, written beside it (under
        the lock's flock)."""
        pinned = {f.sha256: f.size for model in lock.models.values() for f in model.files}
        parts = kept({**self.written(), **self.found}, pinned)
        self.changed = write_parts(self.path, parts)
        self.count = len(parts)


def _found(
    settings: Settings, todo: Mapping[str, list[tuple[str, LockedFile]]]
) -> dict[str, _Here]:
    """By sha256, the first of each bytes' files that is here: installed (``_installed``), else
    at its place without a record (``_unrecorded``)."""
    try:
        layout = Layout(settings)
    except MdlError as exc:  # no destination to look in: nothing installed here
        log.info("no part hashes from %s: %s", settings.dest, exc.message)
        return {}
    here: dict[str, _Here] = {}
    for sha256, places in todo.items():
        for name, f in places:
            if (found := _installed(layout, name, f) or _unrecorded(layout, name, f)) is not None:
                here[sha256] = found
                break
    return here


def _installed(layout: Layout, model: str, f: LockedFile) -> _Here | None:
    """Where the locked file is installed here, verified as the bytes the lock pins (its record
    says so, its size and mtime still match: ``file_state``), with its label and record; else
    None."""
    entry = layout.records.entry(model, f.path, sha256=f.sha256, git_oid=f.git_oid)
    if entry is None or not entry.verified or (entry.sha256, entry.size) != (f.sha256, f.size):
        return None
    state, placement = file_state(layout, model, f.path, f.source, entry)
    if state != INSTALLED or placement is None:
        return None
    return _Here(f"{model}/{f.path}", placement.final, f.size, f.sha256, entry.mtime_ns)


def _unrecorded(layout: Layout, model: str, f: LockedFile) -> _Here | None:
    """Where a file of the pinned size is at the locked file's place though no record of mdl's
    vouches for it (copied there, fetched by another tool): its read's sha256 decides."""
    try:
        placement = layout.place(model, f.path, source=f.source, sha256=f.sha256, git_oid=f.git_oid)
        found = stat_file(placement.final)
    except MdlError:  # where it goes cannot be known (hf-cache, never pulled), or no such name
        return None
    if found is None or not stat.S_ISREG(found.st_mode) or found.st_size != f.size:
        return None
    return _Here(f"{model}/{f.path}", placement.final, f.size, f.sha256, None)


def _kept_signed(
    scope: Scope, base: Lock, todo: Sequence[ModelSpec], settings: Settings, progress: Progress
) -> list[FileOutcome]:
    """An entry kept as locked is held to the same rule as one locked now: its pinned signature
    must verify and cover what it pins (a lock edited by hand, or merged, is no exception). Offline,
    a lock that changes nothing asks nothing (``lock --check`` is CI's, online)."""
    if settings.offline:
        return []
    return checked_signatures(settings, (s for s in scope.specs if s not in todo), base, progress)


def _write_merged(
    path: Path, scope: Scope, fresh: Mapping[str, LockedModel], sidecar: _Sidecar
) -> tuple[bool, tuple[ModelChange, ...]]:
    """Write the ``fresh`` entries into the lock as it is now (another mdl lock or add may have
    written it since), then its part hashes: whether its text changed, and the changes in scope.
    (Keyed by sha256, the part hashes are right for whatever lock they lie beside: a run stopped
    between the two writes leaves entries that are true, or missing.)"""
    with exclusive(path):
        base = read_lock_anew(path, anew=scope.everything)[0] or Lock()
        new = base.with_models(fresh, keep=scope.keeps)
        changed = write_lock_file(path, new)
        sidecar.write(new)
    shown = scope.shown(base, new)
    before = {n: m for n, m in base.models.items() if n in shown}
    after = {n: m for n, m in new.models.items() if n in shown}
    return changed, tuple(diff_locks(before, after))


def _lock_models(
    specs: list[ModelSpec], settings: Settings, *, old: Lock, progress: Progress
) -> tuple[dict[str, LockedModel], list[FileOutcome], list[str]]:
    """Resolve the models upstream (never from the lock) and hash what upstream did not; their
    lock entries, and warnings.
    """
    if not specs:  # every one fresh: nothing to ask upstream
        return {}, [], []
    # the record of a past pull is no resolution: it may be any commit, and lack files
    if settings.offline:
        why = "HF_HUB_OFFLINE is set; it must be resolved to be locked"
        return {}, [failed(s.name, None, NetworkError(f"{s.name}: {why}")) for s in specs], []
    if any(spec.signature is not None for spec in specs):
        require_library()  # its signature is verified: before anything is fetched
    with contextlib.closing(PullSession(settings, progress=progress)) as session:
        # what it renews: never from the lock
        resolved, failures = resolve(session, specs, lock=None)
        resolved, refused, passed_over = referred_signatures(session, specs, resolved)
        failures.extend(refused)
        blobs = {
            f.git_oid: (f.size, f.sha256) for m in old.models.values() for f in m.files if f.git_oid
        }
        by_name = {spec.name: spec for spec in specs}
        unsigned, signatures = _signatures_apart(resolved, by_name)
        complete, unhashed = _complete(session, unsigned, blobs=blobs)
        failures.extend(unhashed)
        said: list[str] = list(passed_over.values())
        complete = _with_signatures(
            session, complete, signatures, by_name, blobs, failures, warn=said.append
        )
        return _entries(session, complete, by_name, failures, said), failures, said


def _entries(
    session: PullSession,
    complete: list[ResolvedModel],
    specs: Mapping[str, ModelSpec],
    failures: list[FileOutcome],
    said: list[str],
) -> dict[str, LockedModel]:
    """The lock entries of the ``complete`` models, each file with the Xet hash this machine
    verified (``_xet_verified``); a model that makes no entry is one of the ``failures``."""
    models: dict[str, LockedModel] = {}
    for model in complete:
        model = model._replace(files=tuple(_xet_verified(session, f, said) for f in model.files))
        try:
            models[model.name] = locked_from_resolved(specs[model.name], model, {})
        except MdlError as exc:
            failures.append(failed(model.name, None, exc))
    return models


def _signatures_apart(
    models: list[ResolvedModel], specs: Mapping[str, ModelSpec]
) -> tuple[list[ResolvedModel], dict[str, RemoteFile]]:
    """The models without the signature file of those the catalog names a signer for, and those
    files by model: a signature is learnt once the files it must cover are known."""
    apart: list[ResolvedModel] = []
    signatures: dict[str, RemoteFile] = {}
    for model in models:
        trust = specs[model.name].signature
        if trust is not None:
            for f in model.files:
                if f.path == trust.installed_as:
                    signatures[model.name] = f
            model = model._replace(files=tuple(f for f in model.files if not f.signature))
        apart.append(model)
    return apart, signatures


def _with_signatures(
    session: PullSession,
    models: list[ResolvedModel],
    signatures: Mapping[str, RemoteFile],
    specs: Mapping[str, ModelSpec],
    blobs: Mapping[str, tuple[int, str]],
    failures: list[FileOutcome],
    *,
    warn: Callable[[str], None],
) -> list[ResolvedModel]:
    """The complete models with their signature file back, learnt, verified and covering their
    files (``lock_signature``); a model whose signature cannot is one of the ``failures``."""
    done: list[ResolvedModel] = []
    for model in models:
        sig = signatures.get(model.name)
        if sig is not None:
            try:
                sig = lock_signature(
                    session,
                    specs[model.name],
                    model.files,
                    sig,
                    partial(_known, session, blobs=blobs),
                    warn=warn,
                )
            except InterruptedByUserError:
                raise
            except MdlError as exc:
                failures.append(failed(model.name, None, exc))
                log.error("%s", failures[-1].error)
                continue
            model = model._replace(files=tuple(sorted((*model.files, sig), key=lambda f: f.path)))
        done.append(model)
    return done


def _xet_verified(session: PullSession, remote: RemoteFile, said: list[str]) -> RemoteFile:
    """The file with the Xet hash this machine verified whole with its sha256 and size (a fetch by
    chunk recorded it), when the Hub names another: said, and the verified one locked (the Hub's
    word is where to fetch from, and a wrong one costs every locked pull a fetch)."""
    entry = recorded(session.store, remote) if remote.xet is not None else None
    checked = entry is not None and entry.verified and entry.xet_checked  # never the Hub's word
    if remote.xet is None or entry is None or entry.xet is None or not checked:
        return remote
    if (entry.sha256, entry.size) != (remote.sha256, remote.size) or entry.xet == remote.xet.hash:
        return remote
    said.append(
        f"{label_of(remote)}: the Hub names Xet hash {remote.xet.hash} for it, not {entry.xet},"
        " the one this machine verified with its sha256: locking the verified one"
    )
    log.warning("%s", said[-1])
    return remote._replace(xet=remote.xet._replace(hash=entry.xet))


def _complete(
    session: PullSession, models: list[ResolvedModel], *, blobs: Mapping[str, tuple[int, str]]
) -> tuple[list[ResolvedModel], list[FileOutcome]]:
    """The models with every size and sha256 known (see ``_known``), else learnt by one download to
    a temp file that is hashed and removed (as ``pip-compile --generate-hashes`` does). A model with
    a file that cannot fails whole."""
    failures: dict[int, FileOutcome] = {}
    known = [_known_files(session, m, model, blobs, failures) for m, model in enumerate(models)]
    _learn(session, models, known, failures)
    done = [
        model._replace(files=tuple(filter(None, known[m])))
        for m, model in enumerate(models)
        if m not in failures
    ]
    return done, [failures[m] for m in sorted(failures)]


def _learn(
    session: PullSession,
    models: list[ResolvedModel],
    known: list[list[RemoteFile | None]],
    failures: dict[int, FileOutcome],
) -> None:
    """Fill in ``known`` each file only its bytes can tell (None there) of the models not failed,
    by one download per ``_same_bytes``; the first that cannot is its model's failure."""
    todo = [
        (m, i)
        for m, row in enumerate(known)
        if m not in failures
        for i, file in enumerate(row)
        if file is None
    ]
    _begin_downloads(session, [models[m].files[i] for m, i in todo])
    hashed: dict[str, RemoteFile] = {}
    for m, i in todo:
        if m in failures:
            continue
        remote = models[m].files[i]
        try:
            known[m][i] = _hashed(session, remote, hashed)
        except InterruptedByUserError:
            raise
        except MdlError as exc:
            failures[m] = failed(models[m].name, remote.path, exc)


def _known_files(
    session: PullSession,
    m: int,
    model: ResolvedModel,
    blobs: Mapping[str, tuple[int, str]],
    failures: dict[int, FileOutcome],
) -> list[RemoteFile | None]:
    """Each of the model's files as ``_known`` has it (None: only its bytes can tell); the first
    that fails is the model's failure ``failures[m]``."""
    row: list[RemoteFile | None] = []
    for remote in model.files:
        try:
            row.append(_known(session, remote, blobs))
        except MdlError as exc:
            failures.setdefault(m, failed(model.name, remote.path, exc))
    return row


def _same_bytes(remote: RemoteFile) -> str:
    """What names a file's bytes before they are fetched: the git blob id, else the URL (the same
    bytes are fetched once)."""
    return remote.git_oid or remote.url


def _begin_downloads(session: PullSession, todo: Sequence[RemoteFile]) -> None:
    unique = {_same_bytes(remote): remote.size for remote in todo}
    if not unique:
        return
    sizes = list(unique.values())
    session.progress.begin(
        total_bytes=None if None in sizes else sum(s or 0 for s in sizes), files=len(unique)
    )


def _hashed(session: PullSession, remote: RemoteFile, hashed: dict[str, RemoteFile]) -> RemoteFile:
    """The file with the size and sha256 of its bytes, downloaded once per ``_same_bytes``."""
    same = _same_bytes(remote)
    if same not in hashed:
        hashed[same] = hashed_once(session, remote)
    return remote._replace(size=hashed[same].size, sha256=hashed[same].sha256)


def _known(
    session: PullSession, remote: RemoteFile, blobs: Mapping[str, tuple[int, str]]
) -> RemoteFile | None:
    """The file with size and sha256 filled in without fetching it (from upstream, the old lock's
    ``blobs`` by git blob id: the same bytes, a verified local record, a probe for the size), or
    None when only its bytes can tell."""
    if remote.sha256 and remote.size is not None:
        return remote
    return _from_blobs(remote, blobs) or _from_record(session, remote) or _sized(session, remote)


def _from_blobs(remote: RemoteFile, blobs: Mapping[str, tuple[int, str]]) -> RemoteFile | None:
    if not remote.git_oid or remote.git_oid not in blobs:
        return None
    size, sha256 = blobs[remote.git_oid]
    if remote.size is not None and remote.size != size:
        return None
    return remote._replace(size=size, sha256=sha256)


def _from_record(session: PullSession, remote: RemoteFile) -> RemoteFile | None:
    """A verified local record of the same bytes: same sha256 or git blob id, or (a URL without
    either) same source."""
    entry = recorded(session.store, remote)
    if entry is None:
        return None
    if not same_content(entry, remote, unnamed=not remote.hub and entry.source == remote.source):
        return None
    log.info("%s: sha256 from the verified local record", label_of(remote))
    return remote._replace(size=entry.size, sha256=entry.sha256)


def _sized(session: PullSession, remote: RemoteFile) -> RemoteFile | None:
    """A URL the catalog gives a sha256 but no size for: one request."""
    if not remote.sha256 or remote.hub:
        return None
    probed = session.probe(remote)
    return None if probed.size is None else remote._replace(size=probed.size)
