"""The Hub API (huggingface_hub's requests) on the run's one client and TokenGuard; every reply
passes hubreplies. Hub web URLs (``…/blob/{rev}/{path}``, ``…/resolve/…``, a repo page) are read as
the ``hf://`` they stand for."""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING
from urllib.parse import quote, unquote, urlsplit

import httpx2

from mdl.errors import AuthError, HubReplyError, MdlError, NetworkError, NotFoundError, UsageError
from mdl.paths import check_revision, is_http_url
from mdl.progress import Progress
from mdl.redact import Secrets, printable, redact_text, redact_url, safe_text
from mdl.transfer import (
    RETRYABLE_STATUSES,
    Credentials,
    RetryableError,
    RetryPolicy,
    TokenGuard,
    body_excerpt,
    follow,
    hub_auth_hint,
    hub_refusal,
    make_client,
    origin,
    set_reply_deadline,
    transport_error,
)
from mdl.transfer import retry_after_seconds as _retry_after

# pydantic models, built only when the Hub answers (mdl get of a plain URL never asks it)
if TYPE_CHECKING:
    from mdl.sources.hubreplies import FileMetadata, TreeEntry

# the Hub's own web origin: its page URLs are Hub files, whatever HF_ENDPOINT says
HUB_WEB = "https://huggingface.co"
HUB_HINT = "check the network, or set HF_ENDPOINT to a reachable mirror"
MAX_REPLY_BYTES = 32 << 20  # a listing page of 1000 entries is ~300 kB; more is not a Hub talking
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


@dataclass(frozen=True)
class ListingLimits:
    """What one repo's listing may hold in all (README, "Safe"): the Hub advises under 100k files a
    repo, so these are far above any real one and far below what would exhaust memory or wait
    forever."""

    files: int = 500_000  # entries, files and folders
    bytes: int = 512 << 20  # of all its pages' bodies
    seconds: float = 600.0  # from its first request to its last page
    pages: int = 10_000


LISTING_LIMITS = ListingLimits()
# only for a Hub made without the run's client (tests, one-off callers)
OWN_CLIENT_READ_TIMEOUT = 30.0


def resolve_token(environ: Mapping[str, str]) -> str | None:
    """``HF_TOKEN``, else the token huggingface_hub has stored (read only when the Hub is
    needed).
    """
    if token := environ.get("HF_TOKEN"):
        return token
    from huggingface_hub import get_token

    return get_token()


def hub_file_url(endpoint: str, repo: str, path: str, repo_type: str, revision: str) -> str:
    """huggingface_hub's resolve URL of a Hub file; a repo id it refuses is UsageError (exit 2)."""
    from huggingface_hub import hf_hub_url
    from huggingface_hub.errors import HFValidationError

    # quoted whole, yet '..' would still ask for another revision
    check_revision(revision, where=repo)
    try:
        return hf_hub_url(repo, path, repo_type=repo_type, revision=revision, endpoint=endpoint)
    except HFValidationError as exc:  # a repo id the catalog allows but the Hub does not (org/a--b)
        raise UsageError(f"{repo}: not a valid Hub repo id ({exc})") from None


def hub_api_url(endpoint: str, repo: str, repo_type: str, *parts: str) -> str:
    """``{endpoint}/api/{type}s/{repo}/{part}/…``, each part quoted whole: the Hub API's URL of one
    repo's ``parts`` (a revision or a commit among them: one a URL path would fold away is refused,
    exit 2)."""
    for part in parts:
        check_revision(part, where=repo)
    return "/".join(
        [
            f"{endpoint.rstrip('/')}/api/{repo_type}s/{repo}",
            *(quote(part, safe="") for part in parts),
        ]
    )


def xet_token_url(endpoint: str, repo: str, repo_type: str, commit: str) -> str:
    """Where the Hub gives a Xet read token for the repo at ``commit`` (docs/xet/auth.md)."""
    return hub_api_url(endpoint, repo, repo_type, "xet-read-token", commit)


class Hub:
    """The Hub API on one httpx2 client, with its replies validated and its errors turned into
    ours.
    """

    def __init__(
        self,
        endpoint: str,
        token: str | None,
        *,
        client: httpx2.Client | None = None,
        retry: RetryPolicy | None = None,
        cancel: threading.Event | None = None,
    ) -> None:
        self.endpoint = endpoint.rstrip("/")
        # Ctrl-C ends a wait between tries (the run's; a Hub of its own: time.sleep)
        self.cancel = cancel
        self.origin = origin(self.endpoint)
        self.token = token or None
        self.retry = retry or RetryPolicy()
        self._owns_client = client is None
        self.client = (
            client
            if client is not None
            else make_client(timeout=OWN_CLIENT_READ_TIMEOUT, pool_size=4)
        )
        TokenGuard.on(self.client, self.endpoint).protect(self.token)

    def close(self) -> None:  # the run's client is the run's to close
        if self._owns_client:
            self.client.close()

    def commit_of(self, repo: str, *, repo_type: str, revision: str, what: str) -> str:
        """The commit a branch, tag or commit names (40 lowercase hex digits, or HubReplyError)."""
        from mdl.sources.hubreplies import parse_revision

        url = hub_api_url(self.endpoint, repo, repo_type, "revision", revision)
        response, body = self._fetch("GET", url, what=what, repo=repo, revision=revision)
        return parse_revision(body, what=what, url=url, secrets=Secrets.of(response)).sha

    def list_files(
        self,
        repo: str,
        *,
        repo_type: str,
        commit: str,
        what: str,
        limits: ListingLimits | None = None,
    ) -> list[TreeEntry]:
        """Every file of the repo at ``commit``, with sizes and LFS sha256 (one listing, paged, no
        HEADs), within ``limits`` in all; a next page must be this repo's listing at this commit
        (exit 5 naming it otherwise)."""
        from mdl.sources.hubreplies import next_page_url, parse_tree_page

        limits = limits or LISTING_LIMITS
        first = (
            hub_api_url(self.endpoint, repo, repo_type, "tree", commit)
            + "?recursive=true&expand=false"
        )
        url: str | None = first
        files: list[TreeEntry] = []
        seen: set[str] = set()
        entries = received = 0
        deadline = time.monotonic() + limits.seconds
        while url is not None:
            if url in seen or len(seen) >= limits.pages:
                raise HubReplyError(
                    f"{what}: hostile listing of {repo} from the Hub at {self.endpoint}: its pages"
                    f" never end (at {redact_url(url)}, after {len(seen)} pages)"
                )
            seen.add(url)
            response, body = self._fetch("GET", url, what=what, repo=repo, revision=commit)
            page = parse_tree_page(body, what=what, url=url, secrets=Secrets.of(response))
            entries, received = entries + len(page), received + len(body)
            overs = {
                f"holds more than {limits.files} entries": entries > limits.files,
                f"is more than {limits.bytes >> 20} MiB": received > limits.bytes,
                f"took more than {limits.seconds:g} s": time.monotonic() > deadline,
            }
            if (over := next((why for why, past in overs.items() if past), None)) is not None:
                raise HubReplyError(
                    f"{what}: the listing of {repo} from the Hub at {self.endpoint} {over} "
                    f"after {len(seen)} pages; refused",
                    hint=(
                        "no repo mdl pulls is listed so; check HF_ENDPOINT (a mirror or a proxy"
                        " that loops)"
                    ),
                )
            files.extend(entry for entry in page if entry.type == "file")  # folders are not kept
            del page, body
            url = next_page_url(
                response.links.get("next", {}).get("url"), current=url, first=first, what=what
            )
        return files

    def file_metadata(
        self, repo: str, path: str, *, repo_type: str, revision: str, what: str
    ) -> FileMetadata:
        """HEAD the file's resolve URL: commit, ETag (sha256 for LFS, blob sha1 otherwise), size,
        Xet hash.
        """
        from mdl.sources.hubreplies import parse_file_metadata, parse_xet_head

        url = self.file_url(repo, path, repo_type=repo_type, revision=revision)
        response, _ = self._fetch("HEAD", url, what=what, repo=repo, revision=revision, path=path)
        meta = parse_file_metadata(
            response.headers, redirected=response.is_redirect, what=what, url=url
        )
        xet = parse_xet_head(response, endpoint=self.endpoint, what=what)
        return meta if xet is None else replace(meta, xet_hash=xet[0], xet_auth=xet[1])

    def file_url(self, repo: str, path: str, *, repo_type: str, revision: str) -> str:
        return hub_file_url(self.endpoint, repo, path, repo_type, revision)

    def file_urls(self, repo: str, *, repo_type: str, revision: str) -> Callable[[str], str]:
        """``file_url`` for many files of one repo at one revision: the repo checked once, each
        path only quoted.
        """
        probe = "x"
        base = self.file_url(repo, probe, repo_type=repo_type, revision=revision).removesuffix(
            probe
        )
        # a path its quoting must agree on, checked against huggingface_hub once per listing
        odd = "d ir/ü #?%.x"
        if base.endswith("/") and base + quote(odd) == self.file_url(
            repo, odd, repo_type=repo_type, revision=revision
        ):
            return lambda path: base + quote(path)  # hf_hub_url's quoting of a filename
        # built otherwise now
        return lambda path: self.file_url(repo, path, repo_type=repo_type, revision=revision)

    def _fetch(
        self, method: str, url: str, *, what: str, repo: str, revision: str, path: str | None = None
    ) -> tuple[httpx2.Response, bytes]:
        """The last answer and its whole body, errors translated, retried on 5xx, 429 and dropped
        connections. Redirects stay on the Hub's origin; a HEAD stops at one that leaves it (the
        metadata is on that answer, as in huggingface_hub); an API call redirected off the Hub is
        hostile."""

        def rule(current: str, target: str) -> bool:
            if origin(target) == self.origin:
                return True
            if method == "HEAD":
                return False
            raise HubReplyError(
                f"{what}: the Hub redirected {redact_url(current)} to another origin"
                f" ({redact_url(target)}); refused"
            )

        def attempt() -> tuple[httpx2.Response, bytes]:
            try:
                with follow(
                    self.client,
                    url,
                    credentials=Credentials(hub_origin=self.origin, token=self.token),
                    headers={"Accept-Encoding": "identity"},
                    method=method,
                    what=what,
                    rule=rule,
                    server=f"the Hub at {self.endpoint}",
                    hint=HUB_HINT,
                ) as response:
                    set_reply_deadline(response, self.client.timeout.read)
                    body = bytearray()  # the whole body, within MAX_REPLY_BYTES whatever is sent
                    for chunk in response.iter_bytes():
                        body += chunk
                        if len(body) > MAX_REPLY_BYTES:
                            raise HubReplyError(
                                f"{what}: the reply from {redact_url(str(response.url))} is larger"
                                f" than {MAX_REPLY_BYTES} bytes"
                            )
            except httpx2.TransportError as exc:
                raise transport_error(
                    exc,
                    what=what,
                    url=self.endpoint,
                    server=f"the Hub at {self.endpoint}",
                    hint=HUB_HINT,
                ) from exc
            except httpx2.DecodingError as exc:
                raise HubReplyError(
                    f"{what}: the Hub at {self.endpoint} sent a body that cannot be decoded"
                ) from exc
            if response.is_error:
                raise _status_error(
                    response,
                    bytes(body),
                    what=what,
                    repo=repo,
                    revision=revision,
                    path=path,
                    hub=self,
                )
            return response, bytes(body)

        wait = self.cancel.wait if self.cancel is not None else None
        return self.retry.run(attempt, what=what, wait=wait)


def _status_error(
    response: httpx2.Response,
    body: bytes,
    *,
    what: str,
    repo: str,
    revision: str,
    path: str | None,
    hub: Hub,
) -> MdlError:
    """A 4xx/5xx from the Hub as our error, read the way huggingface_hub's
    ``hf_raise_for_status`` reads it.
    """
    status = response.status_code
    code = response.headers.get("X-Error-Code")
    # The Hub says what is wrong in X-Error-Message; a proxy or a mirror in its body (an HTML page:
    # its title).
    text = response.headers.get("X-Error-Message") or body_excerpt(
        body[:8192].decode("utf-8", errors="replace")
    )
    secrets = Secrets.of(response)  # the run's: a token or signature it sent, echoed, is cut whole
    detail = f": {printable(redact_text(text, secrets=secrets), limit=200)}" if text else ""
    target = f"{repo}/{path}" if path else repo
    shown = f"{what}: the Hub answered HTTP {status} for {target}{detail}"
    error: MdlError
    if code == "RevisionNotFound":
        error = NotFoundError(f"{what}: revision {printable(revision)!r} not found in {repo}")
    elif code == "EntryNotFound":
        error = NotFoundError(
            f"{what}: {path or 'file'} not found in {repo} at {printable(revision)!r}"
        )
    elif code == "GatedRepo":
        error = AuthError(
            f"{what}: {repo} is gated and this request is not authorised{detail}",
            hint=hub_auth_hint(code, response),
        )
    elif code == "RepoNotFound":
        hint = None if hub.token else "if it is private, set HF_TOKEN"
        error = NotFoundError(f"{what}: repository {repo} not found", hint=hint)
    elif status in (401, 403):
        error = AuthError(
            f"{what}: not authorised for {target} (HTTP {status}){detail}",
            hint=hub_auth_hint(code, response),
        )
    elif (refused := hub_refusal(response, shown)) is not None:
        error = refused  # the Hub's rate limit: waited for (no try spent), or too long a wait
    elif status in RETRYABLE_STATUSES:
        error = RetryableError(shown, retry_after=_retry_after(response.headers.get("Retry-After")))
    else:
        error = NetworkError(shown)
    # For the log's per-file line: the status and the server's own words (sanitised, 500
    # characters).
    error.status, error.server_text = status, safe_text(text, limit=500, secrets=secrets)
    return error


def hub_page_as_hf(url: str, *, endpoint: str) -> str | None:
    """The ``hf://`` text a URL on the Hub at ``endpoint`` — or on huggingface.co, whatever the
    endpoint: a URL pasted from the browser names a Hub file wherever it is served from, as ``hf
    download`` with HF_ENDPOINT fetches it from the mirror — stands for:
    ``…/blob|resolve/{rev}/{path}`` a file, ``/{owner}/{name}`` and ``…/tree/{rev}`` the whole repo;
    None for any other URL (another origin, another shape, a revision with a '/' that hf:// cannot
    name); UsageError for a folder's page or a revision a URL path folds away ('..'). The query and
    fragment (``?download=true``) are dropped; segments are URL-decoded (``refs%2Fpr%2F1``)."""
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
