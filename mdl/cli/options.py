"""Options spelled alike in every command, their Tab completion, the common flags, and the
:func:`command` skeleton.
"""

from __future__ import annotations

import functools
import inspect
import os
import warnings
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, Union, cast, get_args, get_origin

import typer

from mdl import api
from mdl.cli.run import ProgressChoice, Run, ran
from mdl.setting import SETTING, SETTINGS, Setting


def complete_model_names(ctx: typer.Context, incomplete: str) -> list[str]:
    """Model names starting with ``incomplete``, not yet on the line, from the catalog the
    command will read.
    """
    given = ctx.params.get("catalog") or ctx.find_root().params.get("catalog")
    typed = ctx.params.get("names") or ()
    try:
        with warnings.catch_warnings():  # nothing is said into the user's prompt
            warnings.simplefilter("ignore")
            catalog = api.load_catalog(Path(given) if given else None, environ=dict(os.environ))
    except Exception:  # noqa: BLE001 - a Tab press must never print a traceback into the user's prompt
        return []
    return [m.name for m in catalog.models if m.name.startswith(incomplete) and m.name not in typed]


def complete_checkpoints(incomplete: str) -> list[str]:
    """--checkpoint's keywords (a checkpoint's own name is taken too; Typer completes the Literal
    choices itself).
    """
    return [value for value in ("latest", "best", "step:") if value.startswith(incomplete)]


# Options with fixed choices: a Literal shows them in --help (`--layout [plain|hf-cache]`),
# completes them on Tab, refuses anything else with exit 2 naming the option, and hands the command
# the plain string.
StatusChoice = Literal["installed", "partial", "missing"]  # mdl.api.STATUSES
ProfileChoice = Literal["deploy", "full"]
CompressChoice = Literal["auto", "none", "deflate"]

ProgressOpt = Annotated[
    ProgressChoice | None,
    typer.Option(
        "--progress",
        help=(
            "auto (rich bars on a terminal, plain lines off it), rich, plain, json (one event per"
            " line on stderr, for programs) or none."
        ),
    ),
]
NamesArg = Annotated[
    list[str] | None,
    typer.Argument(help="Model names from the catalog.", autocompletion=complete_model_names),
]
NameArg = Annotated[str, typer.Argument(help="Model name.", autocompletion=complete_model_names)]
AllOpt = Annotated[bool, typer.Option("--all", help="Every model in the catalog.")]
DryRunOpt = Annotated[
    bool, typer.Option("--dry-run", help="Show what would happen; change nothing.")
]


# The word each value shows in --help (`--limit-rate RATE`, never Typer's `<str>`), by parameter
# name: one kind of value, one word, in every command. :func:`metavar` gives the others theirs; an
# option's own ``metavar=`` wins.
METAVARS = {
    "names": "NAME",
    "sources": "SOURCE",
    "output": "FILE",
    "catalog": "FILE",
    "log_file": "FILE",
    "lock_file": "FILE",
    "directory": "DIR",
    "save_as": "PATH",
    "include": "GLOB",
    "exclude": "GLOB",
    "sha256": "HEX",
    "to": "URL",
    "endpoint_url": "URL",
    "sign": "KEY",
    "signed_by": "KEY",
    "input_file": "FILE",
}
# A setting's value by its kind (mdl.setting): its Python type, and its word where it is not the
# rule's. Numbers come as text: the one parser (mdl.catalog.settings.parse_number) reads every
# spelling, as it reads $MDL_* and the catalog (Click's int() and float() would take '١٦' and
# '1_6').
TYPES: dict[str, Any] = {
    "count": str,
    "seconds": str,
    "rate": str,
    "url": str,
    "path": Path,
    "urls": list[str],
}
WORDS = {"count": "N", "seconds": "SECONDS", "rate": "RATE", "urls": "URL", "path": "DIR"}


def metavar(name: str, annotation: Any) -> str:
    """The word for parameter ``name`` (of type ``annotation``) in --help: its fixed choices
    (``[plain|hf-cache]``, as Click shows them), its word in :data:`METAVARS`, ``N`` for a count,
    else its own name in capitals (as argparse)."""
    kind = one_value(annotation)
    if get_origin(kind) is Literal:
        return "[" + "|".join(str(choice) for choice in get_args(kind)) + "]"
    word = WORDS.get(SETTING[name].kind, "") if name in SETTING else ""
    return METAVARS.get(name) or word or ("N" if kind is int else name.upper())


def one_value(annotation: Any) -> Any:
    """The type of one value of ``annotation``: inside Annotated[T, ...], T | None and list[T]."""
    kind = annotation
    while True:
        origin = get_origin(kind)
        if origin is Annotated or origin is list:
            kind = get_args(kind)[0]
        elif origin is Union or origin is UnionType:
            kind = next(arg for arg in get_args(kind) if arg is not type(None))
        else:
            return kind


def switch(*flags: str, help: str) -> tuple[Any, Any]:
    """A switch's option as Typer reads it (an ``Annotated`` type) and its default, off."""
    return Annotated[bool, typer.Option(*flags, help=help)], False


def number_of(setting: Setting) -> Callable[[str | None], int | float | None]:
    """A count's or seconds' flag read by the one parser of numbers (as $MDL_* and the catalog are
    read): exit 2 naming the flag for anything else (Click's int() and float() would take '١٦',
    '1_6' and 1e300)."""

    def parse(value: str | None) -> int | float | None:
        from mdl.catalog.settings import (
            parse_number,  # here: `mdl --help` loads nothing below the CLI
        )
        from mdl.errors import UsageError

        try:
            return None if value is None else parse_number(setting, value, where=setting.flag)
        except UsageError as exc:  # said as Click says a bad option value (exit 2)
            raise typer.BadParameter(exc.message.removeprefix(f"{setting.flag}: ")) from None

    return parse


def setting_option(setting: Setting) -> tuple[Any, Any]:
    """A setting's option as Typer reads it (an ``Annotated`` type) and its default, from the table:
    its flag, its help with bounds and where the default comes from."""
    # --xet/--no-xet: not given is None (the environment, the catalog or the default decide)
    if setting.pair:
        pair = typer.Option(
            f"{setting.flag}/--no-{setting.flag.removeprefix('--')}", help=setting.help_text
        )
        return Annotated[bool | None, pair], None
    number = setting.kind in ("count", "seconds")
    option = typer.Option(
        setting.flag, help=setting.help_text, callback=number_of(setting) if number else None
    )
    if setting.kind == "switch":
        return Annotated[bool, option], False
    kind = cast(Any, Literal)[setting.choices] if setting.kind == "choice" else TYPES[setting.kind]
    return Annotated[kind | None, option], None


# The six flags every command takes, before or after its name (``mdl -q list`` = ``mdl list -q``):
# each one's name (its parameter in the root callback and in every command, and the Run field it
# sets), option and default.
COMMON: dict[str, tuple[Any, Any]] = {
    "json": switch("--json", help="Print exactly one JSON document on stdout."),
    "quiet": switch("-q", "--quiet", help="Silence stderr but errors (stdout's data stays)."),
    "verbose": switch("-v", "--verbose", help="Log DEBUG detail to the log file."),
    "no_progress": switch("--no-progress", help="No progress display (same as --progress none)."),
    "progress": (ProgressOpt, None),
    "log_file": setting_option(SETTING["log_file"]),
}


# The settings' options (--catalog too), declared once: after a command's own options, in this
# order. A command takes those its ``**where`` names (a TypedDict below: its keys, typed as the
# options give them), and hands them to the api as they are: a setting's option is named as the
# setting, and so is the api's keyword (mypy holds each command's to its api function's keywords).
WHERE: dict[str, tuple[Any, Any]] = {
    setting.name: setting_option(setting)
    for setting in SETTINGS
    if setting.flag and setting.name not in COMMON
}


def where_of(body: Callable[..., object]) -> list[str]:
    """The settings' options ``body`` takes: the keys of its ``**where`` TypedDict, in WHERE's
    order."""
    extra = [p for p in inspect.signature(body).parameters.values() if p.kind is p.VAR_KEYWORD]
    if not extra:
        return []
    (typed,) = get_args(extra[0].annotation)  # Unpack[Places]
    return [name for name in WHERE if name in typed.__required_keys__]


CONTEXT = inspect.Parameter(
    "ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context
)


def command_flags(ctx: typer.Context, own: Mapping[str, Any]) -> dict[str, Any]:
    """The command's common flags, --catalog and --dest (``own``: its options, as its function
    gets them) merged with those before its name (``ctx.obj``): a switch counts wherever it is, a
    value after the command wins (as in curl and git); a value before a command without that option
    is a usage error (``mdl --dest D get URL`` would save into .), but --progress's."""
    # ``own``, not ctx.params: Typer before 0.29 converts (a Path option's str to Path) only what
    # it hands the function
    before = ctx.obj or {}
    merged: dict[str, Any] = {}
    for name, (_, default) in (
        *COMMON.items(),
        ("catalog", WHERE["catalog"]),
        ("dest", WHERE["dest"]),
    ):
        value, earlier = own.get(name), before.get(name)
        if default is False:
            merged[name] = bool(earlier or value)
        elif value is None and earlier is not None and name not in own and name != "progress":
            flag = "--" + name.replace("_", "-")
            raise typer.BadParameter(
                f"mdl {ctx.info_name} does not take {flag}", ctx=ctx, param_hint=f"'{flag}'"
            )
        else:
            merged[name] = earlier if value is None else value
    return merged


def keywords(table: dict[str, tuple[Any, Any]], names: Iterable[str]) -> list[inspect.Parameter]:
    """Keyword parameters as Typer reads them: each name's option (an ``Annotated`` type) and
    default in ``table``.
    """
    keyword = inspect.Parameter.KEYWORD_ONLY
    return [
        inspect.Parameter(name, keyword, default=table[name][1], annotation=table[name][0])
        for name in names
    ]


def declare(function: Callable[..., None], params: list[inspect.Parameter]) -> Callable[..., None]:
    """``function`` as Typer reads it: taking ``params`` (it takes them as keywords)."""
    function.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    function.__annotations__ = {p.name: p.annotation for p in params}
    return function


def command(
    *,
    output_only: bool | Callable[[dict[str, Any]], bool] = False,
    logged: Callable[[dict[str, Any]], bool] | None = None,
) -> Callable[[Callable[..., int | None]], Callable[..., None]]:
    """A command's skeleton: its function takes the :class:`Run`, its options and the settings'
    its ``**where`` names, and returns its exit code (None: 0), under :func:`guarded`;
    ``output_only`` ones stop when stdout's reader goes; ``logged`` False for its options: no log
    file unless --log-file names one."""

    def wrap(body: Callable[..., int | None]) -> Callable[..., None]:
        @functools.wraps(body)
        def run_command(ctx: typer.Context, **options: Any) -> None:
            flags = command_flags(ctx, options)
            # merged: they go to the command
            paths = {key: flags.pop(key) for key in ("catalog", "dest")}
            options = {
                key: paths.get(key, value) for key, value in options.items() if key not in flags
            }
            # -H lines (get's ``header``) as parsed: masked in the logged command line, whatever
            # their spelling
            run = Run(
                **flags,
                command=ctx.info_name or "",
                headers=tuple(options.get("header") or ()),
                logged=logged is None or logged(options),
            )
            run.secrets.add(options.get("token"))  # (hf's --token, refused: never logged either)
            only = output_only(options) if callable(output_only) else output_only
            code = ran(run, body, options, output_only=only)
            if code:
                raise typer.Exit(code)

        keyword, params = (
            inspect.Parameter.KEYWORD_ONLY,
            list(inspect.signature(body).parameters.values())[1:],
        )
        own = [p.replace(kind=keyword) for p in params if p.kind != p.VAR_KEYWORD]
        group = keywords(WHERE, where_of(body))
        common = keywords(COMMON, list(COMMON))
        return declare(run_command, [CONTEXT, *own, *group, *common])

    return wrap
