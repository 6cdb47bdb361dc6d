"""HTTPS against a loopback server with a scratch CA (issue 11, item 16): an untrusted certificate
is one clear failure, not retried, with a hint naming the CA variables; each of those variables
makes it work."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from hostile import ScratchCA, TlsCdn
from runfixtures import mdl
from servers import make_data
from typer.testing import Result

DATA = make_data(300_000, seed=11)
CA_VARIABLES = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE", "SSL_CERT_DIR")


@pytest.fixture
def ca() -> ScratchCA:
    return ScratchCA()


@pytest.fixture
def tls_cdn(ca: ScratchCA, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TlsCdn]:
    server = TlsCdn(ca).start()
    server.add_file("/w.bin", DATA)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MDL_LOG_FILE", str(tmp_path / "mdl.log"))
    try:
        yield server
    finally:
        server.stop()


def get(url: str, *args: str) -> Result:
    return mdl("get", url, "-d", "out", *args)


def test_an_untrusted_certificate_is_exit_5_once_with_a_hint(tls_cdn: TlsCdn) -> None:
    result = get(f"{tls_cdn.url}/w.bin")
    assert result.exit_code == 5
    assert "TLS certificate of 127.0.0.1 not trusted" in result.stderr
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE", "SSL_CERT_DIR"):
        assert name in result.stderr  # the hint says what mdl reads
    assert "gave up after" not in result.stderr  # not retried: trying again changes nothing
    assert tls_cdn.handshakes == 1
    assert not (Path("out") / "w.bin").exists()


@pytest.mark.parametrize("variable", ["REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE"])
def test_each_ca_bundle_variable_is_honoured(
    tls_cdn: TlsCdn, ca: ScratchCA, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    monkeypatch.setenv(variable, str(ca.write_bundle(tmp_path / "ca.pem")))
    result = get(f"{tls_cdn.url}/w.bin")
    assert result.exit_code == 0, result.stderr
    assert (
        hashlib.sha256((Path("out") / "w.bin").read_bytes()).digest()
        == hashlib.sha256(DATA).digest()
    )


def test_ssl_cert_dir_is_honoured(
    tls_cdn: TlsCdn, ca: ScratchCA, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = ca.write_hashed_dir(tmp_path / "certs")
    if folder is None:
        pytest.skip("needs the openssl command to name the certificate by its subject hash")
    monkeypatch.setenv("SSL_CERT_DIR", str(folder))
    result = get(f"{tls_cdn.url}/w.bin")
    assert result.exit_code == 0, result.stderr


def test_requests_ca_bundle_comes_first(
    tls_cdn: TlsCdn, ca: ScratchCA, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The order is explicit: REQUESTS_CA_BUNDLE > CURL_CA_BUNDLE > SSL_CERT_FILE (a wrong first
    one wins).
    """
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(ScratchCA().write_bundle(tmp_path / "other.pem")))
    monkeypatch.setenv("SSL_CERT_FILE", str(ca.write_bundle(tmp_path / "ca.pem")))
    assert get(f"{tls_cdn.url}/w.bin").exit_code == 5
    monkeypatch.setenv("CURL_CA_BUNDLE", str(tmp_path / "ca.pem"))
    monkeypatch.delenv("REQUESTS_CA_BUNDLE")
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "other.pem"))
    assert get(f"{tls_cdn.url}/w.bin").exit_code == 0


def test_a_missing_ca_bundle_is_a_usage_error_naming_the_variable(
    tls_cdn: TlsCdn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CURL_CA_BUNDLE", str(tmp_path / "nope.pem"))
    result = get(f"{tls_cdn.url}/w.bin")
    assert result.exit_code == 2
    assert "$CURL_CA_BUNDLE" in result.stderr


def test_the_hub_client_trusts_the_same_cas(
    tls_cdn: TlsCdn, ca: ScratchCA, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Hub calls (through huggingface_hub's client) refuse the scratch certificate too, with the
    same words.
    """
    monkeypatch.setenv("HF_ENDPOINT", tls_cdn.url)
    result = get("hf://org/tiny/config.json")
    assert result.exit_code == 5
    assert "TLS certificate of 127.0.0.1 not trusted" in result.stderr
    assert "gave up after" not in result.stderr
