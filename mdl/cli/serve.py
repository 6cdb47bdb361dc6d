"""``mdl serve``: the destination's verified files as a read-only S3 endpoint for loaders (vLLM's
runai_streamer, boto3, the AWS CLI), pulling them meanwhile with ``--pull``."""

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Unpack

import typer

from mdl import api
from mdl.cli.options import AllOpt, NamesArg, command
from mdl.cli.run import Run
from mdl.cli.summary import render_report
from mdl.setting import Pulling

if TYPE_CHECKING:
    from mdl.endpoint.serving import ServeReport, Serving


@command()
def serve_cmd(
    run: Run,
    names: NamesArg = None,
    all_models: AllOpt = False,
    pull: Annotated[
        bool,
        typer.Option(
            "--pull",
            help="Also fetch the models now, in the order loaders read them: a file a loader "
            "waits on is fetched next. A loader gets each file's bytes once they verified.",
        ),
    ] = False,
    host: Annotated[
        str,
        typer.Option(
            "--host",
            help="Address to listen on (another than loopback is reachable by other machines: "
            "a warning says so).",
        ),
    ] = "127.0.0.1",
    port: Annotated[
        int, typer.Option("--port", min=0, max=65535, help="Port to listen on; 0: any free one.")
    ] = 8390,
    bucket: Annotated[
        str, typer.Option("--bucket", help="The bucket's name: models are s3://BUCKET/MODEL/PATH.")
    ] = "mdl",
    wait: Annotated[
        float,
        typer.Option(
            "--wait",
            min=0.0,
            metavar="SECONDS",
            help="How long a read of bytes not verified yet waits before an S3 error (503).",
        ),
    ] = 600.0,
    env_file: Annotated[
        Path | None,
        typer.Option(
            "--env-file",
            metavar="FILE",
            help="Also write the loader's environment to FILE (mode 600), to source; a file "
            "there that no earlier run wrote is refused (exit 7).",
        ),
    ] = None,
    **where: Unpack[Pulling],
) -> int:
    """Serve verified model files as a read-only S3 endpoint on loopback, --pull fetching them.

    Loaders read s3://BUCKET/MODEL/PATH with the environment printed on stdout (endpoint, the run's
    key, path-style addressing, run:ai's request timeout). Only verified bytes are served; a read of
    bytes still on their way waits for them. Ctrl-C or SIGTERM stops it."""

    def ready(served: "Serving") -> None:
        for warning in served.warnings:
            run.console.warn(warning)
        if run.json:
            run.emit(served.to_json())
        else:
            run.line(*served.exports())
        models = ", ".join(f"s3://{served.bucket}/{name}" for name in served.models)
        run.console.info(f"serving {models} at {served.url} (Ctrl-C to stop)")

    def pulled(report: "ServeReport") -> None:
        """The pull's end as `pull` says it, once it ends: the server goes on."""
        assert report.pulled is not None
        progress.close()  # the pull's display ends with it
        saved_json, run.json = run.json, False  # the one JSON document was the endpoint's
        try:
            render_report(run, report.pulled, verb="pulled", data=lambda: None)
        finally:
            run.json = saved_json
        run.console.info(f"pull done; serving {report.served.url} until stopped")

    with run.reporter() as progress:
        report = api.serve(
            *(names or ()),
            all=all_models,
            pull=pull,
            host=host,
            port=port,
            bucket=bucket,
            wait=wait,
            env_file=env_file,
            **where,
            environ=run.environ,
            progress=progress,
            secrets=run.secrets,
            on_ready=ready,
            on_error=run.console.info,
            on_pulled=pulled,
        )
    run.console.info(f"stopped serving {report.served.url}")
    return report.exit_code
