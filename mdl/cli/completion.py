"""Values for Typer's shell completion (Tab): quick, and never printing (a broken catalog: no suggestions)."""

from __future__ import annotations

import os
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


def complete_checkpoints(incomplete: str) -> list[str]:
    """--checkpoint's keywords (a checkpoint's own name is taken too); fixed choices are Literal types, which
    Typer completes itself."""
    return [value for value in ("latest", "best", "step:") if value.startswith(incomplete)]
