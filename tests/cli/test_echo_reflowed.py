"""Issue 37 (D): a secret a server echoes reformatted never reaches a sink.

A loopback server refuses a presigned URL quoting its secret as real servers and proxies reflow
text: split by a line break (CRLF too), wrapped at a space, in a folded header line, with a
zero-width space, soft hyphen, BOM, word joiner or invisible tag character inside, or a hex
signature upper-cased. Another redirects to a URL whose path parameter (``;jsessionid=…``) is a
secret, which ``-v`` logs. The real CLI (``mdl get``) runs against them; stdout (``--json``), stderr
(human, and ``--progress json`` events) and the log keep the server's words but no form of the
secret.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path
from typing import ClassVar

import pytest
from runfixtures import mdl
from servers import Exchange, LoopbackServer

SIGNATURE = "4f1d0c2b9a8e7d6c5b4a39281706f5e4d3c2b1a0"  # hex: matched in any case
TOKEN = "Zm9vYmFyLXNlY3JldC10b2tlbi12YWx1ZQ"  # base64url: matched as written
SESSION = "A7F3K9Q2M8X1Z5W0"


def _cut(secret: str, mark: str, every: int = 6) -> str:
    return mark.join(secret[i : i + every] for i in range(0, len(secret), every))


# How the echo is reflowed, and whether it goes in the body or in the X-Error-Message header.
STYLES = {
    "line-break": (lambda s: s[:11] + "\n" + s[11:], "body"),
    "crlf": (lambda s: s[:9] + "\r\n" + s[9:], "body"),
    "wrapped": (lambda s: s[:17] + " " + s[17:], "body"),
    "zero-width-space": (lambda s: _cut(s, "\u200b"), "body"),
    "soft-hyphen": (lambda s: _cut(s, "\xad", 5), "body"),
    "bom": (lambda s: s[:4] + "\ufeff" + s[4:], "body"),
    "word-joiner": (lambda s: _cut(s, "\u2060", 7), "body"),
    "tag-character": (lambda s: s[:10] + "\U000e0041" + s[10:], "body"),
    "mixed": (lambda s: _cut(s, "\u200d\n ", 8), "body"),
    "folded-header": (lambda s: s[:12] + "\r\n " + s[12:], "header"),
    "header-space": (lambda s: s[:12] + " " + s[12:], "header"),
}


class Reflowing(LoopbackServer):
    """Refuses every request with a 403 quoting ``secret`` as ``style`` says; ``/start`` redirects
    first to a path with a ``;jsessionid=`` parameter."""

    name = "reflowing"
    style: ClassVar[str] = "line-break"
    upper: ClassVar[bool] = False

    def route(self, ex: Exchange) -> None:
        if ex.path.startswith("/start"):
            ex.redirect(f"{self.url}/real/model.bin;jsessionid={SESSION}?download=1")
            return
        secret = ex.query.get("X-Amz-Signature") or ex.query.get("token") or SESSION
        reflow, where = STYLES[self.style]
        echoed = reflow(secret.upper() if self.upper else secret)
        if where == "header":
            ex.send_bytes(
                403,
                b"denied",
                headers={"X-Error-Message": f"SignatureDoesNotMatch: {echoed} refused"},
            )
        else:
            ex.send_bytes(
                403, f"SignatureDoesNotMatch: signature {echoed} refused for {ex.path}".encode()
            )


@pytest.fixture(scope="module")
def server() -> object:
    with Reflowing() as running:
        yield running


_ESCAPES = re.compile(r"\\(?:x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}|[rnt])")
_INVISIBLE = re.compile("[\\s\xad\u200b-\u200f\u2060-\u206f\ufeff\U000e0000-\U000e007f]")


def squeezed(text: str) -> str:
    """``text`` as a reader would piece a secret back: escapes, whitespace and invisible
    characters out, lower case.
    """
    return _INVISIBLE.sub("", _ESCAPES.sub("", text)).lower()


def sinks(server: Reflowing, url: str, folder: Path) -> dict[str, str]:
    """``mdl get url`` twice (``--json`` with events and ``-v``; people's ``-v``): stdout, stderr
    and the log.
    """
    log = folder / "mdl.log"
    env = {"MDL_LOG_FILE": str(log), "MDL_RETRIES": "0"}
    machine = mdl(
        "get", url, "-d", str(folder / "a"), "--json", "--progress", "json", "-v", env=env
    )
    human = mdl("get", url, "-d", str(folder / "b"), "-v", "--no-progress", env=env)
    assert machine.exit_code == human.exit_code == 3, (machine.stderr, human.stderr)
    assert "403" in human.stderr
    shown = {
        "--json": machine.stdout,
        "events": machine.stderr,
        "stderr": human.stderr,
        "log": log.read_text(),
    }
    # the server's words are kept
    assert "REDACTED" in shown["log"] and "SignatureDoesNotMatch" in shown["log"]
    # and what is left of an invisible character is its escape, on every sink
    for name, text in shown.items():
        assert not [c for c in text if unicodedata.category(c) in ("Cc", "Cf") and c not in "\n"], (
            name,
            text,
        )
    return shown


@pytest.mark.slow
@pytest.mark.parametrize("style", sorted(STYLES))
@pytest.mark.parametrize(("param", "secret"), [("X-Amz-Signature", SIGNATURE), ("token", TOKEN)])
def test_a_reflowed_echo_of_a_secret_reaches_no_sink(
    server: Reflowing, tmp_path: Path, style: str, param: str, secret: str
) -> None:
    server.style, server.upper = style, False
    for name, text in sinks(server, f"{server.url}/b/model.bin?{param}={secret}", tmp_path).items():
        assert secret.lower() not in squeezed(text), (style, name, text)


@pytest.mark.parametrize("style", ["line-break", "zero-width-space", "folded-header", "wrapped"])
def test_an_upper_cased_hex_signature_reaches_no_sink(
    server: Reflowing, tmp_path: Path, style: str
) -> None:
    server.style, server.upper = style, True
    try:
        for name, text in sinks(
            server, f"{server.url}/b/model.bin?X-Amz-Signature={SIGNATURE}", tmp_path
        ).items():
            assert SIGNATURE not in squeezed(text), (style, name, text)
    finally:
        server.upper = False


def test_a_path_parameter_of_a_redirect_is_a_secret(server: Reflowing, tmp_path: Path) -> None:
    """The redirect's ``;jsessionid=`` reaches neither the ``-v`` log's redirect line nor the
    echo of it.
    """
    server.style = "wrapped"
    shown = sinks(server, f"{server.url}/start/model.bin", tmp_path)
    assert ";jsessionid=REDACTED" in shown["log"]  # the redirect is logged, without its session
    for name, text in shown.items():
        assert SESSION.lower() not in squeezed(text), (name, text)
