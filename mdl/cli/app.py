"""The Typer app: the ``mdl`` object and its commands, each built from its module when used; the options spelled
alike in every command, their Tab completion, the common flags, and the :func:`command` skeleton."""

# No `from __future__ import annotations` in the modules that define commands: Typer reads each signature four
# times, and string annotations would be evaluated each time (~20 ms of every run, Tab included).
import difflib
import functools
import importlib
import inspect
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
import typer.main
from typer.core import TyperGroup

from mdl import api
from mdl.cli.run import ProgressChoice, Run, guarded
from mdl.version import __version__


def complete_model_names(ctx: typer.Context, incomplete: str) -> list[str]:
    """Model names starting with ``incomplete``, not yet on the line, from the catalog the command will read."""
    given = ctx.params.get("catalog") or ctx.find_root().params.get("catalog")
    typed = ctx.params.get("names") or ()
    try:
        catalog = api.load_catalog(Path(given) if given else None, environ=dict(os.environ))
    except Exception:  # noqa: BLE001 - a Tab press must never print a traceback into the user's prompt
        return []
    return [m.name for m in catalog.models if m.name.startswith(incomplete) and m.name not in typed]


def complete_checkpoints(incomplete: str) -> list[str]:
    """--checkpoint's keywords (a checkpoint's own name is taken too; Typer completes the Literal choices itself)."""
    return [value for value in ("latest", "best", "step:") if value.startswith(incomplete)]


# Options with fixed choices: a Literal shows them in --help (`--layout [plain|hf-cache]`), completes them on Tab,
# refuses anything else with exit 2 naming the option, and hands the command the plain string.
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
    ),
]
ConnectionsOpt = Annotated[
    int | None, typer.Option("--connections", help="Parallel ranges per big file (1-64, default 8).")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print exactly one JSON document on stdout.")]
CatalogOpt = Annotated[
    Path | None, typer.Option("--catalog", help="Catalog file (default: $MDL_CATALOG, ./catalog.toml, user config).")
]
DestOpt = Annotated[Path | None, typer.Option("--dest", help="Download root (default: $MDL_DEST, catalog, user data).")]
LogFileOpt = Annotated[
    Path | None, typer.Option("--log-file", help="Log file (default: $MDL_LOG_FILE or user log dir).")
]
NamesArg = Annotated[
    list[str] | None, typer.Argument(help="Model names from the catalog.", autocompletion=complete_model_names)
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


# The six flags every command takes, before or after its name (``mdl -q list`` = ``mdl list -q``): each one's
# name (its parameter in the root callback and in every command, and the Run field it sets), option and default.
COMMON: dict[str, tuple[Any, Any]] = {
    "json": (JsonOpt, False),
    "quiet": (QuietOpt, False),
    "verbose": (VerboseOpt, False),
    "no_progress": (NoProgressOpt, False),
    "progress": (ProgressOpt, None),
    "log_file": (LogFileOpt, None),
}
# The catalog's options, declared here once: after a command's own options, in this order; each command names
# those it takes (``where``) and its function gets them as keywords (``**where``, handed to the api as they are).
WHERE: dict[str, tuple[Any, Any]] = {
    "dest": (DestOpt, None),
    "layout": (LayoutOpt, None),
    "locked": (LockedOpt, False),
    "frozen": (FrozenOpt, False),
    "catalog": (CatalogOpt, None),
}
CONTEXT = inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context)


def command_flags(ctx: typer.Context) -> dict[str, Any]:
    """The command's common flags, --catalog and --dest merged with those before its name (``ctx.obj``): a switch
    counts wherever it is, a value after the command wins (as in curl and git); a value before a command without that
    option is a usage error (``mdl --dest D get URL`` would save into .), but --progress's."""
    before, own = ctx.obj or {}, ctx.params
    merged: dict[str, Any] = {}
    for name, (_, default) in (*COMMON.items(), ("catalog", WHERE["catalog"]), ("dest", WHERE["dest"])):
        value, earlier = own.get(name), before.get(name)
        if default is False:
            merged[name] = bool(earlier or value)
        elif value is None and earlier is not None and name not in own and name != "progress":
            flag = "--" + name.replace("_", "-")
            raise typer.BadParameter(f"mdl {ctx.info_name} does not take {flag}", ctx=ctx, param_hint=f"'{flag}'")
        else:
            merged[name] = earlier if value is None else value
    return merged


def keywords(table: dict[str, tuple[Any, Any]], names: Iterable[str]) -> list[inspect.Parameter]:
    """Keyword parameters as Typer reads them: each name's option (an ``Annotated`` type) and default in ``table``."""
    keyword = inspect.Parameter.KEYWORD_ONLY
    return [inspect.Parameter(name, keyword, default=table[name][1], annotation=table[name][0]) for name in names]


def declare(function: Callable[..., None], params: list[inspect.Parameter]) -> Callable[..., None]:
    """``function`` as Typer reads it: taking ``params`` (it takes them as keywords)."""
    function.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    function.__annotations__ = {p.name: p.annotation for p in params}
    return function


def command(
    *,
    where: tuple[str, ...] = tuple(WHERE),
    progress: bool = True,
    output_only: bool | Callable[[dict[str, Any]], bool] = False,
) -> Callable[[Callable[..., int | None]], Callable[..., None]]:
    """A command's skeleton: its function takes the :class:`Run`, its options and the catalog's in ``where``, and
    returns its exit code (None: 0), under :func:`guarded`; ``output_only`` ones stop when stdout's reader goes."""

    def wrap(body: Callable[..., int | None]) -> Callable[..., None]:
        @functools.wraps(body)
        def run_command(ctx: typer.Context, **options: Any) -> None:
            flags = command_flags(ctx)
            paths = {key: flags.pop(key) for key in ("catalog", "dest")}  # merged: they go to the command
            options = {key: paths.get(key, value) for key, value in options.items() if key not in flags}
            run = Run(**flags)
            with guarded(run, output_only=output_only(options) if callable(output_only) else output_only):
                code = body(run, **options)
                if code:
                    raise typer.Exit(code)

        keyword, params = inspect.Parameter.KEYWORD_ONLY, list(inspect.signature(body).parameters.values())[1:]
        own = [p.replace(kind=keyword) for p in params if p.kind != p.VAR_KEYWORD]
        group = keywords(WHERE, [name for name in WHERE if name in where])
        common = keywords(COMMON, [name for name in COMMON if progress or name != "progress"])
        return declare(run_command, [CONTEXT, *own, *group, *common])

    return wrap


# Each command's module and function (``<name>_cmd``), in help's order. A run builds only the command it runs
# (`mdl --help` and Tab build them all): building all thirteen at each start cost ~15 ms of `mdl get`.
COMMANDS = {
    name: (module, f"{name}_cmd")
    for module, names in (
        ("inspect", ("list", "show", "resolve")),
        ("download", ("pull", "verify", "clean")),
        ("lock", ("lock",)),
        ("get", ("get",)),
        ("archive", ("pack", "unpack")),
        ("edit", ("add", "remove")),
        ("publish", ("publish",)),
    )
    for name in names
}


# Each command's examples (those that run it), and `mdl --help`'s below; tests/cli/test_help.py parses them.
_COMMAND_EXAMPLES = (
    ("mdl list", "every model and its local status"),
    ("mdl list --status missing", "only the models not pulled yet"),
    ("mdl list --tag test --json", "as JSON, for programs"),
    ("mdl show tiny-bert", "files, sources, sizes, hashes, state"),
    ("mdl show tiny-bert --layout hf-cache", "as kept in the Hugging Face cache"),
    ("mdl show tiny-bert --json", "as JSON, for programs"),
    ("mdl resolve tiny-bert", "the files and URLs upstream"),
    ("mdl resolve --all --follow", "every model, with the CDN URLs"),
    ("mdl resolve tiny-bert --json", "as JSON, for programs"),
    ("mdl pull tiny-bert", "download, resume, verify"),
    ("mdl pull tiny-bert --dry-run", "what would be fetched, and why"),
    ("mdl pull --all --no-progress --limit-rate 50M", "every model, for cron"),
    ("mdl pull --all --locked", "as catalog.lock pins them"),
    ("mdl verify tiny-bert", "re-hash a model's files"),
    ("mdl verify --all --json", "every model, as JSON"),
    ("mdl clean --dry-run", "what would be removed"),
    ("mdl clean", "remove stale partial downloads"),
    ("mdl lock", "pin every model in catalog.lock"),
    ("mdl lock --upgrade tiny-bert", "move one model to its newest commit"),
    ("mdl lock --check", "in CI: exit 2 when the lock is stale"),
    ("mdl get https://example.com/lora.safetensors --sha256 HEX", "one file, checked"),
    ("mdl get hf://org/tiny/config.json -d cfg", "one Hub file into cfg/"),
    ("mdl get s3://bucket/models/w.bin -o w.bin", "one S3 object"),
    ("mdl get job.json -d lora --json", "a serverless job's outputs"),
    ("mdl pack runs/exp1 --checkpoint latest", "the newest complete checkpoint"),
    ("mdl pack runs/exp1 --checkpoint best --profile full", "with its training state"),
    ("mdl pack runs/exp1 --dry-run", "what would go in, and why"),
    ("mdl pack runs/exp1 -o - | ssh gpu mdl unpack - -d /models", "straight onto another machine"),
    ("mdl unpack exp1.zip -d /models", "extract and verify"),
    ("mdl unpack exp1.zip -d /models --force", "replace what is there"),
    ("mdl unpack - -d /models", "the zip from stdin (a pipe)"),
    ("mdl add tiny hf://org/tiny --include '*.json'", "a whole repo, some files"),
    ("mdl add z hf://org/repo/model.gguf", "one Hub file"),
    ("mdl add lora https://example.com/style.safetensors --sha256 HEX", "a URL, checked"),
    ("mdl remove lora", "downloaded files stay"),
    ("mdl remove lora --catalog deploy/catalog.toml", "from another catalog"),
    ("mdl publish tiny-bert --to s3://team-models/hub", "one model to a bucket"),
    ("mdl publish --all --to s3://bucket/hub --endpoint-url http://minio:9000", "to MinIO"),
)
EXAMPLES: dict[str, Sequence[tuple[str, str]]] = {
    "mdl": (
        ("mdl pull tiny-bert", "download a catalog model, verified"),
        ("mdl list", "what the catalog holds, and what is on disk"),
        ("mdl get https://example.com/lora.safetensors", "one file into ."),
        ("mdl help pull", "a command's options and examples"),
    ),
    **{name: [e for e in _COMMAND_EXAMPLES if e[0].split()[1] == name] for name in COMMANDS},
}

# Names people type from other tools' habits, and the commands that do that here (before difflib's guesses).
HABITS: dict[str, tuple[str, ...]] = {
    "download": ("pull", "get"),
    "fetch": ("get", "pull"),
    "install": ("pull",),
    "ls": ("list",),
    "rm": ("remove",),
    "delete": ("remove",),
    "info": ("show",),
    "check": ("verify",),
    "zip": ("pack",),
    "unzip": ("unpack",),
    "extract": ("unpack",),
    "upload": ("publish",),
    "push": ("publish",),
}


def epilog(name: str) -> str:
    """The examples of ``name`` as a help epilog (Click re-wraps no paragraph that starts with ``\\b``)."""
    return "\b\nExamples:\n" + "\n".join(f"  # {what}\n  {line}" for line, what in EXAMPLES[name])


def suggestions(name: str) -> list[str]:
    near = difflib.get_close_matches(name.lower(), COMMANDS, n=3, cutoff=0.6)
    return list(dict.fromkeys((*HABITS.get(name.lower(), ()), *near)))[:3]


def unknown_command(name: str) -> str:
    found = suggestions(name)
    if not found:
        return f"no such command {name!r} (mdl help lists them)"
    return f"no such command {name!r}; did you mean {', '.join(found[:-1]) + ' or ' if found[1:] else ''}{found[-1]}?"


def build_command(name: str) -> Any:
    """The Click command Typer makes of ``name``'s function, as ``app.command(name)`` would."""
    module, function = COMMANDS[name]
    one = typer.Typer(add_completion=False, rich_markup_mode=None, pretty_exceptions_enable=False)
    one.command(name, epilog=epilog(name))(getattr(importlib.import_module(f"mdl.cli.{module}"), function))
    return typer.main.get_command(one)


class MdlGroup(TyperGroup):
    """``mdl``: :data:`COMMANDS` built when used, ``mdl help [CMD]`` as ``mdl [CMD] --help``, the nearest suggested."""

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        self.commands: dict[str, Any] = dict.fromkeys(COMMANDS)  # in order; None until built

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        if cmd_name in self.commands and self.commands[cmd_name] is None:
            self.commands[cmd_name] = build_command(cmd_name)
        return self.commands.get(cmd_name)

    def resolve_command(self, ctx: Any, args: list[str]) -> tuple[str | None, Any, list[str]]:
        name = args[0] if args else ""
        if ctx.resilient_parsing or name.startswith("-") or name in self.commands:
            return super().resolve_command(ctx, args)  # (Tab completion included: `mdl help <Tab>` offers commands)
        if name != "help":
            ctx.fail(unknown_command(name))
        wanted = args[1:]
        if len(wanted) > 1:
            ctx.fail(f"mdl help takes one command, got {len(wanted)}: {' '.join(wanted)}")
        if not wanted or wanted[0] == "help":
            typer.echo(ctx.get_help())
            ctx.exit(0)
        if wanted[0] not in self.commands:
            ctx.fail(unknown_command(wanted[0]))
        return wanted[0], self.get_command(ctx, wanted[0]), ["--help"]


app = typer.Typer(
    name="mdl",
    cls=MdlGroup,
    help="Get model files onto the machines that need them — fast, resumable, verified — and pack checkpoints.",
    epilog=epilog("mdl"),
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


VersionOpt = Annotated[
    bool, typer.Option("--version", help="Print the version and exit.", callback=_version_callback, is_eager=True)
]


def _root(ctx: typer.Context, version: VersionOpt = False, **flags: Any) -> None:
    """The common flags, --catalog and --dest given before the command, kept for it to merge with its own."""
    ctx.obj = flags


# --version, the common flags, --catalog and --dest: the root takes the common flags as every command takes them.
root_params = [*inspect.signature(_root).parameters.values()][:2]
app.callback()(declare(_root, [*root_params, *keywords(COMMON, COMMON), *keywords(WHERE, ("catalog", "dest"))]))
