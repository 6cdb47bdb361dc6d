"""The workflows over the same stages (resolve -> plan -> fetch -> record): ``pull`` catalog models,
``get`` one-off sources, ``lock`` them into catalog.lock, ``add``/``remove`` catalog entries."""

from typing import TYPE_CHECKING

from mdl.lazy import export_lazily

if TYPE_CHECKING:
    from mdl.download.catalog_edits import add_model, remove_model
    from mdl.download.get import get_sources
    from mdl.download.lock import LockReport, lock_catalog
    from mdl.download.puller import pull_models
    from mdl.download.resolve import resolve_models
    from mdl.download.session import warned

__all__ = [
    "LockReport",
    "add_model",
    "get_sources",
    "lock_catalog",
    "pull_models",
    "remove_model",
    "resolve_models",
    "warned",
]

export_lazily(
    __name__,
    {
        "add_model": "catalog_edits",
        "remove_model": "catalog_edits",
        "get_sources": "get",
        "LockReport": "lock",
        "lock_catalog": "lock",
        "pull_models": "puller",
        "resolve_models": "resolve",
        "warned": "session",
    },
)
