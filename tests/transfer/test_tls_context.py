"""The CAs are loaded only for an https URL, and once per process (issue 53): a plain http:// get
builds no TLS context, and two clients of the same CA setting share the one the first built.

The CA loads are counted on the ssl library itself (``SSLContext.load_verify_locations``, which
every way of trusting a bundle or a folder goes through), each test with a CA bundle of its own so
that no context an earlier test built in this process can answer for it."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hostile import ScratchCA, TlsCdn
from servers import CdnServer, make_data

from mdl.errors import NetworkError
from mdl.transfer.connection import NetTransport
from mdl.transfer.http import Credentials, follow, make_client

DATA = make_data(2_000, seed=53)


@pytest.fixture
def ca_loads(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, ...]]:
    """Every CA bundle or folder loaded into an SSL context while the test runs (its arguments)."""
    loads: list[tuple[Any, ...]] = []
    real = ssl.SSLContext.load_verify_locations

    def spy(self: ssl.SSLContext, *args: Any, **kwargs: Any) -> None:
        loads.append((*args, *kwargs.values()))
        real(self, *args, **kwargs)

    monkeypatch.setattr(ssl.SSLContext, "load_verify_locations", spy)
    return loads


@pytest.fixture
def tls_cdn(ca: ScratchCA) -> Iterator[TlsCdn]:
    server = TlsCdn(ca).start()
    server.add_file("/w.bin", DATA)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def ca() -> ScratchCA:
    return ScratchCA()


def fetch(environ: dict[str, str], url: str) -> tuple[bytes, ssl.SSLContext | None]:
    """The body of ``url`` through a client of its own (as a run makes it), and the context its
    connection used (None: no TLS)."""
    transport = NetTransport(timeout=10.0, environ=environ, pool_size=1)
    with (
        make_client(pool_size=1, transport=transport) as client,
        follow(client, url, credentials=Credentials(), what="f") as response,
    ):
        tls = response.extensions["network_stream"].get_extra_info("ssl_object")
        return response.read(), None if tls is None else tls.context


def test_a_plain_http_get_loads_no_ca(
    cdn: CdnServer, ca: ScratchCA, tmp_path: Path, ca_loads: list[tuple[Any, ...]]
) -> None:
    cdn.add_file("/w.bin", DATA)
    # a bundle no context was built from yet: building one for this run would load it
    environ = {"SSL_CERT_FILE": str(ca.write_bundle(tmp_path / "ca.pem"))}
    body, context = fetch(environ, f"{cdn.url}/w.bin")
    assert body == DATA
    assert context is None
    assert ca_loads == []


def test_two_clients_share_the_context_the_first_https_request_built(
    tls_cdn: TlsCdn, ca: ScratchCA, tmp_path: Path, ca_loads: list[tuple[Any, ...]]
) -> None:
    bundle = str(ca.write_bundle(tmp_path / "ca.pem"))
    environ = {"SSL_CERT_FILE": bundle}
    with make_client(pool_size=1, environ=environ):
        assert ca_loads == []  # a client made is not a context built
    first, first_context = fetch(environ, f"{tls_cdn.url}/w.bin")
    second, second_context = fetch(dict(environ), f"{tls_cdn.url}/w.bin")
    assert first == second == DATA
    assert first_context is not None and first_context is second_context
    assert ca_loads == [(bundle, None, None)]


def test_a_bundle_rewritten_in_place_is_loaded_again(
    tls_cdn: TlsCdn, ca: ScratchCA, tmp_path: Path, ca_loads: list[tuple[Any, ...]]
) -> None:
    """The process's context follows the file, not its name: a CA bundle replaced between two runs
    (a renewed company CA) is trusted by the next run without a restart."""
    path = tmp_path / "ca.pem"
    ScratchCA().write_bundle(path)  # another CA's: the server's certificate is not trusted
    environ = {"SSL_CERT_FILE": str(path)}
    with pytest.raises(NetworkError, match=r"TLS certificate of 127\.0\.0\.1 not trusted"):
        fetch(environ, f"{tls_cdn.url}/w.bin")
    ca.write_bundle(path)
    body, _ = fetch(environ, f"{tls_cdn.url}/w.bin")
    assert body == DATA
    assert ca_loads == [(str(path), None, None)] * 2


def test_the_system_store_rewritten_is_loaded_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A long-lived API process after `update-ca-certificates`: the system's bundle, rewritten in
    place, gives a new context; unchanged, the same one."""
    from mdl.transfer.tls import shared_ssl_context

    bundle = tmp_path / "ca-certificates.crt"
    bundle.write_text("one")
    system = ssl.get_default_verify_paths()._replace(cafile=str(bundle), capath=None)
    monkeypatch.setattr(ssl, "get_default_verify_paths", lambda: system)
    first = shared_ssl_context({})
    assert shared_ssl_context({}) is first
    bundle.write_text("two, longer")
    assert shared_ssl_context({}) is not first
