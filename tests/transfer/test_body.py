"""Which answers are read straight from their socket into a reused buffer, and that the bytes are the same."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import httpx2
import pytest
from servers import CdnServer, make_data

from mdl.transfer.body import _buffer, _received, raw_socket
from mdl.transfer.http import Credentials, make_client, open_stream


@pytest.fixture
def client() -> Iterator[httpx2.Client]:
    with make_client(pool_size=4, timeout=10) as c:
        yield c


def test_a_plain_206_is_read_from_its_socket_a_200_is_not(cdn: CdnServer, client: httpx2.Client) -> None:
    data = make_data(3_000_000, seed=91)
    url = cdn.add_file("/f.bin", data)
    with open_stream(client, url, credentials=Credentials(), headers={"Range": "bytes=10-2999999"}, what="f") as resp:
        assert resp.status_code == 206
        sock = raw_socket(resp)
        assert isinstance(sock, socket.socket)
        body = resp.iter_raw()  # kept: a dropped iterator closes its connection
        first = next(body, b"")  # what the parser holds past the headers
        rest = b"".join(bytes(v) for v in _received(sock, _buffer(), len(data) - 10 - len(first), resp.request))
        assert first + rest == data[10:]
    with open_stream(client, url, credentials=Credentials(), headers={}, what="f") as resp:
        assert resp.status_code == 200
        assert raw_socket(resp) is None  # a whole body goes through httpx2 (its length is checked there)


def test_a_closed_connection_mid_body_is_an_httpx2_read_error(cdn: CdnServer, client: httpx2.Client) -> None:
    data = make_data(3_000_000, seed=92)
    url = cdn.add_file("/f.bin", data)
    with open_stream(client, url, credentials=Credentials(), headers={"Range": "bytes=0-2999999"}, what="f") as resp:
        sock = raw_socket(resp)
        assert sock is not None
        sock.close()  # as Ctrl-C's close of every response does
        with pytest.raises(httpx2.ReadError):
            list(_received(sock, _buffer(), len(data), resp.request))
