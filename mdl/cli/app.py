"""The Typer app: the ``mdl`` object, its global options, and the commands registered from their modules."""

# No `from __future__ import annotations` in the modules that define commands: Typer reads every command's
# signature four times at each start, and string annotations would be evaluated each time (~20 ms of every
# `mdl` run, Tab included). tests/cli/test_startup.py keeps it so.
import sys
from typing import Annotated

import typer

from mdl.cli import archive, download, edit, get, inspect, lock, publish
from mdl.cli.options import (
    CatalogOpt,
    CommonFlags,
    DestOpt,
    JsonOpt,
    LogFileOpt,
    NoProgressOpt,
    ProgressOpt,
    QuietOpt,
    VerboseOpt,
)
from mdl.version import __version__

app = typer.Typer(
    name="mdl",
    help="Get model files onto the machines that need them — fast, resumable, verified — and pack checkpoints.",
    no_args_is_help=True,
    add_completion=True,  # Typer's own --install-completion / --show-completion (bash, zsh, fish, PowerShell)
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version_callback(value: bool) -> None:
    if value:
        sys.stdout.write(f"mdl {__version__}\n")
        raise typer.Exit(0)


@app.callback()
def _root(
    ctx: typer.Context,
    version: Annotated[
        bool,
        typer.Option("--version", help="Print the version and exit.", callback=_version_callback, is_eager=True),
    ] = False,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = False,
    no_progress: NoProgressOpt = False,
    progress_mode: ProgressOpt = None,
    log_file: LogFileOpt = None,
    catalog: CatalogOpt = None,
    dest: DestOpt = None,
) -> None:
    """mdl: pull, verify and pack model files.

    The common flags (-q, -v, --json, --no-progress, --progress, --log-file, --catalog, --dest) go before
    or after the command: `mdl -q list` is `mdl list -q`.
    """
    # Kept for the command, which merges them with its own (mdl.cli.options.command_flags).
    ctx.obj = CommonFlags(
        json=json_out,
        quiet=quiet,
        verbose=verbose,
        no_progress=no_progress,
        log_file=log_file,
        progress=progress_mode,
        catalog=catalog,
        dest=dest,
    )


app.command("list")(inspect.list_cmd)
app.command("show")(inspect.show_cmd)
app.command("resolve")(inspect.resolve_cmd)
app.command("pull")(download.pull_cmd)
app.command("verify")(download.verify_cmd)
app.command("clean")(download.clean_cmd)
app.command("lock")(lock.lock_cmd)
app.command("get")(get.get_cmd)
app.command("pack")(archive.pack_cmd)
app.command("unpack")(archive.unpack_cmd)
app.command("add")(edit.add_cmd)
app.command("remove")(edit.remove_cmd)
app.command("publish")(publish.publish_cmd)
