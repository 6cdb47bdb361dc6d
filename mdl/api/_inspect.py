"""``load_catalog``, ``list_models``, ``show`` and ``resolve``: what the catalog holds, what is on
disk, what is upstream."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from mdl.api._context import catalog_models, command_catalog, environ_now
from mdl.api._inputs import checked
from mdl.errors import UsageError
from mdl.progress import NullProgress, Progress
from mdl.setting import StrPath, flags_of

if TYPE_CHECKING:
    from mdl.catalog.specs import Catalog
    from mdl.redact import Secrets
    from mdl.resolution import Resolution
    from mdl.store.expected import ExpectedFile
    from mdl.store.inventory import ModelInfo, ModelList
    from mdl.store.oneoffs import OneOff

STATUSES = ("installed", "partial", "missing")


@checked
def load_catalog(
    path: StrPath | None = None, *, environ: Mapping[str, str] | None = None
) -> Catalog:
    """Find and load the catalog: ``path``, else ``$MDL_CATALOG``, else ./catalog.toml, else the
    user config one.
    """
    return command_catalog(path, environ_now(environ))


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
    lock_file: StrPath | None = None,
    environ: Mapping[str, str] | None = None,
) -> ModelList:
    """Every catalog model with its local status (offline), filtered by ``status`` and ``tag``."""
    from mdl.store.inventory import ModelList
    from mdl.store.inventory import list_models as list_local
    from mdl.store.layout import Layout
    from mdl.store.oneoffs import earlier_bytes

    if status is not None and status not in STATUSES:
        raise UsageError(f"status: expected installed, partial or missing, got {status!r}")
    settings, specs, lock = catalog_models(
        catalog, environ, [], flags_of(locals()), all_models=True
    )
    chosen = [spec for spec in specs if tag is None or tag in spec.tags]
    pins: Mapping[str, Sequence[ExpectedFile]] = {}
    lock_there = settings.lock_path is not None and settings.lock_path.exists()
    if locked or lock is not None or lock_there:
        # only with a lock: a plain list stays light (no HTTP stack loaded)
        from mdl.lockfile.policy import LockUse

        pins = LockUse(settings, lock=lock).view(chosen)[0]
    places = Layout(settings)
    listed = list_local(chosen, places, status=status, pinned=pins)
    earlier = {m.spec.name: earlier_bytes(m.record, places.cache_root) for m in listed}
    return ModelList(tuple(listed), settings.dest, _one_offs_as(status, tag), earlier)


def _one_offs_as(status: str | None, tag: str | None) -> tuple[OneOff, ...]:
    """The one-offs the filters hold: none with a tag (a one-off has none); by their state (one
    whose files are gone is ``missing``)."""
    from mdl.store.oneoffs import one_offs

    if tag is not None:
        return ()
    wanted = {"missing": "gone"}.get(status or "", status)
    return tuple(o for o in one_offs() if wanted in (None, o.status))


@checked
def show(
    name: str,
    *,
    catalog: Catalog | StrPath | None = None,
    dest: StrPath | None = None,
    layout: str | None = None,
    locked: bool = False,
    frozen: bool = False,
    lock_file: StrPath | None = None,
    environ: Mapping[str, str] | None = None,
) -> ModelInfo:
    """One model: its files, sources, sizes, hashes and local state (offline), as catalog.lock
    pins it if fresh.
    """
    from mdl.lockfile.policy import LockUse
    from mdl.store.inventory import ModelInfo, model_status
    from mdl.store.layout import Layout

    settings, (spec,), lock = catalog_models(
        catalog, environ, [name], flags_of(locals()), all_models=False
    )
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
    lock_file: StrPath | None = None,
    environ: Mapping[str, str] | None = None,
    progress: Progress | None = None,
    secrets: Secrets | None = None,
) -> Resolution:
    """The concrete files and URLs of models upstream; ``follow`` shows where the Hub redirects."""
    from mdl.download.resolve import resolve_models
    from mdl.resolution import Resolution

    settings, models, lock = catalog_models(
        catalog, environ, names, flags_of(locals()), all_models=all, secrets=secrets
    )
    docs, failures = resolve_models(
        models, settings, follow=follow, progress=progress or NullProgress(), lock=lock
    )
    return Resolution(tuple(docs), tuple(failures))
