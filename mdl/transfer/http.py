"""The one HTTP client (httpx2), the one redirect follower (the token guard), errors in words,
the one retry loop.
"""

from __future__ import annotations

import logging
import random
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import closing, contextmanager, suppress
from dataclasses import dataclass, field
from typing import TypeVar
from urllib.parse import urljoin, urlsplit

import httpx2

from mdl.errors import (
    AuthError,
    InterruptedByUserError,
    MdlError,
    NetworkError,
    NotFoundError,
    TokenLeakError,
    UsageError,
    WebPageError,
)
from mdl.paths import is_model_file_name, names_model_file
from mdl.redact import (
    Secrets,
    hide_cut_secret,
    is_secret_param,
    is_signed_url,
    printable,
    redact_text,
    redact_url,
    safe_text,
)
from mdl.report import SERVER_TEXT_LIMIT
from mdl.transfer._files import FolderTransport
from mdl.transfer._headers import retry_after_seconds as retry_after_seconds
from mdl.transfer.connection import DEFAULT_TIMEOUT, NetTransport, Proxy, drain, origin
from mdl.transfer.ratelimit import HUB_REFUSALS, MAX_HUB_WAIT, HubWaits, Refusal, refusal_of
from mdl.transfer.tls import CA_HINT, certificate_problem
from mdl.units import human_seconds
from mdl.version import __version__

log = logging.getLogger("mdl.http")
T = TypeVar("T")

USER_AGENT = f"mdl/{__version__}"
MAX_REDIRECTS = 10
# a host that does not answer at all is offline, not flaky: fail within seconds
UNREACHABLE_RETRIES = 1
RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504, 520, 521, 522, 523, 524})
_TIMEOUT_PHASES = (
    (httpx2.ConnectTimeout, "connect"),
    (httpx2.WriteTimeout, "write"),
    (httpx2.PoolTimeout, "pool"),
)


def make_client(
    *,
    pool_size: int,
    timeout: float = DEFAULT_TIMEOUT,
    environ: Mapping[str, str] | None = None,
    transport: NetTransport | httpx2.BaseTransport | None = None,
    secrets: Secrets | None = None,
) -> httpx2.Client:
    """A pooled client that never follows redirects itself (``follow`` does); proxies and CAs from
    ``environ`` alone (or ``transport``'s: the run's routes as mounts, or one transport for every
    URL); ``secrets``: the run's, told every URL asked for."""
    net = (
        NetTransport(timeout=timeout, environ=environ, pool_size=pool_size)
        if transport is None
        else transport
    )
    # file://localhost/... (a shared folder's reads, mdl.transfer._files) on every client: a
    # redirect there is refused before it is asked (refuse_redirect): only mdl's own URLs reach it
    mounts = {**(net.mounts if isinstance(net, NetTransport) else {}), "file://": FolderTransport()}
    return httpx2.Client(
        timeout=httpx2.Timeout(timeout),
        follow_redirects=False,
        headers={"User-Agent": USER_AGENT, "Accept-Encoding": "identity"},
        transport=net.default if isinstance(net, NetTransport) else net,
        mounts=mounts,
        trust_env=False,
        event_hooks={"request": [secrets] if secrets is not None else []},
    )


def shown_origin_of(at: tuple[str, str, int]) -> str:
    scheme, host, port = at
    return f"{scheme}://{host}:{port}"


@dataclass(frozen=True)
class Credentials:
    """What a request carries to whom: the Hub token to the Hub's origin, a direct URL's own headers
    (``-H``, the catalog's ``headers``, a netrc login) to that URL's origin (``extra_origin``), on
    any hop that lands there and never on one that leaves it (as curl keeps Authorization on the
    host it was given for)."""

    hub_origin: tuple[str, str, int] | None = None
    token: str | None = None
    extra: Mapping[str, str] = field(default_factory=dict)
    extra_origin: tuple[str, str, int] | None = None
    # extra's Authorization is a netrc login (named when a redirect leaves it behind)
    netrc: bool = False
    # a registry's 401 at extra's origin: True when the request is worth sending once more (a new
    # token in extra: mdl.sources.ociauth), so a token that expires mid-blob costs one request
    renew: Callable[[httpx2.Response], bool] | None = field(default=None, compare=False)

    def renewed(self, response: httpx2.Response) -> bool:
        """Whether a 401 from extra's origin was answered by a renewal (ask the same URL again)."""
        return (
            self.renew is not None
            and response.status_code == 401
            and origin(str(response.url)) == self.extra_origin
            and self.renew(response)
        )

    def headers_for(self, url: str) -> dict[str, str]:
        at = origin(url)
        headers: dict[str, str] = (
            dict(self.extra) if self.extra_origin is not None and at == self.extra_origin else {}
        )
        if self.token and self.hub_origin is not None and at == self.hub_origin:
            headers["Authorization"] = f"Bearer {self.token}"
        return headers

    def withheld(self, url: str) -> tuple[str, str] | None:
        """Why a request to ``url`` carried none of ``extra`` (a redirect left the origin they were
        given for), and what would send them there; None: they went, or there were none."""
        at = origin(url)
        if not self.extra or self.extra_origin is None or at == self.extra_origin:
            return None
        (scheme, host, _), given = at, self.extra_origin
        why = (
            "another host"
            if host != given[1]
            else "another scheme"
            if scheme != given[0]
            else "another port"
        )
        login = "the netrc login" if self.netrc else ""
        headers = (
            "the headers given (-H, the catalog's headers)" if len(self.extra) > self.netrc else ""
        )
        what = " and ".join(filter(None, (login, headers)))
        were = "were" if headers else "was"
        return (
            (
                f"{what} for {shown_origin_of(given)} {were} withheld on the redirect to"
                f" {shown_origin_of(at)} ({why}: mdl sends credentials only to the origin they were"
                " given for, on no redirect that leaves it)"
            ),
            (
                f"give the URL it redirects to ({redact_url(url)}) so that they go there, if you"
                " trust it with them"
            ),
        )

    def from_hub(self, response: httpx2.Response) -> bool:
        return self.hub_origin is not None and origin(str(response.url)) == self.hub_origin

    @property
    def secrets(self) -> tuple[str, ...]:
        return tuple(v for v in (self.token, *self.extra.values()) if v)


class TokenGuard:
    """A request hook: a protected token in any header to an origin not the Hub endpoint's is
    refused before sending.
    """

    def __init__(self, endpoint: str) -> None:
        self.endpoint, self.origin = endpoint, origin(endpoint)
        self._tokens: frozenset[str] = frozenset()
        self._lock = threading.Lock()

    @classmethod
    def on(cls, client: httpx2.Client, endpoint: str) -> TokenGuard:
        hooks = client.event_hooks["request"]
        if found := next(
            (h for h in hooks if isinstance(h, TokenGuard) and h.origin == origin(endpoint)), None
        ):
            return found
        hooks.append(guard := cls(endpoint))
        return guard

    def protect(self, token: str | None) -> None:
        if token:
            with self._lock:
                self._tokens = self._tokens | {token}

    def __call__(self, request: httpx2.Request) -> None:
        tokens = self._tokens
        if not tokens or origin(str(request.url)) == self.origin:
            return
        for name, value in request.headers.items():
            if any(token in value for token in tokens):
                raise TokenLeakError(
                    f"refused to send the Hub token ({name} header) to"
                    f" {shown_origin_of(origin(str(request.url)))}: it goes to the Hub at"
                    f" {shown_origin_of(origin(self.endpoint))} only",
                    hint="a server sent mdl to another origin; nothing was sent there",
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


class UnreachableError(RetryableError):
    """The host did not answer at all (refused, DNS, connect timeout): worth a quick retry, not
    five.
    """


class ExpiredURLError(AuthError):
    """A 403 from a CDN on a signed URL: re-resolve from the Hub and continue."""


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


# Markup that starts an HTML document (an XML or JSON body is left alone: its text is the message).
_HTML_START = re.compile(
    r"<(?:!doctype\s+html|html|head|body|title|meta|h1|center)\b", re.IGNORECASE
)
_SCAN_CHARS = 64 * 1024  # a title past this is not worth looking for


def looks_like_html(text: str) -> bool:
    head = text.lstrip()[:2048]
    return head.startswith("<") and _HTML_START.search(head) is not None


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


def error_for_status(
    response: httpx2.Response,
    *,
    what: str,
    hub: bool | None = None,
    credentials: Credentials | None = None,
) -> MdlError:
    """The error a final answer that is not the file's is (``hub``: from the Hub, else as
    ``credentials`` say; a 401 after a redirect that left the user's credentials behind says so)."""
    if hub is None:
        hub = credentials is not None and credentials.from_hub(response)
    text = server_text(response)
    detail = printable(text, limit=MESSAGE_TEXT_LIMIT)
    error = _Refusal(response, what, hub=hub, credentials=credentials, detail=detail).error()
    error.status, error.server_text = response.status_code, text
    return error


@dataclass(frozen=True)
class _Refusal:
    """A final answer that is not the file's, put in words (``detail``: the server's own)."""

    response: httpx2.Response
    what: str
    hub: bool
    credentials: Credentials | None
    detail: str

    def said(self, words: str = "") -> str:
        """``what: words (HTTP 403 from URL): detail``; without ``words``, no brackets."""
        answer = f"HTTP {self.response.status_code} from {redact_url(str(self.response.url))}"
        told = f"{words} ({answer})" if words else answer
        suffix = f": {self.detail}" if self.detail else ""
        return f"{self.what}: {told}{suffix}"

    def error(self) -> MdlError:
        if (status := self.response.status_code) == 401:
            return self.unauthorised()
        if status == 403:
            return self.forbidden()
        if status in (404, 410):
            return NotFoundError(self.said("not found"))
        return refusal_error(self.response, self.said(), hub=self.hub)

    def unauthorised(self) -> AuthError:
        url, credentials = str(self.response.url), self.credentials
        withheld = credentials.withheld(url) if credentials is not None and not self.hub else None
        if withheld is not None:
            return AuthError(f"{self.said('not authorised')}; {withheld[0]}", hint=withheld[1])
        if self.hub:
            hint = hub_auth_hint(self.response.headers.get("X-Error-Code"), self.response)
        elif credentials_sent(self.response):
            hint = REFUSED_CREDENTIALS
        else:
            hint = NO_CREDENTIALS
        return AuthError(self.said("not authorised"), hint=hint)

    def forbidden(self) -> AuthError:
        if self.hub:
            hub_hint = hub_auth_hint(self.response.headers.get("X-Error-Code"), self.response)
            return AuthError(self.said("access denied"), hint=hub_hint)
        # only its issuer can sign a new one
        if is_signed_url(str(self.response.url)):
            expired = "the link has expired or was revoked; ask for a fresh one"
            return ExpiredURLError(self.said(expired))
        hint = REFUSED_CREDENTIALS if credentials_sent(self.response) else None
        return ExpiredURLError(self.said("access denied"), hint=hint)


def transport_error(
    exc: Exception, *, what: str, url: str, server: str | None = None, hint: str | None = None
) -> NetworkError:
    """A transport failure in one line naming the proxy, server or certificate (refused: final,
    else retryable).
    """
    parts = urlsplit(url)
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
    if isinstance(exc, httpx2.TimeoutException):
        return UnreachableError(f"{what}: {who} {_silent(exc)}{through}", hint=hint)
    if isinstance(exc, httpx2.ConnectError):
        # "cannot reach the Hub at …", "… to host:port"
        verb = "cannot reach" if server else "cannot connect to"
        return UnreachableError(f"{what}: {verb} {who}{through}: {reason}", hint=hint)
    return RetryableError(f"{what}: error from {who}{through}: {reason}", hint=hint)


def _silent(exc: httpx2.TimeoutException) -> str:
    """What a timeout says the server did not do, and within how long."""
    phase = next((name for kind, name in _TIMEOUT_PHASES if isinstance(exc, kind)), "read")
    try:
        limit = (exc.request.extensions.get("timeout") or {}).get(phase)
    except RuntimeError:  # an exception raised without its request
        limit = None
    within = f" within {limit:g} s" if isinstance(limit, int | float) else ""
    if isinstance(exc, httpx2.ConnectTimeout):
        return f"did not accept a connection{within}"
    return f"did not answer{within}"


@dataclass
class _Renewal:
    """A hop refused (401) by the origin of credentials that can be renewed is asked once more,
    with what the renewal gave; a renewal refused again is the answer."""

    credentials: Credentials
    used: bool = False

    def asks_again(self, response: httpx2.Response) -> bool:
        if self.used or not self.credentials.renewed(response):
            return False
        self.used = True
        drain(response)
        return True


@contextmanager
def follow(
    client: httpx2.Client,
    url: str,
    *,
    credentials: Credentials,
    headers: Mapping[str, str] | None = None,
    method: str = "GET",
    what: str,
    rule: Callable[[str, str], bool] | None = None,
    server: str | None = None,
    hint: str | None = None,
    saved_as: str | None = None,
    redirected: Callable[[str], None] | None = None,
) -> Iterator[httpx2.Response]:
    """Yield the final, unread response (closed after): ``credentials`` decide each hop's headers,
    ``rule(current, target)`` whether to follow (False: yield the redirect); https→http never;
    ``saved_as``: the name the body is saved under, when it is a download (a web page is refused for
    a model file's name); ``redirected(target)``: told each target followed, before it is asked."""
    current = url  # each hop's URL registered by the client's Secrets hook as it is sent
    renewal = _Renewal(credentials)
    for _ in range(MAX_REDIRECTS + 1):
        request_headers = {**(headers or {}), **credentials.headers_for(current)}
        try:
            response = client.send(
                client.build_request(method, current, headers=request_headers), stream=True
            )
        # refused here, before a byte left: no server said anything, and
        except httpx2.LocalProtocolError as exc:
            # asking again cannot help. Never its words: h11 quotes the header value it refused
            # (usually a secret).
            raise UsageError(
                f"{what}: the HTTP library refused to send the request to {redact_url(current)} (a"
                " header or the URL it cannot send); nothing was sent",
                hint=(
                    "check the headers given (-H, the catalog's headers, the variables they take)"
                    " and the URL"
                ),
            ) from exc
        except httpx2.TransportError as exc:
            raise transport_error(exc, what=what, url=current, server=server, hint=hint) from exc
        except httpx2.InvalidURL as exc:
            raise NetworkError(f"{what}: invalid URL {redact_url(current)}: {exc}") from exc
        with closing(response):  # however this hop ends (a redirect followed is drained first)
            if renewal.asks_again(response):  # a registry's token renewed: this hop again
                continue
            if response.has_redirect_location:
                try:
                    location = urljoin(current, response.headers["Location"])
                    if (secrets := Secrets.of(response)) is not None:
                        secrets.add_url(location)
                    # a port that is not a number fails here, not halfway through the next hop
                    origin(location)
                # 'http://[' from a hostile or broken server: its reply, not our bug
                except ValueError:
                    raise NetworkError(
                        f"{what}: {redact_url(current)} redirected to a malformed URL"
                    ) from None
                if rule is None or rule(current, location):
                    drain(response)
                    refuse_redirect(current, location, what=what)
                    log.debug("redirect %s -> %s", redact_url(current), redact_url(location))
                    if redirected is not None:
                        redirected(location)
                    current = location
                    continue
            refuse_web_page(response, asked=url, saved_as=saved_as, what=what)
            yield response
            return
    raise NetworkError(
        f"{what}: too many redirects (more than {MAX_REDIRECTS}) from {redact_url(url)}"
    )


def refuse_web_page(
    response: httpx2.Response, *, asked: str, saved_as: str | None, what: str
) -> None:
    """A URL or a save name (``-o``, the catalog's ``as``) that names a model file (``x.gguf``)
    answered with an HTML page (a login wall, the Hub's page of the file) is refused before a byte
    of it is kept (WebPageError, exit 5): every download asks through ``follow``."""
    named = names_model_file(asked) or (saved_as is not None and is_model_file_name(saved_as))
    if response.status_code not in (200, 206) or not named:
        return
    media = response.headers.get("Content-Type", "").partition(";")[0].strip().lower()
    if media in ("text/html", "application/xhtml+xml"):
        raise WebPageError(
            f"{what}: {redact_url(asked)} answered with a web page ({media}), not the file; nothing"
            " was kept",
            hint=(
                "a Hub page URL (.../blob/...)? use its .../resolve/... URL, or"
                " hf://owner/name/path"
            ),
        )


def refuse_redirect(current: str, location: str, *, what: str) -> None:
    """A redirect mdl never follows is exit 5 at once, naming the scheme and where it came from: to
    anything but http(s) (``file:``, ``data:``, ``ftp:``: no retry can make them HTTP), and from
    https to http."""
    scheme = urlsplit(location).scheme.lower()
    shown = safe_text(redact_url(location), limit=200)
    if scheme not in ("http", "https"):
        said = f"a {scheme}: URL" if scheme else "a URL with no scheme"
        raise NetworkError(
            f"{what}: {redact_url(current)} redirected to {said} ({shown}); mdl follows only http"
            " and https"
        )
    if urlsplit(current).scheme.lower() == "https" and scheme != "https":
        raise NetworkError(
            f"{what}: refused redirect from https to {scheme} ({shown}), from {redact_url(current)}"
        )


# How long a link that gives no answer (refused, reset, cut mid-body, timed out) is tried again,
# from the first failure in a row: a 20-60 s outage (Wi-Fi, a router, a VPN's reconnect) costs a
# wait, not a second command, whatever the count of tries (curl's --retry-max-time, aria2c's
# --max-tries with --retry-wait). A server that answers with an error is up: it gets a count.
RETRY_MAX_TIME = 120.0
ANSWERED_RETRIES = 5  # tries after a retryable answer (5xx, 408, 429) when ``retries`` is not set


@dataclass(frozen=True)
class RetryPolicy:
    """``retries``: a count of tries after the first that bounds every failure (None: not set; a
    server's error answers then get ANSWERED_RETRIES, a link that is down ``max_time`` seconds);
    ``max_time``: seconds from an operation's first failure in a row after which it gives up;
    ``clock`` and ``sleep``: injected (a test's virtual clock moves when the retries wait)."""

    retries: int | None = None
    base: float = 0.5
    cap: float = 10.0  # a link back is found within seconds, not after a half-minute's wait
    retry_after_cap: float = 120.0
    sleep: Callable[[float], None] = time.sleep
    rng: Callable[[], float] = random.random
    max_time: float = RETRY_MAX_TIME
    clock: Callable[[], float] = time.monotonic
    virtual: bool = False  # ``sleep`` is a test's clock: waits call it (and hear a cancel first)

    def delay(self, attempt: int, *, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.retry_after_cap)
        return float(self.rng() * min(self.cap, self.base * (2.0 ** (attempt - 1))))

    def run(
        self,
        call: Callable[[], T],
        *,
        what: str,
        wait: Callable[[float], bool] | None = None,
        on_retry: Callable[[str], None] | None = None,
        announce: Callable[[int, str], None] | None = None,
    ) -> T:
        """``call()``, retrying RetryableErrors with backoff; an unreachable host gets at most
        one retry.
        """
        tries = Tries(self, what, wait=wait, on_retry=on_retry, announce=announce)
        while True:
            try:
                return call()
            except RetryableError as exc:
                tries.failed(exc)


@dataclass
class Tries:
    """One operation's retry budget (``wait`` is True on Ctrl-C; ``quick_unreachable``: a silent
    host, one retry). ``failures`` set to 0 (a try that moved bytes) starts the budget over.
    """

    policy: RetryPolicy
    what: str
    wait: Callable[[float], bool] | None = None
    on_retry: Callable[[str], None] | None = None
    announce: Callable[[int, str], None] | None = None
    quick_unreachable: bool = True
    failures: int = 0
    refusals: int = 0  # the Hub's rate-limit refusals with a stated wait: not failures
    # what they may cost when no gate saw them (a CDN's refusal): this operation's own budget
    hub_waits: HubWaits = field(default_factory=HubWaits)
    since: float = 0.0  # the clock at the first failure in a row

    def failed(self, exc: RetryableError, *, lost: bool = False) -> None:
        """Count a failed try and wait; NetworkError once the budget is spent (a count for a
        server's error answers, else the time since the first failure in a row: RetryPolicy). A
        Hub rate-limit refusal (``exc.refusal``) is no failed try: it waits (on the run's gate
        when it ``held`` it) at least MIN_HUB_WAIT, and is bounded by HUB_REFUSALS in a row and
        by the budget of HubWaits (the run's gate's, else this operation's).
        """
        if exc.refusal is not None:
            self._refused(exc, exc.refusal)
            return
        now = self.policy.clock()
        if self.failures == 0:
            self.since = now
        self.failures += 1
        limit, spent = self._limit(exc), now - self.since
        left = self.policy.max_time - spent
        if (limit is not None and self.failures > limit) or (limit is None and left <= 0):
            tried = f"{self.failures} tries"
            if limit is None:
                tried = f"{tried} over {human_seconds(spent)}"
            raise NetworkError(f"{exc.message} (gave up after {tried})", hint=exc.hint) from exc
        delay = self.policy.delay(self.failures, retry_after=exc.retry_after)
        said = exc.message.removeprefix(f"{self.what}: ")
        log.info("%s: %s; retry %d in %.1fs", self.what, said, self.failures, delay)
        if self.on_retry is not None:
            self.on_retry(said)
        if self.announce is not None:
            told = (
                f"connection lost ({said})"
                if lost and not isinstance(exc, UnreachableError)
                else said
            )
            budget = (
                f"{self.failures}/{limit}"
                if limit is not None
                else f"try {self.failures}, giving up in {human_seconds(max(left - delay, 0))}"
            )
            self.announce(self.failures, f"{told}, retrying in {human_seconds(delay)} ({budget})")
        self._sleep(delay, exc)

    def _limit(self, exc: RetryableError) -> int | None:
        """The count of tries after the first this failure's kind gets (None: the time bounds
        them, a link that gives no answer)."""
        limit = self.most if exc.answered else self.policy.retries
        if self.quick_unreachable and isinstance(exc, UnreachableError):
            return UNREACHABLE_RETRIES if limit is None else min(limit, UNREACHABLE_RETRIES)
        return limit

    @property
    def most(self) -> int:
        """The tries after the first a server's error answers get (``retries``, else 5)."""
        return ANSWERED_RETRIES if self.policy.retries is None else self.policy.retries

    def _refused(self, exc: RetryableError, refusal: Refusal) -> None:
        self.refusals += 1
        if self.refusals > HUB_REFUSALS:
            raise NetworkError(
                f"{exc.message} (the Hub refused {self.refusals} times for its rate limit; gave"
                " up)",
                hint=RATE_LIMIT_HINT,
            ) from exc
        # held: its gate holds the next request, and took the hold from the run's budget
        hold = 0.0 if refusal.held else HubWaits.hold(refusal.wait)
        gave_up = refusal.gave_up
        if hold and gave_up is None and not self.hub_waits.take(hold):
            gave_up = self.hub_waits.giving_up()
        if gave_up is not None:
            raise NetworkError(f"{exc.message}; {gave_up}", hint=RATE_LIMIT_HINT) from exc
        log.debug("%s: the Hub's rate limit: waiting %.1fs (no try spent)", self.what, refusal.wait)
        if hold:  # no gate holds the next request: this one waits itself
            self._sleep(hold, exc)

    def _sleep(self, delay: float, exc: MdlError) -> None:
        if self.policy.virtual and self.wait is not None and self.wait(0):
            raise InterruptedByUserError(f"{self.what}: interrupted") from exc
        if self.wait is None or self.policy.virtual:
            self.policy.sleep(delay)
        elif self.wait(delay):
            raise InterruptedByUserError(f"{self.what}: interrupted") from exc
