"""mdl: get model files onto the machines that need them, and pack checkpoints safely.

The Python API (``from mdl import pull``) is loaded on first use, so ``import mdl`` and ``mdl --help`` stay light.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from mdl.version import __version__

if TYPE_CHECKING:
    from mdl.api import (
        add,
        clean,
        get,
        list_models,
        load_catalog,
        lock,
        pack,
        publish,
        pull,
        remove,
        resolve,
        show,
        unpack,
        verify,
    )
    from mdl.errors import (
        ArchiveError,
        AuthError,
        CatalogError,
        IntegrityError,
        InterruptedByUserError,
        LocalFSError,
        MdlError,
        NetworkError,
        NotFoundError,
        UsageError,
    )

_API = (
    "add",
    "clean",
    "get",
    "list_models",
    "load_catalog",
    "lock",
    "pack",
    "publish",
    "pull",
    "remove",
    "resolve",
    "show",
    "unpack",
    "verify",
)
_ERRORS = (
    "ArchiveError",
    "AuthError",
    "CatalogError",
    "IntegrityError",
    "InterruptedByUserError",
    "LocalFSError",
    "MdlError",
    "NetworkError",
    "NotFoundError",
    "UsageError",
)

__all__ = [
    "ArchiveError",
    "AuthError",
    "CatalogError",
    "IntegrityError",
    "InterruptedByUserError",
    "LocalFSError",
    "MdlError",
    "NetworkError",
    "NotFoundError",
    "UsageError",
    "__version__",
    "add",
    "clean",
    "get",
    "list_models",
    "load_catalog",
    "lock",
    "pack",
    "publish",
    "pull",
    "remove",
    "resolve",
    "show",
    "unpack",
    "verify",
]


def __getattr__(name: str) -> Any:
    """Import the API or the error classes on first use (PEP 562)."""
    if name in _API or name in _ERRORS:
        value = getattr(importlib.import_module("mdl.api" if name in _API else "mdl.errors"), name)
        globals()[name] = value  # later lookups skip this function
        return value
    raise AttributeError(f"module 'mdl' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
