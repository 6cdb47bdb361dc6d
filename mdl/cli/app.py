"""The Typer app: the ``mdl`` object, its global options, and its commands, each built from its module when used."""

# No `from __future__ import annotations` in the modules that define commands: Typer reads every command's
# signature four times at each start, and string annotations would be evaluated each time (~20 ms of every
# `mdl` run, Tab included). tests/cli/test_startup.py keeps it so.
import importlib
import sys
from collections.abc import Iterator, MutableMapping
from typing import Annotated, Any

import typer
import typer.main
from typer.core import TyperGroup

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

# Each command: its name, and the module and function that define it. A run builds only the command it runs
# (`mdl --help` and Tab build them all): Typer reads a command's signature four times to build it, and building
# all thirteen at each start cost ~15 ms of `mdl get` (measured: 18 ms for all, 2.5 ms for the root and `get`).
COMMANDS = {
    "list": ("inspect", "list_cmd"),
    "show": ("inspect", "show_cmd"),
    "resolve": ("inspect", "resolve_cmd"),
    "pull": ("download", "pull_cmd"),
    "verify": ("download", "verify_cmd"),
    "clean": ("download", "clean_cmd"),
    "lock": ("lock", "lock_cmd"),
    "get": ("get", "get_cmd"),
    "pack": ("archive", "pack_cmd"),
    "unpack": ("archive", "unpack_cmd"),
    "add": ("edit", "add_cmd"),
    "remove": ("edit", "remove_cmd"),
    "publish": ("publish", "publish_cmd"),
}


def build_command(name: str) -> Any:
    """The Click command Typer makes of ``name``'s function, exactly as ``app.command(name)`` would."""
    module, function = COMMANDS[name]
    one = typer.Typer(add_completion=False, rich_markup_mode=None, pretty_exceptions_enable=False)
    one.command(name)(getattr(importlib.import_module(f"mdl.cli.{module}"), function))
    return typer.main.get_command(one)


class _Commands(MutableMapping[str, Any]):
    """The group's commands by name, in :data:`COMMANDS` order, each built on first use."""

    def __init__(self) -> None:
        self._built: dict[str, Any] = dict.fromkeys(COMMANDS)

    def __getitem__(self, name: str) -> Any:
        if self._built[name] is None:
            self._built[name] = build_command(name)
        return self._built[name]

    def __setitem__(self, name: str, command: Any) -> None:
        self._built[name] = command

    def __delitem__(self, name: str) -> None:
        del self._built[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._built)

    def __len__(self) -> int:
        return len(self._built)


class MdlGroup(TyperGroup):
    """The ``mdl`` group: the commands of :data:`COMMANDS`, each built when it is run, listed or completed."""

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        self.commands = _Commands()


app = typer.Typer(
    name="mdl",
    cls=MdlGroup,
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
