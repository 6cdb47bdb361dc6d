"""A registry's replies as a hostile one sends them: a manifest or token reply cut or stalled
mid-body is tried again, then exit 5 (never an internal error); a login never goes in the clear to
a token service off this machine; a refusal's hint names where the registry login came from, not
the headers of a direct URL."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import httpx2
import pytest
from hostile import Answer, ScriptedServer, Seen

from mdl.errors import AuthError, ExitCode, NetworkError
from mdl.paths import parse_oci_ref
from mdl.redact import Secrets
from mdl.sources.oci import Registry
from mdl.transfer.http import RetryPolicy, error_for_status, make_client

MANIFEST = "application/vnd.oci.image.manifest.v1+json"
LOGIN = ("alice", "S3cret-passw0rd")
TOKEN = "tok-" + "a" * 20


def login_file(tmp_path: Path, host: str) -> dict[str, str]:
    """An environment whose auth file holds alice's login for ``host``."""
    auth = base64.b64encode(":".join(LOGIN).encode()).decode()
    path = tmp_path / "auth.json"
    path.write_text(json.dumps({"auths": {host: {"auth": auth}}}))
    return {"REGISTRY_AUTH_FILE": str(path), "HOME": str(tmp_path)}


def hostile(part: str, fault: Answer) -> object:
    """A registry (a Bearer challenge, its token service at /token) whose ``part`` ("manifest"
    or "token") is answered with ``fault``."""

    def policy(_: int, seen: Seen, server: ScriptedServer) -> Answer:
        if seen.path == "/token":
            token = json.dumps({"token": TOKEN}).encode()
            return fault if part == "token" else Answer(200, {}, token)
        if seen.headers.get("authorization") != f"Bearer {TOKEN}":
            realm = f'Bearer realm="{server.url}/token",service="reg"'
            return Answer(401, {"WWW-Authenticate": realm}, b"{}")
        return fault

    return policy


CUT = Answer(
    200, {"Content-Type": MANIFEST, "Content-Length": "100000"}, b"{" + b" " * 100, close=True
)
# the headers, then a byte an hour: silent past the client's read timeout
STALLED = Answer(200, {"Content-Type": MANIFEST, "Content-Length": "100000"}, b"{ ", drip_body=3600)


@pytest.mark.parametrize("part", ["manifest", "token"])
@pytest.mark.parametrize("fault", [CUT, STALLED], ids=["cut", "stalled"])
def test_a_reply_cut_or_stalled_mid_body_is_tried_again_then_exit_5(
    part: str, fault: Answer, tmp_path: Path
) -> None:
    with ScriptedServer(policy=hostile(part, fault)) as server:  # type: ignore[arg-type]
        host = server.url.removeprefix("http://")
        retry = RetryPolicy(retries=1, sleep=lambda _: None)
        with make_client(pool_size=2, timeout=0.5, environ={}) as client:
            registry = Registry(
                client, environ=login_file(tmp_path, host), secrets=Secrets(), retry=retry
            )
            with pytest.raises(NetworkError) as caught:
                registry.manifest(parse_oci_ref(f"oci://{host}/team/m:v1"), what="m")
        asked = [
            s
            for s in server.seen()
            if s.status == 200 and (s.path == "/token") == (part == "token")
        ]
    assert caught.value.exit_code == ExitCode.NETWORK, caught.value.message
    assert "gave up after 2 tries" in caught.value.message, caught.value.message
    assert host in caught.value.message
    assert len(asked) == 2  # the faulty reply, asked again once
    assert not server.errors


def registry_with(answer: object, environ: dict[str, str]) -> tuple[Registry, list[str]]:
    """A Registry on an in-process transport (no socket, no DNS: a host named off this machine is
    never looked up); the URLs asked, each with the Authorization it carried."""
    asked: list[str] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        asked.append(f"{request.url} {request.headers.get('Authorization')}")
        return answer(request)  # type: ignore[operator, no-any-return]

    client = make_client(pool_size=1, environ={}, transport=httpx2.MockTransport(handler))
    return Registry(client, environ=environ, secrets=Secrets()), asked


def challenged(realm: str, then: httpx2.Response) -> object:
    """A registry whose Bearer challenge names ``realm``: its token once asked, ``then``."""

    def answer(request: httpx2.Request) -> httpx2.Response:
        if request.url.path == "/token":
            return httpx2.Response(200, json={"token": TOKEN})
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return httpx2.Response(401, headers={"WWW-Authenticate": f'Bearer realm="{realm}"'})
        return then

    return answer


@pytest.mark.parametrize(
    "realm",
    ["http://auth.example.test:8080/token", "http://192.0.2.7/token", "http://[2001:db8::1]/token"],
)
def test_a_login_never_goes_in_the_clear_to_a_token_service_off_this_machine(
    realm: str, tmp_path: Path
) -> None:
    registry, asked = registry_with(
        challenged(realm, httpx2.Response(404)), login_file(tmp_path, "127.0.0.1:5000")
    )
    with pytest.raises(AuthError) as caught:
        registry.manifest(parse_oci_ref("oci://127.0.0.1:5000/team/m:v1"), what="m")
    assert caught.value.exit_code == ExitCode.AUTH
    assert realm.split("/")[2] in caught.value.message, caught.value.message
    assert len(asked) == 1 and "/token" not in asked[0]  # the realm was never asked


def test_a_login_goes_to_a_plain_http_token_service_on_this_machine(tmp_path: Path) -> None:
    manifest = json.dumps({"schemaVersion": 2, "mediaType": MANIFEST, "layers": []}).encode()
    registry, asked = registry_with(
        challenged(
            "http://localhost:5001/token",
            httpx2.Response(200, content=manifest, headers={"Content-Type": MANIFEST}),
        ),
        login_file(tmp_path, "127.0.0.1:5000"),
    )
    registry.manifest(parse_oci_ref("oci://127.0.0.1:5000/team/m:v1"), what="m")
    basic = base64.b64encode(":".join(LOGIN).encode()).decode()
    to_realm = [a for a in asked if a.startswith("http://localhost:5001/token?")]
    assert to_realm and all(a.endswith(f" Basic {basic}") for a in to_realm)


def test_a_refusal_names_the_registry_login_not_the_headers_of_a_url(tmp_path: Path) -> None:
    environ = login_file(tmp_path, "127.0.0.1:5000")
    denied = httpx2.Response(403, json={"errors": [{"code": "DENIED"}]})
    registry, _ = registry_with(challenged("http://127.0.0.1:5000/token", denied), environ)
    ref = parse_oci_ref("oci://127.0.0.1:5000/team/m:v1")
    with pytest.raises(AuthError) as caught:
        registry.manifest(ref, what="m")  # a 403 once it has the token
    hints = [caught.value.hint]
    credentials = registry.auth(ref).credentials()
    # a blob's 403 at the registry, and a 401 where a redirect left the registry's login behind
    for url, status in (
        (ref.blob_url("sha256:" + "ab" * 32), 403),
        ("http://localhost:5000/v2/team/m/blobs/x", 401),
    ):
        request = registry.client.build_request("GET", url, headers=credentials.headers_for(url))
        refused = error_for_status(
            httpx2.Response(status, request=request), what="w", credentials=credentials
        )
        hints.append(f"{refused.message} {refused.hint}")
    for said in hints:
        assert said is not None and environ["REGISTRY_AUTH_FILE"] in said, said
        assert "-H" not in said and "netrc" not in said, said
