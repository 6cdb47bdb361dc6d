"""``pull``, ``verify``, ``clean`` and ``prune``: the catalog's models onto this disk, checked, and
tidied."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from mdl.api._context import catalog_models, command_catalog, command_settings, environ_now
from mdl.api._inputs import checked
from mdl.errors import UsageError
from mdl.progress import NullProgress, Progress
from mdl.setting import StrPath, flags_of

if TYPE_CHECKING:
    from mdl.catalog.specs import Catalog
    from mdl.redact import Secrets
    from mdl.report import FileOutcome, RunReport
    from mdl.store.inventory import CleanReport
    from mdl.store.prune import PruneReport


@checked
def pull(
    *names: str,
    catalog: Catalog | StrPath | None = None,
    all: bool = False,
    dest: StrPath | None = None,
    layout: str | None = None,
    connections: int | None = None,
    jobs: int | None = None,
    limit_rate: str | int | None = None,
    verify: bool = True,
    force: bool = False,
    dry_run: bool = False,
    unsigned: bool = False,
    stall_timeout: float | None = None,
    retry_max_time: float | None = None,
    timeout: float | None = None,
    lock_timeout: float | None = None,
    locked: bool = False,
    frozen: bool = False,
    lock_file: StrPath | None = None,
    mirrors: Sequence[str | Mapping[str, str]] | None = None,
    fill_mirror: bool = False,
    xet: bool | None = None,
    environ: Mapping[str, str] | None = None,
    progress: Progress | None = None,
    secrets: Secrets | None = None,
) -> RunReport:
    """Download what is missing or changed, resume what was cut off, verify, skip what is already
    right.
    """
    from mdl.download.puller import pull_models
    from mdl.report import hidden

    settings, models, lock = catalog_models(
        catalog, environ, names, flags_of(locals()), all_models=all, secrets=secrets
    )
    if unsigned and settings.lock_mode != "auto":
        raise UsageError(
            f"--unsigned fetches a version no lock pins yet (upstream's, to sign it); not with"
            f" --{settings.lock_mode}"
        )
    report = pull_models(models, settings, progress=progress or NullProgress(), lock=lock)
    return replace(report, files=hidden(report.files, settings.secrets))


@checked
def verify(
    *names: str,
    catalog: Catalog | StrPath | None = None,
    all: bool = False,
    dest: StrPath | None = None,
    layout: str | None = None,
    locked: bool = False,
    frozen: bool = False,
    lock_file: StrPath | None = None,
    environ: Mapping[str, str] | None = None,
    progress: Progress | None = None,
    on_file: Callable[[FileOutcome], None] | None = None,
    quick: bool = False,
) -> RunReport:
    """Re-hash local files against their records, the catalog and a fresh catalog.lock (offline);
    ``quick``: judge them by their records and sizes alone, reading no byte (a readiness probe). A
    catalog (or --frozen lock) naming no model is UsageError: nothing there is ready."""
    from mdl.lockfile.policy import LockUse
    from mdl.report import warned
    from mdl.store.verify import verify_models

    settings, models, lock = catalog_models(
        catalog, environ, names, flags_of(locals()), all_models=all
    )
    if not models:  # a probe pointed at the wrong file must not say "ready"
        source = settings.lock_path if settings.lock_mode == "frozen" else settings.catalog_path
        raise UsageError(
            f"{source or 'the catalog'} names no models: nothing to verify",
            hint="point --catalog (or MDL_CATALOG) at the catalog the models were pulled with",
        )
    pins, warnings, _ = LockUse(settings, lock=lock).view(models)
    report = verify_models(
        models,
        settings,
        progress=progress or NullProgress(),
        on_file=on_file,
        pinned=pins,
        quick=quick,
    )
    return warned(report, warnings)


@checked
def clean(
    *,
    catalog: Catalog | StrPath | None = None,
    dest: StrPath | None = None,
    layout: str | None = None,
    dry_run: bool = False,
    environ: Mapping[str, str] | None = None,
) -> CleanReport:
    """Remove stale partial downloads and their resume records (never one a running mdl holds)."""
    from mdl.archive.staging import recover as recover_unpacks
    from mdl.archive.staging import stale_spools
    from mdl.store.inventory import CleanedFile, CleanReport
    from mdl.store.inventory import clean as clean_partials
    from mdl.store.layout import Layout
    from mdl.store.oneoffs import forget_gone, one_off_folders
    from mdl.store.prune import clean_asides

    settings = command_settings(catalog, environ, flags_of(locals()))
    # a destination (or cache) that is not a folder is refused (exit 2) before anything is looked at
    Layout(settings)
    # A killed `unpack -d DEST` leaves its hidden staging folder in DEST: clean finishes and removes
    # it too.
    stagings = [
        CleanedFile(path, size, "an interrupted unpack's staging folder", not dry_run)
        for path, size in recover_unpacks(settings.dest, NullProgress(), dry_run=dry_run)
    ]
    stagings += [
        CleanedFile(path, size, "a killed `unpack -`'s copy of stdin", not dry_run)
        for path, size in stale_spools(settings.dest, dry_run=dry_run)
    ]
    # a killed `prune` leaves what it set aside (hidden, as big as the file): put back or removed
    asides = clean_asides(settings)
    # what get fetched: partials in its folders too, and the folders removed since forgotten
    gets = one_off_folders()
    gone = [
        CleanedFile(path, 0, "a folder mdl get wrote into, removed since: forgotten", not dry_run)
        for path in forget_gone(dry_run=dry_run)
    ]
    partials = clean_partials(settings, also=gets)
    return CleanReport((*partials, *stagings, *asides, *gone), dry_run=dry_run)


@checked
def prune(
    *,
    catalog: Catalog | StrPath | None = None,
    dest: StrPath | None = None,
    layout: str | None = None,
    dry_run: bool = False,
    only: str | None = None,
    as_removed: bool = False,
    environ: Mapping[str, str] | None = None,
) -> PruneReport:
    """Remove from the destination what the catalog no longer names (``only``: that model's files
    alone; with ``as_removed``, as though it were out of the catalog: what ``remove --prune
    --dry-run`` shows), and only what mdl recorded; a model another run is pulling is skipped."""
    from mdl.store.prune import prune as prune_store

    env = environ_now(environ)
    cat = command_catalog(catalog, env)
    settings = command_settings(cat, env, flags_of(locals()))
    return prune_store(
        [spec for spec in cat.models if not (as_removed and spec.name == only)], settings, only=only
    )


@checked
def remove_fetched(folder: StrPath, *, dry_run: bool = False) -> PruneReport:
    """What ``mdl get`` saved in ``folder`` removed, as ``prune`` removes: only files its record
    there vouches for (a file changed since stays, and is said), then the record and the folders
    left empty (``mdl remove ./DIR``)."""
    from pathlib import Path

    from mdl.store.oneoffs import remove_fetched as remove_saved

    return remove_saved(Path(folder), dry_run=dry_run)
