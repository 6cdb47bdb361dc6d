"""The download pipeline: resolve models, plan each file before any I/O, check space, fetch under file locks,
record; ``get`` for one-off sources, ``lock`` to pin models, ``init``/``add``/``remove`` to write the catalog."""

from mdl.download.catalogedit import (
    LockReport,
    add_model,
    frozen_models,
    init_catalog,
    lock_catalog,
    remove_model,
)
from mdl.download.get import get_sources, read_source
from mdl.download.puller import pull_models
from mdl.download.resolve import resolve_models
from mdl.download.session import LockUse, warned

__all__ = [
    "LockReport",
    "LockUse",
    "add_model",
    "frozen_models",
    "get_sources",
    "init_catalog",
    "lock_catalog",
    "pull_models",
    "read_source",
    "remove_model",
    "resolve_models",
    "warned",
]
