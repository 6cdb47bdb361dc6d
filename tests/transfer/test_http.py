"""The HTTP layer: per-hop auth rules against real loopback servers, status mapping, Retry-After,
backoff.
"""

from __future__ import annotations

import email.utils
import random
from collections.abc import Iterator
from types import SimpleNamespace

import httpx2
import pytest
from pytest_httpx2 import HTTPXMock
from servers import TOKEN, CdnServer, Fault, HubServer, closed_port, make_data

from mdl import __version__
from mdl.errors import (
    AuthError,
    ExitCode,
    InterruptedByUserError,
    MdlError,
    NetworkError,
    NotFoundError,
)
from mdl.transfer import _headers
from mdl.transfer.failures import ExpiredURLError, RetryableError, UnreachableError
from mdl.transfer.http import (
    MAX_REDIRECTS,
    Credentials,
    RetryPolicy,
    error_for_status,
    follow,
    make_client,
    origin,
    retry_after_seconds,
)

DATA = make_data(5000, seed=3)


@pytest.fixture
def client() -> Iterator[httpx2.Client]:
    with make_client(timeout=5, pool_size=4) as c:
        yield c


@pytest.fixture
def mocked() -> Iterator[httpx2.Client]:
    """A client on httpx2's own transport, which httpx2_mock answers (mdl's transport opens real
    sockets).
    """
    with make_client(timeout=5, pool_size=4, transport=httpx2.HTTPTransport()) as c:
        yield c


def fetch(
    client: httpx2.Client, url: str, credentials: Credentials, **kwargs: object
) -> tuple[int, bytes, str]:
    with follow(client, url, credentials=credentials, what="m/f", **kwargs) as resp:  # type: ignore[arg-type]
        return resp.status_code, resp.read(), str(resp.url)


# -- origins and credentials
# -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://huggingface.co/x", ("https", "huggingface.co", 443)),
        ("HTTPS://HuggingFace.CO:443/x", ("https", "huggingface.co", 443)),
        ("http://hub.example/x", ("http", "hub.example", 80)),
        ("http://127.0.0.1:8080/x?y", ("http", "127.0.0.1", 8080)),
        ("https://user:pw@hub.example:8443/", ("https", "hub.example", 8443)),
    ],
)
def test_origin(url: str, expected: tuple[str, str, int]) -> None:
    assert origin(url) == expected


@pytest.mark.parametrize(
    ("url", "gets_token"),
    [
        ("https://hub.example/org/m/resolve/main/x", True),
        ("https://HUB.example:443/api/models/org/m", True),
        ("https://hub.example:8443/x", False),  # same host, other port
        ("http://hub.example/x", False),  # same host, other scheme
        ("https://cdn.hub.example/x", False),
        ("https://hub.example.evil/x", False),
    ],
)
def test_hub_token_only_for_the_exact_origin(url: str, gets_token: bool) -> None:
    creds = Credentials(hub_origin=origin("https://hub.example"), token="hf_secret", extra={})
    headers = creds.headers_for(url)
    assert (headers.get("Authorization") == "Bearer hf_secret") is gets_token


def test_credentials_extra_headers_only_to_their_own_origin_and_secrets() -> None:
    creds = Credentials(
        extra={"Authorization": "Bearer civitai", "X-Key": "k1"},
        extra_origin=origin("https://a.example/x"),
    )
    assert creds.headers_for("https://a.example/y") == {
        "Authorization": "Bearer civitai",
        "X-Key": "k1",
    }
    for elsewhere in (
        "https://cdn.a.example/x",
        "http://a.example/x",
        "https://a.example:8443/x",
        "https://b.example/",
    ):
        assert creds.headers_for(elsewhere) == {}
    # no origin: nowhere
    assert Credentials(extra={"X-Key": "k1"}).headers_for("https://a.example/x") == {}
    assert set(creds.secrets) == {"Bearer civitai", "k1"}
    assert Credentials(token="hf_t").secrets == ("hf_t",)
    # No hub origin: a token goes nowhere.
    assert Credentials(token="hf_t").headers_for("https://hub.example/") == {}


# -- follow against the loopback servers
# ----------------------------------------------------------------


def test_client_sends_identity_encoding_and_user_agent(
    cdn: CdnServer, client: httpx2.Client
) -> None:
    url = cdn.add_file("/f.bin", DATA)
    status, body, _ = fetch(client, url, Credentials())
    assert (status, body) == (200, DATA)
    (record,) = cdn.log.records()
    assert record.header("accept-encoding") == "identity"
    assert record.header("user-agent") == f"mdl/{__version__}"


def test_hub_token_goes_to_the_hub_and_never_to_the_cdn(
    hub: HubServer, client: httpx2.Client
) -> None:
    hub.add_repo("org/m", {"model.safetensors": DATA}, gated="auto")
    creds = Credentials(hub_origin=origin(hub.url), token=TOKEN)
    status, body, final = fetch(client, hub.file_url("org/m", "model.safetensors"), creds)
    assert (status, body) == (200, DATA)
    assert final.startswith(hub.cdn.url)
    # Same host name (127.0.0.1), another port: the CDN is another origin.
    assert origin(final)[1] == origin(hub.url)[1]
    assert origin(final)[2] != origin(hub.url)[2]
    (hub_request,) = hub.log.records()
    assert hub_request.authorization == f"Bearer {TOKEN}"
    assert hub_request.status == 302
    cdn_requests = hub.cdn.log.records()
    assert len(cdn_requests) == 1
    assert all(r.authorization is None for r in cdn_requests)


def test_hub_token_not_sent_on_redirect_back_to_same_host_other_port(
    hub: HubServer, cdn: CdnServer, client: httpx2.Client
) -> None:
    # A Hub-origin URL that redirects to another loopback server that itself sends us back to the
    # Hub: only the requests to the Hub's exact origin carry the token.
    hub.add_repo("org/m", {"config.json": b"{}"})
    back = hub.file_url("org/m", "config.json")
    cdn.add_redirect("/hop", back)
    hub_redirect = hub.add_redirect("/start", f"{cdn.url}/hop")
    creds = Credentials(hub_origin=origin(hub.url), token=TOKEN)
    status, body, _ = fetch(client, hub_redirect, creds)
    assert (status, body) == (200, b"{}")
    assert [r.authorization for r in hub.log.records()] == [f"Bearer {TOKEN}", f"Bearer {TOKEN}"]
    assert [r.authorization for r in cdn.log.records()] == [None]


def test_direct_url_headers_follow_a_redirect_on_their_origin_only(
    cdn: CdnServer, hub: HubServer, client: httpx2.Client
) -> None:
    cdn.add_file("/real.bin", DATA)
    start = cdn.add_redirect("/start.bin", "/real.bin")  # relative Location, same origin
    creds = Credentials(
        extra={"X-Api-Key": "k-123", "Authorization": "Bearer direct"}, extra_origin=origin(start)
    )
    status, body, final = fetch(client, start, creds, headers={"Range": "bytes=0-9"})
    assert (status, body) == (206, DATA[:10])
    assert final == f"{cdn.url}/real.bin"
    first, second = cdn.log.records()
    assert (first.header("x-api-key"), first.authorization) == ("k-123", "Bearer direct")
    assert (second.header("x-api-key"), second.authorization) == ("k-123", "Bearer direct")
    # Per-request headers (the Range) go to every hop.
    assert first.range == second.range == "bytes=0-9"
    # A redirect to another origin (another port of the same host) gets none of them.
    away = cdn.add_redirect("/away.bin", f"{hub.url}/elsewhere.bin")
    # the other server knows no such file: what matters is what it was sent
    fetch(client, away, creds)
    (elsewhere,) = hub.log.records()
    assert (elsewhere.url_path, elsewhere.header("x-api-key"), elsewhere.authorization) == (
        "/elsewhere.bin",
        None,
        None,
    )


def test_too_many_redirects(cdn: CdnServer, client: httpx2.Client) -> None:
    loop = cdn.add_redirect("/loop", "/loop")
    with pytest.raises(NetworkError, match="too many redirects") as info:
        fetch(client, loop, Credentials())
    assert info.value.exit_code == ExitCode.NETWORK
    assert len(cdn.log) == MAX_REDIRECTS + 1


def test_a_redirect_to_a_url_of_any_length_is_said_in_a_bounded_line(
    cdn: CdnServer, client: httpx2.Client
) -> None:
    huge = cdn.add_redirect("/huge", "/" + "a" * 100_000)
    with pytest.raises(NetworkError, match="invalid URL") as info:
        fetch(client, huge, Credentials())
    assert len(info.value.message) < 1_000
    assert f"(redirected from {huge})" in info.value.message


def test_redirect_chain_within_the_limit(cdn: CdnServer, client: httpx2.Client) -> None:
    cdn.add_file("/end", b"done")
    for i in range(MAX_REDIRECTS):
        cdn.add_redirect(f"/r{i}", f"/r{i + 1}" if i + 1 < MAX_REDIRECTS else "/end")
    status, body, _ = fetch(client, f"{cdn.url}/r0", Credentials())
    assert (status, body) == (200, b"done")


def test_https_to_http_redirect_is_refused(httpx2_mock: HTTPXMock, mocked: httpx2.Client) -> None:
    httpx2_mock.add_response(
        url="https://secure.example/model.bin",
        status_code=302,
        headers={"Location": "http://plain.example/model.bin?X-Amz-Signature=s3cr3t"},
    )
    with pytest.raises(NetworkError) as info:
        fetch(mocked, "https://secure.example/model.bin", Credentials(extra={"X-Key": "k"}))
    assert "refused redirect from https to http" in info.value.message
    assert "s3cr3t" not in info.value.message
    assert info.value.exit_code == ExitCode.NETWORK
    assert [str(r.url) for r in httpx2_mock.get_requests()] == ["https://secure.example/model.bin"]


def test_https_to_https_redirect_is_followed(httpx2_mock: HTTPXMock, mocked: httpx2.Client) -> None:
    httpx2_mock.add_response(
        url="https://hub.example/m/resolve/main/x",
        status_code=302,
        headers={"Location": "https://cdn.example/x"},
    )
    httpx2_mock.add_response(url="https://cdn.example/x", content=b"payload")
    creds = Credentials(hub_origin=origin("https://hub.example"), token="hf_secret0123")
    status, body, final = fetch(mocked, "https://hub.example/m/resolve/main/x", creds)
    assert (status, body, final) == (200, b"payload", "https://cdn.example/x")
    first, second = httpx2_mock.get_requests()
    assert first.headers["Authorization"] == "Bearer hf_secret0123"
    assert "Authorization" not in second.headers


def test_unreachable_host_is_a_retryable_network_error(client: httpx2.Client) -> None:
    port = closed_port()
    with pytest.raises(UnreachableError) as info:
        fetch(client, f"http://127.0.0.1:{port}/x", Credentials())
    assert f"cannot connect to 127.0.0.1:{port}" in info.value.message
    assert info.value.exit_code == ExitCode.NETWORK


# -- status mapping
# ----------------------------------------------------------------------------------------


def error_from(cdn: CdnServer, client: httpx2.Client, fault: Fault, *, hub: bool) -> MdlError:
    url = cdn.add_file("/f.bin", DATA)
    cdn.faults.add(fault)
    with follow(client, url, credentials=Credentials(), what="m/f.bin") as resp:
        return error_for_status(resp, what="m/f.bin", hub=hub)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("status", "hub", "cls", "code"),
    [
        (401, True, AuthError, 3),
        (401, False, AuthError, 3),
        (403, True, AuthError, 3),
        (403, False, ExpiredURLError, 3),
        (404, True, NotFoundError, 4),
        (404, False, NotFoundError, 4),
        (410, False, NotFoundError, 4),
        (408, False, RetryableError, 5),
        (429, True, RetryableError, 5),
        (500, False, RetryableError, 5),
        (502, False, RetryableError, 5),
        (503, True, RetryableError, 5),
        (504, False, RetryableError, 5),
        (400, False, NetworkError, 5),
        (416, False, NetworkError, 5),
    ],
)
def test_error_for_status_mapping(
    cdn: CdnServer, client: httpx2.Client, status: int, hub: bool, cls: type[MdlError], code: int
) -> None:
    err = error_from(cdn, client, Fault.http_error(status, retry_after=None), hub=hub)
    assert type(err) is cls
    assert int(err.exit_code) == code
    assert f"HTTP {status}" in err.message
    assert err.message.startswith("m/f.bin: ")
    if cls is NetworkError:
        assert not isinstance(err, RetryableError)


def test_401_hint_depends_on_the_source(cdn: CdnServer, client: httpx2.Client) -> None:
    assert "HF_TOKEN" in (error_from(cdn, client, Fault.http_error(401), hub=True).hint or "")
    assert "headers" in (error_from(cdn, client, Fault.http_error(401), hub=False).hint or "")


@pytest.mark.parametrize(
    ("status", "header", "seconds"), [(429, "7", 7.0), (503, "2", 2.0), (503, "0", 0.0)]
)
def test_retry_after_is_parsed_into_the_error(
    cdn: CdnServer, client: httpx2.Client, status: int, header: str, seconds: float
) -> None:
    err = error_from(cdn, client, Fault.http_error(status, retry_after=header), hub=False)
    assert isinstance(err, RetryableError)
    assert err.retry_after == seconds


def test_retryable_error_without_retry_after(cdn: CdnServer, client: httpx2.Client) -> None:
    err = error_from(cdn, client, Fault.http_error(502), hub=False)
    assert isinstance(err, RetryableError)
    assert err.retry_after is None


def test_server_error_text_is_kept(cdn: CdnServer, client: httpx2.Client) -> None:
    fault = Fault.http_error(
        404,
        body="ignored body",
        headers={"X-Error-Message": "Entry not found: weights.bin"},
        retry_after=None,
    )
    err = error_from(cdn, client, fault, hub=True)
    assert err.message.endswith(": Entry not found: weights.bin")
    # Without X-Error-Message the start of the body is used, whitespace squeezed.
    err = error_from(
        cdn, client, Fault.http_error(500, body="  upstream\n\n  exploded  " + "x" * 500), hub=False
    )
    assert ": upstream exploded xxx" in err.message
    assert len(err.message) < 400


def test_error_text_and_url_are_redacted(cdn: CdnServer, client: httpx2.Client) -> None:
    url = cdn.add_file("/s.bin", DATA, signed=True)
    cdn.faults.add(Fault.http_error(403, body=f"denied for token {TOKEN}"))
    with follow(client, url, credentials=Credentials(), what="m/s.bin") as resp:
        err = error_for_status(resp, what="m/s.bin", hub=False)
    assert isinstance(err, ExpiredURLError)
    assert "X-Amz-Signature" not in err.message
    assert TOKEN not in err.message
    assert f"{cdn.url}/s.bin?REDACTED" in err.message


# -- Retry-After and backoff
# -------------------------------------------------------------------------------


def test_retry_after_seconds_forms() -> None:
    assert retry_after_seconds("120") == 120.0
    assert retry_after_seconds(" 3 ") == 3.0
    assert retry_after_seconds("0") == 0.0
    assert retry_after_seconds(None) is None
    assert retry_after_seconds("") is None
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds("-5") is None
    assert retry_after_seconds("1.5") is None


def test_retry_after_http_date(monkeypatch: pytest.MonkeyPatch) -> None:
    now = 1_767_225_600.0
    future = email.utils.formatdate(now + 30, usegmt=True)
    assert retry_after_seconds(future, now=now) == pytest.approx(30.0)
    past = email.utils.formatdate(now - 30, usegmt=True)
    assert retry_after_seconds(past, now=now) == 0.0
    # Without an explicit now, the wall clock is used: the module's clock, held still (a busy
    # machine's seconds between writing the date and reading it back are no part of the answer).
    monkeypatch.setattr(_headers, "time", SimpleNamespace(time=lambda: now + 0.25))
    assert retry_after_seconds(email.utils.formatdate(now + 60, usegmt=True)) == 59.75


def test_retry_policy_delay_with_fixed_rng() -> None:
    top = RetryPolicy(base=0.5, cap=30.0, rng=lambda: 1.0)
    assert [top.delay(a, retry_after=None) for a in (1, 2, 3, 4)] == [0.5, 1.0, 2.0, 4.0]
    assert top.delay(7, retry_after=None) == 30.0  # 0.5 * 64 = 32, capped
    assert top.delay(60, retry_after=None) == 30.0
    bottom = RetryPolicy(rng=lambda: 0.0)
    assert bottom.delay(5, retry_after=None) == 0.0
    half = RetryPolicy(base=1.0, cap=10.0, rng=lambda: 0.5)
    assert half.delay(3, retry_after=None) == 2.0


def test_retry_policy_honours_retry_after_with_a_cap() -> None:
    policy = RetryPolicy(rng=lambda: 1.0, retry_after_cap=120.0)
    assert policy.delay(1, retry_after=7.0) == 7.0
    assert policy.delay(1, retry_after=0.0) == 0.0
    assert policy.delay(9, retry_after=3600.0) == 120.0


def test_retry_policy_jitter_stays_in_bounds() -> None:
    rng = random.Random(1234)
    policy = RetryPolicy(base=0.25, cap=8.0, rng=rng.random)
    for attempt in range(1, 12):
        bound = min(8.0, 0.25 * 2 ** (attempt - 1))
        delays = [policy.delay(attempt, retry_after=None) for _ in range(50)]
        assert all(0.0 <= d <= bound for d in delays)
        assert max(delays) > bound / 2  # full jitter really spreads over the range


# -- RetryPolicy.run
# -----------------------------------------------------------------------------------------


class Flaky:
    """A call that raises the given errors in turn, then returns "ok"."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


def test_run_retries_retryable_errors_with_backoff() -> None:
    sleeps: list[float] = []
    policy = RetryPolicy(retries=3, base=1.0, cap=10.0, sleep=sleeps.append, rng=lambda: 1.0)
    call = Flaky(RetryableError("m: reset"), RetryableError("m: 503", retry_after=7.0))
    assert policy.run(call, what="m") == "ok"
    assert call.calls == 3
    assert sleeps == [1.0, 7.0]  # backoff, then the server's Retry-After


def test_run_gives_up_after_the_retries() -> None:
    sleeps: list[float] = []
    policy = RetryPolicy(retries=2, sleep=sleeps.append, rng=lambda: 0.0)
    call = Flaky(*(RetryableError(f"m: HTTP 503 #{i}") for i in range(5)))
    with pytest.raises(NetworkError, match=r"m: HTTP 503 #2 \(gave up after 3 tries\)") as info:
        policy.run(call, what="m")
    assert not isinstance(info.value, RetryableError)  # no outer loop retries it again
    assert info.value.exit_code == ExitCode.NETWORK
    assert call.calls == 3
    assert len(sleeps) == 2


def test_run_gives_an_unreachable_host_one_retry_only() -> None:
    sleeps: list[float] = []
    policy = RetryPolicy(retries=5, sleep=sleeps.append, rng=lambda: 0.0)
    call = Flaky(*(UnreachableError("m: cannot connect to h") for _ in range(5)))
    with pytest.raises(NetworkError, match="gave up after 2 tries"):
        policy.run(call, what="m")
    assert call.calls == 2
    assert RetryPolicy(retries=0, sleep=sleeps.append).run(Flaky(), what="m") == "ok"
    with pytest.raises(NetworkError, match="gave up after 1 tries"):
        RetryPolicy(retries=0, sleep=sleeps.append).run(Flaky(UnreachableError("m: x")), what="m")


def test_run_does_not_retry_other_errors() -> None:
    call = Flaky(NotFoundError("m: gone"), RetryableError("m: never reached"))
    with pytest.raises(NotFoundError):
        RetryPolicy(sleep=lambda s: None).run(call, what="m")
    assert call.calls == 1


def test_run_wait_can_cancel() -> None:
    waits: list[float] = []

    def cancelled(seconds: float) -> bool:
        waits.append(seconds)
        return True

    policy = RetryPolicy(
        retries=5, sleep=lambda s: pytest.fail("sleep must not be used when wait is given")
    )
    call = Flaky(RetryableError("m: 503", retry_after=2.0))
    with pytest.raises(InterruptedByUserError) as info:
        policy.run(call, what="m/f", wait=cancelled)
    assert info.value.exit_code == ExitCode.INTERRUPTED
    assert waits == [2.0]
    assert call.calls == 1
