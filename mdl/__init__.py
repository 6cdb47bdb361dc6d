"""mdl: get model files onto the machines that need them, and pack checkpoints safely."""

from typing import TYPE_CHECKING

from mdl.lazy import export_lazily, loading

with loading():  # mdl's base (errors, redaction, paths) without the collector's passes
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
from mdl.version import __version__

if TYPE_CHECKING:
    from mdl.api import (
        ProgressBars,
        add,
        clean,
        fetch,
        get,
        init,
        list_models,
        load_catalog,
        lock,
        pack,
        prune,
        prune_mirror,
        publish,
        pull,
        remove,
        remove_fetched,
        resolve,
        serve,
        show,
        unpack,
        verify,
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
    "ProgressBars",
    "UsageError",
    "__version__",
    "add",
    "clean",
    "fetch",
    "get",
    "init",
    "list_models",
    "load_catalog",
    "lock",
    "pack",
    "prune",
    "prune_mirror",
    "publish",
    "pull",
    "remove",
    "remove_fetched",
    "resolve",
    "serve",
    "show",
    "unpack",
    "verify",
]

# the API loads when a name of it is asked for: `python -m mdl` runs the CLI, which loads its own.
# Its names are those of __all__ not bound above (the errors and the version are).
export_lazily(__name__, dict.fromkeys([name for name in __all__ if name not in globals()], "api"))
