"""The Typer app: the ``mdl`` object, its global options, and its commands, each built from its
module when used.
"""

# No `from __future__ import annotations` in the modules that define commands: Typer reads each
# signature four times, and string annotations would be evaluated each time (~20 ms of every run,
# Tab included).
import importlib
import inspect
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any

import typer
import typer.main
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption

from mdl.cli.options import COMMON, WHERE, declare, keywords, metavar, one_value
from mdl.cli.plain import plain
from mdl.errors import EXIT_MEANINGS
from mdl.version import __version__

# Each command's module and function (``<name>_cmd``), in help's order. A run builds only the
# command it runs (`mdl --help` and Tab build them all): building them all at each start cost ~15 ms
# of `mdl get`.
COMMANDS = {
    name: (module, f"{name}_cmd")
    for module, names in (
        ("inspect", ("list", "show", "resolve")),
        ("download", ("pull", "verify", "clean", "prune")),
        ("lock", ("lock",)),
        ("get", ("get",)),
        ("archive", ("pack", "unpack")),
        ("edit", ("init", "add", "remove")),
        ("publish", ("publish",)),
        ("serve", ("serve",)),
    )
    for name in names
}


# Each command's examples (those that run it), and `mdl --help`'s below; tests/cli/test_help.py
# parses them.
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
    ("mdl pull --all --frozen --lock releases/v1.lock", "roll back to a kept lock"),
    ("mdl verify tiny-bert", "re-hash a model's files"),
    ("mdl verify --all --json", "every model, as JSON"),
    ("mdl clean --dry-run", "what would be removed"),
    ("mdl clean", "remove stale partial downloads"),
    ("mdl prune --dry-run", "what the catalog no longer names"),
    ("mdl prune", "remove it (only files mdl wrote)"),
    ("mdl prune --layout hf-cache --json", "in the Hugging Face cache, as JSON"),
    ("mdl prune --mirror 's3://b/hub/{model}/{sha256}' --dry-run", "what each kept version costs"),
    ("mdl lock", "pin every model in catalog.lock"),
    ("mdl lock --upgrade tiny-bert", "move one model to its newest commit"),
    ("mdl lock --check", "in CI: exit 2 when the lock is stale"),
    ("mdl get https://example.com/lora.safetensors --sha256 HEX", "one file, checked"),
    ("mdl get Qwen/Qwen3-0.6B -d qwen", "a whole Hub repo into qwen/ (as hf download)"),
    ("mdl get hf://org/tiny --revision v1 --include '*.json'", "at a tag, some files"),
    ("mdl get hf://datasets/org/corpus -d corpus", "a dataset (or --repo-type dataset)"),
    ("mdl get hf://org/tiny/config.json -d cfg", "one Hub file into cfg/"),
    ("mdl get s3://bucket/models/w.bin -o w.bin", "one S3 object"),
    ("mdl get job.json -d lora --json", "a serverless job's outputs"),
    ("mdl pack runs/exp1 --checkpoint latest", "the newest complete checkpoint"),
    ("mdl pack runs/exp1 --checkpoint best --profile full", "with its training state"),
    ("mdl pack runs/exp1 --dry-run", "what would go in, and why"),
    ("mdl pack runs/exp1 --checkpoint best --sign key.pem", "with a model.sig (OpenSSF)"),
    ("mdl pack runs/exp1 -o - | ssh gpu mdl unpack - -d /models", "straight onto another machine"),
    ("mdl unpack exp1.zip -d /models", "extract and verify"),
    ("mdl unpack exp1.zip -d /models --force", "replace what is there"),
    ("mdl unpack exp1.zip -d /models --signed-by key.pub", "only if that key signed it"),
    ("mdl unpack - -d /models", "the zip from stdin (a pipe)"),
    ("mdl init", "a starter catalog, read from any folder"),
    ("mdl init --catalog ./catalog.toml", "one for this project"),
    ("mdl add tiny hf://org/tiny --include '*.json'", "a whole repo, some files"),
    ("mdl add z hf://org/repo/model.gguf", "one Hub file"),
    ("mdl add lora https://example.com/style.safetensors --sha256 HEX", "a URL, checked"),
    (
        "mdl add tiny --description 'Tiny BERT for tests' --tag test --tag nlp",
        "describe and tag an entry",
    ),
    ("mdl remove lora", "downloaded files stay"),
    ("mdl remove lora --prune", "and its downloaded files go"),
    ("mdl remove lora --catalog deploy/catalog.toml", "from another catalog"),
    ("mdl publish tiny-bert --to s3://team-models/hub", "one model to a bucket"),
    ("mdl publish --all --to s3://bucket/hub --endpoint-url http://minio:9000", "to MinIO"),
    (
        "mdl publish tiny-bert --to s3://team-models/hub --sign signing-key.pem",
        "with an OpenSSF model signature",
    ),
    ("mdl serve tiny-bert --pull", "serve it to loaders as S3 while it downloads"),
    ("mdl serve --all --port 0 --env-file mdl.env", "every model on disk, any free port"),
)
EXAMPLES: dict[str, Sequence[tuple[str, str]]] = {
    "mdl": (
        ("mdl get Qwen/Qwen3-0.6B -d qwen", "a Hub repo into qwen/, verified (as hf download)"),
        ("mdl init", "write a starter catalog (once)"),
        ("mdl pull tiny-bert", "download a catalog model, verified"),
        ("mdl list", "what the catalog holds, and what is on disk"),
        ("mdl get https://example.com/lora.safetensors", "one file into ."),
        ("mdl help pull", "a command's options and examples"),
    ),
    **{name: [e for e in _COMMAND_EXAMPLES if e[0].split()[1] == name] for name in COMMANDS},
}

# Names people type from other tools' habits, and the commands that do that here (before difflib's
# guesses).
HABITS: dict[str, tuple[str, ...]] = {
    "download": ("pull", "get"),
    "new": ("init",),
    "create": ("init", "add"),
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
    "server": ("serve",),
}


def epilog(name: str) -> str:
    """The examples of ``name`` as a help epilog (Click re-wraps no paragraph that starts with
    ``\\b``); ``mdl``'s exit codes after its own (:data:`mdl.errors.EXIT_MEANINGS`)."""
    text = "\b\nExamples:\n" + "\n".join(f"  # {what}\n  {line}" for line, what in EXAMPLES[name])
    if name == "mdl":
        codes = [f"  {int(code):>3}  {what}" for code, what in EXIT_MEANINGS.items()]
        text += "\n\n\b\nExit codes:\n" + "\n".join(codes)
    return text


def suggestions(name: str) -> list[str]:
    import difflib  # (~2 ms: only a mistyped command needs it)

    near = difflib.get_close_matches(name.lower(), COMMANDS, n=3, cutoff=0.6)
    return list(dict.fromkeys((*HABITS.get(name.lower(), ()), *near)))[:3]


def unknown_command(name: str) -> str:
    found = suggestions(name)
    if not found:
        return f"no such command {name!r} (mdl help lists them)"
    return (
        f"no such command {name!r}; did you mean"
        f" {', '.join(found[:-1]) + ' or ' if found[1:] else ''}{found[-1]}?"
    )


def build_command(name: str) -> Any:
    """The Click command Typer makes of ``name``'s function, as ``app.command(name)`` would."""
    module, function = COMMANDS[name]
    one = typer.Typer(add_completion=False, rich_markup_mode=None, pretty_exceptions_enable=False)
    body = getattr(importlib.import_module(f"mdl.cli.{module}"), function)
    one.command(name, cls=MdlCommand, epilog=epilog(name))(body)
    return typer.main.get_command(one)


def worded(command: Any) -> None:
    """Each value of ``command`` named by a word in its --help (:func:`mdl.cli.options.metavar`),
    not ``<str>``.
    """
    if not command.callback:  # nothing declared
        return
    declared = inspect.signature(command.callback, eval_str=True).parameters
    for param in command.params:
        named = param.metavar is not None or getattr(param, "is_flag", False)
        if not named and param.name in declared:
            param.metavar = metavar(param.name, declared[param.name].annotation)


def given(param: Any, ctx: Any, value: Any, convert: Callable[[Any, Any], Any]) -> Any:
    """``param``'s value as Typer converts it, without Typer where that is plain: nothing given
    (None, or ``()`` for a list), or text for a text or path parameter (:func:`plain`); else
    ``convert`` (Typer's). Typer 0.29 converts every value through a pydantic TypeAdapter, built
    even for None: a plain ``mdl get URL`` would import pydantic for that alone (~0.1 CPU-s)."""
    multiple = param.multiple or param.nargs == -1
    if value is not None and not _plain_all(param, value, multiple):
        return convert(ctx, value)
    if value is None:
        value = () if multiple else None
    else:
        value = [param.given_as(v) for v in value] if multiple else param.given_as(value)
    if param.required and param.value_is_missing(value):
        return convert(ctx, value)  # Typer says what is missing
    return param.callback(ctx, param, value) if param.callback else value


def _plain_all(param: Any, value: Any, multiple: bool) -> bool:
    """Whether ``value`` needs no Typer: a list exactly when ``param`` takes many, each item
    plain (:func:`plain`)."""
    listed = isinstance(value, (list, tuple))
    values = value if multiple and listed else (value,)
    return multiple == listed and all(plain(param.given_as, v) for v in values)


class GivenOption(TyperOption):
    """An option converted by :func:`given`."""

    given_as: type | None = None

    def process_value(self, ctx: Any, value: Any) -> Any:
        return given(self, ctx, value, super().process_value)


class GivenArgument(TyperArgument):
    """An argument converted by :func:`given`."""

    given_as: type | None = None

    def process_value(self, ctx: Any, value: Any) -> Any:
        return given(self, ctx, value, super().process_value)


GIVEN: dict[type, type] = {TyperOption: GivenOption, TyperArgument: GivenArgument}


def plain_kinds(command: Any) -> dict[str, type]:
    """The parameters of ``command`` declared as text or a path (``str``, ``Path | None``,
    ``list[str] | None`` …): each one's type."""
    if not command.callback:
        return {}
    declared = inspect.signature(command.callback, eval_str=True).parameters
    kinds = {name: one_value(p.annotation) for name, p in declared.items()}
    return {name: kind for name, kind in kinds.items() if kind in (str, Path)}


def as_given(params: list[Any], kinds: dict[str, type]) -> list[Any]:
    """``params`` (Typer's, its help and completion options too), each converted by
    :func:`given`, as its type in ``kinds``."""
    for param in params:
        given_class = GIVEN.get(type(param))
        if given_class is not None:
            param.__class__ = given_class
            param.given_as = kinds.get(param.name)
    return params


def _shown(argument: Any, *, usage: bool = False) -> str:
    """``SOURCE...``; on the usage line an optional one in brackets, as Click writes it:
    ``[NAME]...``.
    """
    word = f"[{argument.metavar}]" if usage and not argument.required else argument.metavar
    return word + ("..." if argument.nargs != 1 else "")


class MdlCommand(TyperCommand):
    """A command whose help names its values with words: ``mdl add [OPTIONS] NAME SOURCE...``,
    ``--tag TAG``.
    """

    def __init__(self, *args: Any, **attrs: Any) -> None:
        super().__init__(*args, **attrs)
        worded(self)
        self.kinds = plain_kinds(self)

    def get_params(self, ctx: Any) -> list[Any]:
        return as_given(super().get_params(ctx), self.kinds)

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        """``[OPTIONS]`` and the arguments as Click writes them (Typer's ``{name}`` for a
        required one is no word).
        """
        arguments = [p for p in self.get_params(ctx) if p.param_type_name == "argument"]
        return [self.options_metavar or "", *(_shown(a, usage=True) for a in arguments)]

    def format_options(self, ctx: Any, formatter: Any) -> None:
        """Arguments, then options, each with its help; an argument by its word alone (no
        ``<str>`` after it).
        """
        rows: dict[str, list[tuple[str, str]]] = {"argument": [], "option": []}
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is not None and param.param_type_name in rows:
                argument = (
                    (_shown(param), record[1]) if param.param_type_name == "argument" else record
                )
                rows[param.param_type_name].append(argument)
        for title, kind in (("Arguments", "argument"), ("Options", "option")):
            if rows[kind]:
                with formatter.section(title):
                    formatter.write_dl(rows[kind])


class MdlGroup(TyperGroup):
    """``mdl``: :data:`COMMANDS` built when used, ``mdl help [CMD]`` as ``mdl [CMD] --help``, the
    nearest suggested.
    """

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        self.commands: dict[str, Any] = dict.fromkeys(COMMANDS)  # in order; None until built
        worded(self)
        self.kinds = plain_kinds(self)

    def get_params(self, ctx: Any) -> list[Any]:
        return as_given(super().get_params(ctx), self.kinds)

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        """Each command with the first sentence of its help, whole (Click cuts it to the width
        with "...").
        """
        rows = [
            (name, self.get_command(ctx, name).get_short_help_str(limit=sys.maxsize))
            for name in self.commands
        ]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        if cmd_name in self.commands and self.commands[cmd_name] is None:
            self.commands[cmd_name] = build_command(cmd_name)
        return self.commands.get(cmd_name)

    def resolve_command(self, ctx: Any, args: list[str]) -> tuple[str | None, Any, list[str]]:
        name = args[0] if args else ""
        if ctx.resilient_parsing or name.startswith("-") or name in self.commands:
            # (Tab completion included: `mdl help <Tab>` offers commands)
            return super().resolve_command(ctx, args)
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
    help=(
        "Get model files onto the machines that need them — fast, resumable, verified — and pack"
        " checkpoints.\n\n"
        "\b\nA Hub repo (as hf download owner/name --local-dir DIR):\n"
        "  mdl get owner/name -d DIR\n"
        "  mdl get owner/name/config.json       (one file)\n"
        "  mdl get hf://datasets/owner/name     (a dataset)\n"
        "A catalog of models: mdl init; mdl add NAME hf://owner/name; mdl pull NAME"
    ),
    epilog=epilog("mdl"),
    no_args_is_help=True,
    # Typer's own --install-completion / --show-completion (bash, zsh, fish, PowerShell)
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version_callback(value: bool) -> None:
    if value:
        sys.stdout.write(f"mdl {__version__}\n")
        raise typer.Exit(0)


VersionOpt = Annotated[
    bool,
    typer.Option(
        "--version", help="Print the version and exit.", callback=_version_callback, is_eager=True
    ),
]


def _root(ctx: typer.Context, version: VersionOpt = False, **flags: Any) -> None:
    """The common flags, --catalog and --dest given before the command, kept for it to merge with
    its own.
    """
    ctx.obj = flags


# --version, the common flags, --catalog and --dest: the root takes the common flags as every
# command takes them.
root_params = [*inspect.signature(_root).parameters.values()][:2]
app.callback()(
    declare(_root, [*root_params, *keywords(COMMON, COMMON), *keywords(WHERE, ("catalog", "dest"))])
)
