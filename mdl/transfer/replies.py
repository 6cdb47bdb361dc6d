"""What a server's reply must satisfy before its bytes are used: ranges, lengths and totals against the file."""

from __future__ import annotations

import httpx2

from mdl.errors import NetworkError
from mdl.transfer.codings import is_encoded
from mdl.transfer.connection import drain
from mdl.transfer.http import error_for_status, open_stream, origin
from mdl.transfer.job import TransferJob
from mdl.transfer.outcomes import HashMismatch, RangesIgnoredError, SourceChanged
from mdl.transfer.ranges import ContentRangeError, content_range_total, parse_content_range, parse_decimal
from mdl.transfer.resume import DownloadState


def from_hub(job: TransferJob, response: httpx2.Response) -> bool:
    """Whether a response came from the Hub itself (a 403 there is auth; from a CDN, an expired URL)."""
    return job.credentials.hub_origin is not None and origin(str(response.url)) == job.credentials.hub_origin


def locate(client: httpx2.Client, job: TransferJob, state: DownloadState) -> str:
    """Follow redirects once (Hub → CDN) so every range goes straight to the final URL."""
    with open_stream(
        client, job.url, credentials=job.credentials, headers={"Range": "bytes=0-0"}, what=job.label
    ) as response:
        if response.status_code in (200, 206) and is_encoded(response, what=job.label):
            with state.lock:  # ranges of a content-coded body cannot be spliced: one decoded stream instead
                state.whole_only = True
            raise RangesIgnoredError
        if response.status_code == 200:
            raise RangesIgnoredError
        if response.status_code != 206:
            raise error_for_status(response, what=job.label, hub=from_hub(job, response))
        check_total(job, state, response)
        etag = response.headers.get("ETag")
        if etag and not etag.startswith("W/"):
            with state.lock:
                changed = state.validator not in (None, etag) and state.on_disk() > 0
                state.validator = etag
            if changed:  # the bytes we have are of another version: never splice them
                raise SourceChanged
        located = str(response.url)
        drain(response)  # its one byte read, the connection serves one of the ranges next
        return located


def check_content_range(
    job: TransferJob, resp: httpx2.Response, offset: int, asked_end: int | None, state: DownloadState
) -> None:
    """A 206 must start where we asked, stay inside the range asked for, and be of a file of the expected size.

    ``asked_end`` is the piece's end when the request went out: a split may have shortened the piece since.
    """
    try:
        start, end, total = parse_content_range(resp.headers.get("Content-Range", ""))
    except ContentRangeError as exc:
        raise NetworkError(f"{job.label}: bad Content-Range from server: {exc}") from exc
    if start != offset:
        raise NetworkError(f"{job.label}: asked for bytes from {offset}, server sent from {start}")
    length = parse_decimal(resp.headers.get("Content-Length"))
    if length is not None and "Transfer-Encoding" not in resp.headers and length != end - start + 1:
        raise NetworkError(
            f"{job.label}: server sent a {length}-byte body for bytes {start}-{end} ({end - start + 1} bytes)"
        )
    if total is not None and state.size is not None and total != state.size:
        raise size_differs(job, state, total)
    if asked_end is not None and end >= asked_end:
        raise NetworkError(f"{job.label}: server sent bytes past the requested range ({end} >= {asked_end})")


def check_length(job: TransferJob, state: DownloadState, resp: httpx2.Response) -> None:
    """A full 200 body must be exactly the expected size (an integrity failure, not a network one)."""
    length = parse_decimal(resp.headers.get("Content-Length"))
    if length is not None and state.size is not None and length != state.size:
        raise size_differs(job, state, length)


def check_total(job: TransferJob, state: DownloadState, resp: httpx2.Response) -> None:
    """The total in a Content-Range (``bytes a-b/N`` or ``bytes */N``) must be the expected size."""
    total = content_range_total(resp.headers.get("Content-Range"))
    if total is not None and state.size is not None and total != state.size:
        raise size_differs(job, state, total)


def size_differs(job: TransferJob, state: DownloadState, actual: int) -> Exception:
    """A pinned size that the server contradicts is an integrity failure; a probed one means a new version."""
    if not job.size_pinned:
        return SourceChanged(new_size=actual)
    return HashMismatch("size", f"{state.size} bytes", f"{actual} bytes (server)")
