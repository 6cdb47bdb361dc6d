"""The download pipeline: resolve models, decide per file before any I/O, check space, fetch under locks, record;
``get`` for one-off sources, and ``lock`` to pin models in catalog.lock."""

from typing import TYPE_CHECKING

from mdl.lazy import lazy_exports

if TYPE_CHECKING:
    from mdl.download.catalogedit import AddOptions, add_model, remove_model
    from mdl.download.check import check_entry
    from mdl.download.get import get_sources, read_source
    from mdl.download.lock_command import LockReport, lock_catalog
    from mdl.download.lockfile_use import LockUse, frozen_catalog, frozen_specs, read_frozen_lock, warned
    from mdl.download.puller import pull_models
    from mdl.download.resolved import resolve_models

__all__ = [
    "AddOptions",
    "LockReport",
    "LockUse",
    "add_model",
    "check_entry",
    "frozen_catalog",
    "frozen_specs",
    "get_sources",
    "lock_catalog",
    "pull_models",
    "read_frozen_lock",
    "read_source",
    "remove_model",
    "resolve_models",
    "warned",
]

if not TYPE_CHECKING:  # hidden from mypy, which would take every unknown name for Any
    # Imported when first used (mdl/lazy.py): a command loads only the modules it touches.
    __getattr__, __dir__ = lazy_exports(
        __name__,
        {
            "catalogedit": ("AddOptions", "add_model", "remove_model"),
            "check": ("check_entry",),
            "get": ("get_sources", "read_source"),
            "lockfile_use": ("LockUse", "frozen_catalog", "frozen_specs", "read_frozen_lock", "warned"),
            "lock_command": ("LockReport", "lock_catalog"),
            "puller": ("pull_models",),
            "resolved": ("resolve_models",),
        },
    )
