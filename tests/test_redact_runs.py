"""Issue 41: secrets belong to one run (``Secrets``), not to the process: what a run's HTTP client
asks for is registered in that run's secrets and hidden from the server's answer, and another run in
the same process is not told of them."""

from __future__ import annotations

from pathlib import Path

from servers import Exchange, LoopbackServer

from mdl.redact import REDACTED, Secrets, safe_text
from mdl.transfer.failures import server_text
from mdl.transfer.http import Credentials, follow, make_client

FIRST = "c0ffee1234deadbeef0123"  # the signature of the URL asked for
SECOND = "Zm9vYmFyLXNlY3JldC10b2tlbg"  # the signature of the URL it redirects to


class Refusing(LoopbackServer):
    """``/a`` redirects to a signed ``/b``, which refuses with both signatures in its words."""

    def route(self, ex: Exchange) -> None:
        if ex.path == "/a":
            ex.redirect(f"/b?X-Amz-Signature={SECOND}")
        else:
            ex.send_bytes(403, f"SignatureDoesNotMatch: {FIRST} then {SECOND}".encode())


def test_a_runs_client_registers_each_hop_in_the_runs_secrets_and_no_other() -> None:
    run, other = Secrets(), Secrets()
    with Refusing() as server, make_client(pool_size=1, timeout=5, secrets=run) as client:
        url = f"{server.url}/a?X-Amz-Signature={FIRST}"
        with follow(
            client, url, credentials=Credentials(), what="m.bin", rule=lambda _, __: True
        ) as response:
            assert response.status_code == 403
            assert Secrets.of(response) is run
            said = server_text(response)
    assert said == f"SignatureDoesNotMatch: {REDACTED} then {REDACTED}"
    assert {FIRST, SECOND} <= set(run.known())
    assert other.known() == ()  # another run of the process was told nothing
    words = f"{FIRST} {SECOND}"
    assert safe_text(words, secrets=other) == words


def test_a_client_without_a_runs_secrets_registers_nothing() -> None:
    with (
        Refusing() as server,
        make_client(pool_size=1, timeout=5) as client,
        follow(client, f"{server.url}/b", credentials=Credentials(), what="m.bin") as response,
    ):
        assert Secrets.of(response) is None
        assert server_text(response) == f"SignatureDoesNotMatch: {FIRST} then {SECOND}"


class EchoingCredentials(LoopbackServer):
    """Refuses with the bare value of the ``Authorization`` header it was sent (no name, no
    scheme).
    """

    def route(self, ex: Exchange) -> None:
        sent = (ex.headers.get("Authorization") or "").rpartition(" ")[2]
        ex.send_bytes(403, f"refused {sent}".encode())


def test_a_urls_login_is_hidden_in_the_form_the_client_sends_it() -> None:
    """``https://user:pass@host/…``: the client sends ``Basic base64(user:pass)``; a server quoting
    that value alone shows nothing of the login."""
    import base64

    run = Secrets()
    with EchoingCredentials() as server, make_client(pool_size=1, timeout=5, secrets=run) as client:
        host = server.url.removeprefix("http://")
        url = f"http://me:pa%20ss-0123456789@{host}/f.bin"
        with follow(client, url, credentials=Credentials(), what="f.bin") as response:
            said = server_text(response)
    sent = base64.b64encode(b"me:pa ss-0123456789").decode()
    assert sent not in said
    assert said == f"refused {REDACTED}"


# a credential header's value, sent by the run and quoted back by the server
KEY = "k3y-0f-th1s-run-7a9c2e"


class QuotingHeaders(LoopbackServer):
    """Answers with the request's X-Api-Key as the body's content coding, which mdl's error then
    names.
    """

    def route(self, ex: Exchange) -> None:
        key = ex.handler.headers.get("X-Api-Key", "")
        ex.send_bytes(
            200,
            b"weights",
            headers={"Content-Encoding": key},
            content_type="application/octet-stream",
        )


def test_a_library_callers_report_never_quotes_the_runs_secrets(tmp_path: Path) -> None:
    """The API is a sink too: each outcome's error, hint, warning and server text a library caller
    reads is cut through the run's secrets, whatever part built it."""
    import mdl

    with QuotingHeaders() as server:
        report = mdl.get(
            f"{server.url}/m.bin", directory=tmp_path, headers={"X-Api-Key": KEY}, environ={}
        )
    (outcome,) = report.files
    assert outcome.action == "failed"
    texts = [outcome.error, outcome.hint, outcome.warning, outcome.server_text]
    assert any(texts)
    assert all(KEY not in (text or "") for text in texts), texts
