"""Proxies and timeouts on the wire (issue 11, items 14 and 16), all on 127.0.0.1.

A dead proxy is named (password redacted) instead of blaming the server; NO_PROXY goes direct; a
live proxy is really used; the lowercase variable wins like curl; the stall timeout bounds a body,
the timeout its start.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx2
import pytest
from hostile import ForwardProxy, SilentServer
from runfixtures import HANG, bypasses, mdl, proxy_for, use_catalog
from servers import CdnServer, HubServer, closed_port, make_data

from mdl.errors import NetworkError
from mdl.transfer.connection import Proxy
from mdl.transfer.http import Credentials, RetryPolicy, follow, make_client

DATA = make_data(100_000, seed=21)


def fetch(url: str, environ: dict[str, str], *, timeout: float = 5.0) -> bytes:
    with make_client(pool_size=2, timeout=timeout, environ=environ) as client:

        def once() -> bytes:
            with follow(client, url, credentials=Credentials(), what="m/f") as response:
                return response.read()

        return RetryPolicy(retries=1, sleep=lambda _: None).run(once, what="m/f")


def test_a_dead_proxy_is_named_not_the_server(cdn: CdnServer) -> None:
    url = cdn.add_file("/w.bin", DATA)
    port = closed_port()
    with pytest.raises(NetworkError) as info:
        fetch(url, {"HTTP_PROXY": f"http://alice:s3cret@127.0.0.1:{port}"})
    message = info.value.message
    assert f"cannot reach proxy http://alice:REDACTED@127.0.0.1:{port} (from HTTP_PROXY)" in message
    assert "s3cret" not in message and "s3cret" not in (info.value.hint or "")
    assert "NO_PROXY" in (info.value.hint or "")
    assert not cdn.log.records()  # nothing reached the server


def test_no_proxy_goes_direct(cdn: CdnServer) -> None:
    url = cdn.add_file("/w.bin", DATA)
    environ = {
        "HTTP_PROXY": f"http://127.0.0.1:{closed_port()}",
        "NO_PROXY": "example.com,127.0.0.1",
    }
    assert fetch(url, environ) == DATA


def test_a_live_proxy_is_used(cdn: CdnServer) -> None:
    url = cdn.add_file("/w.bin", DATA)
    with ForwardProxy() as proxy:
        assert fetch(url, {"HTTP_PROXY": proxy.url}) == DATA
        assert proxy.requests == [url]


def test_the_lowercase_variable_wins_like_curl(cdn: CdnServer) -> None:
    url = cdn.add_file("/w.bin", DATA)
    with ForwardProxy() as proxy:
        environ = {"http_proxy": proxy.url, "HTTP_PROXY": f"http://127.0.0.1:{closed_port()}"}
        assert fetch(url, environ) == DATA
        assert proxy.requests == [url]


def test_all_proxy_is_the_fallback(cdn: CdnServer) -> None:
    url = cdn.add_file("/w.bin", DATA)
    with ForwardProxy() as proxy:
        assert fetch(url, {"ALL_PROXY": proxy.url, "HTTPS_PROXY": "http://127.0.0.1:9"}) == DATA
        assert proxy.requests == [url]  # HTTPS_PROXY is for https URLs only


@pytest.mark.slow
def test_the_hub_client_names_a_dead_proxy(
    hub: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """huggingface_hub's calls go through the same transport: `mdl resolve` blames the proxy, not
    the Hub.
    """
    hub.add_repo("org/tiny", {"config.json": b"{}"})
    use_catalog(tmp_path, monkeypatch, '[models.tiny]\nrepo = "org/tiny"\n', endpoint=hub.url)
    port = closed_port()
    monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{port}")
    result = mdl("resolve", "tiny")
    assert result.exit_code == 5
    assert f"cannot reach proxy http://127.0.0.1:{port} (from http_proxy)" in result.stderr
    assert not hub.log.records()
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    assert mdl("resolve", "tiny").exit_code == 0


@pytest.mark.parametrize(
    ("host", "port", "no_proxy", "expected"),
    [
        ("127.0.0.1", 80, "127.0.0.1", True),
        ("127.0.0.1", 80, "127.0.0.0/8", True),
        ("127.0.0.1", 80, "127.0.0.1:8080", False),
        ("127.0.0.1", 8080, "127.0.0.1:8080", True),
        ("cdn.example.com", 443, "example.com", True),
        ("cdn.example.com", 443, ".example.com", True),
        ("badexample.com", 443, "example.com", False),
        ("anything", 1, "*", True),
        ("::1", 80, "::1", True),
        ("host", 80, " , ", False),
    ],
)
def test_no_proxy_rules(host: str, port: int, no_proxy: str, expected: bool) -> None:
    assert bypasses(host, port, no_proxy) is expected


def test_proxy_for_reads_scheme_then_all_and_adds_http() -> None:
    env = {"HTTPS_PROXY": "proxy.local:3128", "all_proxy": "http://all:1"}
    assert proxy_for("https://huggingface.co/x", env) == Proxy(
        "http://proxy.local:3128", "HTTPS_PROXY"
    )
    assert proxy_for("http://cdn/x", env) == Proxy("http://all:1", "all_proxy")
    assert proxy_for("http://cdn/x", {}) is None


def test_the_stall_timeout_bounds_the_body_and_the_timeout_its_start() -> None:
    """A server that sends headers then nothing: the body read gives up after the stall timeout
    it was given.
    """
    from mdl.transfer.connection import set_read_timeout

    with (
        SilentServer(send_headers=True) as server,
        make_client(pool_size=1, timeout=10 * HANG) as client,
        follow(client, f"{server.url}/x", credentials=Credentials(), what="m/f") as response,
    ):
        set_read_timeout(response, 0.5)
        started = time.monotonic()
        with pytest.raises(httpx2.ReadTimeout):
            for _ in response.iter_raw():
                pass
        # the stall timeout (0.5 s) took over from the timeout (10 x HANG)
        assert time.monotonic() - started < HANG
