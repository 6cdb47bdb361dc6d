"""``mdl get``: one-off sources (URLs, hf:// files, serverless job outputs) into a folder."""

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Unpack

import typer

from mdl import api
from mdl.cli.options import command
from mdl.cli.run import Run
from mdl.cli.summary import ok, render_report
from mdl.setting import Getting

if TYPE_CHECKING:
    from mdl.report import FileOutcome


@command()
def get_cmd(
    run: Run,
    sources: Annotated[
        list[str] | None,
        typer.Argument(
            help="https:// or s3:// URLs, hf://owner/name[@rev][/path] (a whole repo, or one file; "
            "hf://datasets/... and hf://spaces/... too), oci://REGISTRY/REPO:TAG or @sha256:… (a"
            " model in an OCI registry), or job-output JSON ('-' = stdin).",
            show_default=False,
        ),
    ] = None,
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="Save the (single) file here.")
    ] = None,
    directory: Annotated[
        Path | None,
        typer.Option("-d", "--dir", help="Save files into this folder (default: current)."),
    ] = None,
    sha256: Annotated[
        str | None, typer.Option("--sha256", help="Expected sha256 of the (single) file.")
    ] = None,
    include: Annotated[
        list[str] | None,
        typer.Option(
            "--include", help="Whole hf:// repo: only paths matching this glob (repeatable)."
        ),
    ] = None,
    exclude: Annotated[
        list[str] | None,
        typer.Option(
            "--exclude", help="Whole hf:// repo: leave out paths matching this glob (repeatable)."
        ),
    ] = None,
    force: Annotated[
        bool,
        typer.Option("--force", help="Replace files already there that differ (same bytes: kept)."),
    ] = False,
    header: Annotated[
        list[str] | None,
        typer.Option(
            "-H",
            "--header",
            help=(
                "Send 'Name: value' to the http(s) URLs given, on their origin only (repeatable, as"
                " curl -H)."
            ),
        ),
    ] = None,
    input_file: Annotated[
        str | None,
        typer.Option(
            "-i",
            "--input-file",
            help="Read more sources from FILE, one a line ('-' = stdin; '#' comments).",
        ),
    ] = None,
    **where: Unpack[Getting],
) -> int:
    """Fetch one-off sources: URLs, hf:// and s3:// files, whole hf:// repos, serverless job
    outputs.
    """
    from mdl.catalog.headers import check_headers, parse_header

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
        )
    # `P=$(mdl get URL)`: the data is where each file is
    return render_report(
        run, report, verb="fetched", data=lambda: run.line(*fetched_paths(report.files))
    )


def fetched_paths(outcomes: Sequence["FileOutcome"]) -> list[str]:
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
