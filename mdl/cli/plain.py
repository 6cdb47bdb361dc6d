"""The bodies of ``mdl get``, ``mdl pull`` and ``mdl verify``, and their plainest command lines run
without Typer (Typer and its command are ~0.03 of a tiny get's 0.2 CPU-s, and of the readiness
probe's): ``get SOURCE...`` with ``-o FILE``, ``-d DIR``, ``--sha256 HEX``; ``pull [NAME...]``
with ``--all``; ``verify [NAME...]`` with ``--all``, ``--quick``, ``--locked``; both with
``--catalog FILE`` and ``--dest DIR`` (a cron line's places); ``-q`` with each.
Those lines are a subset of each command's: each token means what it means to Typer, and anything
else is Typer's (tests/cli/test_plain.py runs each both ways)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Unpack

from mdl import api
from mdl.cli.render.console import isatty
from mdl.cli.run import Run, ended, ran
from mdl.cli.summary import ok, render_report, units
from mdl.cli.translate import translate
from mdl.errors import UsageError

if TYPE_CHECKING:
    from mdl.report import FileOutcome
    from mdl.setting import Getting, Pinned, Pulling

# Each plain command's options a plain line may give, each once, as a separate token (the
# commands' own spellings, which tests/cli/test_plain.py holds to Typer's): the parameter each
# fills; those in VALUED take the next token (a path), the others are switches. WORDS: the
# parameter the other words fill.
LINES: dict[str, dict[str, str]] = {
    "get": {
        "-o": "output",
        "--output": "output",
        "-d": "directory",
        "--dir": "directory",
        "--sha256": "sha256",
    },
    "pull": {"--all": "all_models", "--catalog": "catalog", "--dest": "dest"},
    "verify": {
        "--all": "all_models",
        "--quick": "quick",
        "--locked": "locked",
        "--catalog": "catalog",
        "--dest": "dest",
    },
}
WORDS = {"get": "sources", "pull": "names", "verify": "names"}
VALUED = ("output", "directory", "sha256", "catalog", "dest")
TEXT = ("sha256",)  # (valued options whose value Typer hands on as text, not as a path)
QUIET = ("-q", "--quiet")


def plain(kind: type | None, value: object) -> bool:
    """Whether Typer converts ``value`` to ``kind`` by calling it: text as text, a path Typer
    would not refuse (one that exists but cannot be read is refused: exit 2)."""
    if kind is None or not isinstance(value, str) or "\0" in value:
        return False  # (a NUL: Typer says why it is no path)
    # (os.path: False for a name with a NUL, which Path.exists raises on)
    return kind is str or not os.path.exists(value) or os.access(value, os.R_OK)  # noqa: PTH110


def recognised(argv: Sequence[str], environ: Mapping[str, str]) -> dict[str, Any] | None:
    """The command (``command``), ``quiet`` and the command's options as Typer would hand them on
    for ``argv`` (``sys.argv[1:]``), when it is a plain line (:data:`LINES`); else None."""
    flags = LINES.get(argv[0]) if argv else None
    if flags is None or "_MDL_COMPLETE" in environ:  # (Tab completion is Typer's)
        return None
    words = WORDS[argv[0]]
    given: dict[str, Any] = {"command": argv[0], "quiet": False, words: []}
    tokens = iter(argv[1:])
    for token in tokens:
        name, value = _meaning(token, tokens, flags, words)
        if value is None:
            return None
        if name == words:
            given[words].append(value)
        elif given.get(name) not in (None, False):
            return None  # given twice: Typer's
        else:
            given[name] = value
    return given if given[words] or words != "sources" else None


def _meaning(
    token: str, tokens: Iterator[str], flags: dict[str, str], words: str
) -> tuple[str, Any]:
    """The parameter ``token`` fills (``words`` for a word) and its value (a valued option's: the
    next of ``tokens``, as Typer hands on a path); a value of None: the line is Typer's (an
    option's spelling not in ``flags``, a flag's spelling as a path, a value Typer would refuse)."""
    name = "quiet" if token in QUIET else flags.get(token)
    if name in VALUED:
        value = next(tokens, "-")
        kind = str if name in TEXT else Path
        return name, None if value.startswith("-") or not plain(kind, value) else kind(value)
    if name is not None:
        return name, True
    return words, None if token.startswith("-") or not plain(str, token) else token


def run_plainly(given: dict[str, Any]) -> int:
    """The exit code of the line :func:`recognised` found, run as Typer runs it (:func:`ran`)."""
    options = dict(given)
    command, quiet = options.pop("command"), options.pop("quiet")
    body, output_only = BODIES[command]
    try:
        # (a probe, verify --quick, writes no log unless --log-file names one, as its command says)
        run = Run(quiet=quiet, command=command, logged=not options.get("quick"))
        code = ran(run, body, options, output_only=output_only and not options.get("quick"))
    except (Exception, KeyboardInterrupt) as exc:  # noqa: BLE001 - translated, as by invoke
        code = translate(exc)
    return ended(code)


def get_files(
    run: Run,
    sources: Sequence[str] | None,
    *,
    output: Path | None = None,
    directory: Path | None = None,
    revision: str | None = None,
    repo_type: str | None = None,
    token: str | None = None,
    cache_dir: Path | None = None,
    sha256: str | None = None,
    include: Sequence[str] | None = None,
    exclude: Sequence[str] | None = None,
    force: bool = False,
    header: Sequence[str] | None = None,
    input_file: str | None = None,
    **where: Unpack[Getting],
) -> int:
    """``mdl get``: fetch one-off sources, the path of each file on stdout."""
    from mdl.catalog.headers import check_headers, parse_header

    refuse_hf_only(token=token, cache_dir=cache_dir)
    headers = dict(check_headers((parse_header(line) for line in header or ()), where="--header"))
    with run.reporter() as progress:
        report = api.get(
            *(sources or ()),
            output=output,
            directory=directory,
            sha256=sha256,
            **where,
            environ=run.environ,
            progress=progress,
            force=force,
            include=include or (),
            exclude=exclude or (),
            headers=headers,
            input_file=input_file,
            secrets=run.secrets,
            revision=revision,
            repo_type=repo_type,
        )
    # `P=$(mdl get URL)`: the data is where each file is
    return render_report(
        run, report, verb="fetched", data=lambda: run.line(*fetched_paths(report.files))
    )


def refuse_hf_only(*, token: str | None, cache_dir: Path | None) -> None:
    """hf download's flags mdl spells otherwise: exit 2 naming mdl's spelling."""
    if token is not None:  # (its value is never said: a secret on a command line)
        raise UsageError(
            "--token: mdl reads the token from HF_TOKEN (or the file `hf auth login` wrote), not"
            " from a flag, which other users can see in the process list",
            hint="HF_TOKEN=... mdl get ...",
        )
    if cache_dir is not None:
        raise UsageError(
            "--cache-dir: mdl get saves into a folder (-d DIR); the Hugging Face cache is"
            " HF_HUB_CACHE (HF_HOME/hub), filled by --layout hf-cache",
            hint=f"HF_HUB_CACHE={cache_dir} mdl get ... --layout hf-cache",
        )


def fetched_paths(outcomes: Sequence[FileOutcome]) -> list[str]:
    """Each file ``get`` has (fetched, or skipped as the same file), in order, and once the folder
    of a whole repo that is all there (as ``hf download`` prints it), in place of its files: its
    stdout."""
    broken = {f.within for f in outcomes if f.within is not None and not ok([f])}
    paths = [
        f.within or f.dest
        for f in outcomes
        if f.dest is not None and ok([f]) and f.within not in broken
    ]
    return list(dict.fromkeys(p for p in paths if p is not None))


def verify_files(
    run: Run,
    names: Sequence[str] | None = None,
    *,
    all_models: bool = False,
    quick: bool = False,
    **where: Unpack[Pinned],
) -> int:
    """``mdl verify``: the files re-hashed (or, ``quick``, judged by their records), a row each."""
    # Off a terminal (a pipe, a file), each row is written as soon as its file is hashed, so `mdl
    # verify --all | head -1` ends at the first row; on a terminal the table follows the progress
    # display. A probe (--quick) prints no row: its answer is its exit code and one line.
    streaming = not run.json and not isatty(run.stdout)

    def row(outcome: FileOutcome) -> None:
        if streaming and not outcome.failing:
            run.line(f"{outcome.action}  {outcome.sha256 or '-'}  {outcome.model}/{outcome.path}")
            run.stdout.flush()

    with run.reporter() as progress:
        report = api.verify(
            *(names or ()),
            all=all_models,
            **where,
            environ=run.environ,
            progress=progress,
            on_file=None if quick else row,
            quick=quick,
        )

    def table() -> None:  # on a terminal, after the progress display: the files that are right
        rows = [f.to_json() for f in report.files if not f.failing]
        if rows:
            run.table(
                rows,
                [("action", "RESULT"), ("model", "MODEL"), ("path", "PATH"), ("sha256", "SHA256")],
            )

    data = None if streaming or quick else table
    return render_report(run, report, verb="checked" if quick else "verified", data=data)


def pull_files(
    run: Run,
    names: Sequence[str] | None = None,
    *,
    all_models: bool = False,
    no_verify: bool = False,
    force: bool = False,
    unsigned: bool = False,
    dry_run: bool = False,
    **where: Unpack[Pulling],
) -> int:
    """``mdl pull``: the catalog's models onto this disk, the folder of each on stdout."""
    with run.reporter() as progress:
        report = api.pull(
            *(names or ()),
            all=all_models,
            verify=not no_verify,
            force=force,
            unsigned=unsigned,
            dry_run=dry_run,
            **where,
            environ=run.environ,
            progress=progress,
            secrets=run.secrets,
        )
    # `DIR=$(mdl pull tiny)`: the data is where each model is
    return render_report(
        run, report, verb="pulled", data=lambda: run.line(*model_folders(report.files))
    )


def model_folders(outcomes: Sequence[FileOutcome]) -> list[str]:
    """The folder of each model that is all here (each of its folders if several), in order:
    ``pull``'s stdout.
    """
    # with its paths and redaction: ~7 ms that --help and list need not pay
    from mdl.report import folder

    folders: list[str] = []
    for unit in units(outcomes).values():
        files = [f for f in unit if f.path is not None and f.dest is not None]
        if unit[0].model and files and ok(unit):
            folders.extend(str(folder(f) or Path(str(f.dest)).parent) for f in files)
    return list(dict.fromkeys(folders))


# each plain command's body, and whether it stops when stdout's reader goes (as its command says;
# a probe, verify --quick, prints nothing there: its answer is its exit code)
BODIES: dict[str, tuple[Callable[..., int], bool]] = {
    "get": (get_files, False),
    "pull": (pull_files, False),
    "verify": (verify_files, True),
}
