"""Issue 25: a server that echoes the request in its 403 never puts the signature into any sink.

A loopback object store refuses every presigned URL with a body quoting what it was sent, as real
ones do: S3's ``SignatureDoesNotMatch`` XML (``<SignatureProvided>``, ``<CanonicalRequest>`` with
the percent-encoded query), a JSON error (``\\/`` and ``\\uXXXX`` escapes), an HTML page (numeric
entities) and the plain request line. The signature sits both early in the body and past the 200
characters stderr shows (the log keeps 500). The real CLI (``mdl get`` and ``mdl pull``) runs
against it; stdout (``--json``), stderr (human, and ``--progress json`` events) and the log file
must hold the server's words but never the secret, in any encoding.
"""

from __future__ import annotations

import html
import json
import re
import tempfile
from pathlib import Path
from urllib.parse import quote, unquote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from profiles import examples
from runfixtures import mdl
from servers import Exchange, HubServer, LoopbackServer

STYLES = ("s3-xml", "json", "html", "request-line")
# > 200 chars
PADDING = "The request signature we calculated does not match the signature you provided. " * 3


def _entities(text: str) -> str:
    """Every other character as a numeric entity, alternating decimal and hex (as some servers
    write them).
    """
    out = []
    for i, ch in enumerate(text):
        out.append(ch if i % 2 else (f"&#{ord(ch)};" if i % 4 else f"&#x{ord(ch):X};"))
    return "".join(out)


def _canonical_query(query: dict[str, str]) -> str:
    """SigV4's canonical query string: names and values percent-encoded with upper-case hex,
    sorted.
    """
    return "&".join(
        f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in sorted(query.items())
    )


def echo_body(style: str, ex: Exchange, *, padding: str = PADDING) -> tuple[bytes, str]:
    """What a server says when it refuses the request, quoting it in ``style`` after ``padding``;
    and its content type."""
    target = ex.handler.path  # the request target as sent: the query still percent-encoded
    values = list(ex.query.values())
    if style == "s3-xml":
        provided = "".join(
            f"<SignatureProvided>{html.escape(v)}</SignatureProvided>" for v in values
        )
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SignatureDoesNotMatch</Code>'
            f"<Message>{padding}</Message><AWSAccessKeyId>AKIAEXAMPLE</AWSAccessKeyId>"
            "<StringToSign>AWS4-HMAC-SHA256\n20240101T000000Z\n20240101/us-east-1/s3/aws4_request</StringToSign>"
            f"{provided}<CanonicalRequest>GET\n{ex.path}\n{_canonical_query(ex.query)}\nhost:127.0.0.1\n\n"
            "host\nUNSIGNED-PAYLOAD</CanonicalRequest><RequestId>4442587FB7D0A2F9</RequestId></Error>"
        )
        return body.encode(), "application/xml"
    if style == "json":
        doc = {
            "error": "SignatureDoesNotMatch",
            "request": target,
            "message": padding,
            "query": ex.query,
        }
        # "\/" and "\u002b" as HTML-safe encoders (Go, .NET) write them
        text = json.dumps(doc).replace("/", "\\/").replace("+", "\\u002b").replace("=", "\\u003D")
        return text.encode(), "application/json"
    if style == "html":
        shown = " ".join(_entities(v) for v in values)
        page = (
            f"<!DOCTYPE html><html><head><title>403 Forbidden: bad signature {shown}</title></head>"
            f"<body><h1>Forbidden</h1><p>{padding}</p><p>{html.escape(target)}</p></body></html>"
        )
        return page.encode(), "text/html"
    lowered = re.sub("%[0-9A-F]{2}", lambda m: m.group(0).lower(), target)
    return f"{ex.method} {target} HTTP/1.1 refused. {padding} Was: {lowered}".encode(), "text/plain"


class EchoingStore(LoopbackServer):
    """An object store that refuses every signed request with a 403 echoing it (``style``)."""

    name = "echo"
    style = "s3-xml"

    def route(self, ex: Exchange) -> None:
        body, content_type = echo_body(self.style, ex)
        ex.send_bytes(403, body, content_type=content_type)


@pytest.fixture(scope="module")
def store() -> object:
    with EchoingStore() as server:
        yield server


def json_unescape(text: str) -> str:
    return re.sub(r"\\u([0-9a-fA-F]{4})", lambda m: chr(int(m.group(1), 16)), text).replace(
        "\\/", "/"
    )


def forms(secret: str) -> set[str]:
    """The secret as a sink could show it: raw, percent-encoded either case, JSON- or
    HTML-escaped.
    """
    encoded = quote(secret, safe="")
    return {
        secret,
        encoded,
        encoded.lower(),
        re.sub("%[0-9A-F]{2}", lambda m: m.group(0).lower(), encoded),
        json.dumps(secret)[1:-1],
        json.dumps(secret)[1:-1].replace("/", "\\/"),
        html.escape(secret),
    }


def assert_hidden(secret: str, sinks: dict[str, str]) -> None:
    for name, text in sinks.items():
        for shown in (text, html.unescape(text), unquote(text), json_unescape(text)):
            for form in forms(secret):
                assert form not in shown, f"{form!r} of the secret reached {name}: {text[:2000]}"


def get_everywhere(
    store: EchoingStore, style: str, param: str, secret: str, folder: Path
) -> dict[str, str]:
    """``mdl get`` of a presigned URL three ways (--json with --progress json and -v, plain, -v
    plain); every sink's text, after checking that the server's refusal reached them."""
    store.style = style
    url = (
        f"{store.url}/bucket/model.bin?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Date=20240101T000000Z"
        f"&X-Amz-Expires=3600&X-Amz-SignedHeaders=host&{param}={quote(secret, safe='')}"
    )
    log = folder / "mdl.log"
    env = {"MDL_LOG_FILE": str(log), "MDL_RETRIES": "0"}
    machine = mdl(
        "get", url, "-d", str(folder / "a"), "--json", "--progress", "json", "-v", env=env
    )
    human = mdl("get", url, "-d", str(folder / "b"), env=env)
    verbose = mdl("get", url, "-d", str(folder / "c"), "-v", "--no-progress", env=env)
    for result in (machine, human, verbose):
        assert result.exit_code == 3, (result.exit_code, result.stderr)
    doc = json.loads(machine.stdout)
    (failed,) = doc["files"]
    assert failed["action"] == "failed" and "HTTP 403" in failed["error"]
    events = [json.loads(line) for line in machine.stderr.splitlines()]  # every line is an event
    assert events[0]["event"] == "begin" and events[-1]["event"] == "end"
    log_text = log.read_text(encoding="utf-8")
    said = re.findall(r"server_text=(\S+)", log_text)
    assert said, log_text  # the server's words are logged (so the check below is not vacuous)
    assert "REDACTED" in log_text
    assert "HTTP 403" in human.stderr
    return {
        "--json stdout": machine.stdout,
        "--progress json events": machine.stderr,
        "stderr": human.stderr,
        "stderr -v": verbose.stderr,
        "stdout": human.stdout + verbose.stdout,
        "log": log_text,
    }


@pytest.mark.parametrize("style", STYLES)
def test_an_echoed_signature_never_reaches_a_sink(
    store: EchoingStore, style: str, tmp_path: Path
) -> None:
    secret = "Zm9vYmFy/c2lnbmF0dXJl+dmFsdWU=0123456789abcdef"
    sinks = get_everywhere(store, style, "X-Amz-Signature", secret, tmp_path)
    assert_hidden(secret, sinks)
    # the server's own words are kept around the redaction
    marker = {
        "s3-xml": "SignatureDoesNotMatch",
        "json": "SignatureDoesNotMatch",
        "html": "403 Forbidden",
    }
    assert marker.get(style, "refused") in sinks["log"]
    assert marker.get(style, "refused") in sinks["--json stdout"]


SECRET_TEXT = st.one_of(
    st.text("0123456789abcdef", min_size=16, max_size=64),
    st.text(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", min_size=12, max_size=48
    ),
    st.text(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=",
        min_size=12,
        max_size=48,
    ),
).filter(lambda s: s not in "REDACTED" and not s.isdigit())


@settings(
    max_examples=examples(12),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    secret=SECRET_TEXT,
    param=st.sampled_from(
        ["X-Amz-Signature", "Signature", "sig", "x-oss-signature", "q-signature", "token", "jwt"]
    ),
    style=st.sampled_from(STYLES),
)
def test_property_no_echoed_secret_reaches_any_sink(
    store: EchoingStore, secret: str, param: str, style: str
) -> None:
    with tempfile.TemporaryDirectory() as folder:
        assert_hidden(secret, get_everywhere(store, style, param, secret, Path(folder)))


def test_a_hub_cdn_echoing_its_signed_redirect_never_shows_it(
    hub: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Hub redirects to a signed CDN URL mdl never saw before (registered by the redirect
    follower); the CDN refuses it with S3's XML quoting the signature."""
    hub.add_repo("org/tiny", {"model.bin": b"x" * 5000})
    signatures: list[str] = []

    def refuse(ex: Exchange) -> None:
        signatures.append(ex.query.get("X-Amz-Signature", ""))
        body, content_type = echo_body("s3-xml", ex, padding="Signature mismatch.")
        ex.send_bytes(403, body, content_type=content_type)

    monkeypatch.setattr(hub.cdn, "route", refuse)
    (tmp_path / "catalog.toml").write_text('[models.tiny]\nrepo = "org/tiny"\n')
    env = {
        "HF_ENDPOINT": hub.url,
        "MDL_CATALOG": str(tmp_path / "catalog.toml"),
        "MDL_DEST": str(tmp_path / "models"),
        "MDL_LOG_FILE": str(tmp_path / "mdl.log"),
        "MDL_RETRIES": "0",
    }
    machine = mdl("pull", "tiny", "--json", "--progress", "json", "-v", env=env)
    human = mdl("pull", "tiny", "-v", "--no-progress", env=env)
    assert machine.exit_code != 0 and human.exit_code != 0
    assert [s for s in signatures if s], "the CDN was never asked with a signed URL"
    sinks = {
        "--json stdout": machine.stdout,
        "events": machine.stderr,
        "stderr": human.stderr,
        "log": (tmp_path / "mdl.log").read_text(encoding="utf-8"),
    }
    assert "server_text=" in sinks["log"]
    for signature in set(signatures) - {""}:
        assert_hidden(signature, sinks)


def test_a_body_cut_inside_the_secret_shows_none_of_it(tmp_path: Path) -> None:
    """A body longer than mdl reads (8 KiB), mostly whitespace, whose cut splits the echoed
    signature: after the whitespace is folded the split start of the signature would be within the
    500 characters the log keeps."""
    from mdl.transfer.failures import ERROR_BODY_LIMIT

    secret = "4f1d0c2b9a8e7d6c5b4a39281706f5e4d3c2b1a0"

    class Padded(LoopbackServer):
        def route(self, ex: Exchange) -> None:
            head = b"<Error><SignatureProvided>"
            body = head + b" " * (ERROR_BODY_LIMIT - len(head) - 12) + secret.encode() + b"</Error>"
            ex.send_bytes(403, body, content_type="application/xml")

    with Padded() as server:
        url = f"{server.url}/b/m.bin?X-Amz-Signature={secret}"
        log = tmp_path / "mdl.log"
        result = mdl(
            "get", url, "-d", str(tmp_path / "out"), "--json", "-v", env={"MDL_LOG_FILE": str(log)}
        )
    assert result.exit_code == 3, result.stderr
    sinks = {
        "stdout": result.stdout,
        "stderr": result.stderr,
        "log": log.read_text(encoding="utf-8"),
    }
    assert "<SignatureProvided> REDACTED" in sinks["log"]
    for name, text in sinks.items():
        assert secret[:12] not in text, name
