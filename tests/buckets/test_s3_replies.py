"""Every reply an S3 store sends mdl's botocore clients is read bounded, in bytes and in time
(``mdl/buckets/_s3replies.py``; hostile34c #3-#5): a refusal's body is read up to 8 KiB (the rest
never, whatever its size), any other reply read whole is refused past 8 MiB, and a body trickling
in is cut at the client's read timeout from its first byte to its last, a listing page's or an
object's. Against moto's server with a hostile store's answer in front (``Cutter.answer``)."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from runfixtures import HANG
from s3server import S3, Answer, on_get, s3, s3_server  # noqa: F401

from mdl.buckets import _s3replies
from mdl.buckets._s3conditional import S3Conditional
from mdl.buckets._s3write import S3Writer
from mdl.buckets.s3 import s3_client, s3_errors
from mdl.errors import AuthError, NetworkError

MiB = 1 << 20


class Served:
    """What a hostile answer sent: bytes each time, by the answer's body as it ran."""

    def __init__(self) -> None:
        self.sent: list[int] = []
        self.lock = threading.Lock()

    def body(
        self, head: bytes, size: int, *, step: int = MiB, pause: float = 0.0
    ) -> Iterator[bytes]:
        """``head``, then ``size`` bytes of padding in ``step``s (``pause`` seconds apart); its
        count kept as it goes (a client that hangs up ends it: the next write fails)."""
        with self.lock:
            index = len(self.sent)
            self.sent.append(0)
        yield head
        for _ in range(0, size, step):
            if pause:
                time.sleep(pause)
            self.sent[index] += step
            yield b" " * step

    def answer(self, status: str, head: bytes, size: int, **pace: Any) -> Any:
        """A ``Cutter.answer`` replying ``status`` and a body of ``head`` then ``size`` bytes
        (``body``) to every GET."""
        headers = [("Content-Type", "application/xml"), ("Content-Length", str(len(head) + size))]
        return on_get(lambda: (status, headers, self.body(head, size, **pace)))


@pytest.fixture
def served(s3: S3) -> Served:  # noqa: F811
    s3.client().create_bucket(Bucket="mirror")
    s3.client().put_object(Bucket="mirror", Key="hub/m/lease", Body=b"12345678")
    return Served()


def test_a_refusal_is_read_no_further_than_8_kib_whatever_its_size(s3: S3, served: Served) -> None:  # noqa: F811
    """A 500 whose XML goes on for 256 MiB: each try reads its first 8 KiB, the connection is
    dropped with the rest unread, and the error is the status's (exit 5, naming the prefix)."""
    error = b"<?xml version='1.0'?><Error><Code>InternalError</Code><Message>"
    s3.cutter.answer = served.answer("500 Internal Server Error", error, 256 * MiB)
    with pytest.raises(
        NetworkError, match=r"^s3://mirror/hub/: the store refused \(Internal Server"
    ):
        list(S3Writer(s3.endpoint).listing("s3://mirror/hub/"))
    assert len(served.sent) > 1  # botocore tried again, as it does after a 500
    # what the kernel's buffers took before mdl hung up, never the body
    assert max(served.sent) < 64 * MiB, served.sent


def test_a_listing_page_past_8_mib_is_no_s3_answer(s3: S3, served: Served) -> None:  # noqa: F811
    """A 200 page padded to 24 MiB (its names few: the page's count of names is no bound on its
    bytes) is refused after 8 MiB are read, once, naming the listing."""
    page = b"<?xml version='1.0'?><ListBucketResult><Name>mirror</Name>"
    s3.cutter.answer = served.answer("200 OK", page, 24 * MiB)
    with pytest.raises(
        NetworkError, match=r"^s3://mirror/hub/: a reply of more than 8,388,608 bytes"
    ):
        list(S3Writer(s3.endpoint).listing("s3://mirror/hub/"))
    assert len(served.sent) == 1  # never asked again
    assert served.sent[0] < 24 * MiB


def test_the_largest_honest_page_is_read(s3: S3, served: Served) -> None:  # noqa: F811
    """The bound refuses no real page: S3's thousand names, each a 1,024-byte key of ``&`` (five
    bytes escaped), with every field S3 gives an item, fit in it."""
    item = (
        b"<Contents><Key>hub/%04d/" + b"&amp;" * 1015 + b"</Key>"
        b"<LastModified>2026-01-01T00:00:00.000Z</LastModified>"
        b"<ETag>&quot;" + b"f" * 32 + b"-10000&quot;</ETag><ChecksumAlgorithm>SHA256"
        b"</ChecksumAlgorithm><Size>5497558138880</Size><Owner><ID>" + b"a" * 64 + b"</ID>"
        b"<DisplayName>" + b"d" * 64 + b"</DisplayName></Owner><StorageClass>GLACIER_IR"
        b"</StorageClass></Contents>"
    )
    page = (
        b"<?xml version='1.0'?><ListBucketResult><Name>mirror</Name><IsTruncated>false"
        b"</IsTruncated>" + b"".join(item % n for n in range(1000)) + b"</ListBucketResult>"
    )
    assert 5 * MiB < len(page) < _s3replies.REPLY_BYTES
    s3.cutter.answer = on_get(
        lambda: (
            "200 OK",
            [("Content-Type", "application/xml"), ("Content-Length", str(len(page)))],
            [page],
        )
    )
    listed = list(S3Writer(s3.endpoint).listing("s3://mirror/hub/"))
    assert len(listed) == 1000
    assert listed[999].uri == "s3://mirror/hub/0999/" + "&" * 1015


@pytest.mark.parametrize("what", ["listing", "object"])
def test_a_body_that_trickles_ends_at_the_read_timeout(
    s3: S3,  # noqa: F811
    served: Served,
    what: str,
) -> None:
    """A byte every 0.1 s, each well within botocore's wait for the next receive (1 s here): the
    body is cut at the client's read timeout counted from its first byte, for a listing page (read
    whole) and an object's streamed body (a lease's read) alike; the answer would go on for a
    minute."""
    head = b"<?xml version='1.0'?><ListBucketResult>"
    s3.cutter.answer = served.answer("200 OK", head, 600, step=1, pause=0.1)
    client = s3_client(endpoint=s3.endpoint, timeout=1.0, retries=0)
    with (
        pytest.raises(NetworkError, match=r"^s3://mirror/hub/.*[Rr]ead timeout"),
        s3_errors("s3://mirror/hub/"),
    ):
        if what == "listing":
            client.list_objects_v2(Bucket="mirror", Prefix="hub/")
        else:
            client.get_object(Bucket="mirror", Key="hub/m/lease")["Body"].read(4000)
    assert served.sent[0] < 600


def test_a_lease_is_still_read_whole_in_small_receives(s3: S3, served: Served) -> None:  # noqa: F811
    """A streamed body handed over a few bytes at a time is read to its end (a read asks for all
    it wants, as a file's does), and a missing one is still "not there"."""
    store = S3Conditional(s3.endpoint)
    s3.cutter.answer = on_get(
        lambda: (
            "200 OK",
            [
                ("Content-Length", "8"),
                ("ETag", '"25d55ad283aa400af464c76d713c07ad"'),
                ("Last-Modified", "Tue, 01 Dec 2026 10:00:00 GMT"),
            ],
            [b"12", b"345", b"678"],
        )
    )
    found = store.read("s3://mirror/hub/m/lease", limit=100)
    assert found is not None and found[0] == b"12345678"
    s3.cutter.answer = None
    assert store.read("s3://mirror/hub/m/none", limit=100) is None


ITEM = b"<Key>hub/a</Key><Size>1</Size><LastModified>2026-01-01T00:00:00.000Z</LastModified>"


@pytest.mark.parametrize(
    ("page", "said"),
    [
        (b"<html>a proxy's page</html>", r"a reply that is no listing"),
        # (botocore takes a 200 that is not XML for an S3 error, tries again, then says 500)
        (b"<html>a proxy's page", r"the store refused \(Internal Server Error\)"),
        (ITEM.replace(b">1<", b">one<"), r"could not be read \(ValueError: invalid literal"),
        (ITEM.replace(b"2026-01-01T00:00:00.000Z", b"yesterday"), r"could not be read"),
        (ITEM.replace(b"<Size>1</Size>", b""), r"names 'hub/a' \(without its Size\)"),
        (ITEM.replace(b">1<", b">-5<"), r"names 'hub/a' \(without its Size\)"),
        (ITEM.replace(b"2026-01-01T00:00:00.000Z", b"1e300"), r"could not be read \(RuntimeError"),
        (ITEM.replace(b"<Key>hub/a</Key>", b""), r"names '' \(without its Key\)"),
    ],
)
def test_a_listing_botocore_cannot_read_is_the_stores_fault(
    s3: S3,  # noqa: F811
    served: Served,
    page: bytes,
    said: str,
) -> None:
    """XML that is no listing, not XML, a size that is no number, a date that is none, an item
    without a field S3 always gives: exit 5 naming the listing (it was an empty listing, an
    internal error (exit 1), a KeyError)."""
    if not page.startswith(b"<html"):
        page = (
            b"<?xml version='1.0'?><ListBucketResult><Name>mirror</Name><IsTruncated>false"
            b"</IsTruncated><Contents>" + page + b"</Contents></ListBucketResult>"
        )
    s3.cutter.answer = on_get(lambda: ("200 OK", [("Content-Length", str(len(page)))], [page]))
    with pytest.raises(NetworkError, match=rf"^s3://mirror/hub/: .*{said}"):
        list(S3Writer(s3.endpoint).listing("s3://mirror/hub/"))


def test_an_objects_reply_without_its_fields_is_the_stores_fault(s3: S3, served: Served) -> None:  # noqa: F811
    """A lease's GET answered without Last-Modified (S3 always sends it): exit 5 naming it."""
    s3.cutter.answer = on_get(
        lambda: ("200 OK", [("Content-Length", "8"), ("ETag", '"x"')], [b"12345678"])
    )
    with pytest.raises(
        NetworkError, match=r"^s3://mirror/hub/m/lease: the store's reply has no LastModified"
    ):
        S3Conditional(s3.endpoint).read("s3://mirror/hub/m/lease", limit=100)


def test_a_completion_s3_keeps_alive_with_spaces_outlasts_the_read_timeout(s3: S3) -> None:  # noqa: F811
    """S3 answers CompleteMultipartUpload at once and sends a space every few seconds while it
    assembles the object ("several minutes"): such a body has an hour, not the read timeout
    (2 s here; the spaces take 2.5 s at least), and its result is read."""
    s3.client().create_bucket(Bucket="mirror")

    def assembling(environ: dict[str, Any]) -> Answer | None:
        query = environ.get("QUERY_STRING", "")
        if environ["REQUEST_METHOD"] != "POST" or not query.startswith("uploadId="):
            return None
        said: dict[str, Any] = {}
        body = b"".join(s3.cutter.app(environ, lambda *a: said.update(status=a[0], head=a[1])))
        head = [(k, v) for k, v in said["head"] if k.lower() != "content-length"]
        return said["status"], [*head, ("Content-Length", str(25 + len(body)))], spaced(body)

    def spaced(body: bytes) -> Iterator[bytes]:
        declared, _, result = body.partition(b"?>")  # S3's spaces come after its declaration
        yield declared + b"?>"
        for _ in range(25):
            time.sleep(0.1)
            yield b" "
        yield result

    client = s3_client(endpoint=s3.endpoint, timeout=2.0, retries=0)
    begun = client.create_multipart_upload(Bucket="mirror", Key="hub/big")["UploadId"]
    part = client.upload_part(
        Bucket="mirror", Key="hub/big", UploadId=begun, PartNumber=1, Body=b"payload"
    )
    s3.cutter.answer = assembling
    client.complete_multipart_upload(
        Bucket="mirror",
        Key="hub/big",
        UploadId=begun,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]},
    )
    s3.cutter.answer = None
    assert s3.client().get_object(Bucket="mirror", Key="hub/big")["Body"].read() == b"payload"


class Trailing:
    """A store on a raw socket (WSGI cannot write a chunked body's trailer) answering every
    request with a chunked listing page whose last chunk's trailer never ends: lines as fast as
    the client takes them, counted, until it hangs up."""

    def __init__(self) -> None:
        self.sent = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.endpoint = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        with contextlib.suppress(OSError):
            conn, _ = self.listener.accept()
            with conn:
                conn.settimeout(HANG)
                while b"\r\n\r\n" not in conn.recv(65536):
                    pass
                page = (
                    b"<?xml version='1.0'?><ListBucketResult><Name>mirror</Name><IsTruncated>false"
                    b"</IsTruncated></ListBucketResult>"
                )
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/xml\r\n"
                    b"Transfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n" % (len(page), page)
                )
                line = b"X-Trailer: " + b"t" * 1000 + b"\r\n"
                for _ in range(
                    int(HANG) * 100_000
                ):  # (more than any read in time: mdl hangs up first)
                    conn.sendall(line)
                    self.sent += len(line)

    def close(self) -> None:
        self.listener.close()


def test_a_chunked_bodys_endless_trailer_ends_at_the_read_timeout(s3: S3) -> None:  # noqa: F811
    """http.client reads a last chunk's trailer line after line in one receive of mdl's, with no
    bound: the body's socket is shut at the deadline (1 s here) however fast the lines come."""
    store = Trailing()
    try:
        client = s3_client(endpoint=store.endpoint, timeout=1.0, retries=0)
        with (
            pytest.raises(NetworkError, match=r"^s3://mirror/hub/: .*[Rr]ead timeout"),
            s3_errors("s3://mirror/hub/"),
        ):
            client.list_objects_v2(Bucket="mirror", Prefix="hub/")
        assert store.sent > 0  # the trailer was being read when the deadline came
    finally:
        store.close()


def test_only_what_the_parser_raised_is_the_stores_fault() -> None:
    """A failure raised inside botocore's parsers (a date overflowing every way it tries is a
    RuntimeError there) is the store's: ``Unreadable``, exit 5; the same type raised anywhere
    else (a bug) is left as it is."""
    from botocore.parsers import RestXMLParser

    page = b"<ListBucketResult><Contents><Key>a</Key><LastModified>1e300</LastModified>"
    reply = {"status_code": 200, "headers": {}, "body": page + b"</Contents></ListBucketResult>"}
    model = s3_client(endpoint="http://127.0.0.1:9").meta.service_model
    with pytest.raises(RuntimeError) as parsed:
        RestXMLParser().parse(reply, model.operation_model("ListObjectsV2").output_shape)
    with pytest.raises(_s3replies.Unreadable, match=r"could not be read \(RuntimeError: "):
        _s3replies._whose_failure(parsed.value)
    with pytest.raises(ValueError) as elsewhere:
        json.loads("<html>")
    assert _s3replies._whose_failure(elsewhere.value) is None  # botocore raises it on, as it was


def test_credentials_that_fail_to_refresh_are_the_users_to_fix(s3: S3, tmp_path: Path) -> None:  # noqa: F811
    """A ``credential_process`` whose first answers expire within botocore's refresh window, then
    print a web page (an SSO helper logged out): the call that refreshes them is exit 3 "cannot
    read the AWS credentials", never the store's fault (it saw no request) nor an internal
    error."""
    count, helper = tmp_path / "count", tmp_path / "creds.py"
    helper.write_text(
        "import datetime, json, pathlib\n"
        f"n = pathlib.Path({str(count)!r})\n"
        "i = int(n.read_text()) if n.exists() else 0\n"
        "n.write_text(str(i + 1))\n"
        "soon = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(minutes=5)\n"
        "print('<html>log in again</html>' if i >= 2 else json.dumps({'Version': 1,"
        " 'AccessKeyId': 'test', 'SecretAccessKey': 'test', 'Expiration': soon.isoformat()}))\n"
    )
    config = tmp_path / "config"
    config.write_text(f"[default]\ncredential_process = {sys.executable} {helper}\n")
    os.environ["AWS_CONFIG_FILE"] = str(config)  # (the s3 fixture's environment is restored)
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        os.environ.pop(name, None)
    asked: list[str] = []
    s3.cutter.answer = lambda environ: asked.append(environ["PATH_INFO"])  # (then moto answers)
    with pytest.raises(AuthError, match=r"^s3://mirror/m: cannot read the AWS credentials \(JSON"):
        S3Conditional(s3.endpoint).head("s3://mirror/m")
    assert asked == []


def test_the_profiles_tcp_keepalive_is_on_mdls_connections(s3: S3, tmp_path: Path) -> None:  # noqa: F811
    """Replies are read by mdl, requests still sent by botocore's own session for the client:
    ``tcp_keepalive = true`` in the profile (for NAT gateways that drop idle connections) is on
    the socket, as botocore makes it. (The store runs in this process: it looks at the client's
    socket while it answers.)"""
    config = tmp_path / "config"
    config.write_text("[default]\ntcp_keepalive = true\n")
    os.environ["AWS_CONFIG_FILE"] = str(config)  # (the s3 fixture's environment is restored)
    found = []

    def look(environ: dict[str, Any]) -> None:
        client_end = ("127.0.0.1", int(environ["REMOTE_PORT"]))
        for fd in map(int, os.listdir("/proc/self/fd")):
            with (
                contextlib.suppress(OSError),
                socket.fromfd(fd, socket.AF_INET, socket.SOCK_STREAM) as seen,
            ):
                if seen.getsockname() == client_end:
                    found.append(seen.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE))

    s3.cutter.answer = look
    s3_client(endpoint=s3.endpoint).list_buckets()
    assert found and all(found), found


def test_a_lease_shorter_than_it_says_is_the_stores_fault(s3: S3, served: Served) -> None:  # noqa: F811
    """A lease's body ending before its Content-Length (a connection cut, a lying store) is no
    lease: the read that finds the end is made, and botocore's check of the length on it fails
    (it was taken as the lease)."""
    s3.cutter.answer = on_get(
        lambda: (
            "200 OK",
            [
                ("Content-Length", "18"),
                ("ETag", '"x"'),
                ("Last-Modified", "Tue, 01 Dec 2026 10:00:00 GMT"),
            ],
            [b"12345678"],
        )
    )
    with pytest.raises(
        NetworkError, match=r"^s3://mirror/hub/m/lease: 8 read, but total bytes expected is 18"
    ):
        S3Conditional(s3.endpoint).read("s3://mirror/hub/m/lease", limit=100)
