"""The Python face of mdl, and what every command calls: typed, keyword-only, prints nothing, raises
MdlError; every argument checked at this boundary (:mod:`mdl.api.inputs`), heavy parts imported
inside the functions."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from mdl.api.inputs import checked
from mdl.errors import UsageError
from mdl.progress import NullProgress, Progress
from mdl.setting import Overrides, StrPath

if TYPE_CHECKING:
    from mdl.archive import PackResult, UnpackResult
    from mdl.catalog import Catalog, ModelSpec, Settings
    from mdl.catalog import edit as catalog_edit
    from mdl.download import LockReport
    from mdl.lockfile import Lock
    from mdl.redact import Secrets
    from mdl.report import FileOutcome, Resolution, RunReport
    from mdl.store import CleanReport, ExpectedFile, ModelInfo, ModelList, PruneReport
    from mdl.upload import PublishReport

STATUSES = ("installed", "partial", "missing")

# A library prints nothing: without a handler, logging's last resort would write mdl's warnings to
# stderr.
logging.getLogger("mdl").addHandler(logging.NullHandler())


def _environ(environ: Mapping[str, str] | None) -> Mapping[str, str]:
    # A copy taken now: the call sees os.environ as it is when called, and threads see one fixed
    # picture.
    return dict(os.environ) if environ is None else environ


def _catalog(
    given: Catalog | StrPath | None,
    environ: Mapping[str, str],
    *,
    required: bool,
    look: bool = True,
) -> Catalog:
    """The command's catalog: ``given``, else the one lookup finds (``look`` False: only one named
    by ``$MDL_CATALOG``; the one in this folder or the user's config dir is not read); none found:
    empty or an error."""
    from mdl.catalog import Catalog, find_catalog, named_catalog, no_catalog, user_config_dir
    from mdl.catalog import load_catalog as load_file

    if isinstance(given, Catalog):
        return given
    flag = Path(given) if given is not None else None
    if not look and named_catalog(flag=flag, environ=environ, cwd=Path.cwd()) is None:
        return Catalog()
    path = find_catalog(flag=flag, environ=environ, cwd=Path.cwd(), config_dir=user_config_dir())
    if path is None:
        if required:
            raise no_catalog(user_config_dir())
        return Catalog()
    return load_file(path)


def _settings(
    given: Catalog | StrPath | None,
    environ: Mapping[str, str] | None,
    flags: Overrides,
    secrets: Secrets | None = None,
    *,
    look: bool = True,
) -> Settings:
    """A command's settings over its catalog, if one is found (a command that needs one passes the
    Catalog; ``look``: see _catalog)."""
    from mdl.catalog import settings_for

    env = _environ(environ)
    return settings_for(
        _catalog(given, env, required=False, look=look), env, flags, secrets=secrets
    )


def _models(
    given: Catalog | StrPath | None,
    environ: Mapping[str, str] | None,
    names: Sequence[str],
    flags: Overrides,
    *,
    all_models: bool,
    secrets: Secrets | None = None,
) -> tuple[Settings, list[ModelSpec], Lock | None]:
    """Settings and models of a command that reads catalog.lock, and with --frozen the lock they
    come from alone.
    """
    from mdl.catalog import choose_lock_mode, lock_beside, settings_for

    env = _environ(environ)
    if choose_lock_mode(locked=flags.locked, frozen=flags.frozen, environ=env) == "frozen":
        from mdl.lockfile import frozen_models

        cat, path, lock, specs = frozen_models(given, env, names, all_models=all_models)
        return settings_for(cat, env, flags, lock_path=path, secrets=secrets), specs, lock
    cat = _catalog(given, env, required=True)
    lock_path = lock_beside(cat.path) if cat.path is not None else None
    settings = settings_for(cat, env, flags, lock_path=lock_path, secrets=secrets)
    if names and all_models:
        raise UsageError("name models or pass --all, not both")
    return settings, cat.select(list(names), all_models=all_models), None


@checked
def load_catalog(
    path: StrPath | None = None, *, environ: Mapping[str, str] | None = None
) -> Catalog:
    """Find and load the catalog: ``path``, else ``$MDL_CATALOG``, else ./catalog.toml, else the
    user config one.
    """
    return _catalog(path, _environ(environ), required=True)


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
    """Every catalog model with its local status (offline), filtered by ``status`` and ``tag``."""
    from mdl.store import Layout, ModelList
    from mdl.store import list_models as list_local

    if status is not None and status not in STATUSES:
        raise UsageError(f"status: expected installed, partial or missing, got {status!r}")
    flags = Overrides(dest=dest, layout=layout, locked=locked, frozen=frozen)
    settings, specs, lock = _models(catalog, environ, [], flags, all_models=True)
    chosen = [spec for spec in specs if tag is None or tag in spec.tags]
    pins: Mapping[str, Sequence[ExpectedFile]] = {}
    if (
        locked
        or lock is not None
        or (settings.lock_path is not None and settings.lock_path.exists())
    ):
        # only with a lock: a plain list stays light (no HTTP stack loaded)
        from mdl.lockfile import LockUse

        pins = LockUse(settings, lock=lock).view(chosen)[0]
    return ModelList(
        tuple(list_local(chosen, Layout(settings), status=status, pinned=pins)), settings.dest
    )


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
    """One model: its files, sources, sizes, hashes and local state (offline), as catalog.lock
    pins it if fresh.
    """
    from mdl.lockfile import LockUse
    from mdl.store import Layout, ModelInfo, model_status

    flags = Overrides(dest=dest, layout=layout, locked=locked, frozen=frozen)
    settings, (spec,), lock = _models(catalog, environ, [name], flags, all_models=False)
    pins, warnings, entries = LockUse(settings, lock=lock).view([spec])
    status = model_status(spec, Layout(settings), pinned=pins.get(name))
    commit = entries[name].commit if name in entries else None
    return ModelInfo(status, status.folder, warning=warnings.get(name), commit=commit)


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
    secrets: Secrets | None = None,
) -> Resolution:
    """The concrete files and URLs of models upstream; ``follow`` shows where the Hub redirects."""
    from mdl.download import resolve_models
    from mdl.report import Resolution

    flags = Overrides(dest=dest, layout=layout, timeout=timeout, locked=locked, frozen=frozen)
    settings, models, lock = _models(
        catalog, environ, names, flags, all_models=all, secrets=secrets
    )
    docs, failures = resolve_models(
        models, settings, follow=follow, progress=progress or NullProgress(), lock=lock
    )
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
    mirrors: Sequence[str] | None = None,
    xet: bool | None = None,
    environ: Mapping[str, str] | None = None,
    progress: Progress | None = None,
    secrets: Secrets | None = None,
) -> RunReport:
    """Download what is missing or changed, resume what was cut off, verify, skip what is already
    right.
    """
    from mdl.download import pull_models
    from mdl.report import hidden

    flags = Overrides(
        dest=dest,
        layout=layout,
        connections=connections,
        jobs=jobs,
        limit_rate=limit_rate,
        stall_timeout=stall_timeout,
        timeout=timeout,
        lock_timeout=lock_timeout,
        mirrors=mirrors,
        xet=xet,
        locked=locked,
        frozen=frozen,
        verify=verify,
        force=force,
        dry_run=dry_run,
    )
    settings, models, lock = _models(
        catalog, environ, names, flags, all_models=all, secrets=secrets
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
    environ: Mapping[str, str] | None = None,
    progress: Progress | None = None,
    on_file: Callable[[FileOutcome], None] | None = None,
) -> RunReport:
    """Re-hash local files against their records, the catalog and a fresh catalog.lock (offline)."""
    from mdl.download import warned
    from mdl.lockfile import LockUse
    from mdl.store import verify_models

    flags = Overrides(dest=dest, layout=layout, locked=locked, frozen=frozen)
    settings, models, lock = _models(catalog, environ, names, flags, all_models=all)
    pins, warnings, _ = LockUse(settings, lock=lock).view(models)
    report = verify_models(
        models, settings, progress=progress or NullProgress(), on_file=on_file, pinned=pins
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
    from mdl.archive import recover_unpacks
    from mdl.store import CleanedFile, CleanReport, Layout
    from mdl.store import clean as clean_partials

    settings = _settings(catalog, environ, Overrides(dest=dest, layout=layout, dry_run=dry_run))
    # a destination (or cache) that is not a folder is refused (exit 2) before anything is looked at
    Layout(settings)
    # A killed `unpack -d DEST` leaves its hidden staging folder in DEST: clean finishes and removes
    # it too.
    stagings = [
        CleanedFile(path, size, "an interrupted unpack's staging folder", not dry_run)
        for path, size in recover_unpacks(settings.dest, NullProgress(), dry_run=dry_run)
    ]
    return CleanReport((*clean_partials(settings), *stagings), dry_run=dry_run)


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
    from mdl.store import prune as prune_store

    env = _environ(environ)
    cat = _catalog(catalog, env, required=True)
    settings = _settings(cat, env, Overrides(dest=dest, layout=layout, dry_run=dry_run))
    models = [spec for spec in cat.models if not (as_removed and spec.name == only)]
    return prune_store(models, settings, only=only)


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
    secrets: Secrets | None = None,
) -> LockReport:
    """Pin models (all when none is named) in ``catalog.lock`` beside the catalog."""
    from mdl.download import lock_catalog
    from mdl.report import hidden

    env = _environ(environ)
    cat = _catalog(catalog, env, required=True)
    if names and all:
        raise UsageError("name models or pass --all, not both")
    settings = _settings(
        cat, env, Overrides(dest=dest, layout=layout, timeout=timeout), secrets=secrets
    )
    locked = lock_catalog(
        cat, names, settings, upgrade=upgrade, check=check, progress=progress or NullProgress()
    )
    return replace(locked, failures=hidden(locked.failures, settings.secrets))


@checked
def add(
    name: str,
    *sources: str,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    save_as: str | None = None,
    sha256: str | None = None,
    description: str | None = None,
    tags: Sequence[str] = (),
    signed_by: StrPath | None = None,
    force: bool = False,
    check: bool = True,
    catalog: StrPath | None = None,
    timeout: float | None = None,
    environ: Mapping[str, str] | None = None,
    progress: Progress | None = None,
    secrets: Secrets | None = None,
) -> catalog_edit.CatalogChange:
    """Add model ``name`` (a whole ``hf://`` repo, or files and URLs) to the catalog, keeping its
    comments; set its ``description``, add ``tags`` (``force``: replace them), trust signatures by
    the public key ``signed_by`` (``force``: instead of another signer), on an entry that is there
    without any source too."""
    from mdl.download import add_model

    entry: dict[str, Any] = {
        "include": include,
        "exclude": exclude,
        "save_as": save_as,
        "sha256": sha256,
    }
    entry |= {"description": description, "tags": tags, "signed_by": signed_by, "force": force}
    flags: dict[str, Any] = {
        "check": check,
        "catalog": catalog,
        "timeout": timeout,
        "environ": _environ(environ),
    }
    return add_model(
        name, sources, entry, progress=progress or NullProgress(), secrets=secrets, **flags
    )


@checked
def init(
    catalog: StrPath | None = None,
    *,
    force: bool = False,
    project: bool = False,
    environ: Mapping[str, str] | None = None,
) -> catalog_edit.CatalogInit:
    """Write the commented starter catalog where mdl looks for one: ``catalog``, else
    ``$MDL_CATALOG``, else the user config one (then found from any folder); ``project``: an empty
    catalog, ``catalog`` else ./catalog.toml (a project's own, as ``uv init`` writes). An existing
    file is refused (UsageError) unless ``force``."""
    from mdl.catalog import files as catalog_files

    return catalog_files.init_catalog(
        catalog=catalog, force=force, project=project, environ=_environ(environ)
    )


@checked
def remove(
    name: str,
    *,
    catalog: StrPath | None = None,
    dry_run: bool = False,
    environ: Mapping[str, str] | None = None,
) -> catalog_edit.CatalogChange:
    """Take model ``name`` out of the catalog (every other byte kept) and catalog.lock (``dry_run``:
    check it could, write nothing); downloaded files stay (:func:`prune` with ``only=name`` removes
    them)."""
    from mdl.download import remove_model

    return remove_model(name, catalog=catalog, environ=_environ(environ), dry_run=dry_run)


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
    xet: bool | None = None,
    environ: Mapping[str, str] | None = None,
    progress: Progress | None = None,
    read_text: Callable[[str], str] | None = None,
    force: bool = False,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    headers: Mapping[str, str] | None = None,
    input_file: StrPath | None = None,
    secrets: Secrets | None = None,
) -> RunReport:
    """Fetch one-off sources (URLs, ``hf://`` files and repos, job-output JSON, ``-`` = stdin) into
    ``directory``; ``input_file`` lists more, one a line (``-`` = stdin); ``headers`` go with the
    http(s) URLs given (as curl -H)."""
    from mdl.catalog import check_headers
    from mdl.download import get_sources, read_source
    from mdl.report import hidden

    if not sources and input_file is None:
        raise UsageError(
            "get: no source given",
            hint="name a URL, an hf:// file or repo, or a job-output JSON file",
        )
    if output is not None and directory is not None:
        raise UsageError("get: give output or directory, not both")
    if output is not None and str(output) == "-":
        raise UsageError("get: output '-': mdl writes files, not stdout")
    if sources.count("-") > 1:
        raise UsageError("'-' (stdin) can be given only once")
    here = Path(directory or Path.cwd()).absolute()
    flags = Overrides(
        dest=here,
        connections=connections,
        limit_rate=limit_rate,
        timeout=timeout,
        xet=xet,
        force=force,
    )
    # A one-off get names its sources: like pip and uv given a URL, it reads no project file it was
    # not pointed at (a broken ./catalog.toml never blocks it); --catalog or $MDL_CATALOG lends it a
    # catalog's [settings].
    settings = _settings(catalog, environ, flags, secrets=secrets, look=False)
    out = Path(output).absolute() if output is not None else None
    kw: dict[str, Any] = {"output": out, "sha256": sha256, "include": include, "exclude": exclude}
    kw |= {
        "headers": check_headers((headers or {}).items(), where="header", secrets=settings.secrets)
    }
    kw["input_file"] = None if input_file is None else str(input_file)
    report = get_sources(
        sources,
        settings,
        progress=progress or NullProgress(),
        read_text=read_text or read_source,
        **kw,
    )
    return replace(report, files=hidden(report.files, settings.secrets))


@checked
def pack(
    run_dir: StrPath,
    *,
    output: StrPath | None = None,
    stream: BinaryIO | None = None,
    checkpoint: str | None = None,
    profile: str = "deploy",
    with_logs: bool = False,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    compress: str = "auto",
    dry_run: bool = False,
    force: bool = False,
    sign: StrPath | None = None,
    environ: Mapping[str, str] | None = None,
    progress: Progress | None = None,
) -> PackResult:
    """Zip a trained model or one of its checkpoints deterministically into ``output`` or
    ``stream``; ``sign``: an EC private key (PEM) that signs the packed files into the archive's
    model.sig (OpenSSF model signing)."""
    from mdl.archive import PackOptions, pack_run

    if stream is not None and output is not None and str(output) != "-":
        raise UsageError("pack: give output or stream, not both")
    if stream is None and output is not None and str(output) == "-":
        raise UsageError("pack: output '-' needs a stream to write the archive to")
    epoch = (os.environ if environ is None else environ).get("SOURCE_DATE_EPOCH")
    try:
        source_date_epoch = int(epoch) if epoch else None
    except ValueError:
        raise UsageError(
            f"SOURCE_DATE_EPOCH: expected a whole number of seconds, got {epoch!r}"
        ) from None
    out = Path("-") if stream is not None else (Path(output) if output is not None else None)
    kw: dict[str, Any] = {
        "checkpoint": checkpoint,
        "profile": profile,
        "with_logs": with_logs,
        "compress": compress,
    }
    kw |= {
        "includes": tuple(include),
        "excludes": tuple(exclude),
        "dry_run": dry_run,
        "force": force,
    }
    kw["sign"] = None if sign is None else Path(sign)
    options = PackOptions(
        Path(run_dir), out, source_date_epoch=source_date_epoch, cwd=Path.cwd(), **kw
    )
    return pack_run(options, progress=progress or NullProgress(), stdout=stream)


@checked
def unpack(
    archive: StrPath | BinaryIO,
    *,
    dest: StrPath | None = None,
    force: bool = False,
    max_ratio: float | None = None,
    signed_by: StrPath | None = None,
    progress: Progress | None = None,
) -> UnpackResult:
    """Extract an archive (a path or a binary stream) into ``dest`` safely and verify it against its
    manifest; ``signed_by``: a PEM public key its model.sig must verify with, every extracted file
    held to the signed digests."""
    from mdl.archive import DEFAULT_MAX_RATIO, unpack_archive, unpack_stream
    from mdl.signing import Trust

    kw: dict[str, Any] = {
        "dest": Path(dest) if dest is not None else None,
        "force": force,
        "cwd": Path.cwd(),
    }
    kw["trust"] = None if signed_by is None else Trust(key=Path.cwd() / signed_by)
    kw |= {
        "progress": progress or NullProgress(),
        "max_ratio": DEFAULT_MAX_RATIO if max_ratio is None else max_ratio,
    }
    if isinstance(archive, str | os.PathLike):
        return unpack_archive(Path(archive), **kw)
    return unpack_stream(archive, **kw)


@checked
def publish(
    *names: str,
    to: str,
    catalog: Catalog | StrPath | None = None,
    all: bool = False,
    dest: StrPath | None = None,
    layout: str | None = None,
    connections: int | None = None,
    endpoint: str | None = None,
    locked: bool = False,
    frozen: bool = False,
    sign: StrPath | None = None,
    force: bool = False,
    dry_run: bool = False,
    environ: Mapping[str, str] | None = None,
    progress: Progress | None = None,
    secrets: Secrets | None = None,
) -> PublishReport:
    """Upload each model's verified local files, and a manifest per complete model, to ``to``
    (``s3://...``); with ``sign`` (an EC private key, PEM) then its model.sig. ``dry_run``: what
    would go up, nothing sent."""
    from mdl.buckets import parse_s3_prefix
    from mdl.download import warned
    from mdl.lockfile import LockUse
    from mdl.paths import is_http_url
    from mdl.upload import publish_models

    target = parse_s3_prefix(to)
    if endpoint is not None and not is_http_url(endpoint):
        raise UsageError(f"--endpoint-url: expected an http(s) URL with a host, got {endpoint!r}")
    if force and sign is None:
        raise UsageError(
            "publish: --force only lets --sign replace a model's own model.sig; give --sign KEY.pem"
        )
    flags = Overrides(
        dest=dest, layout=layout, connections=connections, locked=locked, frozen=frozen
    )
    settings, models, lock = _models(
        catalog, environ, names, flags, all_models=all, secrets=secrets
    )
    pins, warnings, pinned = LockUse(settings, lock=lock).view(models)
    progress = progress or NullProgress()
    key = Path(sign) if sign is not None else None
    options: dict[str, Any] = {
        "endpoint": endpoint,
        "sign": key,
        "force": force,
        "dry_run": dry_run,
    }
    report = publish_models(
        models, settings, target, progress=progress, pins=pins, locked=pinned, **options
    )
    return warned(report, warnings)
