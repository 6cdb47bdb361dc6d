"""A real S3 server on loopback for the s3:// tests: moto's threaded server (the S3 REST protocol
with SigV4).

``s3_server`` starts one per session on 127.0.0.1 (port chosen by the system); ``s3`` gives each
test a clean server and an environment that can reach nothing else: explicit test credentials,
``AWS_ENDPOINT_URL`` at the server, ``AWS_EC2_METADATA_DISABLED`` (no metadata endpoint is ever
tried), no profile, config file or proxy. Test modules import both fixtures: ``from s3server import
s3, s3_server  # noqa: F401``.
"""

from __future__ import annotations

import functools
import os
import re
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from runfixtures import HANG

ACCESS_KEY = "AKIAMDLTESTACCESSKEY"
SECRET_KEY = "mdl-test-secret-key/do-not-print-0123456789"
REGION = "us-east-1"


@dataclass
class S3:
    """The running server: its endpoint and a client that talks to it."""

    endpoint: str
    cutter: Cutter

    def client(self, **credentials: str) -> Any:
        return _client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id=credentials.get("access", ACCESS_KEY),
            aws_secret_access_key=credentials.get("secret", SECRET_KEY),
        )

    def put(self, bucket: str, key: str, data: bytes, **extra: Any) -> None:
        client = self.client()
        buckets = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
        if bucket not in buckets:
            client.create_bucket(Bucket=bucket)
        client.put_object(Bucket=bucket, Key=key, Body=data, **extra)

    def plant(self, bucket: str, keys: Iterable[str], data: bytes) -> None:
        """Put ``data`` at each of ``keys`` (in an existing bucket) straight into moto's store, in
        this process: a test's setup of thousands of objects, not what it proves (2,000 PUTs through
        the gateway cost ~9 CPU-s). The gateway then serves them as any other."""
        from moto.core import DEFAULT_ACCOUNT_ID
        from moto.s3.models import s3_backends

        store = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
        for key in keys:
            store.put_object(bucket, key, data)

    def reset(self) -> None:
        import urllib.request

        request = urllib.request.Request(f"{self.endpoint}/moto-api/reset", method="POST")
        with urllib.request.urlopen(request, timeout=10) as reply:
            reply.read()


_CLIENTS_LOCK = threading.Lock()  # a boto3 session makes one client at a time


@functools.cache
def _session() -> Any:
    """One boto3 session a worker: its models parsed once (~150 ms CPU a client)."""
    import boto3

    return boto3.session.Session()


def _client(*args: Any, **kwargs: Any) -> Any:
    """A client of the worker's boto3 session (its credentials, region and endpoint explicit)."""
    with _CLIENTS_LOCK:
        return _session().client(*args, **kwargs)


def aws_environ(endpoint: str) -> dict[str, str]:
    """The environment every s3 test runs in: test credentials, the loopback endpoint, no
    metadata service.
    """
    return {
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ENDPOINT_URL": endpoint,
    }


SLOW = (
    b"<?xml version='1.0' encoding='UTF-8'?>"
    b"<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>"
)
CONFLICT = (
    b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>ConditionalRequestConflict</Code>"
    b"<Message>A conflicting operation is in progress.</Message></Error>"
)


Answer = tuple[str, list[tuple[str, str]], Iterable[bytes]]  # a WSGI reply: Cutter.answer's


def on_get(reply: Callable[[], Answer]) -> Callable[[dict[str, Any]], Answer | None]:
    """A ``Cutter.answer`` replying ``reply()`` to every GET (a listing's, an object's)."""
    return lambda environ: reply() if environ["REQUEST_METHOD"] == "GET" else None


# what a lying store or proxy makes of a ListObjectsV2 or ListMultipartUploads page (its query, its
# body): ``Cutter.listings``
Shape = Callable[[str, bytes], bytes]
# a page's tokens: ListObjectsV2's, ListMultipartUploads' (both its markers)
_TOKENED = rb"<(NextContinuationToken|NextKeyMarker|NextUploadIdMarker)>.*?</\1>"


def truncated(query: str, body: bytes) -> bytes:
    """A page that says more follow and gives no token to ask for them."""
    body = body.replace(b"<IsTruncated>false</IsTruncated>", b"<IsTruncated>true</IsTruncated>")
    return re.sub(_TOKENED, b"", body)


def endless(query: str, body: bytes) -> bytes:
    """A page that says more follow, with a new token every time (the same names again)."""
    return tokened(next(_TOKENS))(query, body)


def tokened(token: int) -> Shape:
    """Pages that say more follow, with ``token`` as their token (each of the listing's)."""

    def shape(query: str, body: bytes) -> bytes:
        given = b"".join(
            b"<%s>%d</%s>" % (name, token, name)
            for name in (b"NextContinuationToken", b"NextKeyMarker", b"NextUploadIdMarker")
        )
        end = re.compile(rb"</(ListBucketResult|ListMultipartUploadsResult)>")
        return end.sub(lambda m: given + m.group(0), truncated(query, body))

    return shape


_TOKENS = iter(range(1, 1 << 62))


def naming(prefix: str, *keys: str) -> Shape:
    """Pages asked for ``prefix`` that name ``keys`` too (first)."""

    def shape(query: str, body: bytes) -> bytes:
        if f"prefix={prefix.replace('/', '%2F')}&" not in query + "&":
            return body
        named = b"".join(
            b"<Contents><Key>%s</Key><LastModified>2020-01-01T00:00:00.000Z</LastModified>"
            b"<ETag>&quot;x&quot;</ETag><Size>8</Size><StorageClass>STANDARD</StorageClass>"
            b"</Contents>" % key.encode()
            for key in keys
        )
        return body.replace(b"<Contents>", named + b"<Contents>", 1)

    return shape


class Cutter:
    """WSGI middleware around moto: while ``after`` is set, every object GET is cut after that many
    bytes (the connection drops mid-body, as a network failure does); ``listings`` reshapes every
    ListObjectsV2 and ListMultipartUploads page (a ``Shape``: the store lies; its continuation tokens are the shape's own,
    never given to moto, which answers the first page again); ``slowdown`` answers the next
    requests 503 SlowDown (S3's throttling; a large number: always); ``ranges`` lists the presigned
    GETs' Range headers. A conditional write (If-Match, If-None-Match) is served alone on its key,
    as S3 serves it, atomically: moto checks the condition, then stores, and two writes to one key
    at once both passed its check (two machines' sends of one part both "made" it, 9 of 40 here)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.after: int | None = None
        self.ranges: list[str | None] = []  # the Range header of every object GET
        self.slowdown = 0  # the next this many requests to an object are answered 503 SlowDown
        self.slowed = 0  # how many were
        # (method, path, query) of every PUT/POST to the store
        self.writes: list[tuple[str, str, str]] = []
        # writes let through before every later one is a 500
        self.fail_writes_after: int | None = None
        # while set: every part upload waits, until it is set or HANG passes, before it is served
        # (a publish caught mid-upload however fast it runs, to interrupt)
        self.hold_parts: threading.Event | None = None
        # a key's lock, held while a conditional write to it is served (others' go on at once)
        self._keys: dict[str, threading.Lock] = {}
        self._keys_lock = threading.Lock()
        self.listings: Shape | None = None
        # while set: asked first of every request (its WSGI environ): a reply (status, headers,
        # body: a hostile store's, as the test makes it) in place of the store's, or None
        self.answer: Callable[[dict[str, Any]], Answer | None] | None = None

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        method, path = environ["REQUEST_METHOD"], environ["PATH_INFO"]
        if method in ("PUT", "POST") and not path.startswith("/moto-api"):
            allowed = self.fail_writes_after
            if allowed is not None and len(self.writes) >= allowed:
                environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
                start_response("500 Internal Server Error", [("Content-Type", "application/xml")])
                return [
                    b"<Error><Code>InternalError</Code><Message>failed by the"
                    b" test</Message></Error>"
                ]
            self.writes.append((method, path, environ.get("QUERY_STRING", "")))
            hold = self.hold_parts
            if hold is not None and "partNumber=" in environ.get("QUERY_STRING", ""):
                hold.wait(HANG)
        if environ["REQUEST_METHOD"] == "GET" and "X-Amz-Signature=" in environ.get(
            "QUERY_STRING", ""
        ):
            self.ranges.append(environ.get("HTTP_RANGE"))
        if self.slowdown and not environ["PATH_INFO"].startswith("/moto-api"):
            self.slowdown -= 1
            self.slowed += 1
            start_response(
                "503 Slow Down",
                [("Content-Type", "application/xml"), ("Content-Length", str(len(SLOW)))],
            )
            return [SLOW]
        if method in ("PUT", "POST", "DELETE") and (
            "HTTP_IF_MATCH" in environ or "HTTP_IF_NONE_MATCH" in environ
        ):
            with self._keys_lock:
                alone = self._keys.setdefault(path, threading.Lock())
            # (a deadline; past it, the 409 S3 answers at once to a write while another is in flight)
            if not alone.acquire(timeout=HANG):
                environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
                start_response(
                    "409 Conflict",
                    [("Content-Type", "application/xml"), ("Content-Length", str(len(CONFLICT)))],
                )
                return [CONFLICT]
            try:
                return self.app(environ, start_response)
            finally:
                alone.release()
        if (answer := self.answer) is not None and (said := answer(environ)) is not None:
            status, headers, body = said
            start_response(status, headers)
            return body
        shape, query = self.listings, environ.get("QUERY_STRING", "")
        listing = "list-type=2" in query or query.split("&")[0] in ("uploads", "uploads=")
        if shape is not None and method == "GET" and listing:
            return self._listed(environ, start_response, shape)
        body = self.app(environ, start_response)
        after = self.after
        if (
            after is None
            or environ["REQUEST_METHOD"] != "GET"
            or environ["PATH_INFO"].startswith("/moto-api")
        ):
            return body
        return self._cut(body, after)

    def _listed(self, environ: dict[str, Any], start_response: Any, shape: Shape) -> Any:
        query = environ.get("QUERY_STRING", "")
        parts = query.split("&")
        tokens = ("continuation-", "key-marker=", "upload-id-marker=")
        environ["QUERY_STRING"] = "&".join(p for p in parts if not p.startswith(tokens))
        said: dict[str, Any] = {}

        def started(status: str, headers: list[tuple[str, str]], *_: Any) -> Any:
            said.update(status=status, headers=headers)
            return lambda data: None

        data = shape(query, b"".join(self.app(environ, started)))
        headers = [(k, v) for k, v in said["headers"] if k.lower() != "content-length"]
        start_response(said["status"], [*headers, ("Content-Length", str(len(data)))])
        return [data]

    @staticmethod
    def _cut(body: Any, after: int) -> Iterator[bytes]:
        sent = 0
        for chunk in body:
            if sent + len(chunk) >= after:
                yield chunk[: after - sent]
                raise ConnectionAbortedError("cut by the test")
            sent += len(chunk)
            yield chunk


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3]:
    """moto's S3 on 127.0.0.1 (as ``moto.server.ThreadedMotoServer`` runs it, with a ``Cutter``
    in front).
    """
    import threading

    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import make_server

    cutter = Cutter(DomainDispatcherApplication(create_backend_app))
    server = make_server("127.0.0.1", 0, cutter, threaded=True, request_handler=MotoRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield S3(f"http://127.0.0.1:{server.server_address[1]}", cutter)
    finally:
        server.shutdown()
        thread.join()


@pytest.fixture
def s3(s3_server: S3, monkeypatch: pytest.MonkeyPatch) -> Iterator[S3]:
    """The session's server, emptied, with the test's AWS environment set and the developer's
    removed.
    """
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    for name, value in aws_environ(s3_server.endpoint).items():
        monkeypatch.setenv(name, value)
    s3_server.reset()
    s3_server.cutter.after = None
    s3_server.cutter.ranges.clear()
    s3_server.cutter.slowdown = s3_server.cutter.slowed = 0
    s3_server.cutter.writes.clear()
    s3_server.cutter.fail_writes_after = None
    s3_server.cutter.hold_parts = None
    s3_server.cutter.listings = s3_server.cutter.answer = None
    yield s3_server
    s3_server.cutter.listings = s3_server.cutter.answer = None
    s3_server.cutter.after = None
    s3_server.cutter.slowdown = 0
    s3_server.cutter.fail_writes_after = None
    if s3_server.cutter.hold_parts is not None:
        s3_server.cutter.hold_parts.set()
    s3_server.cutter.hold_parts = None
