"""The Hub API (huggingface_hub's requests) on the run's one client and TokenGuard; every reply
passes hubreplies."""

from __future__ import annotations

import logging
import os
import re
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, NamedTuple, NoReturn
from urllib.parse import quote, urljoin

import httpx2

from mdl.catalog.settings import hub_token_problem
from mdl.errors import AuthError, HubReplyError, LocalFSError, MdlError, NotFoundError, UsageError
from mdl.lazy import import_ahead
from mdl.paths import shown_path
from mdl.redact import Secrets, printable, redact_url
from mdl.sources.huburls import hub_api_url, hub_file_url
from mdl.transfer.body import promised
from mdl.transfer.connection import drain, origin, set_reply_deadline
from mdl.transfer.failures import (
    body_start,
    hub_auth_hint,
    refusal_error,
    server_text,
    transport_error,
)
from mdl.transfer.http import (
    Credentials,
    RetryPolicy,
    TokenGuard,
    follow,
    make_client,
    refuse_redirect,
)

# the replies' checks, loaded only when the Hub answers (mdl get of a plain URL never asks it)
if TYPE_CHECKING:
    from mdl.sources._hubreplies import FileMetadata, TreeEntry

HUB_HINT = "check the network, or set HF_ENDPOINT to a reachable mirror"
MAX_REPLY_BYTES = 32 << 20  # a listing page of 1000 entries is ~300 kB; more is not a Hub talking
log = logging.getLogger("mdl.hub")


class ListingLimits(NamedTuple):
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


def stored_token() -> str | None:
    """The token huggingface_hub has stored (``hf auth login``; read only when the Hub is needed
    and ``HF_TOKEN`` is not set: mdl.catalog.settings.hf_token); a file that cannot be read (a
    folder: exit 7), is not UTF-8 text or holds a token no header can carry (exit 2) is named,
    never shown."""
    from huggingface_hub import constants

    if _nothing_stored(constants.HF_TOKEN_PATH):
        return None
    from huggingface_hub import get_token

    where = shown_path(constants.HF_TOKEN_PATH)
    try:
        token = get_token()
    except UnicodeDecodeError as exc:
        raise UsageError(f"{where}: the Hub token file is not UTF-8 text") from exc
    except OSError as exc:  # (a file not found is no token: huggingface_hub's own answer)
        if exc.filename is None:
            raise  # not a file's
        said = (exc.strerror or "not readable").lower()
        raise LocalFSError(f"{shown_path(exc.filename)}: the Hub token file: {said}") from exc
    if token is not None and (bad := hub_token_problem(token, where)) is not None:
        raise bad
    return token


def _nothing_stored(path: str) -> bool:
    """Whether huggingface_hub's ``get_token`` (2.x) has no token to find: none of its sources (an
    OIDC exchange HF_OIDC_RESOURCE asks for, HF_TOKEN or its old name, the token file at ``path``,
    Colab's secrets) is there. Then its module (huggingface_hub.utils._auth, with yaml and
    filelock: 25-50 ms, before a Hub pull's first request) is not loaded; anything there is the
    library's to read (tests/sources/test_stored_token.py holds the two equal)."""
    names = ("HF_OIDC_RESOURCE", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")
    # (Colab's kernel has google.colab loaded)
    if any(os.environ.get(name) for name in names) or "google.colab" in sys.modules:
        return False
    try:
        os.lstat(path)
    except FileNotFoundError:  # the one absence the library reads as no token
        return True
    except OSError:  # (a file where a folder is, a loop, no access: the library's to say why)
        return False
    return False


class RepoMissingError(NotFoundError):
    """The Hub's RepoNotFound: no such repo of that type (or a private one, asked without a
    token)."""


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
        url = hub_api_url(self.endpoint, repo, repo_type, "revision", revision)
        try:
            response, body = self._fetch("GET", url, what=what, repo=repo, revision=revision)
        except RepoMissingError as exc:
            self._missing(exc, repo, repo_type=repo_type, what=what)
        from mdl.sources._hubreplies import parse_revision

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
        from mdl.sources._hubreplies import next_page_url, parse_tree_page

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
        """What the file's resolve URL answers a GET of its first byte (its redirects on the Hub
        followed, the first off it not: that redirect carries what a HEAD would, and where the
        file's ranges go, so no HEAD is spent): commit, ETag (sha256 for LFS, blob sha1
        otherwise), size, Xet hash, and the CDN URL (``location``) of a redirected file.
        """
        url = self.file_url(repo, path, repo_type=repo_type, revision=revision)
        # the parsers (huggingface_hub's utils, for the Xet headers: ~25 ms) load while the answer
        # comes; a pull of one file of a repo asks this first, and they were ~50 ms between its
        # answer and the file's ranges
        loaded = import_ahead("mdl.sources._hubreplies", "huggingface_hub.utils")
        try:
            response, _ = self._fetch(
                "GET", url, what=what, repo=repo, revision=revision, path=path, first_byte=True
            )
        except RepoMissingError as exc:
            self._missing(exc, repo, repo_type=repo_type, what=what)
        loaded()
        from mdl.sources._hubreplies import parse_file_metadata, parse_xet_head

        redirected = response.has_redirect_location
        meta = parse_file_metadata(
            response.headers,
            total=None if redirected else _file_size(response, what=what),
            what=what,
            url=url,
        )
        if redirected:  # off the Hub (``_fetch`` follows the others): the ranges go there
            location = urljoin(str(response.url), response.headers["Location"])
            refuse_redirect(str(response.url), location, what=what)
            meta = replace(meta, location=location)
        xet = parse_xet_head(response, endpoint=self.endpoint, what=what)
        return meta if xet is None else replace(meta, xet_hash=xet[0], xet_auth=xet[1])

    def _missing(self, exc: RepoMissingError, repo: str, *, repo_type: str, what: str) -> NoReturn:
        """``exc`` raised again; for a model repo not found whose name a dataset has (asked once,
        after the 404), a NotFoundError from it with the dataset's hf:// URI, as ``hf download``
        users ask without ``--repo-type``."""
        if repo_type == "model":
            try:
                self._fetch(
                    "GET",
                    hub_api_url(self.endpoint, repo, "dataset"),
                    what=what,
                    repo=repo,
                    revision="main",
                )
            except MdlError:
                pass  # no such dataset either
            else:
                raise NotFoundError(
                    f"{exc.message}; is it a dataset? hf://datasets/{repo}",
                    hint=f"a dataset: mdl get hf://datasets/{repo} (or --repo-type dataset)",
                ) from exc
        raise exc

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
        # a path its quoting must agree on, checked once per listing
        odd = "d ir/ü #?%.x"
        if base.endswith("/") and base + quote(odd) == self.file_url(
            repo, odd, repo_type=repo_type, revision=revision
        ):
            return lambda path: base + quote(path)  # hf_hub_url's quoting of a filename
        # built otherwise now
        return lambda path: self.file_url(repo, path, repo_type=repo_type, revision=revision)

    def _fetch(
        self,
        method: str,
        url: str,
        *,
        what: str,
        repo: str,
        revision: str,
        path: str | None = None,
        first_byte: bool = False,
    ) -> tuple[httpx2.Response, bytes]:
        """The last answer and its whole body, errors translated, retried on 5xx, 429 and dropped
        connections. Redirects stay on the Hub's origin; an API call redirected off the Hub is
        hostile. ``first_byte``: a file's first byte is asked (no body kept) and a redirect off
        the Hub is the answer (the metadata is on it, as in huggingface_hub's HEAD)."""

        def rule(current: str, target: str) -> bool:
            if origin(target) == self.origin:
                return True
            if first_byte:
                return False
            raise HubReplyError(
                f"{what}: the Hub redirected {redact_url(current)} to another origin"
                f" ({redact_url(target)}); refused"
            )

        headers = {"Accept-Encoding": "identity"}
        if first_byte:
            headers["Range"] = "bytes=0-0"

        def attempt() -> tuple[httpx2.Response, bytes]:
            try:
                with follow(
                    self.client,
                    url,
                    credentials=Credentials(hub_origin=self.origin, token=self.token),
                    headers=headers,
                    method=method,
                    what=what,
                    rule=rule,
                    server=f"the Hub at {self.endpoint}",
                    hint=HUB_HINT,
                ) as response:
                    set_reply_deadline(response, self.client.timeout.read)
                    if first_byte and not _refused(response):
                        drain(response)  # a byte, or a redirect's few: the connection is kept
                        return response, b""
                    body = _whole_body(response, what=what)
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
            if response.is_error:  # (an empty file's 416 returned above)
                raise _status_error(
                    response, body, what=what, repo=repo, revision=revision, path=path, hub=self
                )
            return response, body

        wait = self.cancel.wait if self.cancel is not None else None
        return self.retry.run(attempt, what=what, wait=wait)


# a 416's Content-Range naming a file of 0 bytes (RFC 9110 §14.4)
_EMPTY_FILE = re.compile(r"[ \t]*bytes[ \t]+\*/0+[ \t]*", re.ASCII | re.IGNORECASE)


def _refused(response: httpx2.Response) -> bool:
    """An error answer to a first byte's GET; an empty file's 416 (``bytes */0``) is none: it
    has no byte 0 to give (RFC 9110 §14.1.1)."""
    empty = _EMPTY_FILE.fullmatch(response.headers.get("Content-Range", "")) is not None
    return response.is_error and not (response.status_code == 416 and empty)


def _file_size(response: httpx2.Response, *, what: str) -> int | None:
    """The file's size a first byte's answer states: its Content-Range total (a 206, or an empty
    file's 416), else a 200's length (a server that ignored the range)."""
    if response.status_code == 416:
        return 0
    return promised(response, what=what).total if response.status_code in (200, 206) else None


def _whole_body(response: httpx2.Response, *, what: str) -> bytes:
    """The whole body, within MAX_REPLY_BYTES whatever is sent (more: HubReplyError naming the
    URL, never read on into memory)."""
    body = body_start(response, MAX_REPLY_BYTES + 1)
    if len(body) > MAX_REPLY_BYTES:
        raise HubReplyError(
            f"{what}: the reply from {redact_url(str(response.url))} is larger than"
            f" {MAX_REPLY_BYTES} bytes"
        )
    return bytes(body)


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
    # its title). Redacted once, kept for the log's per-file line, its start said in the message.
    said = server_text(response, body)
    detail = f": {printable(said, limit=200)}" if said else ""
    target = f"{repo}/{path}" if path else repo
    shown = f"{what}: the Hub answered HTTP {status} for {target}{detail}"
    error: MdlError
    if code == "RevisionNotFound":
        error = NotFoundError(f"{what}: revision {printable(revision)!r} not found in {repo}")
    elif code == "EntryNotFound":
        # a name with no suffix may be one of the repo's folders, which the Hub serves no file of
        folder = path is not None and "." not in path.rstrip("/").rpartition("/")[2]
        wanted = f"{path}".rstrip("/") + "/*"
        error = NotFoundError(
            f"{what}: {path or 'file'} not found in {repo} at {printable(revision)!r}",
            hint=f"a folder of the repo? its files are the repo's with --include"
            f" '{printable(wanted)}' (get), or include = ['{printable(wanted)}'] (a catalog's)"
            if folder
            else None,
        )
    elif code == "GatedRepo":
        error = AuthError(
            f"{what}: {repo} is gated and this request is not authorised{detail}",
            hint=hub_auth_hint(code, response),
        )
    elif code == "RepoNotFound":
        hint = None if hub.token else "if it is private, set HF_TOKEN"
        error = RepoMissingError(f"{what}: repository {repo} not found", hint=hint)
    elif status in (401, 403):
        error = AuthError(
            f"{what}: not authorised for {target} (HTTP {status}){detail}",
            hint=hub_auth_hint(code, response),
        )
    else:  # the Hub's rate limit (waited for, no try spent), a retryable status, or final
        error = refusal_error(response, shown, hub=True)
    error.status, error.server_text = status, said
    return error
