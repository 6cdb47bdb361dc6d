"""The download pipeline: resolve models, decide per file before any I/O, check space, fetch under locks, record;
and ``get`` for one-off sources."""

from mdl.pull.get import get_sources
from mdl.pull.puller import pull_models
from mdl.pull.resolved import resolve_models

__all__ = [
    "get_sources",
    "pull_models",
    "resolve_models",
]
