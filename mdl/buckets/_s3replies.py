"""Every S3 reply mdl's botocore clients read, bounded in bytes and in time (hostile34c): botocore
reads a reply's body whole before mdl sees it (a 200 MiB error or listing page held 1.7 GB), and
its read timeout bounds each wait, not the whole (a page trickling a byte every 20 s held prune
for ever). So each client's requests are sent on botocore's ``before-send`` event (a handler's
reply is the one botocore uses), by the client's own HTTP session, and the body is read here:
at most ``ERROR_BYTES`` of a refusal (the rest never read: botocore then says its status), at most
``REPLY_BYTES`` of any other reply read whole (more is no S3 answer: exit 5), and every body within
the client's read timeout from its first byte to its last, a streamed one (an object's) too (those
S3 keeps alive with spaces while it works, ``KEPT_ALIVE``, within an hour).

(botocore is imported by whoever imports this: ``s3.s3_client``, on use.)"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

from botocore.awsrequest import AWSResponse
from botocore.exceptions import BotoCoreError, ConnectionClosedError, ReadTimeoutError
from urllib3.exceptions import HTTPError as URLLib3Error
from urllib3.exceptions import ReadTimeoutError as ReceiveTimeout

from mdl.background import Background

ERROR_BYTES = 8 * 1024  # as much of an error body as mdl reads of any (docs/output.md)
# A ListObjectsV2 page of S3's 1,000 names, each up to 1,024 bytes of XML-escaped key (``&`` is
# five bytes written) with its size, date, ETag and owner: under 6 MiB however hostile the names.
REPLY_BYTES = 8 << 20
_STEP = 64 * 1024  # bytes asked of the socket at once (one receive: the time is checked between)
# S3 keeps these answers' connections alive with a space every few seconds while it assembles or
# copies up to 5 TB ("several minutes"): their bodies get an hour, not the read timeout
KEPT_ALIVE = frozenset({"CompleteMultipartUpload", "CopyObject", "UploadPartCopy"})
KEPT_ALIVE_SECONDS = 3600.0


def bound_replies(client: Any) -> None:
    """Read every reply of ``client`` here: sent by botocore's own session for it (its CA bundle,
    proxies, socket options, pool: all botocore computed), the body left to this module."""
    # (the endpoint's session is botocore's attribute, not its documented surface: a copy of what
    # it computes from the config, the profile and the environment would drift from it)
    http = client._endpoint.http_session
    seconds = float(client.meta.config.read_timeout)

    def send(request: Any, event_name: str, **_: Any) -> AWSResponse:
        streamed = request.stream_output
        request.stream_output = True  # botocore's session would read a body whole: we read it
        reply = http.send(request)
        kept_alive = event_name.rpartition(".")[2] in KEPT_ALIVE
        deadline = time.monotonic() + (KEPT_ALIVE_SECONDS if kept_alive else seconds)
        chunked = "chunked" in reply.headers.get("transfer-encoding", "").lower()
        timed = _Timed(reply.raw, request.url, deadline, chunked=chunked)
        if streamed and reply.status_code < 300:
            body: Any = timed
        else:
            most = ERROR_BYTES if reply.status_code >= 300 else REPLY_BYTES
            body = _Read(timed.upto(most, refuse=reply.status_code < 300))
        return AWSResponse(reply.url, reply.status_code, reply.headers, body)

    client.meta.events.register("before-send.s3", send)
    client.meta.events.register("after-call-error.s3", _whose_failure)


class TooBig(BotoCoreError):  # type: ignore[misc]  # (botocore has no types)
    """A reply read whole past ``REPLY_BYTES`` (botocore tries no store again for it; the caller
    names what was asked, ``s3.s3_errors``)."""

    fmt = "a reply of more than {most:,} bytes is no S3 answer; nothing is done on it"


class Unreadable(BotoCoreError):  # type: ignore[misc]  # (botocore has no types)
    """A reply botocore's parser failed on: not XML, or a field not of its type (a size that is no
    number, a date that is none or overflows): the store's fault, never a bug of mdl's (exit 5, not
    1)."""

    fmt = "the store's reply could not be read ({error})"


class Uncredentialed(BotoCoreError):  # type: ignore[misc]  # (botocore has no types)
    """Credentials botocore failed to refresh as it signed (a ``credential_process`` printing a
    web page, a cache file gone bad): the user's to fix, exit 3 (``s3.s3_error``)."""

    fmt = "cannot read the AWS credentials ({error})"


# the modules whose failures are not mdl's: what botocore raised in them, said as whose it is
_WHOSE: dict[str, Any] = {  # (classes of botocore's untyped BotoCoreError)
    "botocore.parsers": Unreadable,
    "botocore.credentials": Uncredentialed,
}


def _whose_failure(exception: BaseException, **_: Any) -> None:
    """botocore's ``after-call-error``: a failure raised inside its parser said as the store's, one
    raised refreshing the credentials as the user's (a handler's exception is the one the call
    raises). Any other (a bug) is left as it is."""
    if isinstance(exception, BotoCoreError):
        return
    where = exception.__traceback__
    while where is not None:  # (the module of each frame on its way up)
        said = _WHOSE.get(where.tb_frame.f_globals.get("__name__", ""))
        if said is not None:
            raise said(error=f"{type(exception).__name__}: {exception}") from exception
        where = where.tb_next


class _Timed:
    """An answer's body (urllib3's), read by receives whose sum must end by ``deadline``: checked
    between receives, and for a chunked body, whose last chunk's trailer http.client reads line
    after line within one receive of ours, by shutting its socket at the deadline
    (``_guard``)."""

    def __init__(self, raw: Any, url: str, deadline: float, *, chunked: bool) -> None:
        self.raw, self.url, self.deadline = raw, url, deadline
        # a receive at a time where urllib3 has one (2.x); else a small read
        self._one = getattr(raw, "read1", None) or (lambda most: raw.read(min(most, 8192)))
        self._guard = Background("an S3 reply's deadline", self._shut).start() if chunked else None

    def read(self, amt: int | None = None) -> bytes:
        """Up to ``amt`` bytes (all: None), fewer only at the body's end (as a file's read)."""
        chunks, got = [], 0
        while amt is None or got < amt:
            try:
                chunk = self._one(_STEP if amt is None else min(_STEP, amt - got))
            except URLLib3Error as exc:  # as botocore's session says a failed read
                self.close()
                late = isinstance(exc, ReceiveTimeout) or time.monotonic() > self.deadline
                if not late:  # (late: a receive's wait ran out, or the guard shut the socket)
                    raise ConnectionClosedError(endpoint_url=self.url, error=exc) from None
                chunk = None
            if chunk is None or time.monotonic() > self.deadline:  # (a body ending late too)
                self.close()
                raise ReadTimeoutError(endpoint_url=self.url)
            if not chunk:
                self._ended()
                break
            chunks.append(chunk)
            got += len(chunk)
        return b"".join(chunks)

    def upto(self, most: int, *, refuse: bool) -> bytes:
        """The body, whole if it is at most ``most`` bytes; past them: ``TooBig`` when ``refuse``,
        else its first ``most`` bytes (the connection closed, the rest unread)."""
        data = self.read(most + 1)
        if len(data) <= most:
            self._ended()
            self.raw.release_conn()
            return data
        self.close()
        if refuse:
            raise TooBig(most=most)
        return data[:most]

    def close(self) -> None:
        # its connection closed too (a body left half read is never reused), and handed back:
        # the pool makes it anew when next asked
        self._ended()
        self.raw.close()
        self.raw.release_conn()

    def _ended(self) -> None:
        if self._guard is not None:
            self._guard.stop()  # (before the connection goes back to the pool: it is another's)

    def _shut(self, ended: threading.Event) -> None:
        """The body's socket shut at the deadline, unless it ``ended`` first."""
        if ended.wait(max(0.0, self.deadline - time.monotonic())):
            return
        sock = getattr(getattr(self.raw, "connection", None), "sock", None)
        if sock is not None:  # (else gone already: nothing to stop)
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class _Read:
    """A body read already, as botocore reads one (``AWSResponse.content``)."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def stream(self, *_: Any, **__: Any) -> Iterator[bytes]:
        yield self.data

    def read(self, amt: int | None = None) -> bytes:
        data, self.data = (self.data, b"") if amt is None else (self.data[:amt], self.data[amt:])
        return data

    def close(self) -> None:
        self.data = b""
