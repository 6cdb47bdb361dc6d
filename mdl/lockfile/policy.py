"""Lock policy: how a run uses catalog.lock (``--locked``, ``--frozen``, or pins where fresh,
warning once per model resolved fresh), and ``--frozen``'s models read from the lock alone."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from mdl.catalog.load import find_catalog, find_lock, lock_beside
from mdl.catalog.settings import Settings, user_config_dir
from mdl.catalog.specs import Catalog, FileSpec, ModelSpec
from mdl.errors import CatalogError, UsageError
from mdl.lockfile.io import read_lock
from mdl.lockfile.model import Lock, LockedModel
from mdl.lockfile.remembered import load_catalog
from mdl.redact import REDACTED, redact_url
from mdl.setting import StrPath
from mdl.store.expected import ExpectedFile

if TYPE_CHECKING:
    from mdl.lockfile.parts import PartHashes

log = logging.getLogger("mdl.lock")
Pins = dict[str, tuple[ExpectedFile, ...]]  # model → the files catalog.lock pins for it


class LockUse:
    """The run's lock (``settings.lock_path``), read at most once, and what it says about each
    model.
    """

    def __init__(self, settings: Settings, *, lock: Lock | None = None) -> None:
        self.mode = settings.lock_mode
        # pull --unsigned (the release machine's first step, signer or none): the version no lock
        # pins and no signature covers yet is what upstream has now (a lock pins a version only
        # once it is published, and signed when the catalog names a signer)
        self.unsigned = settings.unsigned
        self.path = settings.lock_path
        # --lock FILE: the truth for this run, its entries used as written (a rollback's lock was
        # made for the catalog of its day, not the one checked out now)
        self.given = settings.lock_given
        # as messages say it
        self.name = self.path.name if self.path is not None else "catalog.lock"
        if lock is not None:
            self.lock = lock
        self.warnings: dict[str, str] = {}  # model → the one warning said about it in this run
        self.parts_warning: str | None = None  # the part hashes beside the lock were bad

    @cached_property
    def lock(self) -> Lock | None:  # CatalogError (exit 2) when it is unreadable or invalid
        return read_lock(self.path) if self.path is not None else None

    @cached_property
    def parts(self) -> Mapping[str, PartHashes]:
        """The part hashes beside the lock, read when a model is first taken from it; bad ones are
        one warning (``parts_warning``) and none are used: each file is checked whole, as before."""
        if self.path is None:
            return {}
        from mdl.lockfile.parts import parts_beside, read_parts  # (a pull's, not a probe's)

        try:
            return read_parts(parts_beside(self.path))
        except CatalogError as exc:
            self.parts_warning = f"{exc.message}; not used: each file is checked whole"
            log.warning("%s", self.parts_warning)
            return {}

    def pinned(self, spec: ModelSpec, *, doing: str = "resolving it fresh") -> LockedModel | None:
        """The model's locked entry to use, or None: resolve it fresh (said once when a lock
        exists).
        """
        lock = self.lock
        if lock is None or self.unsigned:
            return None
        if self.mode == "frozen" or self.given:
            locked = lock.models.get(spec.name)
            if locked is None and self.mode != "frozen":
                self._warn(spec, f"not in {self.name}; {doing}")
            return locked
        fresh = lock.fresh(spec)
        if fresh is None and spec.name not in self.warnings:
            why = (
                f"{self.name} is out of date for this model"
                if spec.name in lock.models
                else f"not in {self.name}"
            )
            self._warn(spec, f"{why}; {doing} (run mdl lock)")
        return fresh

    def _warn(self, spec: ModelSpec, why: str) -> None:
        """The one warning said about the model in this run."""
        if spec.name not in self.warnings:
            warning = f"{spec.name}: {why}"
            log.warning("%s", warning)
            self.warnings[spec.name] = warning

    def view(
        self, specs: Sequence[ModelSpec]
    ) -> tuple[Pins, dict[str, str], dict[str, LockedModel]]:
        """For the offline views (show, verify, publish): per model the pinned files, the
        warnings, the lock entries.
        """
        self.require(specs)
        pinned = {
            spec.name: self.pinned(spec, doing="using the catalog entry and the record")
            for spec in specs
        }
        entries = {name: locked for name, locked in pinned.items() if locked is not None}
        pins: Pins = {
            name: tuple(
                ExpectedFile(f.path, f.size, f.sha256, source=f.source) for f in locked.files
            )
            for name, locked in entries.items()
        }
        return pins, dict(self.warnings), entries

    def require(self, specs: Sequence[ModelSpec]) -> None:
        """``--locked``: UsageError (exit 2) naming the models when the lock is missing or stale
        for any of them.
        """
        if self.mode != "locked":
            return
        lock, hint = self.lock, "run `mdl lock` and commit the lock"
        if lock is None:
            where = f" ({self.path})" if self.path is not None else ""
            names = ", ".join(spec.name for spec in specs)
            raise UsageError(f"--locked: there is no {self.name}{where} to pin {names}", hint=hint)
        parts = _not_pinned(lock, specs, given=self.given)
        if parts:
            raise UsageError(f"--locked: {self.name} {' and '.join(parts)}", hint=hint)


def frozen_models(
    given: Catalog | StrPath | None,
    environ: Mapping[str, str],
    names: Sequence[str],
    *,
    all_models: bool,
    lock_path: Path | None = None,
) -> tuple[Catalog, Path | None, Lock, list[ModelSpec]]:
    """``--frozen``: the catalog if any (for its settings), its lock (which must exist:
    ``lock_path`` when given (``--lock``), else beside the named catalog, else ./catalog.lock) and
    the named models (or all) from the lock alone; a catalog entry lends only its description and
    the headers (and signed query) of URLs the lock holds, and its signer: a lock stores no secrets
    nor trust, and alone decides the bytes."""
    catalog, path = _catalog_and_lock_path(given, environ)
    path = lock_path or path
    lock = read_lock(path) if path is not None else None
    if lock is None:
        where = str(path) if path is not None else "beside the catalog or in this folder"
        raise UsageError(
            f"--frozen: no catalog.lock found ({where})",
            hint="copy the lock here, pass --catalog PATH (its .lock is used), or run `mdl lock`",
        )
    by_name = {spec.name: spec for spec in catalog.models}
    specs = [
        _spec_from_locked(_locked(lock, name), by_name.get(name) or ModelSpec(name))
        for name in _chosen(lock, names, all_models=all_models)
    ]
    return catalog, path, lock, specs


def _not_pinned(lock: Lock, specs: Sequence[ModelSpec], *, given: bool) -> list[str]:
    """What the lock lacks for ``specs``: the models it is out of date for (never a lock
    ``given`` by --lock: it is the truth), those it does not hold."""
    stale = [
        spec.name
        for spec in specs
        if not given and spec.name in lock.models and lock.fresh(spec) is None
    ]
    absent = [spec.name for spec in specs if spec.name not in lock.models]
    parts = []
    if stale:
        parts.append(
            f"is out of date for {', '.join(stale)} (the catalog changed since it was locked)"
        )
    if absent:
        parts.append(f"does not hold {', '.join(absent)}")
    return parts


def _catalog_and_lock_path(
    given: Catalog | StrPath | None, environ: Mapping[str, str]
) -> tuple[Catalog, Path | None]:
    """The catalog ``given`` (or found), if any, and where its lock is (else ./catalog.lock)."""
    if isinstance(given, Catalog):
        return given, lock_beside(given.path) if given.path is not None else None
    flag, config = Path(given) if given is not None else None, user_config_dir()
    try:
        found = find_catalog(flag=flag, environ=environ, cwd=Path.cwd(), config_dir=config)
    except CatalogError:  # named but not there: only its lock came to this machine
        found = None
    catalog = load_catalog(found) if found is not None else Catalog()
    if found:
        return catalog, lock_beside(found)
    return catalog, find_lock(flag=flag, environ=environ, cwd=Path.cwd(), config_dir=config)


def _chosen(lock: Lock, names: Sequence[str], *, all_models: bool) -> list[str]:
    """The models named (each once), or with ``all_models`` every model the lock holds."""
    if names and all_models:
        raise UsageError("name models or pass --all, not both")
    chosen = list(dict.fromkeys(names)) if not all_models else list(lock.models)
    if not chosen:
        raise UsageError("name at least one model, or pass --all")
    return chosen


def _locked(lock: Lock, name: str) -> LockedModel:
    """The lock's entry for ``name``; UsageError when it does not hold it."""
    locked = lock.models.get(name)
    if locked is None:
        import difflib  # (only a name the lock does not hold needs it)

        close = difflib.get_close_matches(name, list(lock.models), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise UsageError(
            f"--frozen: unknown model {name!r}: the lock does not hold it{hint}",
            hint="run 'mdl list' where the catalog is, or `mdl lock` to lock it",
        )
    return locked


def _spec_from_locked(locked: LockedModel, catalog: ModelSpec) -> ModelSpec:
    by_path = {f.save_path: f for f in catalog.files}
    files = []
    for index, f in enumerate(locked.files):
        key = f"catalog.lock: {locked.name}.files[{index}]"
        if (ref := f.hub) is not None:  # pinned to its commit
            files.append(
                FileSpec(
                    key,
                    ref.repo,
                    ref.path,
                    revision=ref.commit,
                    repo_type=ref.repo_type,
                    sha256=f.sha256,
                    size=f.size,
                    save_as=f.path,
                )
            )
            continue
        entry = by_path.get(f.path)
        url, headers = f.source, tuple[tuple[str, str], ...]()
        if entry is not None and entry.url is not None and redact_url(entry.url) == f.source:
            url, headers = entry.url, entry.headers
        # the lock never holds a signature: fetching it would only get a 403
        if url.endswith("?" + REDACTED):
            raise UsageError(
                f"{locked.name}/{f.path}: catalog.lock holds this signed URL without its signature,"
                " so --frozen cannot fetch it alone",
                hint="put the catalog that has the signed URL beside the lock (or pass --catalog)",
            )
        files.append(
            FileSpec(
                key_path=key, url=url, sha256=f.sha256, size=f.size, save_as=f.path, headers=headers
            )
        )
    # Whom its model.sig must be signed by is the catalog's to say (a lock holds bytes, not trust):
    # a signed model stays signed under --frozen.
    return ModelSpec(
        locked.name,
        catalog.description,
        catalog.tags,
        files=tuple(files),
        signature=catalog.signature,
    )
