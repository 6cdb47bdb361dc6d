"""``get``: one-off sources (URLs, hf:// and s3:// files, whole hf:// repos, oci:// models, job
outputs) into a folder."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from mdl.api._context import command_settings, environ_now
from mdl.api._inputs import checked
from mdl.catalog.settings import shown_folder
from mdl.errors import UsageError
from mdl.lazy import loading
from mdl.progress import NullProgress, Progress
from mdl.setting import Overrides, StrPath

if TYPE_CHECKING:
    from mdl.catalog.settings import Settings
    from mdl.catalog.specs import Catalog
    from mdl.redact import Secrets
    from mdl.report import FileOutcome, RunReport


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
    layout: str | None = None,
    revision: str | None = None,
    repo_type: str | None = None,
) -> RunReport:
    """Fetch one-off sources (URLs, ``hf://`` files and repos, ``oci://`` models, job-output JSON,
    ``-`` = stdin) into ``directory``; ``input_file`` lists more, one a line (``-`` = stdin);
    ``headers`` go with the http(s) URLs given (as curl -H); ``layout="hf-cache"``: Hub files into
    the Hugging Face cache. A bare repo id (``owner/name[/path]``, no such local file) is
    ``hf://owner/name[/path]``, and ``revision``, ``repo_type`` go into the hf:// sources that name
    neither (as ``hf download``'s ``--revision``, ``--repo-type``)."""
    with loading():
        from mdl.catalog.headers import check_headers
        from mdl.download.get import get
        from mdl.report import hidden
        from mdl.sources.joboutput import read_job_output
        from mdl.sources.oneoff import GetRequest

    # (no source at all, and '-' twice, are the sources' own checks: they see the -i list too)
    _refuse_places(output, directory, layout=layout)
    here = Path(directory or Path.cwd()).absolute()
    flags = Overrides(
        dest=here,
        layout=layout,
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
    if layout is None:  # only when asked: $MDL_LAYOUT and a catalog's layout are pull's
        settings = settings._replace(layout="plain", hf_cache=None)
    given = (headers or {}).items()
    request = GetRequest(
        sources,
        output=None if output is None else _output(Path(output).absolute()),
        sha256=sha256,
        include=include,
        exclude=exclude,
        headers=check_headers(given, where="header", secrets=settings.secrets),
        input_file=None if input_file is None else str(input_file),
        read_text=read_text or read_job_output,
        revision=revision,
        repo_type=repo_type,
    )
    report = get(request, settings, progress=progress or NullProgress())
    _remember(settings, request.output, report.files)
    return replace(report, files=hidden(report.files, settings.secrets))


def _output(path: Path) -> Path:
    """-o's path, its folder one stdout can name (its name is the get's own check)."""
    shown_folder(path.parent, where="-o's folder")
    return path


def _refuse_places(
    output: StrPath | None, directory: StrPath | None, *, layout: str | None
) -> None:
    """-o and -d that do not fit (each other, stdout, the Hugging Face cache): exit 2."""
    if output is not None and directory is not None:
        raise UsageError("get: give output or directory, not both")
    if output is not None and str(output) == "-":
        raise UsageError("get: output '-': mdl writes files, not stdout")
    if layout == "hf-cache" and (output is not None or directory is not None):
        flag = "-o names a file" if output is not None else "-d names a folder"
        raise UsageError(
            f"{flag} of its own, but --layout hf-cache puts Hub files in the Hugging Face cache",
            hint=f"leave out {flag[:2]}, or --layout",
        )


def _remember(settings: Settings, output: Path | None, files: Sequence[FileOutcome]) -> None:
    """Note where this get wrote ``files`` (when one of them is there), for ``list``, ``clean`` and
    ``prune`` (a folder only once its record is there: inline job files alone are not
    recorded)."""
    if all(f.failing for f in files):
        return
    from mdl.store.register import CACHE, FOLDER, remember
    from mdl.store.store import Store

    if settings.layout == "hf-cache" and settings.hf_cache is not None:
        remember(settings.hf_cache, kind=CACHE)
        return
    folder = settings.dest if output is None else output.parent
    if Store(folder).record_path("").exists():
        remember(folder, kind=FOLDER)


@checked
def fetch(
    repo_id: str,
    filename: str | None = None,
    *,
    revision: str | None = None,
    repo_type: str | None = None,
    local_dir: StrPath | None = None,
    cache_dir: StrPath | None = None,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    force: bool = False,
    connections: int | None = None,
    limit_rate: str | int | None = None,
    timeout: float | None = None,
    xet: bool | None = None,
    environ: Mapping[str, str] | None = None,
    progress: Progress | None = None,
    secrets: Secrets | None = None,
) -> Path:
    """A Hub repo (``owner/name`` or ``hf://…``), or its file ``filename``, on this disk: its local
    folder (or file), as ``snapshot_download`` and ``hf_hub_download`` return them. Into the Hugging
    Face cache (``cache_dir``, else ``$HF_HUB_CACHE``), or into ``local_dir``; no catalog is read or
    written. A file that failed raises its error."""
    from mdl.errors import error_for_exit_code

    source = _hub_uri(repo_id, filename, revision=revision, repo_type=repo_type)
    env = dict(environ_now(environ))
    if cache_dir is not None:
        env["HF_HUB_CACHE"] = str(Path(cache_dir).absolute())
    report = get(
        source,
        directory=local_dir,
        layout=None if local_dir is not None else "hf-cache",
        include=include,
        exclude=exclude,
        force=force,
        connections=connections,
        limit_rate=limit_rate,
        timeout=timeout,
        xet=xet,
        environ=env,
        progress=progress,
        secrets=secrets,
    )
    failed = [f for f in report.files if f.failing]
    if failed:
        first = failed[0]
        more = f" (and {len(failed) - 1} more file(s))" if len(failed) > 1 else ""
        raise error_for_exit_code(report.exit_code)(f"{first.error or first.path}{more}")
    first = report.files[0]
    found = first.within if filename is None else first.dest
    assert found is not None, "a done file has its place"
    return Path(found)


def _hub_uri(
    repo_id: str, filename: str | None, *, revision: str | None, repo_type: str | None
) -> str:
    """``hf://[datasets/|spaces/]owner/name[@revision][/filename]`` of what ``fetch`` is given
    (an ``hf://`` URI as it is, with nothing else that names the repo)."""
    if repo_id.startswith("hf://"):
        if revision is not None or repo_type is not None:
            raise UsageError(
                f"fetch: {repo_id} names its repo type and revision itself",
                hint="give revision= and repo_type= with a repo id (owner/name)",
            )
        return repo_id.rstrip("/") + (f"/{filename}" if filename else "")
    from mdl.store.layout import REPO_TYPES

    if repo_type is not None and repo_type not in REPO_TYPES:
        raise UsageError(f"repo_type: expected one of {', '.join(REPO_TYPES)}, got {repo_type!r}")
    at = f"@{revision}" if revision else ""
    tail = f"/{filename}" if filename else ""
    return f"hf://{REPO_TYPES[repo_type or 'model']}{repo_id}{at}{tail}"
