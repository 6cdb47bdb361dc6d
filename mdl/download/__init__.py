"""The download pipeline: resolve models, decide per file before any I/O, check space, fetch under locks, record;
and ``get`` for one-off sources."""

from mdl.download.get import get_sources
from mdl.download.puller import pull_models
from mdl.download.resolved import resolve_models

__all__ = [
    "get_sources",
    "pull_models",
    "resolve_models",
]
