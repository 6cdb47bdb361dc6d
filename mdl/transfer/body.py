"""One answer's body into the file at its offset: hashed from memory at the frontier, counted, checkpointed.

A plain 206 of known length is read straight from its connection's socket into a buffer each thread reuses
(``WireStream.read_into``, mdl's own stream): no per-read bytes objects, and none of h11's copies of every byte,
which made the bulk path CPU-bound (bench/RESULTS.md); the price is that connection, closed after its answer.
Anything else (content codings, a 200, an unknown length, TLS inside a proxy's TLS) goes through httpx2 as before.
Either way the connection is the response's alone until it is closed.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from typing import Protocol

import httpx2

from mdl.progress import Progress
from mdl.transfer.codings import body_chunks
from mdl.transfer.connection import httpx2_errors
from mdl.transfer.hashing import HASH_BLOCK
from mdl.transfer.job import EngineConfig, TransferJob
from mdl.transfer.ranges import ContentRangeError, parse_content_range, parse_decimal
from mdl.transfer.ratelimit import RateLimiter
from mdl.transfer.replies import size_differs
from mdl.transfer.resume import DownloadState
from mdl.transfer.scheduling import MiB, Piece
from mdl.transfer.wire import WireStream


class Streamer(Protocol):
    """What a body copy needs of the streams that run it (mdl.transfer.stream.Streamer)."""

    progress: Progress
    limiter: RateLimiter | None
    cancel: threading.Event
    config: EngineConfig

    def check_stop(self, job: TransferJob, state: DownloadState) -> None: ...


RAW_BUFFER = 1 * MiB  # bytes per recv_into; one buffer per stream thread, reused for every piece and file
_buffers = threading.local()


def _buffer() -> memoryview:
    view: memoryview | None = getattr(_buffers, "view", None)
    if view is None:
        view = memoryview(bytearray(RAW_BUFFER))
        _buffers.view = view
    return view


# Bytes an answer must have to be read raw. A raw read saves ~0.45 s of CPU per GiB (bench/RESULTS.md) but costs
# its connection (the parser never saw the body, so the connection cannot go back to the pool): a new handshake for
# the next request, a round trip or three. At 16 MiB the CPU saved (~7 ms) is worth less than a round trip only on
# links far away, where answers are big windows anyway; short 206s and small files keep their connections.
RAW_LEAST = 16 * MiB


def raw_socket(resp: httpx2.Response) -> WireStream | None:
    """The connection a plain ``206`` can be read from directly (``WireStream.read_into``), or None to read it
    through httpx2.

    Only mdl's own streams qualify, and only when the socket carries the plaintext (TCP, or an ``ssl.SSLSocket``
    that decrypts itself); a TLS tunnel inside a proxy's TLS is decrypted above its socket and read through httpx2.
    """
    if resp.status_code != 206 or "Transfer-Encoding" in resp.headers:
        return None  # chunked framing (even beside a Content-Length, RFC 9112 §6.3) is the parser's to undo
    length = parse_decimal(resp.headers.get("Content-Length"))
    try:
        first, last, _ = parse_content_range(resp.headers.get("Content-Range", ""))
    except ContentRangeError:
        return None
    if length is None or length != last - first + 1:
        return None  # a length that is not the range's: let the usual path find out what the server means
    if length < RAW_LEAST:
        return None  # a short answer is read by the parser, so its keep-alive connection serves the next request
    stream = resp.extensions.get("network_stream")
    return stream if isinstance(stream, WireStream) and stream.can_read_into else None


def copy_body(
    streams: Streamer,
    job: TransferJob,
    state: DownloadState,
    fd: int,
    piece: Piece,
    resp: httpx2.Response,
    offset: int,
    asked_end: int | None,
    *,
    encoded: bool,
) -> None:
    """Write the body at ``offset`` until it ends, the piece is done, or the stream must stop."""
    began, start = time.monotonic(), offset
    taker = _Taker(streams, job, state, fd, piece, resp, offset, asked_end)
    chunks = body_chunks(resp, encoded=encoded, what=job.label)
    sock = None if encoded else raw_socket(resp)
    if sock is None:
        for chunk in chunks:
            if taker.take(chunk):
                break
    else:
        length = parse_decimal(resp.headers.get("Content-Length")) or 0
        # httpx2 hands over what its parser already holds past the headers; after that the socket has the rest.
        # (``chunks`` stays referenced until we are done: a generator dropped early closes the connection.)
        first = next(chunks, b"")
        if not taker.take(first):
            _read_raw(taker, sock, resp, length - len(first))
    elapsed = time.monotonic() - began
    if taker.offset - start >= MiB and elapsed > 0:  # what sizes this stream's next window
        piece.rate = (taker.offset - start) / elapsed


def _read_raw(taker: _Taker, stream: WireStream, resp: httpx2.Response, left: int) -> None:
    # The stream's pace is the body's (the stall timeout set on the response): the same stalls as the usual reader.
    view = _buffer()
    for data in _received(stream, view, left, resp.request):
        if taker.take(data):
            return


def _received(stream: WireStream, view: memoryview, left: int, request: httpx2.Request) -> Iterator[memoryview]:
    """Up to ``left`` bytes from ``stream``, a buffer's worth at a time (the same buffer: use each before the next).

    Errors become httpx2's, so stalls, resets and closes take the same paths as on the usual reader; an early end
    simply stops (the caller sees the piece unfinished and resumes it). The parser never saw these bytes, so the
    response's close drops its connection (WireStream.read_into).
    """
    while left > 0:
        with httpx2_errors(request):
            got = stream.read_into(view[: min(len(view), left)])
        if got == 0:
            return
        left -= got
        yield view[:got]


class _Taker:
    """What happens to each run of bytes of one answer: written at its offset, hashed, counted, checkpointed."""

    def __init__(
        self,
        streams: Streamer,
        job: TransferJob,
        state: DownloadState,
        fd: int,
        piece: Piece,
        resp: httpx2.Response,
        offset: int,
        asked_end: int | None,
    ) -> None:
        self.streams, self.job, self.state, self.fd, self.piece = streams, job, state, fd, piece
        self.resp, self.offset, self.asked_end = resp, offset, asked_end

    def take(self, chunk: bytes | memoryview) -> bool:
        """Take one chunk; True when this answer must not be read further (its piece is done by another's hand)."""
        streams, state, piece = self.streams, self.state, self.piece
        streams.check_stop(self.job, state)
        offset = self.offset
        limit = piece.end  # read per chunk: a steal may have given this piece's tail to another stream
        if limit is not None and offset + len(chunk) > limit:
            if self.resp.status_code == 200:  # a full body longer than the file we expect
                raise size_differs(self.job, state, offset + len(chunk))
            chunk = chunk[: max(0, limit - offset)]  # never write past our piece, whatever the server sends
        written = os.pwrite(self.fd, chunk, offset) if len(chunk) else 0
        if state.hasher is not None and written:
            state.hasher.offer(offset, memoryview(chunk)[:written])  # before `done` moves: the frontier is ours
        with state.lock:
            # Only what is still inside the piece counts: its end may have moved in during the write.
            counted = written if piece.end is None else min(written, piece.left)
            piece.done += counted
            state.fetched += counted
            complete = piece.complete
            # Wake the hasher only when there may be a new block for it (a piece ended or a block filled):
            # a notify per chunk costs a thread switch per chunk.
            if complete or (piece.done % HASH_BLOCK) < counted:
                state.lock.notify_all()
        self.offset = offset + written
        streams.progress.advance(self.job.label, counted)
        if streams.limiter is not None:
            streams.limiter.consume(written, streams.cancel)
        if complete and piece.end != self.asked_end:
            return True  # the rest of this answer belongs to another stream: drop the connection
        if not state.background and time.monotonic() - state.last_save >= streams.config.checkpoint_interval:
            state.save(self.fd)
        return False
