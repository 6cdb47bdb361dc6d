"""The download pipeline: resolve models, decide per file before any I/O, check space, fetch under locks, record;
and ``get`` for one-off sources."""

from mdl.download.catalogedit import AddOptions, add_model, remove_model
from mdl.download.check import check_entry
from mdl.download.get import get_sources, read_source
from mdl.download.puller import pull_models
from mdl.download.resolved import resolve_models

__all__ = [
    "AddOptions",
    "add_model",
    "check_entry",
    "get_sources",
    "pull_models",
    "read_source",
    "remove_model",
    "resolve_models",
]
