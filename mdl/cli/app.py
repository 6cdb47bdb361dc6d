"""The Typer app: the ``mdl`` object, its global options, and the commands registered from their modules."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from mdl.cli import archive, download, get, inspect
from mdl.version import __version__

app = typer.Typer(
    name="mdl",
    help="Get model files onto the machines that need them — fast, resumable, verified — and pack checkpoints.",
    no_args_is_help=True,
    add_completion=False,
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
    version: Annotated[
        bool,
        typer.Option("--version", help="Print the version and exit.", callback=_version_callback, is_eager=True),
    ] = False,
) -> None:
    """mdl: pull, verify and pack model files."""


app.command("list")(inspect.list_cmd)
app.command("show")(inspect.show_cmd)
app.command("resolve")(inspect.resolve_cmd)
app.command("pull")(download.pull_cmd)
app.command("verify")(download.verify_cmd)
app.command("clean")(download.clean_cmd)
app.command("get")(get.get_cmd)
app.command("pack")(archive.pack_cmd)
app.command("unpack")(archive.unpack_cmd)
