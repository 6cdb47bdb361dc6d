"""``lock``: pin the catalog's models in ``catalog.lock``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING

from mdl.api._context import command_catalog, command_settings, environ_now, lock_file_given
from mdl.api._inputs import checked
from mdl.errors import UsageError
from mdl.progress import NullProgress, Progress
from mdl.setting import StrPath, flags_of

if TYPE_CHECKING:
    from mdl.catalog.specs import Catalog
    from mdl.download.lockcheck import LockReport
    from mdl.redact import Secrets


@checked
def lock(
    *names: str,
    all: bool = False,
    catalog: Catalog | StrPath | None = None,
    upgrade: bool = False,
    check: bool = False,
    dest: StrPath | None = None,
    layout: str | None = None,
    lock_file: StrPath | None = None,
    timeout: float | None = None,
    environ: Mapping[str, str] | None = None,
    progress: Progress | None = None,
    secrets: Secrets | None = None,
) -> LockReport:
    """Pin models (all when none is named) in ``catalog.lock`` beside the catalog (``lock_file``,
    else ``$MDL_LOCK_FILE``: that lock instead)."""
    from mdl.report import hidden

    env = environ_now(environ)
    flags = flags_of(locals())
    cat = command_catalog(catalog, env)
    if names and all:
        raise UsageError("name models or pass --all, not both")
    given = lock_file_given(flags, env)
    settings = command_settings(cat, env, flags, secrets=secrets)
    if check:  # (CI's: none of the fetch stage loaded unless a signed model needs it)
        from mdl.download.lockcheck import check_lock

        if upgrade:
            raise UsageError("--check changes nothing; it cannot go with --upgrade")
        locked = check_lock(cat, names, settings, progress=progress or NullProgress(), path=given)
    else:
        from mdl.download.lock import lock_catalog

        locked = lock_catalog(
            cat, names, settings, upgrade=upgrade, progress=progress or NullProgress(), path=given
        )
    return replace(locked, failures=hidden(locked.failures, settings.secrets))
