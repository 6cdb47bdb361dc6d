"""``mdl lock --check``, CI's: which selected models the lock does not pin as the catalog says now,
and whether each signed one's pinned signature verifies and covers the files it pins. It changes
nothing and loads nothing of the fetch stage unless a signed model's pinned signature is not on
this machine (read where a pull installed it, else fetched by its sha256, and said); and the
report every ``mdl lock`` run makes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mdl.catalog.load import lock_beside
from mdl.catalog.settings import Settings
from mdl.catalog.specs import Catalog
from mdl.errors import CatalogError, ExitCode, UsageError, worst_exit_code
from mdl.lockfile.io import ModelChange, read_lock
from mdl.lockfile.model import Lock
from mdl.lockfile.parts import parts_beside
from mdl.progress import Progress
from mdl.report import FileOutcome


@dataclass(frozen=True)
class LockReport:  # what ``mdl lock`` did (or, with ``check``, found) for the selected models
    path: Path  # the lock file
    changed: bool  # the file was written (its text changed); never with check or failures
    changes: tuple[ModelChange, ...] = ()  # per model in scope, sorted, ``unchanged`` ones included
    stale: tuple[str, ...] = ()  # check: the models the lock does not pin as the catalog says now
    missing: bool = False  # check: there is no lock file at all
    checked: bool = False
    # the models asked upstream in this run (the others were kept as locked)
    resolved: tuple[str, ...] = ()
    # models that could not be locked (then nothing was written)
    failures: tuple[FileOutcome, ...] = ()
    # for the user: the old lock could not be read and was written anew
    warnings: tuple[str, ...] = ()
    # the part hashes beside the lock (catalog.lock.parts): written (their text changed), how many
    # of the lock's files (by sha256) they hold, and how many of those were hashed in this run
    parts_changed: bool = False
    parts: int = 0
    hashed: int = 0
    # files in scope with no part hashes that are not here to hash (none is made for them)
    not_here: int = 0

    @property
    def exit_code(self) -> int:
        """2 when a check finds the lock missing or stale; else the lowest code above 1 among the
        failures.
        """
        if self.checked and (self.stale or self.missing):
            return int(ExitCode.USAGE)
        return worst_exit_code([f.exit_code for f in self.failures])

    @property
    def parts_path(self) -> Path:  # the part hashes beside the lock
        return parts_beside(self.path)

    @property
    def ok(self) -> bool:  # written and fresh (or, checked, found fresh)
        return self.exit_code == ExitCode.OK

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"ok": self.ok, "lock": str(self.path), "changed": self.changed}
        doc["models"] = [c.to_json() for c in self.changes]
        if self.checked:
            doc["fresh"] = not (self.stale or self.missing)
            doc["stale"] = list(self.stale)
        if self.failures:
            doc["errors"] = [f.to_json() for f in self.failures]
        if not self.checked:
            doc["parts"] = {
                "path": str(self.parts_path),
                "changed": self.parts_changed,
                "files": self.parts,
                "hashed": self.hashed,
                "not_here": self.not_here,
            }
        return doc


def check_lock(
    catalog: Catalog,
    names: Sequence[str],
    settings: Settings,
    *,
    progress: Progress,
    path: Path | None = None,
) -> LockReport:
    """``lock --check`` of the named models (every one when ``names`` is empty) against ``path``
    (--lock), else the lock beside the catalog: nothing written."""
    path = lock_path(catalog, given=path)
    scope = Scope(catalog, names)
    old, _ = read_lock_anew(path, anew=False)
    return _checked(path, scope, old, settings, progress)


def lock_path(catalog: Catalog, *, given: Path | None) -> Path:
    """The lock file: ``given`` (--lock), else beside the catalog; UsageError for a run that
    cannot lock (no catalog file)."""
    if given is not None:
        return given
    if catalog.path is None:
        raise UsageError("mdl lock needs a catalog file: the lock is written beside it")
    return lock_beside(catalog.path)


class Scope:
    """The models a lock run is about: the named ones, or (``everything``) the whole catalog,
    whose entries are then the only ones the lock keeps."""

    def __init__(self, catalog: Catalog, names: Sequence[str]) -> None:
        self.everything = not names
        self.specs = catalog.select(list(names), all_models=self.everything)
        self.in_catalog = {m.name for m in catalog.models}

    def keeps(self, name: str) -> bool:
        """Whether the lock keeps an entry this run did not renew."""
        return name in self.in_catalog or not self.everything

    def stale(self, old: Lock | None) -> set[str]:
        """The models ``old`` does not pin as the catalog says now: each selected one it lacks or
        pins otherwise, and (``everything``) each it pins that the catalog no longer has."""
        stale = {s.name for s in self.specs if old is None or old.fresh(s) is None}
        if self.everything and old is not None:
            stale |= {name for name in old.models if name not in self.in_catalog}
        return stale

    def shown(self, base: Lock, new: Lock) -> set[str]:
        """The models whose changes the report lists."""
        if self.everything:
            return set(base.models) | set(new.models)
        return {spec.name for spec in self.specs}


def _checked(
    path: Path, scope: Scope, old: Lock | None, settings: Settings, progress: Progress
) -> LockReport:
    """Nothing written: which selected models the lock does not pin as the catalog says now
    (asking nothing), and of those it does, the signed ones whose pinned signature does not verify
    or cover the files it pins (fetched by its sha256: CI catches a lock a pull would refuse), and
    those not published to the catalog's bucket."""
    failures = []
    if old is not None and any(s.signature is not None and old.fresh(s) for s in scope.specs):
        # (the fetch stage, loaded only for a signed model the lock pins)
        from mdl.download._locksigned import checked_signatures

        failures = checked_signatures(settings, scope.specs, old, progress)
    if old is not None and settings.mirrors:
        # (the release flow's order: the version it pins is published to the team's bucket)
        from mdl.download._lockpublished import checked_published

        failures += checked_published(settings, scope.specs, old)
    return LockReport(
        path,
        False,
        stale=tuple(sorted(scope.stale(old))),
        missing=old is None,
        checked=True,
        failures=tuple(failures),
    )


def read_lock_anew(path: Path, *, anew: bool) -> tuple[Lock | None, str | None]:
    """The lock on disk; with ``anew`` (it is written whole) a broken one (a bad merge) is None,
    and why.
    """
    try:
        return read_lock(path), None
    except CatalogError as exc:
        if not anew:
            raise
        return None, f"{exc.message}; writing it again from the catalog"
