"""``mdl get``: one-off sources (URLs, hf:// files, serverless job outputs) into a folder."""

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Unpack

import typer

from mdl import api
from mdl.cli.options import command
from mdl.cli.run import Run
from mdl.cli.summary import ok, render_report
from mdl.errors import UsageError
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
