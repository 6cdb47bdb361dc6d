"""The fleet face of the Python API: ``publish`` verified local models to S3-compatible storage.
Re-exported by :mod:`mdl.api` (``from mdl import publish``); typed, keyword-only, prints nothing."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

from mdl.api.inputs import checked
from mdl.progress import NullProgress, Progress

if TYPE_CHECKING:
    from mdl.catalog import Catalog
    from mdl.upload import PublishReport

StrPath = str | os.PathLike[str]


def _is_http_url(value: str) -> bool:
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname) and not any(c.isspace() for c in value)


@checked
def publish(
    *names: str,
    to: str,
    catalog: Catalog | StrPath | None = None,
    all: bool = False,
    dest: StrPath | None = None,
    layout: str | None = None,
    connections: int | None = None,
    endpoint: str | None = None,
    locked: bool = False,
    frozen: bool = False,
    environ: Mapping[str, str] | None = None,
    progress: Progress | None = None,
) -> PublishReport:
    """Upload the verified local files of each model to ``<to>/<model>/<path>`` and a manifest per complete model
    to ``<to>/.mdl/<model>.json`` (``to``: ``s3://bucket[/prefix]``). Objects whose store-computed SHA-256
    checksum matches the local file are skipped (metadata alone never decides). Credentials and endpoint come
    from the AWS chain; ``endpoint`` overrides.

    Per-file failures are in the report; a missing bucket (NotFoundError), denied access (AuthError) or bad input
    (UsageError) raise.
    """
    from mdl.api.common import _environ, _models
    from mdl.download import LockUse, warned
    from mdl.errors import UsageError
    from mdl.sources import parse_s3_prefix
    from mdl.upload import publish_models

    target = parse_s3_prefix(to)
    if endpoint is not None and not _is_http_url(endpoint):
        raise UsageError(f"--endpoint-url: expected an http(s) URL with a host, got {endpoint!r}")
    env = _environ(environ)
    flags = {"layout": layout, "connections": connections}
    settings, models, lock = _models(catalog, env, names, all, locked=locked, frozen=frozen, dest=dest, **flags)
    use = LockUse(settings, lock=lock)
    pins, warnings, _ = use.view(models)
    held = use.lock
    pinned = {name: held.models[name] for name in pins if held is not None and name in held.models}
    report = publish_models(
        models,
        settings,
        target,
        progress=progress or NullProgress(),
        pins=pins,
        locked=pinned,
        endpoint=endpoint,
    )
    return warned(report, warnings)
