"""An answer's body against what its headers promise: the span they name, and the one reader
every path takes.
"""

# (annotations here are evaluated, not postponed: typing compiles each string annotation of a
# NamedTuple's fields at every start)
import itertools
import time
from collections.abc import Iterator
from typing import NamedTuple

import httpx2

from mdl.errors import NetworkError
from mdl.redact import redact_url
from mdl.transfer._headers import (
    ContentRangeError,
    content_codings,
    parse_content_range,
    parse_decimal,
)
from mdl.transfer.connection import READ_SIZE, Pace, WireStream, httpx2_errors, pace_of, read_buffer

MiB = 1 << 20
# A body read past the parser skips h11's four copies of every byte (0.75 CPU-s per GiB here,
# bench/raw.py); its connection, which h11 left mid-body, is kept below the pool (WireStream), at
# the cost of a new pool entry (well under what parsing a MiB costs). RAW_LEAST: a read or two past
# the parser's first (connection.READ_SIZE).
RAW_LEAST = 2 * MiB
# a raw body's chunk: read on till it holds FILL bytes (the buffer's) or a read ends FILL_WAIT
# seconds after the first began, none after the first waiting longer (a kill -9 loses it beside the
# record's: docs/transfers.md)
FILL, FILL_WAIT = READ_SIZE, 0.1


class BodyOverrunError(NetworkError):
    """A body that went on past the bytes its headers named: nothing of that answer is to be
    kept.
    """


class Span(NamedTuple):
    """Bytes ``[start, end)`` of a file of ``total`` bytes, as an answer's headers name them
    (``end`` None: not said, the body ends when it ends; ``total`` None: not said). ``ranged``: a
    part of the file, as asked (a 206, or a 200 that names a part in its Content-Range, as ``rclone
    serve s3`` answers); else the whole file."""

    start: int
    end: int | None
    total: int | None
    ranged: bool

    @property
    def length(self) -> int | None:
        return None if self.end is None else self.end - self.start

    @property
    def shown(self) -> str:
        return "the whole file" if self.end is None else f"bytes {self.start}-{self.end - 1}"


def promised(response: httpx2.Response, *, what: str) -> Span:
    """What a 200's or a 206's headers say its body holds; headers that contradict each other are
    exit 5.
    """
    status, headers = response.status_code, response.headers
    # its lengths count coded bytes: the file's bytes are known once decoded
    if content_codings(response):
        return Span(0, None, None, ranged=status == 206)
    # Chunked framing wins over a Content-Length beside it (RFC 9112 §6.3): then only the framing
    # says where it ends.
    length = (
        None if "Transfer-Encoding" in headers else parse_decimal(headers.get("Content-Length"))
    )
    value = headers.get("Content-Range")
    if status == 206 or value is not None:
        return _named(response, value or "", length, what=what)
    return Span(0, length, length, ranged=False)


def _named(response: httpx2.Response, value: str, length: int | None, *, what: str) -> Span:
    """The span an answer's Content-Range ``value`` names, its ``length`` that span's."""
    try:
        first, last, total = parse_content_range(value)
    except ContentRangeError as exc:
        # RFC 9110 gives a 200's Content-Range no meaning: one we cannot read is left aside
        if response.status_code == 200:
            return Span(0, length, length, ranged=False)
        raise NetworkError(
            f"{what}: bad Content-Range from {redact_url(str(response.url))}: {exc}"
        ) from exc
    if length is not None and length != last - first + 1:
        raise NetworkError(
            f"{what}: the server sent a {length}-byte body for bytes {first}-{last}"
            f" ({last - first + 1} bytes)"
        )
    # A 200 naming the whole file is the whole file, unless ``bytes=0-`` was asked: then it is that
    # range too (as rclone answers); to any other range it is a server ignoring ranges.
    named_whole = first == 0 and total is not None and last + 1 == total
    whole = response.status_code == 200 and named_whole and not _asked_all(response)
    return Span(first, last + 1, total, ranged=not whole)


def _asked_all(response: httpx2.Response) -> bool:
    try:
        return response.request.headers.get("Range", "").replace(" ", "") == "bytes=0-"
    except RuntimeError:  # a response made without its request (tests): nothing was asked
        return False


def read_body(
    response: httpx2.Response, span: Span, *, encoded: bool, what: str, most: int | None = None
) -> Iterator[bytes | memoryview]:
    """The body's bytes, never more than ``span`` names, however the body is framed
    (``BodyOverrunError`` before a byte past it is given): a big sized range straight from its
    socket into this thread's buffer (each view valid until the next one, at most ``most`` bytes:
    a rate cap's share, paid after each), anything else through the parser, decoded when
    content-coded."""
    chunks = _parsed(response, encoded=encoded, what=what)
    body: Iterator[bytes | memoryview] = chunks
    limit = None if encoded else span.length
    sock = None if encoded else raw_socket(response, span)
    if sock is not None and limit is not None:
        # what the parser holds past the headers (``chunks`` kept: dropped, it closes)
        first = next(chunks, b"")
        left, pace, keep = limit - len(first), pace_of(response), _keeps(response)
        rest: Iterator[bytes | memoryview] = chunks  # all of it came: the parser sees its end
        if left > 0:
            view = read_buffer()[: most or FILL]
            rest = _received(sock, view, left, response.request, pace=pace, keep=keep)
        body = itertools.chain([first], rest)
    if limit is None:
        yield from body
        return
    got = 0
    for chunk in body:
        got += len(chunk)
        if got > limit:
            raise BodyOverrunError(
                f"{what}: the server sent more than the {limit} bytes its headers name"
                f" ({span.shown}); nothing of that answer was kept",
                hint=(
                    "a proxy or server on the way is broken; mdl never writes bytes an answer did"
                    " not name"
                ),
            )
        yield chunk


def _parsed(response: httpx2.Response, *, encoded: bool, what: str) -> Iterator[bytes]:
    try:
        yield from response.iter_bytes() if encoded else response.iter_raw()
    except httpx2.DecodingError as exc:  # only a decoder raises it
        raise NetworkError(
            f"{what}: the {', '.join(content_codings(response))} body from"
            f" {redact_url(str(response.url))} is corrupt: {exc}"
        ) from exc


def raw_socket(response: httpx2.Response, span: Span) -> WireStream | None:
    """The connection a big body framed by its Content-Length (``promised`` checked it is the
    range's or the whole file's) is read from, or None (read by the parser)."""
    if span.length is None or span.length < RAW_LEAST or "Transfer-Encoding" in response.headers:
        # chunked framing (even beside a Content-Length, RFC 9112 §6.3) is the parser's to undo
        return None
    if parse_decimal(response.headers.get("Content-Length")) != span.length:
        return None  # no length: the body ends with its connection, which only the parser sees
    stream = response.extensions.get("network_stream")
    return stream if isinstance(stream, WireStream) and stream.can_read_into else None


def _keeps(response: httpx2.Response) -> bool:
    """Whether the answer leaves its connection open for the next request (as h11 judges it)."""
    connection = response.headers.get("Connection", "").lower()
    return response.http_version == "HTTP/1.1" and "close" not in connection


def _received(
    stream: WireStream,
    view: memoryview,
    left: int,
    request: httpx2.Request,
    *,
    pace: Pace | None = None,
    keep: bool = False,
) -> Iterator[memoryview]:
    # each read bounded as the parser's are
    timeout = (request.extensions.get("timeout") or {}).get("read")
    while left > 0:
        began = time.monotonic()
        # the body's last two fills read a read at a time: its end is heard as it comes (the next
        # piece's request goes about two round trips before it: BodyCopy.near)
        wait = FILL_WAIT if left > 2 * len(view) else 0.0
        got, failed = _fill(stream, view[:left], timeout, request, began, wait)
        if pace is not None and failed is None:
            pace.count(began, got)
        # the connection ended (or was closed) short of the bytes named: an error, as the parser's
        if got == 0:
            raise httpx2.RemoteProtocolError(
                f"the connection ended with {left} bytes of the body to come", request=request
            )
        left -= got
        # the last byte: the next answer starts at the socket's next one (``keep``: kept for it)
        stream.ended = keep and left == 0
        yield view[:got]
        if failed is not None:  # the bytes that came before it are the file's
            raise failed


def _fill(
    stream: WireStream,
    view: memoryview,
    timeout: float | None,
    request: httpx2.Request,
    began: float,
    wait: float,
) -> tuple[int, Exception | None]:
    """Bytes read into ``view``: read on till it is full or a read ends ``wait`` seconds after
    ``began`` (a capped link brings a segment a read, and each chunk costs its writer, hasher,
    record and display a turn), no read after the first waiting past ``FILL_WAIT`` (what came
    before a pause goes at once); and the error that ended the reads after some came (given
    first)."""
    got, short = 0, FILL_WAIT if timeout is None else min(timeout, FILL_WAIT)
    try:
        with httpx2_errors(request):
            while True:
                step = stream.read_into(view[got:], short if got else timeout)
                got += step
                if not step or got == len(view) or time.monotonic() - began >= wait:
                    return got, None
    except httpx2.TransportError as exc:
        if not got:
            raise
        # a pause: what came goes now, and the next read waits as long as any
        return got, None if isinstance(exc, httpx2.ReadTimeout) else exc
