"""``mdl pack`` and ``mdl unpack``: a training run into a deploy zip, and a zip safely back onto
disk.
"""

import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from mdl import api
from mdl.cli.options import CompressChoice, DryRunOpt, ProfileChoice, command, complete_checkpoints
from mdl.cli.run import Run
from mdl.errors import UsageError
from mdl.paths import shown_name
from mdl.units import human_size, plural

if TYPE_CHECKING:
    from mdl.archive.packer import PackResult

SHOWN_LEFT_OUT = 6  # paths named per reason on stderr; --json lists them all


@command(output_only=lambda options: str(options["output"]) == "-")
def pack_cmd(
    run: Run,
    run_dir: Annotated[Path, typer.Argument(help="The training run folder.")],
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="Archive path ('-' = stdout).")
    ] = None,
    checkpoint: Annotated[
        list[str] | None,
        typer.Option(
            "--checkpoint",
            help="NAME, latest, best or step:N (default: the run's own files); once.",
            autocompletion=complete_checkpoints,
        ),
    ] = None,
    profile: Annotated[
        ProfileChoice, typer.Option("--profile", help="deploy (no training state) or full.")
    ] = "deploy",
    with_logs: Annotated[
        bool, typer.Option("--with-logs", help="Add the run's logs under logs/.")
    ] = False,
    include: Annotated[
        list[str] | None,
        typer.Option("--include", help="Also pack the run's files matching GLOB (repeatable)."),
    ] = None,
    exclude: Annotated[
        list[str] | None,
        typer.Option("--exclude", help="Leave out files matching GLOB (repeatable)."),
    ] = None,
    compress: Annotated[
        CompressChoice,
        typer.Option("--compress", help="auto (store weights, deflate text), none or deflate."),
    ] = "auto",
    dry_run: DryRunOpt = False,
    force: Annotated[
        bool, typer.Option("--force", help="Replace an archive already at the output path.")
    ] = False,
    sign: Annotated[
        Path | None,
        typer.Option(
            "--sign", help="Sign the packed files into model.sig with this EC private key (PEM)."
        ),
    ] = None,
) -> None:
    """Zip a trained model or one checkpoint for deployment: the right files, safely,
    deterministically.
    """
    to_stdout = output is not None and str(output) == "-"
    chosen = _one_checkpoint(checkpoint or [])
    if to_stdout and run.json:
        raise UsageError("-o - writes the archive to stdout; it cannot be combined with --json")
    with run.reporter() as progress:
        result = api.pack(
            run_dir,
            output=output,
            stream=sys.stdout.buffer if to_stdout else None,
            checkpoint=chosen,
            profile=profile,
            with_logs=with_logs,
            include=include or (),
            exclude=exclude or (),
            compress=compress,
            dry_run=dry_run,
            force=force,
            sign=sign,
            environ=run.environ,
            progress=progress,
        )
    doc = result.to_json()
    if run.json:
        run.emit(doc)
        return
    if not to_stdout:
        rows = [{**f, "size": human_size(f["size"])} for f in doc["files"]]
        run.table(rows, [("path", "PATH"), ("role", "ROLE"), ("size", "SIZE")])
    say_left_out(run, doc["skipped"])
    run.console.info(packed_line(result, dry_run=dry_run))


def _one_checkpoint(given: list[str]) -> str | None:
    """The one --checkpoint given, if any: never the last of many silently (an archive is one
    model)."""
    if len(given) > 1:
        raise UsageError(
            f"--checkpoint given {len(given)} times ({', '.join(map(repr, given))}): an archive"
            " holds one checkpoint as its model",
            hint="add another's files with --include 'checkpoint-N/' (they keep their folder)",
        )
    return given[0] if given else None


def say_left_out(run: Run, skipped: Sequence[Mapping[str, object]]) -> None:
    """What is not in the archive, a line per reason: checkpoints `latest` passed over, then what
    the profile left out."""
    by_reason: dict[str, list[str]] = {}
    for item in skipped:
        by_reason.setdefault(str(item["reason"]), []).append(shown_name(str(item["path"])))
    for reason, paths in by_reason.items():
        more = len(paths) - SHOWN_LEFT_OUT
        shown = paths[:SHOWN_LEFT_OUT] + ([f"and {more} more"] if more > 0 else [])
        run.console.info(f"left out {', '.join(shown)}: {reason}")


def packed_line(result: "PackResult", *, dry_run: bool) -> str:
    """The summary: what was (or would be) written, its files and signature, and which checkpoint
    why."""
    chosen = (
        f"checkpoint {result.checkpoint} ({result.reason})" if result.checkpoint else result.reason
    )
    count = plural(len(result.files), "file")
    if dry_run:  # the archive's own size is known once written; what goes in is known now
        content = human_size(sum(f.size for f in result.files))
        signed = f" and {result.signature}, signing them" if result.signature else ""
        return (
            f"would write {shown_name(result.archive)} ({count}{signed}, {content} before"
            f" compression); {chosen}"
        )
    signed = f", signed: {result.signature}" if result.signature else ""
    return (
        f"wrote {shown_name(result.archive)} ({human_size(result.size)}, {count}{signed}); {chosen}"
    )


@command()
def unpack_cmd(
    run: Run,
    archive: Annotated[
        Path, typer.Argument(help="The zip archive ('-' = read it from stdin, a pipe).")
    ],
    directory: Annotated[
        Path | None,
        typer.Option("-d", "--dir", help="Extract into this folder (default: current)."),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Replace what the archive's top-level entries name.")
    ] = False,
    max_ratio: Annotated[
        float | None,
        typer.Option(
            "--max-ratio",
            metavar="N",
            help=(
                "Refuse entries, or the whole archive, expanding more than N:1 (default 200; 'inf'"
                " turns it off)."
            ),
        ),
    ] = None,
    signed_by: Annotated[
        Path | None,
        typer.Option(
            "--signed-by",
            help=(
                "Require the archive's model.sig to verify with this public key, and every file to"
                " match it."
            ),
        ),
    ] = None,
) -> None:
    """Extract an archive safely (hostile names refused before a byte is written) and verify its
    manifest.
    """
    with run.reporter() as progress:
        source = sys.stdin.buffer if str(archive) == "-" else archive
        result = api.unpack(
            source,
            dest=directory,
            force=force,
            max_ratio=max_ratio,
            signed_by=signed_by,
            progress=progress,
        )
    doc = result.to_json()
    if run.json:
        run.emit(doc)
        return
    run.line(*(f["path"] for f in doc["files"] if not run.quiet))
    signed = (
        f"; {doc['signature']['file']} verified, signed by {doc['signature']['by']}"
        if doc["signature"]
        else ""
    )
    run.console.info(
        f"extracted {plural(len(doc['files']), 'file')} into {shown_name(doc['dest'])}{signed}"
    )
