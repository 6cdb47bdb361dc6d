"""The Python face of mdl, and what every command calls: typed, keyword-only, prints nothing, raises MdlError.

Every argument is checked at this boundary (:mod:`mdl.api.inputs`): a wrong type, a NUL in a path or a bool
where a number goes is a UsageError (exit 2) naming the parameter; a ``str`` where a list goes is one item
(``include="*.json"`` is ``["*.json"]``, as huggingface_hub's ``allow_patterns`` takes it)."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mdl.api.archives import pack as pack
from mdl.api.archives import unpack as unpack
from mdl.api.common import _catalog, _environ, _models, _settings
from mdl.api.inputs import checked
from mdl.api.publishing import publish as publish
from mdl.errors import UsageError
from mdl.progress import NullProgress, Progress

if TYPE_CHECKING:
    from mdl.catalog import Catalog
    from mdl.catalog import edit as catalog_edit
    from mdl.download import LockReport
    from mdl.report import FileOutcome, Resolution, RunReport
    from mdl.store import CleanReport, ExpectedFile, ModelInfo, ModelList

# Heavy parts (pydantic, httpx2, huggingface_hub) are imported inside the functions, so `import mdl` stays light.

StrPath = str | os.PathLike[str]
STATUSES = ("installed", "partial", "missing")

# A library prints nothing: without a handler, logging's last resort would write mdl's warnings to stderr.
logging.getLogger("mdl").addHandler(logging.NullHandler())


# -- catalog and settings: resolved once per call, flags > environment > catalog ------------------------------


@checked
def load_catalog(path: StrPath | None = None, *, environ: Mapping[str, str] | None = None) -> Catalog:
    """Find and load the catalog: ``path``, else ``$MDL_CATALOG``, else ./catalog.toml, else the user config one.

    Raises CatalogError (exit code 2) for a missing or invalid file, UsageError (2) when none is found.
    """
    return _catalog(path, _environ(environ), required=True)


def _rate(limit_rate: str | int | None) -> str | None:
    return str(limit_rate) if isinstance(limit_rate, int) else limit_rate


# -- the catalog's models: list, show, resolve, pull, verify, clean --------------------------------------------


@checked
def list_models(
    *,
    catalog: Catalog | StrPath | None = None,
    dest: StrPath | None = None,
    layout: str | None = None,
    status: str | None = None,
    tag: str | None = None,
    locked: bool = False,
    frozen: bool = False,
    environ: Mapping[str, str] | None = None,
) -> ModelList:
    """Every catalog model with its local status (offline), as catalog.lock pins it where fresh, filtered by
    ``status`` and ``tag``."""
    from mdl.store import Layout, ModelList
    from mdl.store import list_models as list_local

    if status is not None and status not in STATUSES:
        raise UsageError(f"status: expected installed, partial or missing, got {status!r}")
    env = _environ(environ)
    settings, specs, lock = _models(catalog, env, [], True, locked=locked, frozen=frozen, dest=dest, layout=layout)
    chosen = [spec for spec in specs if tag is None or tag in spec.tags]
    pins: Mapping[str, Sequence[ExpectedFile]] = {}
    if locked or lock is not None or (settings.lock_path is not None and settings.lock_path.exists()):
        from mdl.download import LockUse  # only with a lock: a plain list stays light (no HTTP stack loaded)

        pins = LockUse(settings, lock=lock).view(chosen)[0]
    return ModelList(tuple(list_local(chosen, Layout(settings), status=status, pinned=pins)), settings.dest)


@checked
def show(
    name: str,
    *,
    catalog: Catalog | StrPath | None = None,
    dest: StrPath | None = None,
    layout: str | None = None,
    locked: bool = False,
    frozen: bool = False,
    environ: Mapping[str, str] | None = None,
) -> ModelInfo:
    """One model: its files, sources, sizes, hashes and local state (offline), as catalog.lock pins it if fresh."""
    from mdl.download import LockUse
    from mdl.store import Layout, ModelInfo, model_status

    env = _environ(environ)
    settings, (spec,), lock = _models(
        catalog, env, [name], False, locked=locked, frozen=frozen, dest=dest, layout=layout
    )
    pins, warnings, commits = LockUse(settings, lock=lock).view([spec])
    status = model_status(spec, Layout(settings), pinned=pins.get(name))
    return ModelInfo(status, status.folder, warning=warnings.get(name), commit=commits.get(name))


@checked
def resolve(
    *names: str,
    catalog: Catalog | StrPath | None = None,
    all: bool = False,
    follow: bool = False,
    dest: StrPath | None = None,
    layout: str | None = None,
    timeout: float | None = None,
    locked: bool = False,
    frozen: bool = False,
    environ: Mapping[str, str] | None = None,
    progress: Progress | None = None,
) -> Resolution:
    """The concrete files and URLs of models upstream (network, none for what catalog.lock pins); ``follow``
    shows where the Hub redirects."""
    from mdl.download import resolve_models
    from mdl.report import Resolution

    env = _environ(environ)
    flags = {"layout": layout, "timeout": timeout}
    settings, models, lock = _models(catalog, env, names, all, locked=locked, frozen=frozen, dest=dest, **flags)
    docs, failures = resolve_models(models, settings, follow=follow, progress=progress or NullProgress(), lock=lock)
    return Resolution(tuple(docs), tuple(failures))


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
    stall_timeout: float | None = None,
    timeout: float | None = None,
    lock_timeout: float | None = None,
    locked: bool = False,
    frozen: bool = False,
    mirrors: Sequence[str] = (),
    environ: Mapping[str, str] | None = None,
    progress: Progress | None = None,
) -> RunReport:
    """Download what is missing or changed, resume what was cut off, verify, skip what is already right.

    ``mirrors``: URL templates (``http(s)://…/{model}/{path}``, ``s3://bucket/prefix/{model}/{path}``) tried in
    order before the origin, instead of ``$MDL_MIRRORS`` and ``[settings].mirrors``; every byte is verified.

    catalog.lock beside the catalog pins each model it holds fresh (no Hub API call); ``locked`` refuses a missing
    or stale lock (UsageError, before anything is fetched), ``frozen`` uses the lock as written (no catalog needed).

    Per-file failures are in the report (``report.ok``, ``report.exit_code``); ``report.path(name)`` is a
    model's folder and raises the model's error if it failed. Bad input raises an MdlError subclass.
    """
    from mdl.download import pull_models

    env = _environ(environ)
    flags: dict[str, Any] = {"layout": layout, "connections": connections, "jobs": jobs, "timeout": timeout}
    flags |= {"limit_rate": _rate(limit_rate), "stall_timeout": stall_timeout, "lock_timeout": lock_timeout}
    flags |= {"verify": verify, "force": force, "dry_run": dry_run, "mirrors": tuple(mirrors) or None}
    settings, models, lock = _models(catalog, env, names, all, locked=locked, frozen=frozen, dest=dest, **flags)
    return pull_models(models, settings, progress=progress or NullProgress(), lock=lock)


@checked
def verify(
    *names: str,
    catalog: Catalog | StrPath | None = None,
    all: bool = False,
    dest: StrPath | None = None,
    layout: str | None = None,
    locked: bool = False,
    frozen: bool = False,
    environ: Mapping[str, str] | None = None,
    progress: Progress | None = None,
    on_file: Callable[[FileOutcome], None] | None = None,
) -> RunReport:
    """Re-hash local files against their records and the catalog (offline); mismatches are failed outcomes, files
    and models not on this disk are ``missing`` (exit 4), against catalog.lock's sha256 where it is fresh.
    ``on_file`` sees each outcome as soon as it is known."""
    from mdl.download import LockUse, warned
    from mdl.store import verify_models

    env = _environ(environ)
    settings, models, lock = _models(catalog, env, names, all, locked=locked, frozen=frozen, dest=dest, layout=layout)
    pins, warnings, _ = LockUse(settings, lock=lock).view(models)
    report = verify_models(models, settings, progress=progress or NullProgress(), on_file=on_file, pinned=pins)
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
    from mdl.archive import recover_unpacks
    from mdl.store import CleanedFile, CleanReport
    from mdl.store import clean as clean_partials

    env = _environ(environ)
    cat = _catalog(catalog, env, required=False)
    settings = _settings(cat, env, dest=dest, layout=layout, dry_run=dry_run)
    # A killed `unpack -d DEST` leaves its hidden staging folder in DEST: clean finishes and removes it too.
    stagings = [
        CleanedFile(path, size, "an interrupted unpack's staging folder", not dry_run)
        for path, size in recover_unpacks(settings.dest, NullProgress(), dry_run=dry_run)
    ]
    return CleanReport((*clean_partials(settings), *stagings), dry_run=dry_run)


@checked
def lock(
    *names: str,
    all: bool = False,
    catalog: Catalog | StrPath | None = None,
    upgrade: bool = False,
    check: bool = False,
    dest: StrPath | None = None,
    layout: str | None = None,
    timeout: float | None = None,
    environ: Mapping[str, str] | None = None,
    progress: Progress | None = None,
) -> LockReport:
    """Pin models (all when none is named) in ``catalog.lock`` beside the catalog; fresh entries are kept unasked,
    ``upgrade`` resolves them again. ``check`` writes nothing and makes no request: ``report.stale`` names what
    is missing or stale (exit code 2). When a model fails, nothing is written (``report.failures``)."""
    from mdl.download import lock_catalog

    env = _environ(environ)
    cat = _catalog(catalog, env, required=True)
    if names and all:
        raise UsageError("name models or pass --all, not both")
    settings = _settings(cat, env, dest=dest, layout=layout, timeout=timeout)
    return lock_catalog(cat, names, settings, upgrade=upgrade, check=check, progress=progress or NullProgress())


@checked
def add(
    name: str,
    *sources: str,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    save_as: str | None = None,
    sha256: str | None = None,
    force: bool = False,
    check: bool = True,
    catalog: StrPath | None = None,
    timeout: float | None = None,
    environ: Mapping[str, str] | None = None,
    progress: Progress | None = None,
) -> catalog_edit.CatalogChange:
    """Add model ``name`` to the catalog (created when there is none), keeping its comments and layout:
    ``hf://owner/name[@rev]`` is a whole repo (filtered by ``include``/``exclude``); ``hf://owner/name[@rev]/path``
    files and URLs (``save_as``, ``sha256`` for one of them) start a files entry or are appended to one.

    The result is validated, then the sources are asked about (unless ``check`` is False or HF_HUB_OFFLINE is
    set: NotFoundError 4, AuthError 3, NetworkError 5, IntegrityError 6, and nothing is written), then the file
    is replaced atomically and the model locked when there is a catalog.lock (``change.lock_error`` says why
    not). A request the entry contradicts (another repo, a file in a whole-repo entry, another file at the same
    save path) is UsageError (2) unless ``force`` replaces it; the same request twice changes nothing.
    """
    from mdl.download import add_model

    env = _environ(environ)
    return add_model(
        name,
        sources,
        {
            "include": include,
            "exclude": exclude,
            "save_as": save_as,
            "sha256": sha256,
            "force": force,
            "check": check,
            "catalog": catalog,
            "environ": env,
            "progress": progress,
        },
        settings_for=lambda cat: _settings(cat, env, dest=None, timeout=timeout),
    )


@checked
def remove(
    name: str, *, catalog: StrPath | None = None, environ: Mapping[str, str] | None = None
) -> catalog_edit.CatalogChange:
    """Take model ``name`` out of the catalog (every other byte kept) and out of catalog.lock; downloaded files
    stay. UsageError (2) with a did-you-mean for a name the catalog does not have."""
    from mdl.download import remove_model

    return remove_model(name, catalog=catalog, environ=_environ(environ))


# -- one-off sources and archives ------------------------------------------------------------------------------


@checked
def get(
    *sources: str,
    output: StrPath | None = None,
    directory: StrPath | None = None,
    sha256: str | None = None,
    catalog: Catalog | StrPath | None = None,
    connections: int | None = None,
    limit_rate: str | int | None = None,
    timeout: float | None = None,
    environ: Mapping[str, str] | None = None,
    progress: Progress | None = None,
    read_text: Callable[[str], str] | None = None,
    force: bool = False,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
) -> RunReport:
    """Fetch one-off sources (``https://`` and ``s3://`` URLs, ``hf://`` files and whole repos, job-output JSON
    files, ``-`` = stdin) into ``directory`` (default: the current folder), or ``output`` for a single file;
    verified and atomic. A whole repo (``hf://owner/name[@rev]``) is filtered by ``include``/``exclude`` (glob
    patterns as ``hf download`` takes them; a str is one pattern; UsageError with any other source), and every
    Hub file keeps its folder inside the repo under ``directory``.

    A file already there with the expected bytes is kept (``skipped``); one that differs, or that cannot be
    compared (no sha256 known), is refused with UsageError (exit 2) unless ``force`` replaces it."""
    from mdl.download import get_sources, read_source

    if not sources:
        raise UsageError("get: no source given", hint="name a URL, an hf:// file or repo, or a job-output JSON file")
    if output is not None and directory is not None:
        raise UsageError("get: give output or directory, not both")
    if output is not None and str(output) == "-":
        raise UsageError("get: output '-': mdl writes files, not stdout")
    if sources.count("-") > 1:
        raise UsageError("'-' (stdin) can be given only once")
    env = _environ(environ)
    cat = _catalog(catalog, env, required=False)
    folder = Path(directory or Path.cwd()).absolute()
    settings = _settings(
        cat, env, dest=folder, connections=connections, limit_rate=_rate(limit_rate), timeout=timeout, force=force
    )
    return get_sources(
        sources,
        settings,
        output=Path(output).absolute() if output is not None else None,
        directory=folder,
        sha256=sha256,
        progress=progress or NullProgress(),
        read_text=read_text or read_source,
        force=force,
        include=include,
        exclude=exclude,
    )
