"""netrc logins for direct URLs: which URL gets one, which never does, and a broken file said,
not fatal.
"""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from mdl.catalog.settings import build_settings, netrc_path
from mdl.redact import Secrets
from mdl.sources.netrc import NetrcLogins, read_netrc

PASSWORD = "s3cret-pa55word"


def login(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.fixture
def logins(tmp_path: Path) -> NetrcLogins:
    path = tmp_path / "netrc"
    path.write_text(
        f"machine Files.Example.com login alice password {PASSWORD}\ndefault login anon password"
        " guest-pass\n"
    )
    return read_netrc(path, Secrets())


def test_the_urls_host_then_the_default_entry(logins: NetrcLogins) -> None:
    assert logins.authorization("https://files.example.com:8443/a.bin", {}) == login(
        "alice", PASSWORD
    )
    assert logins.authorization("http://other.example/a.bin", {}) == login("anon", "guest-pass")
    assert PASSWORD in logins.secrets.known()
    assert login("alice", PASSWORD).split()[1] in logins.secrets.known()


@pytest.mark.parametrize(
    ("url", "headers"),
    [
        # a header wins, as curl -H does
        ("https://files.example.com/a.bin", {"authorization": "Bearer x"}),
        ("https://bob:pw@files.example.com/a.bin", {}),  # the URL's own login wins, as with curl
        # presigned: one credential
        ("https://files.example.com/a.bin?X-Amz-Signature=abc&X-Amz-Expires=60", {}),
        ("s3://bucket/a.bin", {}),
    ],
)
def test_no_login_where_the_url_has_a_credential(
    logins: NetrcLogins, url: str, headers: dict[str, str]
) -> None:
    assert logins.authorization(url, headers) is None


def test_a_missing_file_is_no_logins_and_no_problem(tmp_path: Path) -> None:
    found = read_netrc(tmp_path / "absent")
    assert found.problem is None
    assert found.authorization("https://h/x", {}) is None


def test_a_broken_file_is_a_problem_that_names_it_but_not_its_words(tmp_path: Path) -> None:
    path = tmp_path / "netrc"
    path.write_text(f"machine h login a password b\n{PASSWORD}\n")
    found = read_netrc(path)
    assert found.problem is not None
    assert found.problem.startswith(f"{path}: cannot parse this netrc file near line")
    assert PASSWORD not in found.problem
    assert found.authorization("https://h/x", {}) is None, "not used at all"
    (tmp_path / "dir").mkdir()
    assert "cannot read this netrc file" in (read_netrc(tmp_path / "dir").problem or "")


def test_the_path_comes_from_the_runs_environment(tmp_path: Path) -> None:
    assert netrc_path({"HOME": "/home/u"}) == Path("/home/u/.netrc")
    assert netrc_path({"HOME": "/home/u", "NETRC": "/etc/mdl.netrc"}) == Path("/etc/mdl.netrc")
    assert netrc_path({}) is None
    assert build_settings(environ={"NETRC": "/x/netrc"}, dest=tmp_path).netrc == Path("/x/netrc")
