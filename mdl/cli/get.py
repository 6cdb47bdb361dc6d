"""``mdl get``: one-off sources (URLs, hf:// files, serverless job outputs) into a folder; its
body is mdl.cli.plain's."""

from pathlib import Path
from typing import Annotated, Unpack

import typer

from mdl.cli.options import command
from mdl.cli.plain import get_files
from mdl.cli.run import Run
from mdl.setting import Getting


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
        typer.Option(
            "-d",
            "--dir",
            "--local-dir",
            help="Save files into this folder (default: current; --local-dir as hf download says).",
        ),
    ] = None,
    revision: Annotated[
        str | None,
        typer.Option(
            "--revision",
            help="Hub sources that name none: this branch, tag or commit (as hf://owner/name@REV).",
        ),
    ] = None,
    repo_type: Annotated[
        str | None,
        typer.Option(
            "--repo-type",
            help="Hub sources: model (default), dataset or space (as hf://datasets/owner/name).",
        ),
    ] = None,
    token: Annotated[str | None, typer.Option("--token", hidden=True)] = None,
    cache_dir: Annotated[Path | None, typer.Option("--cache-dir", hidden=True)] = None,
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
    return get_files(
        run,
        sources,
        output=output,
        directory=directory,
        revision=revision,
        repo_type=repo_type,
        token=token,
        cache_dir=cache_dir,
        sha256=sha256,
        include=include,
        exclude=exclude,
        force=force,
        header=header,
        input_file=input_file,
        **where,
    )
