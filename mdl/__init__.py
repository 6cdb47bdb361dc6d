"""mdl: get model files onto the machines that need them, and pack checkpoints safely."""

from typing import TYPE_CHECKING

from mdl.lazy import export_lazily
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

# The API loads when a name of it is asked for, the errors too: `import mdl` is the console
# script's first step (mdl/_start.py), before its Ctrl-C is heard as mdl's. The API's names are
# those of __all__ that are no error and not the version.
export_lazily(
    __name__,
    {
        name: "errors" if name.endswith("Error") else "api"
        for name in __all__
        if name != "__version__"
    },
)
