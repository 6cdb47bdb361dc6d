"""The endpoint's connections as one object, held through the API's ``serve`` in this process
against real sockets: a refused address leaves nothing running; every method has its one answer;
requests asking at once about one model share one look at it, and never one older than they are."""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from runfixtures import HANG, wait_for
from serveproc import isolated, model_catalog
from servers import CdnServer, make_data

from mdl.endpoint import shelf as shelf_module

FILES = {"config.json": b'{"model_type": "bert"}', "weights.bin": make_data(300_000, seed=69)}


@pytest.fixture(autouse=True)
def _no_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    # botocore signs here only, with the run's key: nothing asks for another
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture
def origin(tmp_path: Path) -> Iterator[dict[str, str]]:
    """The environment of a catalog of one model ``m`` (FILES) on a loopback origin, not pulled."""
    with CdnServer() as cdn:
        files = {name: (cdn.add_file(f"/o/{name}", data), data) for name, data in FILES.items()}
        yield isolated(tmp_path, model_catalog(tmp_path, files))


@contextlib.contextmanager
def _serving(
    env: dict[str, str], stop: threading.Event | None = None, **options: Any
) -> Iterator[Any]:
    """``serve("m")`` on a free port in a thread of this process, until the block ends (or
    ``stop`` is set)."""
    from mdl import serve

    stop, ready, ended = stop or threading.Event(), [], []

    def run() -> None:
        try:
            serve("m", port=0, environ=env, on_ready=ready.append, stop=stop, **options)
        except BaseException as exc:  # said by the wait below
            ended.append(exc)
        ended.append(None)

    thread = threading.Thread(target=run, name="test-serve", daemon=True)
    thread.start()
    wait_for(lambda: bool(ready or ended), what="serve to listen")
    assert ready, ended
    try:
        yield ready[0]
    finally:
        stop.set()
        thread.join(HANG)
        assert not thread.is_alive() and ended == [None], ended


def _signed(served: Any, method: str, target: str) -> bytes:
    """``method target`` with the headers botocore signs it with (SigV4, the run's key)."""
    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    env = served.environment
    netloc = served.url.removeprefix("http://")
    request = AWSRequest(method, f"http://{netloc}{target}")
    S3SigV4Auth(
        Credentials(env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]), "s3", "us-east-1"
    ).add_auth(request)
    lines = [f"{method} {target} HTTP/1.1", f"Host: {netloc}",
             *(f"{k}: {v}" for k, v in request.headers.items()), "Connection: close", "", ""]  # fmt: skip
    return "\r\n".join(lines).encode()


def _exchange(served: Any, data: bytes) -> tuple[int, bytes, bytes]:
    """(status, head, body) of ``data`` sent on a fresh connection, read until it closes."""
    host, port = served.url.removeprefix("http://").rsplit(":", 1)
    raw = b""
    with socket.create_connection((host, int(port)), timeout=HANG) as sock:
        sock.sendall(data)
        while chunk := sock.recv(1 << 16):
            raw += chunk
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split()[1]), head, body


def test_a_port_in_use_three_times_is_an_error_each_time_and_leaves_no_thread(
    tmp_path: Path,
) -> None:
    """Fixed defect, as found (issue 69): the connections' sweep started before the bind, so each
    start refused its port left a sweep thread running."""
    from mdl import serve
    from mdl.errors import UsageError

    env = isolated(tmp_path, model_catalog(tmp_path, {"a.bin": ("http://127.0.0.1:9/a", b"x")}))
    before = set(threading.enumerate())
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        for _ in range(3):
            with pytest.raises(UsageError, match=f"port {port} on 127.0.0.1 is in use"):
                serve("m", port=port, environ=env)
    # (the endpoint's threads: serve, serve-sweep; another test's may come and go meanwhile)
    assert [
        t.name for t in threading.enumerate() if t not in before and t.name.startswith("serve")
    ] == []


def test_a_stopped_endpoint_leaves_no_thread(origin: dict[str, str]) -> None:
    before = set(threading.enumerate())
    with _serving(origin) as served:
        assert _exchange(served, _signed(served, "GET", "/mdl?list-type=2"))[0] == 200
    wait_for(
        lambda: not [t for t in threading.enumerate() if t not in before],
        what="the endpoint's threads to end",
    )


# each method's one answer, signed: GET and HEAD read, any other method in capitals is a write
# refused by the S3 layer (405), anything else http.server's 501 (an S3 error document too)
METHODS = {"GET": 200, "HEAD": 200, "PUT": 405, "POST": 405, "DELETE": 405, "PATCH": 405,
           "OPTIONS": 405, "COPY": 405, "MKCOL": 405, "FOO": 405, "get": 501, "M-SEARCH": 501}  # fmt: skip


def test_each_method_has_its_answer(origin: dict[str, str]) -> None:
    from mdl import pull

    pull("m", environ=origin)
    with _serving(origin) as served:
        for method, status in METHODS.items():
            found, head, body = _exchange(served, _signed(served, method, "/mdl/m/config.json"))
            assert found == status, (method, head, body)
            if method not in ("GET", "HEAD"):
                assert b"<Code>MethodNotAllowed</Code>" in body, (method, body)
        unsigned = b"PUT /mdl/m/config.json HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"
        assert _exchange(served, unsigned)[0] == 403


class _Waits(logging.Handler):
    """Counts the requests that waited for a look at a model another request began."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("a request waits for the look at m "):
            self.count += 1


@pytest.fixture
def waits() -> Iterator[_Waits]:
    logger = logging.getLogger("mdl.serve")
    handler, level = _Waits(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def _held_look(
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[list[int], threading.Event, threading.Event]:
    """The store's state function counted in ``calls``, its first call held until ``release``
    (``entered``: it is held)."""
    calls, lock = [], threading.Lock()
    entered, release = threading.Event(), threading.Event()
    real = shelf_module.model_status

    def counted(*args: Any, **kwargs: Any) -> Any:
        with lock:
            calls.append(1)
            first = len(calls) == 1
        if first:
            entered.set()
            assert release.wait(HANG)
        return real(*args, **kwargs)

    monkeypatch.setattr(shelf_module, "model_status", counted)
    return calls, entered, release


@pytest.mark.parametrize(
    ("method", "target"),
    [("HEAD", "/mdl/m/config.json"), ("GET", "/mdl?list-type=2&prefix=m%2F")],
    ids=["HeadObject", "ListObjectsV2"],
)
def test_requests_at_once_share_one_look_at_the_model(
    origin: dict[str, str], waits: _Waits, monkeypatch: pytest.MonkeyPatch, method: str, target: str
) -> None:
    """Fixed defect, as found (issue 69): N requests at once about one model looked at its files
    N times. The first look (the store's state function itself, counted) is held open until every
    other request waits on it: those share the one look after it (never the first: it began
    before they asked)."""
    from mdl import pull

    pull("m", environ=origin)
    many = 64
    monkeypatch.setattr(shelf_module, "LOOK_WAIT", HANG)  # (a slow machine's requests wait on)
    with _serving(origin) as served:
        calls, entered, release = _held_look(monkeypatch)
        request = _signed(served, method, target)
        with ThreadPoolExecutor(many) as pool:
            try:
                answers = [pool.submit(_exchange, served, request) for _ in range(many)]
                assert entered.wait(HANG)
                wait_for(  # (each other request waits on the look, or looks itself)
                    lambda: waits.count + len(calls) - 1 >= many - 1,
                    what="every other request to ask",
                )
            finally:
                release.set()
            replies = [answer.result() for answer in answers]
    assert {status for status, _, _ in replies} == {200}
    if method == "HEAD":
        assert all(f"Content-Length: {len(FILES['config.json'])}".encode() in h
                   for _, h, _ in replies)  # fmt: skip
    else:
        assert all(b"<Key>m/weights.bin</Key>" in body for _, _, body in replies)
    assert len(calls) <= many // 2, len(calls)


def test_a_request_waiting_on_a_look_hears_the_endpoint_stop(
    origin: dict[str, str], waits: _Waits, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A request waiting for another's look at the model is answered 503 as soon as the endpoint
    stops, while that look is still held."""
    from mdl import pull

    pull("m", environ=origin)
    monkeypatch.setattr(shelf_module, "LOOK_WAIT", HANG)
    stop = threading.Event()
    with _serving(origin, stop) as served:
        calls, entered, release = _held_look(monkeypatch)
        request = _signed(served, "HEAD", "/mdl/m/config.json")
        with ThreadPoolExecutor(2) as pool:
            try:
                first = pool.submit(_exchange, served, request)
                assert entered.wait(HANG)
                waiting = pool.submit(_exchange, served, request)
                wait_for(lambda: waits.count >= 1, what="the second request to wait")
                stop.set()
                status, head, _ = waiting.result(timeout=HANG)
                assert not release.is_set() and status == 503, head
            finally:
                release.set()
            first.result(timeout=HANG)
    assert len(calls) == 1


def test_a_file_verified_is_in_the_next_answer_while_others_ask_at_once(
    origin: dict[str, str],
) -> None:
    """A look is never reused past its moment: with listings asked without a pause meanwhile, the
    GET after the pull that verified the file gets its bytes (``--wait 0``: no waiting on it)."""
    from mdl import pull

    with _serving(origin, wait=0) as served:
        get = _signed(served, "GET", "/mdl/m/weights.bin")
        listing = _signed(served, "GET", "/mdl?list-type=2")
        assert _exchange(served, get)[0] == 503
        done = threading.Event()

        def ask() -> None:
            while not done.is_set():
                assert _exchange(served, listing)[0] == 200

        with ThreadPoolExecutor(4) as pool:
            askers = [pool.submit(ask) for _ in range(4)]
            try:
                pull("m", environ=origin)
                status, _, body = _exchange(served, get)
            finally:
                done.set()
            for asker in askers:
                asker.result()
    assert (status, body) == (200, FILES["weights.bin"])


def test_every_connection_sends_an_answer_s_body_without_waiting_for_an_ack(
    origin: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fixed defect, as found (issue 90): an answer's head and body are two writes, so a small
    body (a shard's 8 bytes, its JSON header, a file's last range) waited behind Nagle for the
    client's delayed ACK of the head, ~40-50 ms a read (3 of them on a run:ai-order loader's
    path: each shard's length, header, and the last range). Every connection the endpoint answers
    on, kept alive after its answer, sends at once (``TCP_NODELAY``)."""
    from mdl import pull
    from mdl.endpoint.server import Endpoint

    pull("m", environ=origin)
    accepted: list[socket.socket] = []
    answer = Endpoint.finish_request

    def seen(self: Endpoint, request: socket.socket, client_address: Any) -> None:
        accepted.append(request)
        answer(self, request, client_address)

    monkeypatch.setattr(Endpoint, "finish_request", seen)
    with _serving(origin) as served:
        request = _signed(served, "GET", "/mdl/m/config.json").replace(
            b"Connection: close\r\n", b""
        )
        host, port = served.url.removeprefix("http://").rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=HANG) as sock:
            sock.sendall(request)
            raw = b""
            while not raw.endswith(FILES["config.json"]):
                chunk = sock.recv(1 << 16)
                assert chunk, raw
                raw += chunk
            assert raw.startswith(b"HTTP/1.1 200") and b"Connection: close" not in raw
            (server_side,) = accepted
            assert server_side.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
