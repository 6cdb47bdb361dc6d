"""Habits from curl, wget and aria2c: ``mdl get -H``, ``-i FILE|-``, ``~/.netrc`` logins, and an
honest word when a server ignores the range of a resume. Real loopback servers: 127.0.0.1 and
localhost on other ports are other origins."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from runfixtures import mdl, use_catalog
from servers import CdnServer, Fault, HubServer, make_data
from zygote import forked_mdl

DATA = make_data(300_000, seed=31)
OTHER = make_data(200_000, seed=32)
BIG = make_data(3_000_000, seed=33)
KEY = "k3y-0123456789abcdef"
PASSWORD = "pa55-w0rd-never-shown"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def basic(login: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{login}:{password}".encode()).decode()


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MDL_LOG_FILE", str(tmp_path / "mdl.log"))
    return tmp_path


@pytest.fixture
def elsewhere() -> Iterator[CdnServer]:
    """A second server at another origin (localhost, its own port)."""
    server = CdnServer(host_alias="localhost").start()
    try:
        yield server
    finally:
        server.stop()
    assert not server.errors, server.errors


def netrc(home: Path, text: str) -> Path:
    path = home / ".netrc"
    path.write_text(text)
    return path


def sent(server: CdnServer, header: str) -> list[str | None]:
    return [record.header(header) for record in server.log.records()]


def everything_said(result: object, here: Path) -> str:
    log = here / "mdl.log"
    return f"{result.stdout}{result.stderr}{log.read_text() if log.exists() else ''}"  # type: ignore[attr-defined]


# -- --header
# ------------------------------------------------------------------------------------------------------


def test_header_reaches_the_url_and_is_never_shown(cdn: CdnServer, here: Path) -> None:
    url = cdn.add_file("/private/w.bin", DATA, required_headers={"X-Api-Key": KEY})
    assert mdl("get", url).exit_code == 3, "the server wants the key"
    result = mdl("get", url, "-H", f"X-Api-Key: {KEY}", "-H", "X-Trace:  t1 ", "-v", "--json")
    assert result.exit_code == 0, result.stderr
    assert (here / "w.bin").read_bytes() == DATA
    assert set(sent(cdn, "X-Trace")[-1:]) == {"t1"}, (
        "the value's surrounding blanks are dropped, as curl does"
    )
    assert KEY not in everything_said(result, here)


def test_the_logged_command_line_hides_credential_headers_of_any_length(
    cdn: CdnServer, here: Path
) -> None:
    """The log's first line is the command line, written before -H is parsed: its credential
    values are masked.
    """
    url = cdn.add_file("/open/w.bin", DATA)
    args = [
        "-H",
        f"X-Api-Key: {KEY}",
        "-HCookie: c=s3cr",
        f"--header=Private-Token: {PASSWORD}",
        "-H",
        "X-Trace: t1",
    ]
    # the log reads the process's own command line
    command = [forked_mdl(), "get", url, *args]
    done = subprocess.run(command, env=dict(os.environ), capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr
    log = (here / "mdl.log").read_text()
    assert KEY not in log and "c=s3cr" not in log and PASSWORD not in log
    assert "X-Api-Key: ***" in log and "-HCookie: ***" in log and "X-Trace: t1" in log


def test_a_401_hint_says_how_to_send_credentials_or_that_those_sent_were_refused(
    cdn: CdnServer, here: Path
) -> None:
    url = cdn.add_file("/locked/w.bin", DATA, required_headers={"X-Api-Key": KEY})
    bare = mdl("get", url)
    assert bare.exit_code == 3
    assert (
        "hint: the server wants credentials: send them with -H (get), the catalog's headers"
        in bare.stderr
    )
    wrong = mdl("get", url, "-H", "X-Api-Key: not-the-right-key")
    assert wrong.exit_code == 3
    assert (
        "hint: the server refused the credentials sent (-H, the catalog's headers or ~/.netrc)"
        in wrong.stderr
    )


def test_header_stays_with_its_origin_across_a_redirect(
    cdn: CdnServer, elsewhere: CdnServer, here: Path
) -> None:
    target = elsewhere.add_file("/cdn/w.bin", DATA)
    url = cdn.add_redirect("/go/w.bin", target)
    result = mdl(
        "get", url, "-H", f"X-Api-Key: {KEY}", "-H", "Authorization: Bearer tok-0123456789"
    )
    assert result.exit_code == 0, result.stderr
    assert (here / "w.bin").read_bytes() == DATA
    assert KEY in sent(cdn, "X-Api-Key")
    assert elsewhere.log.records(), "the redirect was followed"
    assert set(sent(elsewhere, "X-Api-Key")) == {None}
    assert set(sent(elsewhere, "Authorization")) == {None}


def test_header_follows_a_redirect_on_its_own_origin(cdn: CdnServer, here: Path) -> None:
    """As curl keeps a header on the host it was given for: a moved file behind the same key
    still downloads.
    """
    target = cdn.add_file("/private/moved.bin", DATA, required_headers={"X-Api-Key": KEY})
    url = cdn.add_redirect("/old/moved.bin", target)
    result = mdl("get", url, "-H", f"X-Api-Key: {KEY}")
    assert result.exit_code == 0, result.stderr
    assert (here / "moved.bin").read_bytes() == DATA


@pytest.mark.parametrize(
    ("header", "said"),
    [
        ("X-Api-Key", "--header 'X-Api-Key': expected 'Name: value'"),
        (": v", "--header: the header has no name"),
        ("Bad Name: v", "--header 'Bad Name' is not a valid HTTP header name"),
        (
            "X-Key:\tsecret-value\r\nEvil: 1",
            "--header 'X-Key' has a value that must not contain line breaks",
        ),
        ("X-Key:", "--header 'X-Key' has no value"),
        ("Range: bytes=5-", "--header 'Range' is a header mdl sets itself"),
    ],
)
def test_a_malformed_header_is_exit_2_naming_it(
    cdn: CdnServer, here: Path, header: str, said: str
) -> None:
    url = cdn.add_file("/w.bin", DATA)
    result = mdl("get", url, "-H", header)
    assert result.exit_code == 2
    assert said in result.stderr
    assert "secret-value" not in result.stderr
    assert not cdn.log.records(), "nothing was asked"


def test_a_header_given_twice_is_refused(cdn: CdnServer, here: Path) -> None:
    result = mdl("get", cdn.add_file("/w.bin", DATA), "-H", "X-A: 1", "-H", "x-a: 2")
    assert result.exit_code == 2
    assert "'x-a' is given twice" in result.stderr


def test_a_header_with_only_hub_and_job_sources_warns(cdn: CdnServer, here: Path) -> None:
    link = cdn.add_file("/out/a.bin", DATA, signed=True)
    job = here / "job.json"
    job.write_text(json.dumps({"type": "redirect", "url": link, "filename": "a.bin"}))
    result = mdl("get", "job.json", "-H", f"X-Api-Key: {KEY}", "--json")
    assert result.exit_code == 0, result.stderr
    assert set(sent(cdn, "X-Api-Key")) == {None}, "a job's presigned link gets no header"
    assert "--header goes to the http(s) URLs given as sources" in result.stderr
    assert "no header was sent" in json.loads(result.stdout)["files"][0]["warning"]


def test_a_header_never_goes_to_the_hub(
    hub: HubServer, here: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub.add_repo("org/tiny", {"config.json": b'{"a": 1}', "w.safetensors": DATA})
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    result = mdl("get", "hf://org/tiny/w.safetensors", "-H", f"X-Api-Key: {KEY}")
    assert result.exit_code == 0, result.stderr
    assert (here / "w.safetensors").read_bytes() == DATA
    assert "no header was sent" in result.stderr
    seen = [*hub.log.records(), *hub.cdn.log.records()]
    assert seen
    assert {r.header("X-Api-Key") for r in seen} == {None}


# -- -i FILE / -i -
# --------------------------------------------------------------------------------------------------


def test_a_list_on_stdin_joins_the_command_line(
    cdn: CdnServer, elsewhere: CdnServer, here: Path
) -> None:
    first = cdn.add_file("/a/one.bin", DATA)
    second = elsewhere.add_file("/b/two.bin", OTHER)
    third = cdn.add_file("/c/three.bin", BIG)
    listing = f"# weights for the demo\n\n   {second}  \n\t# indented comment\n{third}\n"
    result = mdl("get", first, "-i", "-", "-d", "out", stdin=listing)
    assert result.exit_code == 0, result.stderr
    out = here / "out"
    assert result.stdout.splitlines() == [
        str(out / n) for n in ("one.bin", "two.bin", "three.bin")
    ], "in order"
    assert (out / "two.bin").read_bytes() == OTHER
    assert (out / "three.bin").read_bytes() == BIG


def test_a_list_file_takes_the_command_lines_rules(cdn: CdnServer, here: Path) -> None:
    one, two = cdn.add_file("/one.bin", DATA), cdn.add_file("/two.bin", OTHER)
    (here / "urls.txt").write_text(f"{one}\n{two}\n")
    (here / "single.txt").write_text(f"# just one\n{one}\n")
    refused = mdl("get", "-i", "urls.txt", "-o", "x.bin")
    assert refused.exit_code == 2
    assert "-o names one file" in refused.stderr
    assert mdl("get", "-i", "urls.txt", "--sha256", sha(DATA)).exit_code == 2
    assert not cdn.log.records()
    result = mdl("get", "-i", "single.txt", "-o", "x.bin", "--sha256", sha(DATA))
    assert result.exit_code == 0, result.stderr
    assert (here / "x.bin").read_bytes() == DATA


def test_a_list_saved_with_a_bom_and_crlf_reads_as_any_other(cdn: CdnServer, here: Path) -> None:
    one = cdn.add_file("/bom/one.bin", DATA)
    (here / "notepad.txt").write_bytes(f"\ufeff{one}\r\n# done\r\n".encode())
    result = mdl("get", "-i", "notepad.txt", "-d", "out")
    assert result.exit_code == 0, result.stderr
    assert (here / "out" / "one.bin").read_bytes() == DATA


def test_a_list_line_too_long_to_be_a_source_is_refused_short(here: Path) -> None:
    (here / "junk.txt").write_text("# fine\n" + "x" * 5_000_000 + "\n")
    result = mdl("get", "-i", "junk.txt")
    assert result.exit_code == 2
    assert "-i junk.txt:2: a line of 5,000,000 characters is not a source" in result.stderr
    assert len(result.stderr) < 2_000


def test_list_usage_errors(cdn: CdnServer, here: Path) -> None:
    missing = mdl("get", "-i", "nope.txt")
    assert missing.exit_code == 2
    assert "-i nope.txt: no such file" in missing.stderr
    (here / "folder").mkdir()
    unreadable = mdl("get", "-i", "folder")
    assert unreadable.exit_code == 2
    assert "-i folder" in unreadable.stderr
    both = mdl("get", "-", "-i", "-", stdin="[]")
    assert both.exit_code == 2
    assert "-i - reads the list of sources from stdin" in both.stderr
    inside = mdl("get", "-i", "-", stdin="-\n")
    assert inside.exit_code == 2, "nor can the list itself name stdin"
    empty = mdl("get", "-i", "-", stdin="# nothing yet\n\n")
    assert empty.exit_code == 2
    assert "no source given (stdin lists none)" in empty.stderr
    bad = mdl("get", "-i", "-", stdin="ftp://example.invalid/x\n")
    assert bad.exit_code == 2, "a listed source is held to the command line's parser"


# -- .netrc
# ----------------------------------------------------------------------------------------------------------


def test_netrc_logs_in_to_its_host_only(
    cdn: CdnServer, elsewhere: CdnServer, here: Path, isolated_env: Path
) -> None:
    login = basic("alice", PASSWORD)
    url = cdn.add_file("/private/w.bin", DATA, required_headers={"Authorization": login})
    assert mdl("get", url).exit_code == 3, "401 without the netrc"
    netrc(isolated_env, f"machine 127.0.0.1\n  login alice\n  password {PASSWORD}\n")
    result = mdl("get", url, "-v", "--force")
    assert result.exit_code == 0, result.stderr
    assert (here / "w.bin").read_bytes() == DATA
    said = everything_said(result, here)
    assert PASSWORD not in said
    assert login.split()[1] not in said
    # Redirected to another origin: the login stays behind.
    target = elsewhere.add_file("/cdn/v.bin", OTHER)
    moved = mdl("get", cdn.add_redirect("/go/v.bin", target))
    assert moved.exit_code == 0, moved.stderr
    assert login in sent(cdn, "Authorization")
    assert elsewhere.log.records()
    assert set(sent(elsewhere, "Authorization")) == {None}


def test_netrc_default_entry_and_the_netrc_variable(
    cdn: CdnServer, here: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    login = basic("bob", PASSWORD)
    url = cdn.add_file("/w.bin", DATA, required_headers={"Authorization": login})
    monkeypatch.setenv(
        "NETRC",
        str(
            netrc(
                here,
                "machine other.example login x password y\ndefault login bob password"
                f" {PASSWORD}\n",
            )
        ),
    )
    result = mdl("get", url)
    assert result.exit_code == 0, result.stderr


def test_a_header_authorization_wins_over_netrc(
    cdn: CdnServer, here: Path, isolated_env: Path
) -> None:
    netrc(isolated_env, f"machine 127.0.0.1 login alice password {PASSWORD}\n")
    url = cdn.add_file("/w.bin", DATA, required_headers={"Authorization": "Bearer tok-0123456789"})
    result = mdl("get", url, "-H", "authorization: Bearer tok-0123456789")
    assert result.exit_code == 0, result.stderr
    assert set(sent(cdn, "Authorization")) == {"Bearer tok-0123456789"}, "never the netrc's login"


def test_netrc_logs_in_for_catalog_url_files(
    cdn: CdnServer, here: Path, isolated_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    netrc(isolated_env, f"machine 127.0.0.1 login alice password {PASSWORD}\n")
    url = cdn.add_file("/w.bin", DATA, required_headers={"Authorization": basic("alice", PASSWORD)})
    use_catalog(
        here, monkeypatch, f'[models.m]\nfiles = [{{ url = "{url}", sha256 = "{sha(DATA)}" }}]\n'
    )
    result = mdl("pull", "m")
    assert result.exit_code == 0, result.stderr
    assert (here / "models" / "m" / "w.bin").read_bytes() == DATA


def test_a_broken_netrc_is_a_warning_naming_its_line(
    cdn: CdnServer, here: Path, isolated_env: Path
) -> None:
    path = netrc(isolated_env, f"machine 127.0.0.1 login alice password {PASSWORD}\n\nmachine\n")
    url = cdn.add_file("/w.bin", DATA)
    result = mdl("get", url, "--json")
    assert result.exit_code == 0, result.stderr
    assert f"{path}: cannot parse this netrc file near line 4; not using it" in result.stderr
    assert PASSWORD not in result.stderr
    assert "netrc" in json.loads(result.stdout)["files"][0]["warning"]
    assert set(sent(cdn, "Authorization")) == {None}
    refused = cdn.add_file(
        "/p.bin", DATA, required_headers={"Authorization": basic("alice", PASSWORD)}
    )
    denied = mdl("get", refused, "--json")
    assert denied.exit_code == 3
    assert "netrc" in json.loads(denied.stdout)["files"][0]["warning"], (
        "said beside the 401 it may explain"
    )


# -- a server that ignores Range
# -------------------------------------------------------------------------------------


def test_a_resume_the_server_ignores_says_so(
    cdn: CdnServer, here: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = cdn.add_file("/big.bin", BIG)
    monkeypatch.setenv("MDL_RETRIES", "0")
    cdn.faults.add(Fault.reset(after_bytes=1_000_000))
    cut = mdl("get", url, "--connections", "1")
    assert cut.exit_code == 5, cut.stderr
    assert "server ignored the range" not in cut.stderr
    cdn.ignore_ranges = True
    result = mdl("get", url, "--connections", "1", "--json")
    assert result.exit_code == 0, result.stderr
    assert (here / "big.bin").read_bytes() == BIG
    assert "resuming big.bin at" in result.stderr
    assert (
        result.stderr.count("big.bin: server ignored the range; fetching 2.86 MiB from the start")
        == 1
    )
    assert json.loads(result.stdout)["files"][0]["action"] == "downloaded", "every byte came again"


@pytest.mark.parametrize(
    ("size", "hashed"),
    [(300_000, False), (3_000_000, False), (33 << 20, False), (33 << 20, True)],
    ids=["300KB", "3MB", "split", "split-sha256"],
)
def test_a_fresh_get_from_a_server_that_ignores_range_asks_once(
    cdn: CdnServer, here: Path, size: int, hashed: bool
) -> None:
    """The probe's ``Range: bytes=0-`` answered 200 with the whole file (``python -m http.server``)
    is the download: read on, not asked for a second time (a file big enough to split: nor a range
    asked to learn that ranges are ignored, with or without a sha256 to check), and said."""
    data = make_data(size, seed=34)
    url = cdn.add_file("/f.bin", data)
    cdn.ignore_ranges = True
    result = mdl("get", url, "--connections", "4", *(["--sha256", sha(data)] if hashed else []))
    assert result.exit_code == 0, result.stderr
    assert (here / "f.bin").read_bytes() == data
    assert len(cdn.log.records(method="GET")) == 1, "one request"
    assert cdn.log.body_bytes() == len(data), "every byte sent once"
    if size > 32 << 20:
        assert "f.bin: the server ignores ranges; fetched as one stream" in result.stderr


KEPT = r"\d+(\.\d+)? (KiB|MiB)"


@pytest.mark.parametrize("ignores", [False, True])
def test_the_reason_of_a_resume_is_true_once_it_is_done(
    cdn: CdnServer, here: Path, monkeypatch: pytest.MonkeyPatch, ignores: bool
) -> None:
    """A 206 goes on from the kept bytes ("… already downloaded"); a 200 with the whole file
    (nginx's gzip_static, a server that ignores Range) throws them away: said so, not "… already
    downloaded"."""
    url = cdn.add_file("/big.bin", BIG)
    monkeypatch.setenv("MDL_RETRIES", "0")
    cdn.faults.add(Fault.reset(after_bytes=1_000_000))
    assert mdl("get", url, "--connections", "1").exit_code == 5
    cdn.ignore_ranges = ignores
    result = mdl("get", url, "--connections", "1", "--json")
    assert result.exit_code == 0, result.stderr
    assert (here / "big.bin").read_bytes() == BIG
    (file,) = json.loads(result.stdout)["files"]
    if ignores:
        assert file["action"] == "downloaded"
        discarded = (
            rf"the server ignored the range; the {KEPT} kept were discarded and the file downloaded"
            r" again"
        )
        assert re.fullmatch(discarded, file["reason"]), file["reason"]
    else:
        assert file["action"] == "resumed"
        assert re.fullmatch(rf"{KEPT} already downloaded", file["reason"]), file["reason"]
    assert [r for r in cdn.log.records(method="GET") if r.range is not None], (
        "the second run asked for a range"
    )
