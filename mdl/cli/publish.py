"""``mdl publish``: the verified local files of catalog models up to S3-compatible storage, for a
fleet to pull.
"""

import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Unpack, cast

import typer

from mdl import api
from mdl.cli.options import AllOpt, DryRunOpt, NamesArg, command, number_of
from mdl.cli.run import Run
from mdl.cli.summary import render_report
from mdl.errors import UsageError
from mdl.setting import SETTING, Pinned
from mdl.units import human_size

if TYPE_CHECKING:
    from mdl.upload.publisher import PublishReport

WORDS = {"uploaded": "written", "skipped": "already there", "upload": "to write", "skip": "there"}


@command()
def publish_cmd(
    run: Run,
    names: NamesArg = None,
    all_models: AllOpt = False,
    to: Annotated[
        str,
        typer.Option(
            "--to",
            help="Where to: s3://bucket/prefix or file:///abs/path (or the nodes' template "
            "PREFIX/{model}/{sha256}). Files go to <prefix>/<model>/<sha256>, each version's "
            "manifest to <prefix>/.mdl/versions/<model>/<id>.json. Or a registry, "
            "oci://REGISTRY/REPOSITORY[:TAG] ({model} in it for several models; tag: latest): "
            "a CNCF ModelPack artifact, one layer per file.",
            show_default=False,
        ),
    ] = "",
    connections: Annotated[
        str | None,
        typer.Option(
            "--connections",
            metavar="N",
            help="Requests in flight at once (parts and files; default 8).",
            callback=number_of(SETTING["connections"]),
        ),
    ] = None,
    endpoint_url: Annotated[
        str | None,
        typer.Option(
            "--endpoint-url",
            help="S3-compatible endpoint (default: AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, AWS).",
        ),
    ] = None,
    sign: Annotated[
        Path | None,
        typer.Option(
            "--sign",
            help=(
                "Also upload an OpenSSF model signature over the files published, made with this "
                "EC private key (PEM; needs mdl[sign]), named by the version's manifest."
            ),
            show_default=False,
        ),
    ] = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="With --sign: publish mdl's model.sig in place of the one the model has.",
        ),
    ] = False,
    dry_run: DryRunOpt = False,
    **where: Unpack[Pinned],
) -> int:
    """Upload the verified local files of models, and their versions, to S3, a shared folder or an
    OCI registry.

    Each file is stored once, by its content; every version published stays. An object whose
    SHA-256 the store itself computed matches is skipped, so a re-run sends only what is missing.
    Nodes then pull with the mirror s3://bucket/prefix/{model}/{sha256}, verifying every byte."""
    if not to:
        raise UsageError(
            "mdl publish needs --to s3://bucket/prefix",
            hint="mdl publish NAME --to s3://bucket/models",
        )
    with run.reporter() as progress:
        report = api.publish(
            *(names or ()),
            to=to,
            all=all_models,
            connections=cast(int | None, connections),  # as number_of read it
            endpoint=endpoint_url,
            sign=sign,
            force=force,
            dry_run=dry_run,
            **where,
            environ=run.environ,
            progress=progress,
            secrets=run.secrets,
        )
    for version in report.versions:  # (a warning is said in every mode: output.md)
        if version.warning is not None:
            run.console.warn(version.warning)
    if not run.json:  # the JSON document has the versions; people get a line per model
        _say_versions(run, report)
    return render_report(run, report, verb="published")


def _say_versions(run: Run, report: "PublishReport") -> None:
    """A line per model published (where it went, its files, its version), then the mirror nodes
    pull with."""
    for version in report.versions:
        files = [f for f in report.files if f.model == version.model and f.path is not None]
        size = sum(f.size or 0 for f in files)
        if report.target.startswith("oci://"):
            run.console.info(
                f"{version.model} → {version.manifest} ({len(files)} files,"
                f" {human_size(size)}; version {version.id[:12]}, manifest"
                f" {WORDS[version.action]})"
            )
            continue
        to = report.target.rstrip("/") + f"/{version.model}/"
        run.console.info(
            f"{version.model} → {to} ({len(files)} files, {human_size(size)}; version"
            f" {version.id[:12]}, manifest {version.manifest} {WORDS[version.action]})"
        )
    if report.versions:
        run.console.info(f"nodes: --mirror {shlex.quote(report.template)}")
