"""The hostile servers do what they say, so tests built on them prove something."""

from __future__ import annotations

import gzip
import json
import socket
import urllib.request

import pytest
from hostile import GzipCdn, HostileHub, SilentServer


def test_silent_server_accepts_and_never_answers() -> None:
    with SilentServer() as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as conn:
            conn.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            conn.settimeout(0.3)
            with pytest.raises(TimeoutError):
                conn.recv(1)
        assert server.accepted == 1


def test_silent_server_can_send_headers_then_nothing() -> None:
    with (
        SilentServer(send_headers=True) as server,
        socket.create_connection(("127.0.0.1", server.port), timeout=5) as conn,
    ):
        conn.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert conn.recv(100).startswith(b"HTTP/1.1 200")
        conn.settimeout(0.3)
        with pytest.raises(TimeoutError):
            conn.recv(1)


def test_hostile_hub_rewrites_sha_link_and_body() -> None:
    with HostileHub(page_size=1) as hub:
        hub.add_repo("org/m", {"a.json": b"{}", "b.json": b"[]"})
        hub.sha = "\x1b]0;pwned\x07" + "0" * 30
        info = json.load(urllib.request.urlopen(f"{hub.url}/api/models/org/m"))
        assert info["sha"] == hub.sha
        hub.next_link = lambda honest: "http://localhost:1/elsewhere" if honest else None
        with urllib.request.urlopen(f"{hub.url}/api/models/org/m/tree/main?recursive=true") as resp:
            assert resp.headers["Link"] == '<http://localhost:1/elsewhere>; rel="next"'
        hub.rewrite_json = lambda ex, doc: b"<html>captive portal</html>"
        with urllib.request.urlopen(f"{hub.url}/api/models/org/m/tree/main") as resp:
            assert resp.status == 200 and resp.read() == b"<html>captive portal</html>"


def test_gzip_cdn_labels_compressed_bytes() -> None:
    with GzipCdn() as cdn:
        url = cdn.add_file("/t.json", b'{"x": 1}' * 100)
        req = urllib.request.Request(url, headers={"Accept-Encoding": "identity"})
        with urllib.request.urlopen(req) as resp:
            assert resp.headers["Content-Encoding"] == "gzip"
            assert gzip.decompress(resp.read()) == b'{"x": 1}' * 100
