"""What every function of the Python API shares: the environment taken once, the catalog found, settings
resolved (flags > environment > catalog), models selected, and catalog.lock read for locked commands."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mdl.errors import UsageError

if TYPE_CHECKING:
    from mdl.catalog import Catalog, ModelSpec, Settings
    from mdl.lockfile import Lock

StrPath = str | os.PathLike[str]


def _environ(environ: Mapping[str, str] | None) -> Mapping[str, str]:
    # A copy taken now: the call sees os.environ as it is when called, and threads see one fixed picture.
    return dict(os.environ) if environ is None else environ


def _catalog(given: Catalog | StrPath | None, environ: Mapping[str, str], *, required: bool) -> Catalog:
    from mdl.catalog import Catalog, find_catalog, user_config_dir
    from mdl.catalog import load_catalog as load_file

    if isinstance(given, Catalog):
        return given
    flag = Path(given) if given is not None else None
    path = find_catalog(flag=flag, environ=environ, cwd=Path.cwd(), config_dir=user_config_dir())
    if path is None:
        if required:
            raise UsageError(
                "no catalog found: pass --catalog, set MDL_CATALOG, or put catalog.toml in this folder "
                f"or in {user_config_dir() / 'mdl'}"
            )
        return Catalog()
    return load_file(path)


def _settings(catalog: Catalog, environ: Mapping[str, str], *, dest: StrPath | None, **flags: Any) -> Settings:
    from mdl.catalog import settings_for

    return settings_for(catalog, environ, dest=Path(dest) if dest is not None else None, **flags)


def _select(catalog: Catalog, names: Sequence[str], all_models: bool) -> list[ModelSpec]:
    if names and all_models:
        raise UsageError("name models or pass --all, not both")
    return catalog.select(list(names), all_models=all_models)


def _models(
    given: Catalog | StrPath | None,
    env: Mapping[str, str],
    names: Sequence[str],
    all_models: bool,
    *,
    locked: bool,
    frozen: bool,
    dest: StrPath | None,
    **flags: Any,
) -> tuple[Settings, list[ModelSpec], Lock | None]:
    """Settings and models of a command that reads catalog.lock; ``frozen``: the models and the lock (read once)
    come from the lock alone, and a catalog beside it lends only its settings and direct URLs' headers."""
    from mdl.catalog import choose_lock_mode, lock_beside

    if choose_lock_mode(locked=locked, frozen=frozen, environ=env) == "frozen":
        from mdl.download import frozen_catalog, frozen_specs, read_frozen_lock

        cat, path = frozen_catalog(given, env, cwd=Path.cwd())
        lock = read_frozen_lock(path)
        settings = _settings(cat, env, dest=dest, lock_path=path, frozen=True, **flags)
        return settings, frozen_specs(lock, names, all_models=all_models, catalog_models=cat.models), lock
    cat = _catalog(given, env, required=True)
    path = lock_beside(cat.path) if cat.path is not None else None
    settings = _settings(cat, env, dest=dest, lock_path=path, locked=locked, **flags)
    return settings, _select(cat, names, all_models), None
