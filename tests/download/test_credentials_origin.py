"""A credential only where the user sent it (issue 50, C): a netrc login and -H headers go to the
URLs the user typed, on their own origin; a URL a document, a listing or a redirect named gets
neither, and a 401 after a redirect that left the login behind says so. Real loopback servers."""

from __future__ import annotations

import base64
import json
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hostile import ScratchCA, TlsCdn
from hypothesis import given, settings
from hypothesis import strategies as st
from profiles import examples
from runfixtures import mdl, use_catalog
from servers import CdnServer, make_data

from mdl.catalog.settings import build_settings
from mdl.download.session import PullSession
from mdl.progress import NullProgress
from mdl.sources.resolve import RemoteFile
from mdl.transfer.http import origin

DATA = make_data(200_000, seed=50)
PASSWORD = "pa55-w0rd-never-shown"
KEY = "k3y-0123456789abcdef"


def basic(login: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{login}:{password}".encode()).decode()


def sent(server: CdnServer, header: str) -> list[str | None]:
    return [record.header(header) for record in server.log.records()]


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, isolated_env: Path) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MDL_LOG_FILE", str(tmp_path / "mdl.log"))
    (isolated_env / ".netrc").write_text(f"machine 127.0.0.1 login alice password {PASSWORD}\n")
    monkeypatch.setenv("NETRC", str(isolated_env / ".netrc"))
    return tmp_path


@pytest.fixture
def other() -> Iterator[CdnServer]:
    """A second server at another origin (localhost, its own port)."""
    server = CdnServer(host_alias="localhost").start()
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.parametrize("entry", ["default", "machine 127.0.0.1"])
def test_a_job_outputs_link_gets_no_netrc_login_nor_header(
    cdn: CdnServer, here: Path, isolated_env: Path, entry: str
) -> None:
    """The document names the host: a ``default`` entry (or the host's own) would send Basic
    credentials to whatever host a job output names, as -H headers are rightly withheld from the
    same link."""
    (isolated_env / ".netrc").write_text(f"{entry} login alice password {PASSWORD}\n")
    # a plain link: not a presigned one (those never got a login)
    link = cdn.add_file("/out/a.bin", DATA)
    (here / "job.json").write_text(
        json.dumps({"type": "redirect", "url": link, "filename": "a.bin"})
    )
    result = mdl("get", "job.json", "-H", f"X-Api-Key: {KEY}")
    assert result.exit_code == 0, result.stderr
    assert (here / "a.bin").read_bytes() == DATA
    assert cdn.log.records(), "the link was fetched"
    assert set(sent(cdn, "Authorization")) == {None}
    assert set(sent(cdn, "X-Api-Key")) == {None}


def test_a_url_the_user_typed_still_gets_its_netrc_login(cdn: CdnServer, here: Path) -> None:
    url = cdn.add_file(
        "/private/a.bin", DATA, required_headers={"Authorization": basic("alice", PASSWORD)}
    )
    result = mdl("get", url)
    assert result.exit_code == 0, result.stderr
    assert basic("alice", PASSWORD) in sent(cdn, "Authorization")


def test_a_redirect_elsewhere_gets_neither_and_its_401_says_the_login_was_withheld(
    cdn: CdnServer, other: CdnServer, here: Path
) -> None:
    target = other.add_file(
        "/cdn/a.bin", DATA, required_headers={"Authorization": basic("alice", PASSWORD)}
    )
    url = cdn.add_redirect("/go/a.bin", target)
    result = mdl("get", url, "-H", f"X-Api-Key: {KEY}")
    assert result.exit_code == 3, result.stderr
    assert set(sent(other, "Authorization")) == {None}
    assert set(sent(other, "X-Api-Key")) == {None}
    said = " ".join(result.stderr.split())
    assert (
        "the netrc login and the headers given (-H, the catalog's headers) for"
        f" http://127.0.0.1:{cdn.port} were withheld on the redirect to"
        f" http://localhost:{other.port} (another host" in said
    )
    assert f"hint: give the URL it redirects to (http://localhost:{other.port}/cdn/a.bin)" in said
    assert PASSWORD not in result.stderr


def test_an_http_to_https_redirect_on_the_same_host_says_why_the_login_stayed_behind(
    cdn: CdnServer, here: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Safer than curl, wget and aria2c (the login stays on http://127.0.0.1), and now said: exit 3
    names the login, the origin it was withheld from and why, with the way to send it."""
    ca = ScratchCA()
    monkeypatch.setenv("SSL_CERT_FILE", str(ca.write_bundle(tmp_path / "ca.pem")))
    secure = TlsCdn(ca).start()
    try:
        target = secure.add_file(
            "/a.bin", DATA, required_headers={"Authorization": basic("alice", PASSWORD)}
        )
        result = mdl("get", cdn.add_redirect("/a.bin", target))
        assert result.exit_code == 3, result.stderr
        said = " ".join(result.stderr.split())
        assert (
            f"the netrc login for http://127.0.0.1:{cdn.port} was withheld on the redirect to"
            f" https://127.0.0.1:{secure.port} (another scheme: mdl sends credentials only to the"
            " origin" in said
        )
        assert f"give the URL it redirects to ({target})" in said
        assert basic("alice", PASSWORD) in sent(cdn, "Authorization"), "the typed URL got it"
        assert set(sent(secure, "Authorization")) == {None}
        # Typed as the https URL it redirects to, the login goes there (netrc names the host).
        direct = mdl("get", target, "--force")
        assert direct.exit_code == 0, direct.stderr
        assert (here / "a.bin").read_bytes() == DATA
    finally:
        secure.stop()


@pytest.mark.parametrize(
    ("raw", "env"), [('"Bearer tok-1 "', {}), ('"Bearer ${TOK}"', {"TOK": "tok-1 "})]
)
def test_a_catalog_header_value_the_library_would_refuse_is_exit_2_before_any_request(
    cdn: CdnServer, here: Path, monkeypatch: pytest.MonkeyPatch, raw: str, env: dict[str, str]
) -> None:
    """It was accepted, refused by the HTTP library at send time, retried and reported as exit 5
    "error from".
    """
    url = cdn.add_file("/w.bin", DATA)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    entry = f'{{ url = "{url}", headers = {{ Authorization = {raw} }} }}'
    use_catalog(here, monkeypatch, f"[models.m]\nfiles = [{entry}]\n")
    result = mdl("pull", "m")
    assert result.exit_code == 2, result.stderr
    assert "headers.Authorization" in result.stderr
    assert "must not begin or end with a space or tab" in result.stderr
    assert "error from" not in result.stderr
    assert not cdn.log.records(), "nothing was asked"


HOSTS = st.sampled_from(["127.0.0.1", "localhost", "cdn.example", "evil.example"])
URLS = st.builds(
    lambda scheme, host, port, path: f"{scheme}://{host}{port}/{path}",
    st.sampled_from(["http", "https"]),
    HOSTS,
    st.sampled_from(["", ":8080", ":443", ":80"]),
    st.sampled_from(["w.bin", "a/b.safetensors"]),
)


@settings(max_examples=examples(200), deadline=None)
@given(url=URLS, hop=URLS, typed=st.booleans(), user_headers=st.booleans())
def test_no_url_but_one_the_user_typed_gets_a_login_or_a_header_and_never_on_another_origin(
    url: str, hop: str, typed: bool, user_headers: bool
) -> None:
    """The class property, at the one place that decides it (session.credentials), with a netrc
    ``default`` entry that matches every host: a document's or a listing's URL gets nothing of the
    user's, and a typed URL's login and headers go to no hop on another origin (a redirect)."""
    with tempfile.TemporaryDirectory() as folder:
        netrc_file = Path(folder, "netrc")
        netrc_file.write_text(f"default login alice password {PASSWORD}\n")
        built = build_settings(environ={"NETRC": str(netrc_file)}, dest=Path(folder))
        session = PullSession(built, progress=NullProgress())
        try:
            given_headers = (("X-Api-Key", KEY),) if user_headers and typed else ()
            remote = RemoteFile("", "w.bin", url, headers=given_headers, typed=typed)
            credentials = session.credentials(remote)
            for at in (url, hop):
                sent_there = credentials.headers_for(at)
                if not typed or origin(at) != origin(url):
                    assert sent_there == {}, (at, sent_there)
                else:
                    assert sent_there.get("Authorization", basic("alice", PASSWORD)) == basic(
                        "alice", PASSWORD
                    )
        finally:
            session.owned.close()
