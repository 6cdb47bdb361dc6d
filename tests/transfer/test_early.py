"""Issue 90: a plain get's first request goes out while the rest loads (mdl.transfer.early), and the
download takes its answer only when it would have sent those very bytes."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest
from hostile import ScratchCA, TlsCdn
from hypothesis import given
from hypothesis import strategies as st
from runfixtures import HANG, wait_for
from servers import CdnServer, HeadRecorder, make_data

from mdl import api
from mdl.transfer import early

DATA = make_data(40_000, seed=90)
PATH = "/m/w.bin?X-Amz-Signature=5e%2F"  # (a recorder's)


pytestmark = pytest.mark.usefixtures("fresh_early")


@pytest.fixture
def recorder() -> Iterator[HeadRecorder]:
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(DATA)
    server = HeadRecorder(answer + DATA)
    yield server
    server.close()


def test_the_request_sent_early_is_the_download_s_first_byte_for_byte(
    tmp_path: Path, recorder: HeadRecorder
) -> None:
    api.get(recorder.origin + PATH, directory=tmp_path / "plain", environ={})
    planned = early.planned([recorder.origin + PATH], None, tmp_path / "d", {"HOME": str(tmp_path)})
    assert planned is not None
    assert recorder.heads[0] == planned.sent


def test_a_get_answers_from_its_early_request_and_asks_nothing_again(
    tmp_path: Path, cdn: CdnServer
) -> None:
    url = cdn.add_file("/m/w.bin", DATA)
    api.get(cdn.add_file("/m/other.bin", b"other"), directory=tmp_path / "d", environ={})
    early.send_early([url], None, tmp_path / "d", {"HOME": str(tmp_path)})  # a get's folder
    # out before the download began
    wait_for(lambda: len(cdn.log.records(path_prefix="/m/w.bin")) == 1, what="the early request")
    api.get(url, directory=tmp_path / "d", environ={})
    assert (tmp_path / "d" / "w.bin").read_bytes() == DATA
    (record,) = cdn.log.records(path_prefix="/m/w.bin")
    assert record.headers["range"] == "bytes=0-"
    assert not early.pending()


def test_an_early_request_the_download_does_not_send_is_closed_unused(
    tmp_path: Path, cdn: CdnServer
) -> None:
    url = cdn.add_file("/m/w.bin", DATA)
    early.send_early([url], None, tmp_path / "d", {"HOME": str(tmp_path)})
    wait_for(lambda: len(cdn.log.records()) == 1, what="the early request")
    # a header of its own: the download's first request is another request
    api.get(url, directory=tmp_path / "d", environ={}, headers={"X-Team": "a"})
    assert (tmp_path / "d" / "w.bin").read_bytes() == DATA
    sent, asked = cdn.log.records()
    assert "x-team" not in sent.headers and asked.headers["x-team"] == "a"
    assert sent.connection != asked.connection
    assert not early.pending()


def test_an_early_connection_older_than_its_freshness_is_not_used(
    tmp_path: Path, cdn: CdnServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(early, "FRESH_SECONDS", 0.0)
    url = cdn.add_file("/m/w.bin", DATA)
    early.send_early([url], None, tmp_path / "d", {"HOME": str(tmp_path)})
    wait_for(lambda: len(cdn.log.records()) == 1, what="the early request")
    api.get(url, directory=tmp_path / "d", environ={})
    assert (tmp_path / "d" / "w.bin").read_bytes() == DATA
    first, second = cdn.log.records()
    assert first.connection != second.connection


def test_an_https_get_starts_tls_on_its_early_connection(tmp_path: Path) -> None:
    ca = ScratchCA()
    bundle = str(ca.write_bundle(tmp_path / "ca.pem"))
    with TlsCdn(ca) as cdn:
        url = cdn.add_file("/m/w.bin", DATA)
        planned = early.planned([url], None, tmp_path / "d", {"HOME": str(tmp_path)})
        assert planned is not None and planned.sent is None  # connected only
        early.send_early([url], None, tmp_path / "d", {"HOME": str(tmp_path)})
        wait_for(lambda: cdn.handshakes == 1, what="the early connection")
        api.get(url, directory=tmp_path / "d", environ={"SSL_CERT_FILE": bundle})
        assert (tmp_path / "d" / "w.bin").read_bytes() == DATA
        assert cdn.handshakes == 1 and len(cdn.log.records()) == 1
    assert not early.pending()


URL = "http://cdn.internal:8080/m/w.bin?X-Amz-Signature=5e"


@pytest.mark.parametrize(
    ("sources", "environ", "why"),
    [
        ([URL, URL + "2"], {}, "two files"),
        ([URL], {"HTTPS_PROXY": "http://p:3128"}, "a proxy"),
        ([URL], {"all_proxy": "http://p:3128"}, "a proxy"),
        ([URL], {"NETRC": "/n"}, "a netrc's login"),
        ([URL], {"HF_HUB_OFFLINE": "1"}, "offline"),
        ([URL], {"TRANSFORMERS_OFFLINE": "1"}, "offline"),
        (["http://cdn.internal/w.bin?"], {}, "an empty query httpx2 keeps"),
        (["http://cdn.internal/a/../w.bin"], {}, "a dot segment httpx2 removes"),
        (["http://cdn.internal/./w.bin"], {}, "a dot segment httpx2 removes"),
        (["https://huggingface.co/o/m/resolve/main/w.bin"], {}, "the Hub"),
        ([URL], {"HF_ENDPOINT": "http://cdn.internal:8080"}, "the Hub"),
        (["http://u:p@cdn.internal/w.bin"], {}, "a login"),
        (["http://cdn.internal/a b.bin"], {}, "a target httpx2 re-quotes"),
        (["http://cdn.internal/w.bin\t"], {}, "a character urllib drops and the get refuses"),
        (["http://cdn.internal:0/w.bin"], {}, "a port httpx2 writes in its Host header"),
        (["http://[::1]/w.bin"], {}, "an IPv6 host"),
        (["http://xn--bcher-kva.internal/w.bin"], {}, ""),
        (["s3://b/w.bin"], {}, "not HTTP"),
        (["http://cdn.internal/"], {}, "no file name"),
        (["http://cdn.internal/x:y.bin"], {}, "a name the get refuses"),
        (["http://cdn.internal/CON"], {}, "a name the get refuses"),
        (["http://cdn.internal/a%2Fb.bin"], {}, "a name the get refuses"),
        ([URL], {"MDL_CONNECTIONS": "-3"}, "a setting the get may refuse"),
        ([URL], {"SSL_CERT_FILE": "/nowhere.pem"}, "a CA bundle that is not there"),
        ([URL], {"SSL_CERT_FILE": "/dev/null"}, "a CA bundle that is no file"),
        ([URL], {"SSL_CERT_DIR": "/dev/null"}, "a CA folder that is no folder"),
        ([URL], {"MDL_LOG_FILE": "/tmp/mdl.log"}, ""),
    ],
)
def test_nothing_goes_out_early_unless_the_first_request_is_known(
    tmp_path: Path, sources: list[str], environ: dict[str, str], why: str
) -> None:
    planned = early.planned(sources, None, tmp_path, {"HOME": str(tmp_path), **environ})
    assert (planned is None) == bool(why)


@pytest.mark.parametrize(("sha256", "sent"), [("ab" * 32, True), ("AB" * 32, True), ("abc", False)])
def test_a_line_s_sha256_the_get_refuses_sends_nothing_early(
    tmp_path: Path, recorder: HeadRecorder, sha256: str, sent: bool
) -> None:
    early.send_early(
        [recorder.origin + PATH], None, tmp_path / "d", {"HOME": str(tmp_path)}, sha256=sha256
    )
    assert early.pending() == sent


def test_a_folder_a_get_used_or_a_file_in_the_way_sends_nothing_early(tmp_path: Path) -> None:
    home = {"HOME": str(tmp_path)}
    assert early.planned([URL], None, tmp_path / "d", home) is not None
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "w.bin").write_bytes(b"mine")
    assert early.planned([URL], None, tmp_path / "d", home) is None
    assert early.planned([URL], tmp_path / "d" / "w.bin", None, home) is None
    (tmp_path / "e" / ".mdl" / "partial").mkdir(parents=True)  # a get's folder: its record
    assert early.planned([URL], None, tmp_path / "e", home) is not None
    (tmp_path / "e" / ".mdl" / "partial" / "k-w.bin.part").write_bytes(b"")  # a resume, maybe
    assert early.planned([URL], None, tmp_path / "e", home) is None
    assert early.planned([URL], tmp_path / "e" / "x.bin", None, home) is None
    (tmp_path / "file").write_bytes(b"")  # -d naming a file: refused, nothing to ask
    assert early.planned([URL], None, tmp_path / "file", home) is None
    (tmp_path / ".netrc").write_text("machine cdn.internal login a password b\n")
    assert early.planned([URL], None, tmp_path / "f", home) is None


SHAPES = ("/a/../b", "/a/./b", "//double", "/a;p=1", "/fi%zzle", "?", "?q=a+b&c", "#frag", "")


@given(
    st.one_of(
        st.text(max_size=60),
        st.lists(st.sampled_from(SHAPES), max_size=3).map(lambda p: URL + "".join(p)),
        st.lists(st.sampled_from(SHAPES), max_size=3).map(lambda p: "http://h/w" + "".join(p)),
        st.text(max_size=20).map(lambda p: f"http://cdn.internal/w{p}"),
    )
)
def test_any_source_is_planned_as_httpx2_would_ask_it_or_not_at_all(source: str) -> None:
    planned = early.planned([source], None, Path(os.devnull, "none"), {"HOME": os.devnull})
    if planned is None or planned.sent is None:
        return
    url = httpx2.URL(source)  # the download's request: its target and Host, as httpx2 makes them
    assert planned.sent.startswith(b"GET %s HTTP/1.1\r\nHost: %s" % (url.raw_path, url.netloc))


def test_a_download_waits_for_an_early_connect_no_longer_than_a_connect_may_take(
    tmp_path: Path, cdn: CdnServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = cdn.add_file("/m/w.bin", DATA)
    hung = threading.Event()  # (its connect never ends: a host that drops the SYN)
    monkeypatch.setattr(early.Early, "run", lambda self: hung.wait(HANG))
    early.send_early([url], None, tmp_path / "d", {"HOME": str(tmp_path)})
    try:
        report = api.get(url, directory=tmp_path / "d", environ={}, timeout=2.0)
    finally:
        hung.set()
    # waited no longer than a connect may take (never for the thread), then asked again on a
    # connection of its own
    assert [outcome.action for outcome in report.files] == ["downloaded"]
    assert (tmp_path / "d" / "w.bin").read_bytes() == DATA
    assert len(cdn.log.records()) == 1


@pytest.mark.parametrize(
    ("host", "sent"),
    [("127.0.0.1", True), ("10.1.2.3", True), ("minio", True), ("cdn.example", False)],
)
def test_plain_http_sends_its_request_early_only_where_the_get_takes_plain_http(
    tmp_path: Path, host: str, sent: bool
) -> None:
    """A signed URL over http:// to a host on the internet: the get refuses it, so nothing of it
    goes out early in the clear (mdl.transfer.hosts, the get's own rule)."""
    url = f"http://{host}/w.bin?X-Amz-Signature=5e"
    planned = early.planned([url], None, tmp_path / "d", {"HOME": str(tmp_path)})
    assert (planned is not None and planned.sent is not None) == sent
    assert sent or planned is None  # (not even connected)
