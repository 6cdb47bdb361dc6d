"""A request that failed, in words: the error a reply that is not the file is, or a transport
failure (what is worth retrying, its exit code and hint), and the server's own text, cut, printable
and redacted. ``mdl.transfer.http`` asks; this says what went wrong."""

from __future__ import annotations

import re
from contextlib import suppress
from urllib.parse import SplitResult, urlsplit

import httpcore2
import httpx2

from mdl.errors import AuthError, MdlError, NetworkError, causes
from mdl.redact import (
    Secrets,
    hide_cut_secret,
    is_secret_param,
    printable,
    redact_text,
    redact_url,
    safe_text,
)
from mdl.report import SERVER_TEXT_LIMIT
from mdl.setting import CA_HINT
from mdl.transfer._headers import retry_after_seconds
from mdl.transfer.connection import Proxy, SlowBody, set_reply_deadline
from mdl.transfer.ratelimit import MAX_HUB_WAIT, Refusal, refusal_of
from mdl.transfer.tls import certificate_problem
from mdl.units import human_seconds

RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504, 520, 521, 522, 523, 524})
_TIMEOUT_PHASES = (
    (httpx2.ConnectTimeout, "connect"),
    (httpx2.WriteTimeout, "write"),
    (httpx2.PoolTimeout, "pool"),
)


class RetryableError(NetworkError):
    """A failure worth retrying (reset, timeout, 408, 429, 5xx); carries the server's
    Retry-After. ``refusal``: the Hub refused for its rate limit and stated a wait, which costs no
    try (as its answer marked it: :func:`mdl.transfer.ratelimit.refusal_of`).
    """

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        hint: str | None = None,
        refusal: Refusal | None = None,
        answered: bool = False,
    ) -> None:
        super().__init__(message, hint=hint)
        self.retry_after = retry_after
        self.refusal = refusal
        # a server's error answer (5xx, 408, 429): it is up, and gets a count of tries, not a wait
        self.answered = answered


RATE_LIMIT_HINT = (
    "the Hub limits requests by IP address and token: try again later, spread the machines' starts,"
    " or fill a mirror once for the fleet"
)


class UnreachableError(RetryableError):
    """The host did not answer at all (refused, DNS, connect timeout): worth a quick retry, not
    five.
    """


class ExpiredURLError(AuthError):
    """A 403 from a CDN on a signed URL: re-resolve from the Hub and continue."""


def refusal_error(response: httpx2.Response, shown: str, *, hub: bool) -> MdlError:
    """The error an answer that is no 401/403/404 is: from the Hub (``hub``), a 429/503 whose
    RateLimit header states a wait (as its answer is marked) is retried after the wait without
    spending a try, or, past MAX_HUB_WAIT, NetworkError (exit 5) at once naming the wait; else a
    retryable status is retried (after its Retry-After), any other final."""
    refusal = refusal_of(response) if hub else None
    if refusal is not None and refusal.wait > MAX_HUB_WAIT:
        return NetworkError(
            f"{shown}; the Hub asks to wait {human_seconds(refusal.wait)}; mdl waits at most"
            f" {human_seconds(MAX_HUB_WAIT)}",
            hint=RATE_LIMIT_HINT,
        )
    if refusal is not None:
        return RetryableError(shown, retry_after=refusal.wait, refusal=refusal)
    if response.status_code in RETRYABLE_STATUSES:
        delay = retry_after_seconds(response.headers.get("Retry-After"))
        return RetryableError(shown, retry_after=delay, answered=True)
    return NetworkError(shown)


# bytes of an error body read at most: a hostile server may send gigabytes
ERROR_BODY_LIMIT = 8 * 1024
MESSAGE_TEXT_LIMIT = 200  # characters of it in the one-line message people see


def server_text(response: httpx2.Response, body: bytes | bytearray | None = None) -> str:
    """The server's own error text (X-Error-Message, else the start of the body: ``body`` when it
    was read, else read now), printable and redacted.
    """
    text = response.headers.get("X-Error-Message", "")
    if not text:
        if body is None:
            body = bytearray()
            with suppress(httpx2.HTTPError, httpx2.StreamError):  # what came before it is said
                body_start(response, ERROR_BODY_LIMIT, into=body)
        text = bytes(body[:ERROR_BODY_LIMIT]).decode(response.encoding or "utf-8", errors="replace")
        if len(body) >= ERROR_BODY_LIMIT:  # the cut may have split a secret the body echoes
            text = hide_cut_secret(text, Secrets.of(response))
    return safe_text(body_excerpt(text), limit=SERVER_TEXT_LIMIT, secrets=Secrets.of(response))


def body_start(response: httpx2.Response, size: int, *, into: bytearray | None = None) -> bytearray:
    """The first ``size`` bytes of a reply's body (all of it when shorter), decoded as sent; none
    read on once they have come, so a sender of gigabytes costs ``size`` and a chunk of memory. A
    reader that refuses a body past a bound asks for one byte more than the bound. ``into``: the
    buffer filled, which keeps what came before a failure."""
    body = bytearray() if into is None else into
    for chunk in response.iter_bytes():
        body += chunk
        if len(body) >= size:
            del body[size:]
            break
    return body


def read_reply(
    response: httpx2.Response, limit: int, *, what: str, timeout: float | None
) -> bytearray:
    """An API reply read whole (a registry's manifest or token, the CAS's JSON): its first
    ``limit`` + 1 bytes at most (one past the bound, which the reader refuses), whole within
    ``REPLY_FACTOR`` × the read ``timeout`` however it trickles. A connection cut, silent or too
    slow mid-body is the retryable error a transport failure is (``RetryPolicy.run`` tries it
    again, then exit 5), as when no byte came."""
    set_reply_deadline(response, timeout)
    try:
        return body_start(response, limit + 1)
    except httpx2.TransportError as exc:
        raise transport_error(exc, what=what, url=str(response.url)) from exc
    except httpx2.DecodingError as exc:
        shown = redact_url(str(response.url))
        raise NetworkError(f"{what}: {shown} sent a body that cannot be decoded") from exc


# Markup that starts an HTML document (an XML or JSON body is left alone: its text is the message).
_HTML_START = r"(?i)<(?:!doctype\s+html|html|head|body|title|meta|h1|center)\b"
_SCAN_CHARS = 64 * 1024  # a title past this is not worth looking for


def looks_like_html(text: str) -> bool:
    head = text.lstrip()[:2048]
    return head.startswith("<") and re.search(_HTML_START, head) is not None


def body_excerpt(text: str) -> str:
    """An error body on one line: an HTML page by its title, else its first visible text; any
    other body as it is.
    """
    if not looks_like_html(text):
        return " ".join(text.split())
    from mdl.transfer._htmltext import PageText  # (html.parser: only for an HTML error page)

    page = PageText()
    # malformed markup older parsers reject: keep what was read
    with suppress(AssertionError, ValueError):
        page.feed(text[:_SCAN_CHARS])
        page.close()
    return " ".join("".join(page.title).split()) or " ".join("".join(page.text).split())


def hub_auth_hint(code: str | None, response: httpx2.Response) -> str:
    """What to do about the Hub's 401/403 ``response`` (a gated repo also needs its terms accepted,
    as GatedRepoError says): set a token when none was sent; when one was, it was refused or lacks
    access, and setting one is no help."""
    if (sent := credentials_sent(response)) and code == "GatedRepo":
        return (
            "the token sent has no access: request it on the repo's Hub page (check the account:"
            " `hf auth whoami`)"
        )
    if sent:
        return (
            "the Hub refused the token sent: check HF_TOKEN (or `hf auth login`) with `hf auth"
            " whoami`; a gated repo also needs access requested on its Hub page"
        )
    if code == "GatedRepo":
        return "accept the repo's terms on its Hub page, then set HF_TOKEN or run `hf auth login`"
    return (
        "set HF_TOKEN or run `hf auth login` (a gated repo also needs its terms accepted on its Hub"
        " page)"
    )


def credentials_sent(response: httpx2.Response) -> bool:
    """Whether the request ``response`` answers carried a credential (Authorization, an API key,
    a cookie).
    """
    try:
        return any(
            is_secret_param(name) or name.lower() == "cookie" for name in response.request.headers
        )
    except RuntimeError:  # a response made without its request (tests): nothing was sent
        return False


REFUSED_CREDENTIALS = (
    "the server refused the credentials sent (-H, the catalog's headers or ~/.netrc): check them"
)
NO_CREDENTIALS = (
    "the server wants credentials: send them with -H (get), the catalog's headers or a ~/.netrc"
    " login"
)


def transport_error(
    exc: Exception, *, what: str, url: str, server: str | None = None, hint: str | None = None
) -> NetworkError:
    """A transport failure in one line naming the proxy, server or certificate (refused: final,
    else retryable).
    """
    parts = _asked_at(exc, url)
    host = parts.hostname or parts.netloc.rsplit("@", 1)[-1]
    who = server or parts.netloc.rsplit("@", 1)[-1]
    reason = printable(redact_text(str(exc)), limit=300) or type(exc).__name__
    proxy: Proxy | None = getattr(exc, "mdl_proxy", None)
    if (problem := certificate_problem(exc)) is not None:
        return NetworkError(
            f"{what}: TLS certificate of {host} not trusted ({redact_text(problem)})", hint=CA_HINT
        )
    if proxy is not None and isinstance(
        exc, httpx2.ConnectError | httpx2.ConnectTimeout | httpx2.ProxyError
    ):
        return UnreachableError(
            f"{what}: cannot reach {proxy.describe()}: {reason}",
            hint=f"check the proxy, or add {host} to NO_PROXY to go direct",
        )
    through = f" through {proxy.describe()}" if proxy is not None else ""
    if any(getattr(cause, "error_status_hint", None) == 431 for cause in causes(exc)):
        return _head_too_long(what=what, url=url, through=through)
    if isinstance(exc, httpx2.TimeoutException):
        return UnreachableError(f"{what}: {who} {_silent(exc)}{through}", hint=hint)
    if isinstance(exc, httpx2.ConnectError):
        # "cannot reach the Hub at …", "… to host:port"
        verb = "cannot reach" if server else "cannot connect to"
        return UnreachableError(f"{what}: {verb} {who}{through}: {reason}", hint=hint)
    return RetryableError(f"{what}: error from {who}{through}: {reason}", hint=hint)


def _asked_at(exc: Exception, url: str) -> SplitResult:
    """Where the failed request went: ``url``, unless it says only what was asked (the Xet
    storage): then the request's own URL."""
    parts = urlsplit(url)
    if not parts.netloc and isinstance(exc, httpx2.RequestError):
        with suppress(RuntimeError):  # (one raised without its request)
            parts = urlsplit(str(exc.request.url))
    return parts


def _head_too_long(*, what: str, url: str, through: str) -> RetryableError:
    """h11 refused the reply's status line and headers for their size (its one error with
    ``error_status_hint`` 431, under the HTTP library's): the server answered, a count of tries
    as for a 5xx."""
    limit = getattr(httpcore2.HTTP11Connection, "MAX_INCOMPLETE_EVENT_SIZE", None)
    over = f"exceed {limit // 1024} KiB" if isinstance(limit, int) else "are too long"
    shown = safe_text(redact_url(url), limit=200)
    return RetryableError(
        f"{what}: the server's reply headers {over} ({shown}{through})", answered=True
    )


def _silent(exc: httpx2.TimeoutException) -> str:
    """What a timeout says the server did not do, and within how long."""
    if isinstance(exc, SlowBody):
        return f"sent its reply too slowly ({exc})"
    phase = next((name for kind, name in _TIMEOUT_PHASES if isinstance(exc, kind)), "read")
    try:
        limit = (exc.request.extensions.get("timeout") or {}).get(phase)
    except RuntimeError:  # an exception raised without its request
        limit = None
    within = f" within {limit:g} s" if isinstance(limit, int | float) else ""
    if isinstance(exc, httpx2.ConnectTimeout):
        return f"did not accept a connection{within}"
    return f"did not answer{within}"
