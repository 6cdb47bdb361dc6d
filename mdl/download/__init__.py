"""The workflows over the same stages (resolve → plan → fetch → record): ``pull`` models, ``get``
one-off sources, ``lock`` them, ``add``/``remove`` catalog entries with the lock in step."""

from mdl.download.get import get_sources, read_source
from mdl.download.lock import LockReport, add_model, lock_catalog, remove_model
from mdl.download.puller import pull_models
from mdl.download.resolve import resolve_models
from mdl.download.session import warned

__all__ = [
    "LockReport",
    "add_model",
    "get_sources",
    "lock_catalog",
    "pull_models",
    "read_source",
    "remove_model",
    "resolve_models",
    "warned",
]
