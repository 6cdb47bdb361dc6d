"""The one HTTP client (httpx2), the one redirect follower (the token guard), a final answer that
is not the file in words (the rest of a failure's words: mdl.transfer.failures), the one retry loop.
"""

# (annotations here are evaluated, not postponed: typing compiles each string annotation of a
# NamedTuple's fields at every start)
import logging
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import closing, contextmanager
from types import MappingProxyType
from typing import NamedTuple, TypeVar
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
from mdl.progress import Progress
from mdl.redact import Secrets, is_signed_url, printable, redact_url, safe_text, unshown
from mdl.setting import DEFAULT_TIMEOUT
from mdl.transfer._files import FolderTransport
from mdl.transfer._headers import retry_after_seconds as retry_after_seconds
from mdl.transfer.connection import NetTransport, drain, origin
from mdl.transfer.failures import (
    MESSAGE_TEXT_LIMIT,
    NO_CREDENTIALS,
    RATE_LIMIT_HINT,
    REFUSED_CREDENTIALS,
    ExpiredURLError,
    RetryableError,
    UnreachableError,
    credentials_sent,
    hub_auth_hint,
    refusal_error,
    server_text,
    transport_error,
)
from mdl.transfer.ratelimit import HUB_REFUSALS, HubWaits, Refusal
from mdl.units import human_seconds
from mdl.version import USER_AGENT

log = logging.getLogger("mdl.http")
T = TypeVar("T")

MAX_REDIRECTS = 10
# a host that does not answer at all is offline, not flaky: fail within seconds
UNREACHABLE_RETRIES = 1


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


class Credentials(NamedTuple):
    """What a request carries to whom: the Hub token to the Hub's origin, a direct URL's own headers
    (``-H``, the catalog's ``headers``, a netrc login) to that URL's origin (``extra_origin``), on
    any hop that lands there and never on one that leaves it (as curl keeps Authorization on the
    host it was given for)."""

    hub_origin: tuple[str, str, int] | None = None
    token: str | None = None
    extra: Mapping[str, str] = MappingProxyType({})
    extra_origin: tuple[str, str, int] | None = None
    # extra's Authorization is a netrc login (named when a redirect leaves it behind)
    netrc: bool = False
    # a registry's 401 at extra's origin: True when the request is worth sending once more (a new
    # token in extra: mdl.sources.ociauth), so a token that expires mid-blob costs one request
    renew: Callable[[httpx2.Response], bool] | None = None
    # a registry's login (mdl.sources.ociauth) in place of the user's headers (-H, the catalog's
    # headers, a netrc login): what extra is, in words, and the hint of a refusal at its origin
    named: str = ""
    refused_hint: str = ""

    def __repr__(self) -> str:  # (as a dataclass with repr=False: no secret in a traceback)
        return unshown(self)

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
        what = self.named or " and ".join(filter(None, (login, headers)))
        were = "were" if headers and not self.named else "was"
        hint = (
            f"if {shown_origin_of(at)} is the same registry, name the registry so"
            if self.named
            else f"give the URL it redirects to ({redact_url(url)}) so that they go there, if you"
            " trust it with them"
        )
        return (
            f"{what} for {shown_origin_of(given)} {were} withheld on the redirect to"
            f" {shown_origin_of(at)} ({why}: mdl sends credentials only to the origin they were"
            " given for, on no redirect that leaves it)"
        ), hint

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
    def on(cls, client: httpx2.Client, endpoint: str) -> "TokenGuard":
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


class _Refusal(NamedTuple):
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
            return AuthError(self.said("not authorised"), hint=hint)
        return AuthError(self.said("not authorised"), hint=self.credentials_hint(NO_CREDENTIALS))

    def credentials_hint(self, unsent: str | None) -> str | None:
        """A refusal's hint: a registry's own at its origin (where its login came from), else
        the user's headers when they were sent, else ``unsent``."""
        credentials, at = self.credentials, origin(str(self.response.url))
        if credentials is not None and credentials.refused_hint and at == credentials.extra_origin:
            return credentials.refused_hint
        return REFUSED_CREDENTIALS if credentials_sent(self.response) else unsent

    def forbidden(self) -> AuthError:
        if self.hub:
            hub_hint = hub_auth_hint(self.response.headers.get("X-Error-Code"), self.response)
            return AuthError(self.said("access denied"), hint=hub_hint)
        # only its issuer can sign a new one
        if is_signed_url(str(self.response.url)):
            expired = "the link has expired or was revoked; ask for a fresh one"
            return ExpiredURLError(self.said(expired))
        return ExpiredURLError(self.said("access denied"), hint=self.credentials_hint(None))


class _Renewal:
    """A hop refused (401) by the origin of credentials that can be renewed is asked once more,
    with what the renewal gave; a renewal refused again is the answer."""

    __slots__ = ("credentials", "used")

    def __init__(self, credentials: Credentials) -> None:
        self.credentials = credentials
        self.used = False

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
            raise _invalid(current, asked=url, what=what, exc=exc) from exc
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


def _invalid(url: str, *, asked: str, what: str, exc: Exception) -> NetworkError:
    """A URL the HTTP library cannot ask (a redirect's: a server's URL, of any length), said in a
    bounded line naming the URL asked."""
    came = f" (redirected from {redact_url(asked)})" if url != asked else ""
    return NetworkError(f"{what}: invalid URL {safe_text(redact_url(url), limit=200)}{came}: {exc}")


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


class RetryPolicy(NamedTuple):
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
    # who hears a wait before a retry whose caller says none of its own (what, line): the run's
    # display (``say_wait``), whatever the request (a probe, the Hub's API, a Xet CAS)
    said: Callable[[str, str], None] | None = None

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


def say_wait(progress: Progress, what: str, line: str, *, row: bool = True) -> None:
    """How a wait before a retry is said, whatever the phase: ``what: line`` on a line of its own
    in every display but -q's (``--no-progress`` and cron too; a ``note`` event with --progress
    json), and (``row``: its item ends with a finish, ok or not) ``what``'s row waits till bytes
    come."""
    progress.waiting("", f"{what}: {line}")
    if row:
        progress.waiting(what, line)


class Tries:
    """One operation's retry budget (``wait`` is True on Ctrl-C; ``quick_unreachable``: a silent
    host, one retry). ``failures`` set to 0 (a try that moved bytes) starts the budget over.
    """

    def __init__(
        self,
        policy: RetryPolicy,
        what: str,
        *,
        wait: Callable[[float], bool] | None = None,
        on_retry: Callable[[str], None] | None = None,
        announce: Callable[[int, str], None] | None = None,
        quick_unreachable: bool = True,
    ) -> None:
        self.policy = policy
        self.what = what
        self.wait = wait
        self.on_retry = on_retry
        self.announce = announce
        self.quick_unreachable = quick_unreachable
        self.failures = 0
        self.refusals = 0  # the Hub's rate-limit refusals with a stated wait: not failures
        # what they may cost when no gate saw them (a CDN's refusal): this operation's own budget
        self.hub_waits = HubWaits()
        self.since = 0.0  # the clock at the first failure in a row

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
        told = (
            f"connection lost ({said})" if lost and not isinstance(exc, UnreachableError) else said
        )
        budget = (
            f"{self.failures}/{limit}"
            if limit is not None
            else f"try {self.failures}, giving up in {human_seconds(max(left - delay, 0))}"
        )
        self._say(exc, f"{told}, retrying in {human_seconds(delay)} ({budget})")
        self._sleep(delay, exc)

    def _say(self, exc: RetryableError, line: str) -> None:
        """Every wait is said: by its caller (a file's streams: its row too), else to the run
        (``RetryPolicy.said``); but the quick one of a host that never answered (offline is one
        message, said within seconds)."""
        if self.quick_unreachable and isinstance(exc, UnreachableError):
            return
        if self.announce is not None:
            self.announce(self.failures, line)
        elif self.policy.said is not None:
            self.policy.said(self.what, line)

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
