"""``mdl lock``: pin the selected models' commits, files, sizes and sha256 in ``catalog.lock`` beside the catalog.

Like ``uv lock``: an entry whose fingerprint still matches its catalog entry is kept as written (nothing is asked
for it); missing and stale entries are resolved; ``upgrade`` resolves every selected model again (branches and tags
move to their current commits). Nothing is written when any model fails: a lock is all or nothing, as uv's is.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mdl.catalog import Catalog, ModelSpec, Settings, lock_beside
from mdl.download.hash_for_lock import LockHasher
from mdl.download.planner import Planner
from mdl.download.session import PullSession
from mdl.errors import CatalogError, ExitCode, MdlError, NetworkError, UsageError, worst_exit_code
from mdl.lockfile import (
    Lock,
    LockedModel,
    ModelChange,
    diff_locks,
    exclusive,
    locked_from_resolved,
    read_lock,
)
from mdl.lockfile import write_lock as write_lock_file
from mdl.progress import Progress
from mdl.report import FileOutcome, failed

log = logging.getLogger("mdl.lock")


@dataclass(frozen=True)
class LockReport:
    """What ``mdl lock`` did (or, with ``check``, found) for the selected models."""

    path: Path  # the lock file
    changed: bool  # the file was written (its text changed); never with check or failures
    changes: tuple[ModelChange, ...] = ()  # per model in scope, sorted, ``unchanged`` ones included
    stale: tuple[str, ...] = ()  # check: the models the lock does not pin as the catalog says now
    missing: bool = False  # check: there is no lock file at all
    checked: bool = False
    resolved: tuple[str, ...] = ()  # the models asked upstream in this run (the others were kept as locked)
    failures: tuple[FileOutcome, ...] = ()  # models that could not be locked (then nothing was written)
    warnings: tuple[str, ...] = ()  # for the user: the old lock could not be read and was written anew

    @property
    def exit_code(self) -> int:
        """2 when a check finds the lock missing or stale; else the lowest code above 1 among the failures."""
        if self.checked and (self.stale or self.missing):
            return int(ExitCode.USAGE)
        return worst_exit_code([f.exit_code for f in self.failures])

    @property
    def ok(self) -> bool:
        """The lock is written and fresh (or, checked, found fresh)."""
        return self.exit_code == ExitCode.OK

    def to_json(self) -> dict[str, Any]:
        """``{"ok", "lock", "changed", "models": [...]}``; with check also ``fresh`` and ``stale`` (``ok`` false when
        the lock is missing or stale); ``errors`` on failure."""
        doc: dict[str, Any] = {
            "ok": self.ok,
            "lock": str(self.path),
            "changed": self.changed,
            "models": [c.to_json() for c in self.changes],
        }
        if self.checked:
            doc["fresh"] = not (self.stale or self.missing)
            doc["stale"] = list(self.stale)
        if self.failures:
            doc["errors"] = [f.to_json() for f in self.failures]
        return doc


def lock_catalog(
    catalog: Catalog,
    names: Sequence[str],
    settings: Settings,
    *,
    upgrade: bool = False,
    check: bool = False,
    progress: Progress,
) -> LockReport:
    """Lock the named models (every model, and drop entries the catalog no longer has, when ``names`` is empty)."""
    if upgrade and check:
        raise UsageError("--check changes nothing; it cannot go with --upgrade")
    if catalog.path is None:
        raise UsageError("mdl lock needs a catalog file: the lock is written beside it")
    path = lock_beside(catalog.path)
    everything = not names
    specs = catalog.select(list(names), all_models=everything)
    warnings: tuple[str, ...] = ()
    try:
        old = read_lock(path)
    except CatalogError as exc:
        if check or not everything:
            raise
        # Locking everything rewrites it whole: a broken lock (a bad merge) is simply written again.
        warnings = (f"{exc.message}; writing it again from the catalog",)
        log.warning("%s", warnings[0])
        old = None
    in_catalog = {m.name for m in catalog.models}
    if check:
        return _check(path, old, specs, dropped=_dropped(old, in_catalog) if everything else [])
    base = old or Lock()
    todo = [spec for spec in specs if upgrade or base.fresh(spec) is None]
    fresh, failures = _lock_models(todo, settings, old=base, progress=progress) if todo else ({}, [])
    resolved = tuple(spec.name for spec in todo)
    if failures:
        return LockReport(path, False, resolved=resolved, failures=tuple(failures), warnings=warnings)
    with exclusive(path):  # another mdl lock or add may have written it since: merge into what is there now
        base = _current(path, everything=everything)
        new = base.with_models(fresh, keep=(lambda name: name in in_catalog) if everything else (lambda name: True))
        changed = write_lock_file(path, new)
    scope = set(base.models) | set(new.models) if everything else {spec.name for spec in specs}
    changes = diff_locks(
        {n: m for n, m in base.models.items() if n in scope}, {n: m for n, m in new.models.items() if n in scope}
    )
    log.info("%s: %s (%d model(s) resolved)", path, "written" if changed else "unchanged", len(resolved))
    return LockReport(path, changed, tuple(changes), resolved=resolved, warnings=warnings)


def _current(path: Path, *, everything: bool) -> Lock:
    """The lock as it is on disk now; a broken one is written anew when everything is being locked."""
    try:
        return read_lock(path) or Lock()
    except CatalogError:
        if not everything:
            raise
        return Lock()


def _dropped(old: Lock | None, in_catalog: set[str]) -> list[str]:
    return sorted(name for name in (old.models if old is not None else {}) if name not in in_catalog)


def _check(path: Path, old: Lock | None, specs: list[ModelSpec], *, dropped: list[str]) -> LockReport:
    """No network, nothing written: which selected models the lock does not pin as the catalog says now."""
    if old is None:
        return LockReport(path, False, stale=tuple(sorted(s.name for s in specs)), missing=True, checked=True)
    stale = sorted({*old.stale_or_missing(specs), *dropped})
    return LockReport(path, False, stale=tuple(stale), checked=True)


def _lock_models(
    specs: list[ModelSpec], settings: Settings, *, old: Lock, progress: Progress
) -> tuple[dict[str, LockedModel], list[FileOutcome]]:
    """Resolve the models upstream (never from the lock) and hash what upstream did not; their lock entries.

    A small Hub file's sha256 the old lock knows by its git blob id is taken from there: the same bytes.
    """
    if settings.offline:  # the record of a past pull is no resolution: it may be any commit, and lack files
        failures = [
            failed(s.name, None, NetworkError(f"{s.name}: HF_HUB_OFFLINE is set; it must be resolved to be locked"))
            for s in specs
        ]
        return {}, failures
    session = PullSession(settings, progress=progress)
    planner = Planner(session, use_lock=False)
    try:
        resolved, failures = planner.resolve(specs)
        blobs = {f.git_oid: (f.size, f.sha256) for m in old.models.values() for f in m.files if f.git_oid}
        complete, unhashed = LockHasher(session, planner, blobs=blobs).complete(resolved)
        failures.extend(unhashed)
        by_name = {spec.name: spec for spec in specs}
        models: dict[str, LockedModel] = {}
        for model in complete:
            try:
                models[model.name] = locked_from_resolved(by_name[model.name], model, {})
            except MdlError as exc:
                failures.append(failed(model.name, None, exc))
        return models, failures
    finally:
        session.close()
