"""The Xet storage asked for a file: a read token from the Hub, the file's reconstruction (or a
span's) from the CAS, each reply bounded and read strictly; what it cannot give is XetFallback."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import KW_ONLY, dataclass
from urllib.parse import urlsplit

import httpx2

from mdl.errors import AuthError, InterruptedByUserError, MdlError
from mdl.redact import Secrets, redact_url
from mdl.sources.resolve import XetRef
from mdl.transfer.connection import origin, set_read_timeout
from mdl.transfer.failures import read_reply
from mdl.transfer.http import Credentials, RetryPolicy, error_for_status, follow
from mdl.xet._protocol import (
    Fetch,
    Reconstruction,
    ReplyError,
    XetToken,
    parse_reconstruction,
    parse_token,
    token_from_headers,
)
from mdl.xet.failures import Refused, XetFallback

log = logging.getLogger("mdl.xet")

REPLY_MAX = 64 << 20  # a reconstruction of a 1 TB file lists ~16k terms: far less than this ...
# ... and of a file or span of n bytes at most this plus n / REPLY_SHARE: a term and its URL
REPLY_BASE = 64 << 10
# (well under 1 KiB) per 8 KiB of file, the smallest chunk; a padded reply costs no more memory
REPLY_SHARE = 8
ANSWER_MAX = 1 << 20  # a file-chunk-hashes answer: two summaries of O(log n) nodes, a few KiB
TOKEN_MAX = 256 << 10  # auth.md: accessToken and casUrl are at most 64000 characters each
REFRESH_BEFORE = 30.0  # seconds before its expiry a read token is asked again (auth.md)
# a CAS that is down is left for the plain path quickly, not after the origin's long backoff
CAS_RETRIES = 2
CAS_BACKOFF_CAP = 1.0


@dataclass(eq=False, repr=False)
class Cas:
    """The CAS as one run asks it: read tokens by repo and revision, reconstructions parsed one at
    a time, on the run's client with the CAS's quick retries."""

    client: httpx2.Client
    _: KW_ONLY
    retry: RetryPolicy
    cancel: threading.Event
    stall_timeout: float | None
    hub: Callable[[], Credentials]
    secrets: Secrets

    def __post_init__(self) -> None:
        given = self.retry.retries
        retries = CAS_RETRIES if given is None else min(given, CAS_RETRIES)
        self.retry = self.retry._replace(retries=retries, cap=CAS_BACKOFF_CAP)
        self._tokens: dict[str, XetToken] = {}
        self._token_lock = threading.Lock()
        self._parsing = threading.Lock()

    def token(self, url: str, what: str, *, fresh: bool = False) -> XetToken:
        """The read token for ``url`` (a repo at a revision), asked again ``REFRESH_BEFORE`` its
        expiry.
        """
        with self._token_lock:
            known = self._tokens.get(url)
            if known is None or fresh or known.expires - REFRESH_BEFORE <= time.time():
                known = self._tokens[url] = self._ask_token(url, what)
            return known

    def _ask_token(self, url: str, what: str) -> XetToken:
        def once() -> XetToken:
            credentials = self.hub()
            with follow(self.client, url, credentials=credentials, what=what) as response:
                if response.status_code != 200:
                    error = error_for_status(response, what=what, hub=True)
                    # a refusal from where the token never went (a redirect off the Hub) is no
                    # refusal of it: the plain path, as when no token can be had
                    if isinstance(error, AuthError) and (
                        origin(str(response.url)) != credentials.hub_origin
                    ):
                        raise XetFallback(
                            f"no Xet read token: {redact_url(str(response.url))}, off the Hub's"
                            f" origin, answered HTTP {response.status_code}"
                        )
                    raise error
                body = self._read(response, TOKEN_MAX, what=what)
                try:
                    return parse_token(body)
                except ReplyError:
                    if (token := token_from_headers(response.headers)) is None:
                        raise
                    return token

        try:
            token = self.retry.run(once, what=what, wait=self.cancel.wait)
        # the Hub refused the token: exit 3, as for any Hub file
        except (AuthError, InterruptedByUserError):
            raise
        except (MdlError, ReplyError) as exc:
            raise XetFallback(f"no Xet read token ({why(exc)})") from exc
        self.secrets.add(token.access_token)
        return token

    def reconstruction(
        self, ref: XetRef, what: str, *, size: int, span: tuple[int, int] | None = None
    ) -> Reconstruction:
        """The file's reconstruction (v2, else v1; ``span``: of bytes first..last only), with one
        fresh token if the CAS refuses the one we hold. Its reply is at most in proportion to the
        ``size`` bytes of the file (or of the span) it describes, and parsed one at a time per run.
        """
        described = size if span is None else span[1] - span[0] + 1
        limit = min(REPLY_MAX, REPLY_BASE + described // REPLY_SHARE)
        for fresh in (False, True):
            base, credentials = self._storage(ref, what, fresh=fresh)
            try:
                for version in (2, 1):
                    url = f"{base}/v{version}/reconstructions/{ref.hash}"
                    body = self._ask_reconstruction(
                        url, credentials, what, span, limit, v2=version == 2
                    )
                    if body is None:
                        continue
                    with self._parsing:  # a parsed reply costs a few times its bytes: one at a time
                        rec = parse_reconstruction(body, version=version, ranged=span is not None)
                    del body
                    # presigned URLs are secrets
                    if any(_downgraded(base, fetch.url) for fetch in rec.fetches):
                        raise XetFallback(
                            "its reconstruction, asked over https, names xorb URLs over plain http"
                        )
                    return rec
            except Refused:
                continue
            except ReplyError as exc:
                raise XetFallback(f"its reconstruction is malformed ({exc})") from exc
        raise XetFallback("the Xet storage refused a fresh read token")

    def chunk_hashes(
        self, ref: XetRef, what: str, ranges: Sequence[tuple[int, int]]
    ) -> bytearray | None:
        """The CAS's ``file-chunk-hashes`` answer for the file's bytes ``ranges`` (``[start,
        end)`` each; its body, at most ``ANSWER_MAX`` bytes); None when it gives none (any
        failure: the file is then released whole, as ever)."""
        named = ",".join(f"{start}-{end - 1}" for start, end in ranges)
        dirty = {"X-Range-Dirty": f"bytes={named}"}

        def once(url: str, credentials: Credentials) -> bytearray | None:
            with follow(
                self.client, url, credentials=credentials, headers=dirty, what=what
            ) as response:
                if response.status_code != 200:
                    return None
                return self._read(response, ANSWER_MAX, what=what)

        try:
            base, credentials = self._storage(ref, what)
            url = f"{base}/v2/file-chunk-hashes/{ref.hash}"
            return self.retry.run(lambda: once(url, credentials), what=what, wait=self.cancel.wait)
        # (asked beside the fetch, which hears Ctrl-C and says it: an interruption is None here)
        except (MdlError, ReplyError, XetFallback) as exc:
            log.debug("%s: no chunk hashes (%s)", what, why(exc))
            return None

    def _ask_reconstruction(
        self,
        url: str,
        credentials: Credentials,
        what: str,
        span: tuple[int, int] | None,
        limit: int,
        *,
        v2: bool,
    ) -> bytearray | None:
        headers = {"Range": f"bytes={span[0]}-{span[1]}"} if span is not None else None

        def once() -> bytearray | None:
            with follow(
                self.client, url, credentials=credentials, headers=headers, what=what
            ) as response:
                if response.status_code == 200:
                    return self._read(response, limit, what=what)
                if response.status_code in (404, 501) and v2:
                    return None  # no v2 here: v1
                if response.status_code == 401:
                    raise Refused
                raise error_for_status(response, what=what, hub=False)

        try:
            return self.retry.run(once, what=what, wait=self.cancel.wait)
        except InterruptedByUserError:
            raise
        except MdlError as exc:
            raise XetFallback(f"the Xet storage failed ({why(exc)})") from exc

    def _storage(self, ref: XetRef, what: str, *, fresh: bool = False) -> tuple[str, Credentials]:
        """The Xet storage's URL for ``ref`` and the credentials of its read token (``fresh``: one
        asked again); XetFallback when the Hub, asked over https, names it over plain http (as a
        redirect from https to http is refused)."""
        token = self.token(ref.token_url, what, fresh=fresh)
        if _downgraded(ref.token_url, token.cas_url):
            raise XetFallback("the Hub, asked over https, names a Xet storage over plain http")
        bearer = {"Authorization": f"Bearer {token.access_token}"}
        credentials = Credentials(extra=bearer, extra_origin=origin(token.cas_url))
        return token.cas_url.rstrip("/"), credentials

    def _read(self, response: httpx2.Response, limit: int, *, what: str) -> bytearray:
        """A JSON reply's body, at most ``limit`` bytes (more: ReplyError naming the URL's host,
        never read on into memory), whole within the deadline of any API reply (the client's read
        timeout); a connection lost, silent or too slow mid-body is the retryable NetworkError it
        is, as for any answer. A body that goes silent is a stall: ``--stall-timeout`` holds when
        it is shorter than the client's wait (a small JSON reply never waits longer than an answer
        may take to begin)."""
        read = (response.request.extensions.get("timeout") or {}).get("read")
        if self.stall_timeout is not None and (read is None or self.stall_timeout < read):
            set_read_timeout(response, self.stall_timeout)
        body = read_reply(response, limit, what=what, timeout=self.client.timeout.read)
        if len(body) > limit:
            raise ReplyError(
                f"the reply from {redact_url(str(response.url))} is longer than {limit:,} bytes"
            )
        return body

    def refetch(self, ref: XetRef, what: str, fetch: Fetch, *, size: int) -> Fetch:
        """A fresh URL for ``fetch``'s chunks: the reconstruction asked again (its URLs expired)."""
        for candidate in self.reconstruction(ref, what, size=size).fetches:
            if (
                candidate.xorb == fetch.xorb
                and candidate.start <= fetch.start
                and candidate.end >= fetch.end
            ):
                return candidate
        raise XetFallback("the refreshed reconstruction no longer holds the chunks asked for")


def why(exc: BaseException) -> str:
    """An error's words, without its hint."""
    return exc.message if isinstance(exc, MdlError) else str(exc)


def _downgraded(asked: str, named: str) -> bool:
    """Whether an answer read over https names a URL over plain http (its secrets and bytes then
    in the clear).
    """
    return urlsplit(asked).scheme.lower() == "https" and urlsplit(named).scheme.lower() != "https"
