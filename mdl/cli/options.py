"""The options every command spells the same way, as ``Annotated`` aliases (one place for flag names and help)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

QuietOpt = Annotated[bool, typer.Option("-q", "--quiet", help="Print nothing but errors.")]
VerboseOpt = Annotated[bool, typer.Option("-v", "--verbose", help="Log DEBUG detail to the log file.")]
NoProgressOpt = Annotated[bool, typer.Option("--no-progress", help="No progress display.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print exactly one JSON document on stdout.")]
CatalogOpt = Annotated[
    Path | None,
    typer.Option("--catalog", help="Catalog file (default: $MDL_CATALOG, ./catalog.toml, user config)."),
]
DestOpt = Annotated[Path | None, typer.Option("--dest", help="Download root (default: $MDL_DEST, catalog, user data).")]
LogFileOpt = Annotated[
    Path | None, typer.Option("--log-file", help="Log file (default: $MDL_LOG_FILE or user log dir).")
]
NamesArg = Annotated[list[str] | None, typer.Argument(help="Model names from the catalog.", show_default=False)]
AllOpt = Annotated[bool, typer.Option("--all", help="Every model in the catalog.")]
DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="Show what would happen; change nothing.")]
LayoutOpt = Annotated[
    str | None,
    typer.Option(
        "--layout",
        help="plain (model folders under dest) or hf-cache (Hub files in the Hugging Face cache). "
        "Default: $MDL_LAYOUT, catalog, plain.",
    ),
]
TimeoutOpt = Annotated[
    float | None,
    typer.Option(
        "--timeout",
        help="Seconds to wait for a server to accept a connection or begin its answer "
        "(default: $MDL_TIMEOUT, catalog, 10).",
    ),
]
