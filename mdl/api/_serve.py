"""``serve``: the destination's verified files as a read-only S3 endpoint for loaders, pulling
them in the order loaders read them when asked."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

from mdl.api._context import catalog_models
from mdl.api._inputs import checked
from mdl.progress import NullProgress, Progress
from mdl.setting import StrPath, flags_of

if TYPE_CHECKING:
    from mdl.catalog.specs import Catalog
    from mdl.endpoint.serving import ServeReport, Serving
    from mdl.redact import Secrets


@checked
def serve(
    *names: str,
    catalog: Catalog | StrPath | None = None,
    all: bool = False,
    pull: bool = False,
    host: str = "127.0.0.1",
    port: int = 8390,
    bucket: str = "mdl",
    wait: float = 600.0,
    env_file: StrPath | None = None,
    dest: StrPath | None = None,
    layout: str | None = None,
    connections: int | None = None,
    jobs: int | None = None,
    limit_rate: str | int | None = None,
    stall_timeout: float | None = None,
    retry_max_time: float | None = None,
    timeout: float | None = None,
    lock_timeout: float | None = None,
    locked: bool = False,
    frozen: bool = False,
    lock_file: StrPath | None = None,
    mirrors: Sequence[str | Mapping[str, str]] | None = None,
    fill_mirror: bool = False,
    xet: bool | None = None,
    environ: Mapping[str, str] | None = None,
    progress: Progress | None = None,
    secrets: Secrets | None = None,
    on_ready: Callable[[Serving], None] | None = None,
    on_error: Callable[[str], None] | None = None,
    on_pulled: Callable[[ServeReport], None] | None = None,
    stop: threading.Event | None = None,
) -> ServeReport:
    """Serve the models' verified files at ``s3://<bucket>/<model>/<path>`` on ``host:port``
    (``pull``: fetch them meanwhile, in the order loaders read them) until ``stop`` is set or
    Ctrl-C; ``on_ready`` hears the endpoint and the loader's environment once it listens,
    ``on_error`` a line for each request refused, ``on_pulled`` the report (its ``pulled``: the
    pull's, over the pull's own time) as soon as the pull ends."""
    from pathlib import Path

    from mdl.endpoint.serving import ServeOptions, serve_models

    settings, models, lock = catalog_models(
        catalog, environ, names, flags_of(locals()), all_models=all, secrets=secrets
    )
    options = ServeOptions(
        host=host,
        port=port,
        bucket=bucket,
        wait=wait,
        pull=pull,
        env_file=Path(env_file) if env_file is not None else None,
    )
    return serve_models(
        models,
        settings,
        options=options,
        progress=progress or NullProgress(),
        lock=lock,
        on_ready=on_ready,
        on_error=on_error,
        on_pulled=on_pulled,
        stop=stop,
    )
