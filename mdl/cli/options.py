"""The options every command spells the same way, as ``Annotated`` aliases (one place for flag names and help),
and the one merge of the common flags given before the command (``mdl -q pull x``) with those given after it."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from mdl.cli.completion import complete_model_names
from mdl.cli.run import Run

# Options with fixed choices: a Literal shows them in --help (`--layout [plain|hf-cache]`), completes them on Tab,
# refuses anything else with exit 2 naming the option, and hands the command the plain string.
ProgressChoice = Literal["auto", "rich", "plain", "json", "none"]
LayoutChoice = Literal["plain", "hf-cache"]  # mdl.catalog.settings.LAYOUTS (a test keeps the two equal)
StatusChoice = Literal["installed", "partial", "missing"]  # mdl.api.STATUSES
ProfileChoice = Literal["deploy", "full"]
CompressChoice = Literal["auto", "none", "deflate"]

QuietOpt = Annotated[bool, typer.Option("-q", "--quiet", help="Silence stderr but errors (stdout's data stays).")]
VerboseOpt = Annotated[bool, typer.Option("-v", "--verbose", help="Log DEBUG detail to the log file.")]
NoProgressOpt = Annotated[bool, typer.Option("--no-progress", help="No progress display (same as --progress none).")]
ProgressOpt = Annotated[
    ProgressChoice | None,
    typer.Option(
        "--progress",
        help="auto (rich bars on a terminal, plain lines off it), rich, plain, json (one event per line on "
        "stderr, for programs) or none.",
        show_default=False,
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print exactly one JSON document on stdout.")]
CatalogOpt = Annotated[
    Path | None,
    typer.Option("--catalog", help="Catalog file (default: $MDL_CATALOG, ./catalog.toml, user config)."),
]
DestOpt = Annotated[Path | None, typer.Option("--dest", help="Download root (default: $MDL_DEST, catalog, user data).")]
LogFileOpt = Annotated[
    Path | None, typer.Option("--log-file", help="Log file (default: $MDL_LOG_FILE or user log dir).")
]
NamesArg = Annotated[
    list[str] | None,
    typer.Argument(help="Model names from the catalog.", show_default=False, autocompletion=complete_model_names),
]
NameArg = Annotated[str, typer.Argument(help="Model name.", autocompletion=complete_model_names)]
AllOpt = Annotated[bool, typer.Option("--all", help="Every model in the catalog.")]
DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="Show what would happen; change nothing.")]
LayoutOpt = Annotated[
    LayoutChoice | None,
    typer.Option(
        "--layout",
        help="plain (model folders under dest) or hf-cache (Hub files in the Hugging Face cache). "
        "Default: $MDL_LAYOUT, catalog, plain.",
        show_default=False,
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
LockedOpt = Annotated[
    bool,
    typer.Option(
        "--locked",
        help="Refuse (exit 2, before any download) when catalog.lock is missing or out of date for a model "
        "(default: $MDL_LOCKED).",
    ),
]
FrozenOpt = Annotated[
    bool,
    typer.Option(
        "--frozen",
        help="Use catalog.lock as written, without the catalog's entries (works with only the lock; "
        "default: $MDL_FROZEN).",
    ),
]


@dataclass(frozen=True)
class CommonFlags:
    """The flags every command takes, before or after its name: ``mdl -q list`` = ``mdl list -q``."""

    json: bool = False
    quiet: bool = False
    verbose: bool = False
    no_progress: bool = False
    log_file: Path | None = None
    progress: str | None = None
    catalog: Path | None = None
    dest: Path | None = None

    def run(self) -> Run:
        """The command's :class:`Run` (streams, logging, console) for these flags."""
        return Run(
            json=self.json,
            quiet=self.quiet,
            verbose=self.verbose,
            no_progress=self.no_progress,
            log_file=self.log_file,
            progress=self.progress,
        )


# The command parameter that carries each common flag (the root callback uses the same names).
_SWITCHES = {"json": "json_out", "quiet": "quiet", "verbose": "verbose", "no_progress": "no_progress"}
_VALUES = {"log_file": "log_file", "progress": "progress_mode", "catalog": "catalog", "dest": "dest"}
_FLAG_NAMES = {"log_file": "--log-file", "progress": "--progress", "catalog": "--catalog", "dest": "--dest"}


def command_flags(ctx: typer.Context) -> CommonFlags:
    """The common flags of the running command: its own merged with those given before its name.

    A switch (-q, -v, --json, --no-progress) counts wherever it was given; for a value (--log-file,
    --progress, --catalog, --dest) the one after the command wins, as a later flag wins in curl and git.
    A value given before a command that has no such option is a usage error, not silently ignored
    (``mdl --dest D get URL`` would otherwise save into the current folder) — except --progress, which
    commands without a progress display simply have no use for.
    """
    before = ctx.obj if isinstance(ctx.obj, CommonFlags) else CommonFlags()
    own = ctx.params
    merged: dict[str, Any] = {key: getattr(before, key) or bool(own.get(param)) for key, param in _SWITCHES.items()}
    for key, param in _VALUES.items():
        value = own.get(param)
        if value is None:
            value = getattr(before, key)
            if value is not None and param not in own and key != "progress":
                flag = _FLAG_NAMES[key]
                raise typer.BadParameter(f"mdl {ctx.info_name} does not take {flag}", ctx=ctx, param_hint=f"'{flag}'")
        merged[key] = Path(value) if value is not None and key != "progress" else value
    return replace(before, **merged)
