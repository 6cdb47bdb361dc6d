"""A hostile Hub (tests/hostile.py `HostileHub`): the token stays home, bad listings fail one model,
escapes stay out.

Issue 11 items 2, 3 and 5 (Hub side): a `Link: rel="next"` to another origin, every bad listing
shape, terminal escapes in a commit id or in server error text. Each runs end to end through the CLI
(exit code, stdout, stderr, records) and, where the layer matters, through `Hub` directly.
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hostile import HostileHub
from runfixtures import HANG, mdl, use_catalog
from servers import TOKEN, CdnServer, Exchange, Fault

from mdl.errors import ExitCode, HubReplyError, TokenLeakError
from mdl.sources._hubreplies import FileMetadata
from mdl.sources.hub import Hub
from mdl.transfer.http import RetryPolicy, TokenGuard, make_client

CATALOG = """
[models.good]
repo = "org/good"

[models.bad]
repo = "org/bad"

[models.file]
files = [{ repo = "org/good", path = "config.json" }]
"""
NO_RETRY = RetryPolicy(retries=0, sleep=lambda s: None)


@pytest.fixture
def hostile() -> Iterator[HostileHub]:
    """A started HostileHub with two small repos, one file a page so a listing has a next page."""
    server = HostileHub(page_size=1).start()
    server.add_repo("org/good", {"config.json": b'{"a": 1}', "weights.bin": b"w" * 5000})
    server.add_repo("org/bad", {"config.json": b'{"b": 2}', "model.bin": b"m" * 3000})
    try:
        yield server
    finally:
        server.stop()
    assert not server.errors, server.errors


@pytest.fixture
def other() -> Iterator[CdnServer]:
    """Another origin on 127.0.0.1 that records whatever reaches it."""
    with CdnServer() as server:
        yield server


@pytest.fixture
def env(hostile: HostileHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Catalog and destination for the CLI, the hostile Hub as HF_ENDPOINT, the test token as
    HF_TOKEN.
    """
    use_catalog(tmp_path, monkeypatch, CATALOG, endpoint=hostile.url)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.setenv("MDL_RETRIES", "0")
    return tmp_path / "models"


def only_bad(rewrite: Callable[[Any], Any]) -> Callable[[Exchange, Any], Any]:
    """Rewrite the tree listing of org/bad only; every other answer stays honest."""

    def apply(ex: Exchange, doc: Any) -> Any:
        return rewrite(doc) if "/org/bad/tree/" in ex.path else doc

    return apply


def everything_written(dest: Path) -> bytes:
    """Every byte mdl left under the destination (records, files), to search for raw escapes."""
    return (
        b"".join(p.read_bytes() for p in sorted(dest.rglob("*")) if p.is_file())
        if dest.exists()
        else b""
    )


# -- item 2: the token never follows a next-page link off the Hub's origin
# ---------------------------------


def _targets(hub: HostileHub, other: CdnServer) -> dict[str, str]:
    return {
        "other port": f"{other.url}/api/models/org/bad/tree/x?cursor=MQ==",
        "localhost for 127.0.0.1": (
            f"http://localhost:{hub.port}/api/models/org/bad/tree/x?cursor=MQ=="
        ),
        "https for http": f"https://127.0.0.1:{hub.port}/api/models/org/bad/tree/x?cursor=MQ==",
    }


@pytest.mark.parametrize("kind", ["other port", "localhost for 127.0.0.1", "https for http"])
def test_next_page_on_another_origin_is_refused_and_gets_no_token(
    hostile: HostileHub, other: CdnServer, env: Path, kind: str
) -> None:
    target = _targets(hostile, other)[kind]
    hostile.next_link = lambda honest: target if honest and "/org/bad/" in honest else honest
    result = mdl("pull", "--all")
    assert result.exit_code == ExitCode.NETWORK == 5, result.output
    assert "bad: hostile listing" in result.stderr
    refused = target.split("/api/")[0]
    assert (refused if ":" in refused.rsplit("/", 1)[-1] else refused + ":443") in result.stderr
    assert TOKEN not in result.stderr + result.stdout
    # Nothing reached the other origin, and nothing reached this server under another name.
    assert other.log.records() == []
    assert all((r.header("host") or "").startswith("127.0.0.1") for r in hostile.log.records())
    # The honest models were pulled.
    assert (env / "good" / "weights.bin").read_bytes() == b"w" * 5000
    assert (env / "file" / "config.json").read_bytes() == b'{"a": 1}'


def test_next_page_on_the_same_origin_is_followed_with_the_token(
    hostile: HostileHub, env: Path
) -> None:
    result = mdl("pull", "good")
    assert result.exit_code == 0, result.output
    pages = hostile.log.records(path_prefix="/api/models/org/good/tree/")
    assert len(pages) >= 2 and {r.authorization for r in pages} == {f"Bearer {TOKEN}"}
    assert pages[0].query == {"recursive": "true", "expand": "false"}


def test_guard_refuses_the_token_to_another_origin_before_sending(
    hostile: HostileHub, other: CdnServer
) -> None:
    """The hook on the one client catches a leak whatever code path builds the request."""
    client = make_client(timeout=5, pool_size=2)
    try:
        guard = TokenGuard.on(client, hostile.url)
        assert TokenGuard.on(client, hostile.url) is guard  # installed once
        guard.protect(TOKEN)
        for url in (
            other.url + "/x",
            f"http://localhost:{hostile.port}/x",
            f"https://127.0.0.1:{hostile.port}/x",
        ):
            for headers in ({"Authorization": f"Bearer {TOKEN}"}, {"X-Anything": TOKEN}):
                with pytest.raises(TokenLeakError) as info:
                    client.get(url, headers=headers)
                assert info.value.exit_code == ExitCode.NETWORK
                assert TOKEN not in info.value.message
        assert other.log.records() == []
        assert hostile.log.records() == []
        # The Hub's own origin gets it; other origins get requests without it.
        assert client.get(
            hostile.url + "/api/models/org/good", headers={"Authorization": f"Bearer {TOKEN}"}
        ).is_success
        assert client.get(other.url + "/x").status_code == 404
    finally:
        client.close()


def test_guard_is_on_the_runs_client(hostile: HostileHub, other: CdnServer) -> None:
    hub = Hub(hostile.url, TOKEN, retry=NO_RETRY)
    try:
        with pytest.raises(TokenLeakError):
            hub.client.get(other.url + "/x", headers={"Authorization": f"Bearer {TOKEN}"})
        assert other.log.records() == []
    finally:
        hub.close()


# -- item 3: every bad listing shape fails its model (exit 5) and the others go on
# ------------------------

BAD_LISTINGS: dict[str, Callable[[Any], Any]] = {
    "html with 200": lambda doc: b"<html><body>Please log in to the Wi-Fi</body></html>",
    "empty body": lambda doc: b"",
    "json error object": lambda doc: {"error": "Repository storage unavailable"},
    "entry without oid": lambda doc: [{k: v for k, v in e.items() if k != "oid"} for e in doc],
    "size as a string": lambda doc: [{**e, "size": str(e["size"])} for e in doc],
    "path as a number": lambda doc: [{**e, "path": 7} for e in doc],
    "not a list": lambda doc: "files",
    "truncated json": lambda doc: json.dumps(doc).encode()[:-3],
    "unknown type": lambda doc: [{**e, "type": "symlink"} for e in doc],
    "negative size": lambda doc: [{**e, "size": -1} for e in doc],
    "lfs without sha256": lambda doc: [{**e, "lfs": {"size": 1}} for e in doc],
    "control character in path": lambda doc: [{**e, "path": "a\x1b[2Jb.bin"} for e in doc],
    "bidi override in path": lambda doc: [{**e, "path": "x\u202etxt.exe"} for e in doc],
}


@pytest.mark.slow
@pytest.mark.parametrize("shape", list(BAD_LISTINGS))
def test_bad_listing_fails_that_model_and_the_others_are_pulled(
    hostile: HostileHub, env: Path, shape: str
) -> None:
    hostile.rewrite_json = only_bad(BAD_LISTINGS[shape])
    result = mdl("pull", "--all")
    assert result.exit_code == ExitCode.NETWORK == 5, result.output
    assert "internal error:" not in result.output.lower()
    line = next(line for line in result.stderr.splitlines() if "unexpected reply" in line)
    assert line.lstrip().startswith("bad:") or "bad:" in line
    assert f"{hostile.url}/api/models/org/bad/tree/" in line
    assert "\x1b" not in result.stderr and "\u202e" not in result.stderr
    assert (env / "good" / "weights.bin").read_bytes() == b"w" * 5000
    assert (env / "file" / "config.json").read_bytes() == b'{"a": 1}'
    assert not (env / "bad").exists() or not any((env / "bad").iterdir())


def test_bad_listing_error_names_model_url_and_body_excerpt(hostile: HostileHub) -> None:
    body = b"<html>" + b"x" * 500 + b"</html>"
    hostile.rewrite_json = only_bad(lambda doc: body)
    hub = Hub(hostile.url, None, retry=NO_RETRY)
    try:
        commit = hub.commit_of("org/bad", repo_type="model", revision="main", what="bad")
        with pytest.raises(HubReplyError) as info:
            hub.list_files("org/bad", repo_type="model", commit=commit, what="bad")
    finally:
        hub.close()
    message = info.value.message
    assert info.value.exit_code == 5
    assert message.startswith("bad: unexpected reply from ")
    assert f"{hostile.url}/api/models/org/bad/tree/{commit}?recursive=true" in message
    assert "<html>" + "x" * 194 + "…" in message  # the first 200 characters, marked as cut
    assert "x" * 195 not in message


def test_resolve_with_a_bad_listing_is_exit_5_not_internal(hostile: HostileHub, env: Path) -> None:
    hostile.rewrite_json = only_bad(lambda doc: {"error": "nope"})
    result = mdl("resolve", "--all", "--json")
    assert result.exit_code == 5, result.output
    assert "internal" not in result.output.lower()


# -- item 5: a commit is 40 hex or refused; server text is made printable
# ------------------------------


ESCAPES = "\x1b]0;pwned\x07\x1b[2J"


def test_commit_with_escapes_is_refused_never_shown_or_recorded(
    hostile: HostileHub, env: Path
) -> None:
    hostile.sha = ESCAPES + "0" * 26
    for args in (
        ("pull", "good"),
        ("resolve", "good"),
        ("resolve", "good", "--json"),
        ("show", "good"),
    ):
        result = mdl(*args)
        assert "\x1b" not in result.stdout and "\x07" not in result.stdout, args
        assert "\x1b" not in result.stderr and "\x07" not in result.stderr, args
    pulled = mdl("pull", "good")
    assert pulled.exit_code == 5 and "good: unexpected reply" in pulled.stderr
    assert b"\x1b" not in everything_written(env)
    assert b"\\u001b]0;pwned" not in everything_written(env)


@pytest.mark.slow
@pytest.mark.parametrize(
    "sha", ["ABCDEF" + "0" * 34, "0" * 39, "0" * 41, "g" * 40, "0" * 40 + "\n"]
)
def test_commit_that_is_not_40_lowercase_hex_is_refused(
    hostile: HostileHub, env: Path, sha: str
) -> None:
    hostile.sha = sha
    result = mdl("pull", "good", "--json")
    assert result.exit_code == 5, result.output
    assert b"0" * 39 not in everything_written(env)


def test_file_commit_header_that_is_not_a_commit_is_refused(hostile: HostileHub, env: Path) -> None:
    hostile.sha = "not-a-commit;$(reboot)"
    result = mdl("pull", "file")
    assert result.exit_code == 5, result.output
    assert "X-Repo-Commit is not a commit id" in result.stderr
    assert not (env / "file" / "config.json").exists()


def test_error_body_with_escapes_is_printable(hostile: HostileHub, env: Path) -> None:
    hostile.faults.add(
        Fault.http_error(400, body=ESCAPES + "broken mirror", times=None, path_prefix="/api/")
    )
    result = mdl("pull", "good")
    assert result.exit_code == 5, result.output
    assert "\x1b" not in result.stderr and "\x07" not in result.stderr
    assert "\\x1b]0;pwned\\x07" in result.stderr and "broken mirror" in result.stderr
    log = (env.parent / "mdl.log").read_text(encoding="utf-8")
    assert "\x1b" not in log and "broken mirror" in log


@pytest.mark.parametrize("status", [403, 404, 400, 500])
def test_error_message_header_with_escapes_is_printable(
    hostile: HostileHub, env: Path, status: int
) -> None:
    message = ESCAPES + "denied\x9b31m"  # C1 CSI: latin-1 on the wire, as a header can carry it
    hostile.faults.add(
        Fault.http_error(
            status, headers={"X-Error-Message": message}, times=None, path_prefix="/api/"
        )
    )
    result = mdl("pull", "good", "--json")
    assert result.exit_code in (3, 4, 5), result.output
    for text in (
        result.stdout,
        result.stderr,
        (env.parent / "mdl.log").read_text(encoding="utf-8"),
    ):
        assert "\x1b" not in text and "\x07" not in text and "\x9b" not in text
    # a 404 without X-Error-Code is the Hub's "not found"; others carry the message
    if status != 404:
        assert "\\x1b]0;pwned\\x07" in result.stderr and "denied" in result.stderr


def test_show_escapes_a_commit_from_a_record_written_before_the_checks(
    hostile: HostileHub, env: Path
) -> None:
    assert mdl("pull", "good").exit_code == 0
    (record,) = (env / ".mdl" / "records").glob("good*.json")
    doc = json.loads(record.read_text(encoding="utf-8"))
    doc["commit"] = ESCAPES + "0" * 26
    record.write_text(json.dumps(doc), encoding="utf-8")
    shown = mdl("show", "good")
    assert shown.exit_code == 0, shown.output
    assert "\x1b" not in shown.stdout and "\x07" not in shown.stdout
    assert "commit:" in shown.stdout and "\\x1b]0;pwned" in shown.stdout


# -- redirects and pagination loops on the Hub API
# ---------------------------------------------------------


def test_api_redirect_within_the_hub_is_followed_with_the_token(hostile: HostileHub) -> None:
    """A renamed repo: the Hub answers its API with a redirect to the new name on its own origin."""
    hostile.add_redirect(
        "/api/models/org/old/revision/main", "/api/models/org/good/revision/main", 307
    )
    hub = Hub(hostile.url, TOKEN, retry=NO_RETRY)
    try:
        assert (
            hub.commit_of("org/old", repo_type="model", revision="main", what="m")
            == hostile.repo("org/good").sha
        )
    finally:
        hub.close()
    followed = hostile.log.records(path_prefix="/api/models/org/good/revision/")
    assert [r.authorization for r in followed] == [f"Bearer {TOKEN}"]


def test_api_redirect_to_another_origin_is_refused(hostile: HostileHub, other: CdnServer) -> None:
    hostile.add_redirect(
        "/api/models/org/good/revision/main", other.url + "/api/models/org/good/revision/main"
    )
    hub = Hub(hostile.url, TOKEN, retry=NO_RETRY)
    try:
        with pytest.raises(HubReplyError, match=r"redirected .* to another origin") as info:
            hub.commit_of("org/good", repo_type="model", revision="main", what="m")
    finally:
        hub.close()
    assert info.value.exit_code == 5
    assert other.log.records() == []


def lfs_metadata(hostile: HostileHub) -> FileMetadata:
    """``org/lfs``'s ``w.safetensors`` as a pull of that one file asks it first."""
    hub = Hub(hostile.url, TOKEN, retry=NO_RETRY)
    try:
        return hub.file_metadata(
            "org/lfs", "w.safetensors", repo_type="model", revision="main", what="m"
        )
    finally:
        hub.close()


def test_head_stops_at_a_redirect_off_the_hub_and_reads_it(hostile: HostileHub) -> None:
    """As huggingface_hub: the metadata of an LFS file is on the redirect to the CDN, which is
    never asked.
    """
    hostile.add_repo("org/lfs", {"w.safetensors": b"s" * 4000})
    meta = lfs_metadata(hostile)
    assert (meta.commit, meta.size) == (hostile.repo("org/lfs").sha, 4000)
    assert meta.etag is not None and len(meta.etag) == 64
    assert hostile.cdn.log.records() == []


def test_a_listing_whose_pages_loop_is_refused(hostile: HostileHub) -> None:
    sha = hostile.repo("org/good").sha
    hostile.next_link = lambda honest: (
        f"{hostile.url}/api/models/org/good/tree/{sha}?recursive=true&cursor=MA=="
    )
    hub = Hub(hostile.url, None, retry=NO_RETRY)
    try:
        commit = hub.commit_of("org/good", repo_type="model", revision="main", what="m")
        with pytest.raises(HubReplyError, match="pages never end"):
            hub.list_files("org/good", repo_type="model", commit=commit, what="m")
    finally:
        hub.close()


@pytest.mark.slow
def test_mdl_never_lets_huggingface_hub_make_requests() -> None:
    """Every Hub request goes through the run's client (and its TokenGuard): no huggingface_hub
    HTTP helper is used.
    """
    import ast

    import mdl

    http_helpers = {
        "HfApi",
        "get_hf_file_metadata",
        "hf_hub_download",
        "snapshot_download",
        "get_session",
        "http_get",
    }
    used: list[str] = []
    for path in Path(mdl.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                "huggingface_hub"
            ):
                used += [f"{path.name}: {a.name}" for a in node.names if a.name in http_helpers]
    assert used == []


def test_the_pull_sessions_client_guards_downloads_too(
    hostile: HostileHub, other: CdnServer, tmp_path: Path
) -> None:
    """Were a download's headers ever wrong (here: the token as a direct URL's own header), the
    hook refuses.
    """
    from mdl.catalog.settings import build_settings
    from mdl.download.session import PullSession
    from mdl.progress import NullProgress
    from mdl.transfer.connection import origin
    from mdl.transfer.http import Credentials, follow

    settings = build_settings(
        environ={"HF_ENDPOINT": hostile.url, "HF_TOKEN": TOKEN}, dest=tmp_path / "d"
    )
    session = PullSession(settings, progress=NullProgress())
    try:
        assert session.token == TOKEN
        wrong = Credentials(
            extra={"Authorization": f"Bearer {TOKEN}"}, extra_origin=origin(other.url)
        )
        with (
            pytest.raises(TokenLeakError),
            follow(session.owned.client, other.url + "/f.bin", credentials=wrong, what="m/f.bin"),
        ):
            pass
        assert other.log.records() == []
    finally:
        session.owned.close()


@pytest.mark.parametrize(
    "endpoint", ["http://127.0.0.1:abc", "http://[::1", "https://hub.example:99999", "http://:8080"]
)
def test_an_endpoint_without_an_origin_is_exit_2(
    env: Path, monkeypatch: pytest.MonkeyPatch, endpoint: str
) -> None:
    """The token guard compares origins, so an endpoint must have one: bad input, not an internal
    error.
    """
    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    result = mdl("resolve", "good")
    assert result.exit_code == ExitCode.USAGE == 2, result.output
    assert "HF_ENDPOINT" in result.stderr and "internal error" not in result.stderr


def test_a_malformed_redirect_location_is_a_network_error(other: CdnServer) -> None:
    from mdl.errors import NetworkError
    from mdl.transfer.http import Credentials, follow

    url = other.add_redirect("/f.bin", "http://[")
    client = make_client(timeout=5, pool_size=2)
    try:
        with (
            pytest.raises(NetworkError, match="redirected to a malformed URL") as info,
            follow(client, url, credentials=Credentials(), what="m/f.bin"),
        ):
            pass
    finally:
        client.close()
    assert info.value.exit_code == 5


# no hf_ shape: only the run's secrets can tell it from a word
MIRROR_TOKEN = "mirrortoken-0123456789abcdef"


@pytest.mark.parametrize("command", ["get", "pull"])
def test_a_reply_mdl_cannot_read_never_quotes_the_runs_token_to_the_library(
    tmp_path: Path, command: str
) -> None:
    """A Hub mirror answering 200 with a page that quotes the request (a captive portal, a proxy's
    echo): the error a Python caller gets (raised, or in the report) says how the reply starts,
    without the token it echoes."""
    from mdl import api

    server = HostileHub(valid_tokens=[MIRROR_TOKEN]).start()
    try:
        server.add_repo("org/bad", {"config.json": b"{}"})
        server.rewrite_json = lambda ex, doc: (
            f"<html>you sent Token: {MIRROR_TOKEN}</html>".encode()
        )
        environ = {"HF_ENDPOINT": server.url, "HF_TOKEN": MIRROR_TOKEN, "MDL_RETRIES": "0"}
        if command == "get":
            with pytest.raises(HubReplyError) as info:
                api.get("hf://org/bad", directory=tmp_path / "d", environ=environ)
            message = info.value.message
        else:
            catalog = tmp_path / "catalog.toml"
            catalog.write_text('[models.bad]\nrepo = "org/bad"\n')
            report = api.pull("bad", catalog=catalog, dest=tmp_path / "d", environ=environ)
            message = report.files[0].error or ""
    finally:
        server.stop()
    assert "unexpected reply from" in message and "you sent Token: REDACTED" in message, message
    assert MIRROR_TOKEN not in message


def test_a_file_s_reply_parsers_load_while_its_first_byte_is_asked(
    hostile: HostileHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pull of one file of a repo asks its first byte first: the parsers of the answer (pydantic's
    models among them, ~50 ms) load on a thread while it is out (``import_ahead``), not between the
    answer and the file's ranges. The Hub holds its answer till they are loaded, or says it never
    saw them."""
    hostile.add_repo("org/lfs", {"w.safetensors": b"s" * 4000})
    parsers = "mdl.sources._hubreplies"
    monkeypatch.delitem(sys.modules, parsers, raising=False)  # (as in a fresh run: loaded anew)
    seen: list[bool] = []

    def loaded_while_asked() -> None:
        # the importing thread's end is the event (none started: the parsers are not loading)
        for thread in threading.enumerate():
            if thread.name == "mdl-import-ahead":
                thread.join(HANG)
        seen.append(parsers in sys.modules)

    hostile.faults.add(Fault.call(loaded_while_asked, path_prefix="/org/lfs/resolve/"))
    assert lfs_metadata(hostile).size == 4000
    assert seen == [True]
