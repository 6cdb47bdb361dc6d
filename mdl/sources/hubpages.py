"""Hub web URLs (``…/blob/{rev}/{path}``, ``…/resolve/…``, a repo page) read as the ``hf://`` they stand for."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from urllib.parse import unquote, urlsplit

from mdl.errors import UsageError
from mdl.paths import is_http_url
from mdl.progress import Progress
from mdl.redact import redact_url
from mdl.transfer import origin

log = logging.getLogger("mdl.hub")
# The segments the Hub's own pages start with: never an owner (a repo page URL is /{owner}/{name}).
_NOT_OWNERS = frozenset({"api", "docs", "blog", "papers", "collections", "organizations", "settings", "models"})
_PREFIXES = {"datasets": "datasets/", "spaces": "spaces/"}
_REPO_PART = re.compile(r"[\w.-]+")
_OWNER = re.compile(r"[A-Za-z0-9][\w.-]*")
_REF_KINDS = ("pr", "convert")  # refs/pr/N and refs/convert/X: the revisions with slashes hf:// can name
_REF = re.compile(r"refs/(?:pr|convert)/[\w.-]+")  # as mdl.paths's hf:// pattern takes them


def hub_page_as_hf(url: str, *, endpoint: str) -> str | None:
    """The ``hf://`` text a URL on the Hub at ``endpoint`` stands for: ``…/blob|resolve/{rev}/{path}`` a file,
    ``/{owner}/{name}`` and ``…/tree/{rev}`` the whole repo; None for any other URL (another origin, another shape,
    a revision with a '/' that hf:// cannot name); UsageError for a folder's page. The query and fragment
    (``?download=true``) are dropped; segments are URL-decoded (``refs%2Fpr%2F1``)."""
    if not is_http_url(url) or not is_http_url(endpoint) or origin(url) != origin(endpoint):
        return None
    base = urlsplit(endpoint).path.rstrip("/")
    path = urlsplit(url).path
    if base and not path.startswith(base + "/"):
        return None
    segs = [unquote(seg) for seg in path[len(base) :].split("/")[1:]]
    if segs and segs[-1] == "":
        segs.pop()  # a trailing '/'
    prefix = _PREFIXES.get(segs[0], "") if segs else ""
    segs = segs[1:] if prefix else segs
    if len(segs) < 2 or segs[0] in _NOT_OWNERS or not _OWNER.fullmatch(segs[0]) or not _REPO_PART.fullmatch(segs[1]):
        return None
    repo, rest = f"{prefix}{segs[0]}/{segs[1]}", segs[2:]
    if not rest:
        return f"hf://{repo}"
    if rest[0] not in ("blob", "resolve", "tree") or len(rest) < 2:
        return None
    revision, rest = _revision(rest[1:])
    if not revision or ("/" in revision and not _REF.fullmatch(revision)):
        return None
    file = "/".join(rest)
    if segs[2] == "tree" and file:  # a folder's page: no hf:// names a folder alone
        raise UsageError(
            f"{redact_url(url)}: is the Hub page of a folder of {repo}",
            hint=f"to fetch that folder, give hf://{repo}@{revision} --include '{file}/*'",
        )
    if segs[2] == "tree":
        return f"hf://{repo}@{revision}"
    return f"hf://{repo}@{revision}/{file}" if file else None


def _revision(segs: list[str]) -> tuple[str, list[str]]:
    """The revision at the front of ``segs`` (one segment, or ``refs/pr/N`` written with its slashes) and the rest."""
    if len(segs) >= 3 and segs[0] == "refs" and segs[1] in _REF_KINDS:
        return "/".join(segs[:3]), segs[3:]
    return segs[0], segs[1:]


def read_hub_pages(sources: Sequence[str], *, endpoint: str, progress: Progress) -> list[str]:
    """``sources`` with each URL on the Hub that names a file or a repo replaced by its ``hf://`` (a note says which):
    the token, the listing's checks and the catalog entry are then those of hf://, as a user of the Hub expects."""
    read: list[str] = []
    for source in sources:
        uri = hub_page_as_hf(source, endpoint=endpoint)
        if uri is not None:
            log.info("reading %s as %s", redact_url(source), uri)
            progress.note(f"mdl: reading {redact_url(source)} as {uri}")
        read.append(source if uri is None else uri)
    return read
