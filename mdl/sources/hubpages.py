"""Hub web URLs (``.../blob/{rev}/{path}``, ``.../resolve/...``, a repo page) read as the
``hf://`` they stand for: every ``get`` reads its SOURCEs through here, so it asks nothing of the
Hub client."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from urllib.parse import unquote, urlsplit

from mdl.errors import UsageError
from mdl.paths import check_revision, is_http_url
from mdl.progress import Progress
from mdl.redact import redact_url
from mdl.transfer.connection import origin

# the Hub's own web origin: its page URLs are Hub files, whatever HF_ENDPOINT says
HUB_WEB = "https://huggingface.co"
log = logging.getLogger("mdl.hub")
# The segments the Hub's own pages start with: never an owner (a repo page URL is /{owner}/{name}).
_NOT_OWNERS = frozenset(
    {"api", "docs", "blog", "papers", "collections", "organizations", "settings", "models"}
)
_PREFIXES = {"datasets": "datasets/", "spaces": "spaces/"}
_REPO_PART = re.compile(r"[\w.-]+")
_OWNER = re.compile(r"[A-Za-z0-9][\w.-]*")
# refs/pr/N and refs/convert/X: the revisions with slashes hf:// can name
_REF_KINDS = ("pr", "convert")
_REF = re.compile(r"refs/(?:pr|convert)/[\w.-]+")  # as mdl.paths's hf:// pattern takes them


def hub_page_as_hf(url: str, *, endpoint: str) -> str | None:
    """The ``hf://`` text a URL on the Hub at ``endpoint`` — or on huggingface.co, whatever the
    endpoint: a URL pasted from the browser names a Hub file wherever it is served from, as ``hf
    download`` with HF_ENDPOINT fetches it from the mirror — stands for:
    ``.../blob|resolve/{rev}/{path}`` a file, ``/{owner}/{name}`` and ``.../tree/{rev}`` the whole
    repo; None for any other URL (another origin, another shape, a revision with a '/' that hf://
    cannot name); UsageError for a folder's page or a revision a URL path folds away ('..'). The
    query and fragment (``?download=true``) are dropped; segments are URL-decoded
    (``refs%2Fpr%2F1``)."""
    segs = _hub_path_segments(url, endpoint=endpoint)
    if segs is None:
        return None
    named = _repo_named(segs)
    if named is None:
        return None
    repo, rest = named
    if not rest:
        return f"hf://{repo}"
    return _page_in_repo(url, repo, rest)


def _hub_path_segments(url: str, *, endpoint: str) -> list[str] | None:
    """The URL-decoded path segments of a URL on the Hub (at ``endpoint`` or huggingface.co) after
    the endpoint's own path; None for a URL elsewhere."""
    if not is_http_url(url) or not is_http_url(endpoint):
        return None
    if origin(url) == origin(endpoint):
        base = urlsplit(endpoint).path.rstrip("/")
    elif origin(url) == origin(HUB_WEB):
        base = ""
    else:
        return None
    path = urlsplit(url).path
    if base and not path.startswith(base + "/"):
        return None
    segs = [unquote(seg) for seg in path[len(base) :].split("/")[1:]]
    if segs and segs[-1] == "":
        segs.pop()  # a trailing '/'
    return segs


def _repo_named(segs: list[str]) -> tuple[str, list[str]] | None:
    """The repo id a page path starts with (``datasets/``, ``spaces/`` kept as hf:// says them)
    and the segments after it; None when the path names no repo."""
    prefix = _PREFIXES.get(segs[0], "") if segs else ""
    if prefix:
        segs = segs[1:]
    if len(segs) < 2 or segs[0] in _NOT_OWNERS:
        return None
    if not _OWNER.fullmatch(segs[0]) or not _REPO_PART.fullmatch(segs[1]):
        return None
    return f"{prefix}{segs[0]}/{segs[1]}", segs[2:]


def _page_in_repo(url: str, repo: str, rest: list[str]) -> str | None:
    """The hf:// of a ``blob|resolve|tree/{rev}[/{path}]`` page of ``repo``: a file, or the whole
    repo at a revision; UsageError for a folder's page or a revision a URL path folds away."""
    kind = rest[0]
    if kind not in ("blob", "resolve", "tree") or len(rest) < 2:
        return None
    revision, parts = _revision(rest[1:])
    # '..' or '%2E%2E' would ask for the default branch
    check_revision(revision, where=redact_url(url))
    if "/" in revision and not _REF.fullmatch(revision):
        return None
    file = "/".join(parts)
    if kind == "tree" and file:  # a folder's page: no hf:// names a folder alone
        raise UsageError(
            f"{redact_url(url)}: is the Hub page of a folder of {repo}",
            hint=f"to fetch that folder, give hf://{repo}@{revision} --include '{file}/*'",
        )
    if kind == "tree":
        return f"hf://{repo}@{revision}"
    return f"hf://{repo}@{revision}/{file}" if file else None


def _revision(segs: list[str]) -> tuple[str, list[str]]:
    """The revision at the front of ``segs`` (one segment, or ``refs/pr/N`` written with its
    slashes) and the rest.
    """
    if len(segs) >= 3 and segs[0] == "refs" and segs[1] in _REF_KINDS:
        return "/".join(segs[:3]), segs[3:]
    return segs[0], segs[1:]


def read_hub_pages(sources: Sequence[str], *, endpoint: str, progress: Progress) -> list[str]:
    """``sources`` with each URL on the Hub that names a file or a repo replaced by its ``hf://`` (a
    note says which): the token, the listing's checks and the catalog entry are then those of hf://,
    as a user of the Hub expects."""
    read: list[str] = []
    for source in sources:
        uri = hub_page_as_hf(source, endpoint=endpoint)
        if uri is not None:
            served = (
                ""
                if origin(source) == origin(endpoint)
                else f" (from the Hub at {redact_url(endpoint)})"
            )
            log.info("reading %s as %s%s", redact_url(source), uri, served)
            progress.note(f"mdl: reading {redact_url(source)} as {uri}{served}")
        read.append(source if uri is None else uri)
    return read
