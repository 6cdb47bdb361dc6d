"""The Python face of mdl, and what every command calls: typed, keyword-only, prints nothing, raises
MdlError, arguments checked (mdl.api._inputs); one module per command family, gathered here."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from mdl.lazy import export_lazily

if TYPE_CHECKING:
    from mdl.api._archive import pack, unpack
    from mdl.api._bars import ProgressBars
    from mdl.api._download import clean, prune, pull, remove_fetched, verify
    from mdl.api._edit import add, init, remove
    from mdl.api._get import fetch, get
    from mdl.api._inspect import STATUSES, list_models, load_catalog, resolve, show
    from mdl.api._lock import lock
    from mdl.api._publish import prune_mirror, publish
    from mdl.api._serve import serve

# A library prints nothing: without a handler, logging's last resort would write mdl's warnings to
# stderr.
logging.getLogger("mdl").addHandler(logging.NullHandler())

__all__ = [
    "STATUSES",
    "ProgressBars",
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

# Each command family's module loads when its first name is asked for (a command loads its own).
export_lazily(
    __name__,
    {
        "pack": "_archive",
        "unpack": "_archive",
        "clean": "_download",
        "prune": "_download",
        "pull": "_download",
        "remove_fetched": "_download",
        "verify": "_download",
        "add": "_edit",
        "init": "_edit",
        "remove": "_edit",
        "fetch": "_get",
        "get": "_get",
        "ProgressBars": "_bars",
        "STATUSES": "_inspect",
        "list_models": "_inspect",
        "load_catalog": "_inspect",
        "resolve": "_inspect",
        "show": "_inspect",
        "lock": "_lock",
        "prune_mirror": "_publish",
        "publish": "_publish",
        "serve": "_serve",
    },
)
