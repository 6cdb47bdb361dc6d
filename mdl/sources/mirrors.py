"""Mirror URLs for a file, from ``[settings].mirrors`` templates (tried in order before the origin).

A template is ``http(s)://…/{model}/{path}`` (values URL-quoted) or ``s3://bucket/prefix/{model}/{path}`` (values
as they are: the key is quoted when the request is signed).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING
from urllib.parse import quote

from mdl.catalog import MIRROR_FIELDS, Placeholder, fill_template, parse_template

if TYPE_CHECKING:
    from mdl.sources.resolve import RemoteFile

log = logging.getLogger("mdl.mirrors")


def mirror_urls(templates: Sequence[str], remote: RemoteFile) -> list[str]:
    """The file's URL on each mirror whose template it can fill, in order."""
    return [url for _, url in mirror_targets(templates, remote)]


def mirror_targets(templates: Sequence[str], remote: RemoteFile) -> list[tuple[str, str]]:
    """(template, URL) of the file on each mirror whose template it can fill, in order.

    A mirror is only worth asking when its bytes can be checked against the origin's: a file with no
    sha256 and no git blob id gets none. A template that needs a value the file lacks (``{repo}`` of a
    direct URL, ``{sha256}`` of a small git file) is skipped for that file.
    """
    if not templates or not (remote.sha256 or remote.git_oid):
        return []
    raw = {
        "model": remote.model,
        "path": remote.path,
        "repo": remote.repo or "",
        "revision": remote.revision or "",
        "commit": remote.commit or "",
        "sha256": remote.sha256 or "",
    }
    quoted = {
        **raw,
        "model": quote(remote.model, safe=""),
        "path": quote(remote.path, safe="/"),
        "repo": quote(remote.repo, safe="/") if remote.repo else "",
        "revision": quote(remote.revision, safe="") if remote.revision else "",
    }
    urls: list[tuple[str, str]] = []
    for template in templates:
        values = raw if template.startswith("s3://") else quoted
        # checked when the settings were read: parsing again only splits it (a template is never str.format-ed)
        parts = parse_template(template, fields=MIRROR_FIELDS, where="mirror")
        missing = sorted({p.name for p in parts if isinstance(p, Placeholder) and not values.get(p.name)})
        if missing:
            log.debug("%s/%s: mirror %s needs %s, which this file lacks", remote.model, remote.path, template, missing)
            continue
        urls.append((template, fill_template(parts, values)))
    return urls
