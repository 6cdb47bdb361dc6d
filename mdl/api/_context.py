"""What every API function starts from: the run's environment, its catalog, its settings and the
models it names."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from mdl.errors import UsageError
from mdl.paths import home_expanded
from mdl.setting import Overrides, StrPath

if TYPE_CHECKING:
    from mdl.catalog.settings import Settings
    from mdl.catalog.specs import Catalog, ModelSpec
    from mdl.lockfile.model import Lock
    from mdl.redact import Secrets


def environ_now(environ: Mapping[str, str] | None) -> Mapping[str, str]:
    """``environ``, else a copy of os.environ taken now: the call sees it as it is when called, and
    threads see one fixed picture."""
    return dict(os.environ) if environ is None else environ


def command_catalog(given: Catalog | StrPath | None, environ: Mapping[str, str]) -> Catalog:
    """The command's catalog: ``given``, else the one lookup finds (see :func:`found_catalog`);
    none found: an error."""
    catalog = found_catalog(given, environ)
    if catalog is None:
        from mdl.catalog.load import no_catalog
        from mdl.catalog.settings import user_config_dir

        raise no_catalog(user_config_dir())
    return catalog


def found_catalog(
    given: Catalog | StrPath | None, environ: Mapping[str, str], *, look: bool = True
) -> Catalog | None:
    """``given``, else the catalog the lookup finds (``look`` False: only one named by
    ``$MDL_CATALOG``; the one in this folder or the user's config dir is not read), else None."""
    from mdl.catalog.load import find_catalog, named_catalog
    from mdl.catalog.settings import user_config_dir

    if given is not None and not isinstance(given, str | os.PathLike):
        return given  # a Catalog (its class is not loaded to tell: a get without one needs none)
    flag = Path(given) if given is not None else None
    if not look and named_catalog(flag=flag, environ=environ, cwd=Path.cwd()) is None:
        return None
    path = find_catalog(flag=flag, environ=environ, cwd=Path.cwd(), config_dir=user_config_dir())
    if path is None:
        return None
    from mdl.lockfile.remembered import load_catalog  # (checked once per version of its bytes)

    return load_catalog(path)


def command_settings(
    given: Catalog | StrPath | None,
    environ: Mapping[str, str] | None,
    flags: Overrides,
    secrets: Secrets | None = None,
    *,
    look: bool = True,
) -> Settings:
    """A command's settings over its catalog, if one is found (a command that needs one passes the
    Catalog; ``look``: see :func:`found_catalog`)."""
    from mdl.catalog.settings import settings_for

    env = environ_now(environ)
    return settings_for(found_catalog(given, env, look=look), env, flags, secrets=secrets)


def catalog_models(
    given: Catalog | StrPath | None,
    environ: Mapping[str, str] | None,
    names: Sequence[str],
    flags: Overrides,
    *,
    all_models: bool,
    secrets: Secrets | None = None,
) -> tuple[Settings, list[ModelSpec], Lock | None]:
    """Settings and models of a command that reads catalog.lock (``--lock``: that lock instead),
    and with --frozen the lock they come from alone."""
    from mdl.catalog.load import lock_beside
    from mdl.catalog.settings import choose_lock_mode, settings_for

    env = environ_now(environ)
    chosen = lock_file_given(flags, env)
    if choose_lock_mode(locked=flags.locked, frozen=flags.frozen, environ=env) == "frozen":
        from mdl.lockfile.policy import frozen_models

        cat, path, lock, specs = frozen_models(
            given, env, names, all_models=all_models, lock_path=chosen
        )
        settings = settings_for(
            cat, env, flags, lock_path=path, lock_given=chosen is not None, secrets=secrets
        )
        return settings, specs, lock
    try:
        cat = command_catalog(given, env)
        if names and all_models:
            raise UsageError("name models or pass --all, not both")
        specs = cat.select(list(names), all_models=all_models)
    except UsageError as exc:
        from mdl.sources.hubpages import as_hub_repo

        raise as_hub_repo(exc, names) from exc
    beside = lock_beside(cat.path) if cat.path is not None else None
    # (the catalog's own lock named by --lock is still judged against the catalog)
    same = (
        chosen is not None and beside is not None and beside.is_file() and chosen.samefile(beside)
    )
    other = chosen is not None and not same
    settings = settings_for(
        cat, env, flags, lock_path=chosen or beside, lock_given=other, secrets=secrets
    )
    return settings, specs, None


def lock_file_given(flags: Overrides, environ: Mapping[str, str]) -> Path | None:
    """``--lock PATH`` (else ``$MDL_LOCK_FILE``): the lock a run uses in place of catalog.lock
    beside the catalog; UsageError (exit 2) naming it when it is not a file there. None: not
    given."""
    from mdl.setting import SETTING

    setting = SETTING["lock_file"]
    given, where = flags.lock_file, setting.flag
    if given is None or str(given) == "":
        given, where = environ.get(setting.env) or None, f"${setting.env}"
    if given is None:
        return None
    path = home_expanded(given)
    if not path.is_file():
        why = "no such file" if not path.exists() else "not a file"
        raise UsageError(
            f"{where}: {path}: {why}",
            hint="give the path of a lock file (such as releases/v1.lock) that mdl lock wrote",
        )
    return path
