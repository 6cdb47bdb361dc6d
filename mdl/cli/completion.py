"""Shell completion values (Typer's own completion calls these on Tab): model names from the catalog, and the
fixed choices of a few options. Each returns quickly and never prints: a broken catalog means no suggestions."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import typer


def complete_model_names(ctx: typer.Context, incomplete: str) -> list[str]:
    """Catalog model names starting with ``incomplete`` (not those already on the line), found the way the
    command will find the catalog: --catalog (after or before the command), $MDL_CATALOG, ./catalog.toml."""
    given = ctx.params.get("catalog") or ctx.find_root().params.get("catalog")
    typed = ctx.params.get("names") or ()
    try:
        from mdl import api

        catalog = api.load_catalog(Path(given) if given else None, environ=dict(os.environ))
    except Exception:  # noqa: BLE001 - a Tab press must never print a traceback into the user's prompt
        return []
    return [m.name for m in catalog.models if m.name.startswith(incomplete) and m.name not in typed]


def choices(*values: str) -> Callable[[str], list[str]]:
    """A completion function for an option with fixed ``values``."""

    def complete(incomplete: str) -> list[str]:
        return [value for value in values if value.startswith(incomplete)]

    return complete


# --checkpoint also takes a checkpoint's name: its keywords are offered, not enforced. Options whose values are
# fixed (--layout, --status, --profile, --compress, --progress) are Literal types: Typer completes those itself.
complete_checkpoints = choices("latest", "best", "step:")
