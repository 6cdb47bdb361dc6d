"""The download pipeline: resolve models, decide per file before any I/O, check space, fetch under locks, record;
and ``get`` for one-off sources."""

from mdl.download.get import get_sources
from mdl.download.locked import LockUse, frozen_catalog, frozen_specs, read_frozen_lock, warned
from mdl.download.puller import pull_models
from mdl.download.resolved import resolve_models

__all__ = [
    "LockUse",
    "frozen_catalog",
    "frozen_specs",
    "get_sources",
    "pull_models",
    "read_frozen_lock",
    "resolve_models",
    "warned",
]
