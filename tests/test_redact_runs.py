"""Issue 41: secrets belong to one run (``Secrets``), not to the process: what a run's HTTP client asks for is
registered in that run's secrets and hidden from the server's answer, and another run in the same process is not
told of them."""

from __future__ import annotations

from servers import Exchange, LoopbackServer

from mdl.redact import REDACTED, Secrets, safe_text
from mdl.transfer import Credentials, make_client
from mdl.transfer.http import follow, server_text

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
        with follow(client, url, credentials=Credentials(), what="m.bin", rule=lambda _, __: True) as response:
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
