"""``get``: one-off sources (URLs, hf:// and s3:// files, whole hf:// repos, job outputs) into a
folder."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from mdl.api._context import command_settings
from mdl.api._inputs import checked
from mdl.errors import UsageError
from mdl.lazy import loading
from mdl.progress import NullProgress, Progress
from mdl.setting import Overrides, StrPath

if TYPE_CHECKING:
    from mdl.catalog.specs import Catalog
    from mdl.redact import Secrets
    from mdl.report import RunReport


@checked
def get(
    *sources: str,
    output: StrPath | None = None,
    directory: StrPath | None = None,
    sha256: str | None = None,
    catalog: Catalog | StrPath | None = None,
    connections: int | None = None,
    limit_rate: str | int | None = None,
    timeout: float | None = None,
    retry_max_time: float | None = None,
    xet: bool | None = None,
    environ: Mapping[str, str] | None = None,
    progress: Progress | None = None,
    read_text: Callable[[str], str] | None = None,
    force: bool = False,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    headers: Mapping[str, str] | None = None,
    input_file: StrPath | None = None,
    secrets: Secrets | None = None,
    revision: str | None = None,
    repo_type: str | None = None,
) -> RunReport:
    """Fetch one-off sources (URLs, ``hf://`` files and repos, job-output JSON, ``-`` = stdin) into
    ``directory``; ``input_file`` lists more, one a line (``-`` = stdin); ``headers`` go with the
    http(s) URLs given (as curl -H); a bare repo id (``owner/name[/path]``, no such local file) is
    ``hf://owner/name[/path]``, and ``revision``, ``repo_type`` go into the hf:// sources that name
    neither (as ``hf download``'s ``--revision``, ``--repo-type``)."""
    with loading():
        from mdl.catalog.headers import check_headers
        from mdl.download.get import get_sources
        from mdl.report import hidden
        from mdl.sources.joboutput import read_job_output
        from mdl.sources.oneoff import GetRequest

    # (no source at all, and '-' twice, are the sources' own checks: they see the -i list too)
    if output is not None and directory is not None:
        raise UsageError("get: give output or directory, not both")
    if output is not None and str(output) == "-":
        raise UsageError("get: output '-': mdl writes files, not stdout")
    here = Path(directory or Path.cwd()).absolute()
    flags = Overrides(
        dest=here,
        connections=connections,
        limit_rate=limit_rate,
        timeout=timeout,
        retry_max_time=retry_max_time,
        xet=xet,
        force=force,
    )
    # A one-off get names its sources: like pip and uv given a URL, it reads no project file it was
    # not pointed at (a broken ./catalog.toml never blocks it); --catalog or $MDL_CATALOG lends it a
    # catalog's [settings].
    settings = command_settings(catalog, environ, flags, secrets=secrets, look=False)
    given = (headers or {}).items()
    request = GetRequest(
        sources,
        output=None if output is None else Path(output).absolute(),
        sha256=sha256,
        include=include,
        exclude=exclude,
        headers=check_headers(given, where="header", secrets=settings.secrets),
        input_file=None if input_file is None else str(input_file),
        read_text=read_text or read_job_output,
        revision=revision,
        repo_type=repo_type,
    )
    report = get_sources(request, settings, progress=progress or NullProgress())
    return replace(report, files=hidden(report.files, settings.secrets))
