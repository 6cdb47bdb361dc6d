"""``mdl get``'s body, and its plainest command lines run without Typer: ``get SOURCE...`` with
``-o FILE``, ``-d DIR`` and ``-q`` (the command that runs most; Typer and its command are ~0.03 of
its 0.2 CPU-s). Those lines are a subset of get's: each token means what it means to Typer, and
anything else is Typer's (tests/cli/test_plainget.py runs each both ways)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Unpack

from mdl import api
from mdl.cli.run import Run, ended, ran
from mdl.cli.summary import ok, render_report
from mdl.errors import UsageError

if TYPE_CHECKING:
    from mdl.report import FileOutcome
    from mdl.setting import Getting

# get's options a plain line may give, each once, as a separate token: its parameter (get's own
# spellings, which tests/cli/test_plainget.py holds to Typer's command)
VALUES = {"-o": "output", "--output": "output", "-d": "directory", "--dir": "directory"}
QUIET = ("-q", "--quiet")


def plain(kind: type | None, value: object) -> bool:
    """Whether Typer converts ``value`` to ``kind`` by calling it: text as text, a path Typer
    would not refuse (one that exists but cannot be read is refused: exit 2)."""
    if kind is None or not isinstance(value, str) or "\0" in value:
        return False  # (a NUL: Typer says why it is no path)
    # (os.path: False for a name with a NUL, which Path.exists raises on)
    return kind is str or not os.path.exists(value) or os.access(value, os.R_OK)  # noqa: PTH110


def recognised(argv: Sequence[str], environ: Mapping[str, str]) -> dict[str, Any] | None:
    """``get``'s options (and ``quiet``) as Typer would hand them on for ``argv``
    (``sys.argv[1:]``), when it is a plain line (:data:`VALUES`, :data:`QUIET`, sources); else
    None."""
    if argv[:1] != ["get"] or "_MDL_COMPLETE" in environ:  # (Tab completion is Typer's)
        return None
    given: dict[str, Any] = {"quiet": False, "sources": []}
    words = iter(argv[1:])
    for word in words:
        if word in QUIET and not given["quiet"]:
            given["quiet"] = True
        elif word in VALUES and VALUES[word] not in given:
            value = next(words, "-")
            if value.startswith("-") or not plain(Path, value):
                return None
            given[VALUES[word]] = Path(value)
        elif word.startswith("-") or not plain(str, word):
            return None
        else:
            given["sources"].append(word)
    return given if given["sources"] else None


def get_plainly(given: dict[str, Any]) -> int:
    """The exit code of the get :func:`recognised` found, run as Typer runs it (:func:`ran`)."""
    options = dict(given)
    run = Run(quiet=options.pop("quiet"), command="get")
    return ended(ran(run, get_files, options))


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
