"""What a server's reply must satisfy before its bytes are used: ranges, lengths and totals
against the file.
"""

# (annotations here are evaluated, not postponed: typing compiles each string annotation of a
# NamedTuple's fields at every start)
import contextlib
import email.utils
import math
from collections.abc import Callable
from typing import NamedTuple

import httpx2

from mdl.errors import NetworkError
from mdl.redact import unshown
from mdl.transfer._headers import content_range_total, is_encoded, served_sha256
from mdl.transfer._state import DownloadState
from mdl.transfer.body import Span, promised
from mdl.transfer.connection import drain
from mdl.transfer.http import Credentials, error_for_status, follow
from mdl.transfer.job import HashMismatch, Opening, RangesIgnoredError, SourceChanged, Version


def locate(client: httpx2.Client, state: DownloadState, *, keep: Callable[[Opening], None]) -> str:
    """Follow redirects once (Hub → CDN) so every range goes to the final URL; its answer is
    checked like any other. The whole file instead (the range ignored) is handed to ``keep``
    unread, for the one stream the file is then fetched as.
    """
    job, headers = state.job, {"Range": "bytes=0-0"}
    if state.validator:
        headers["If-Range"] = state.validator
    with contextlib.ExitStack() as stack:
        response = stack.enter_context(
            follow(
                client,
                job.url,
                credentials=job.credentials,
                headers=headers,
                what=job.label,
                saved_as=job.path,
            )
        )
        if response.status_code not in (200, 206):
            raise error_for_status(response, what=job.label, credentials=job.credentials)
        if is_encoded(response, what=job.label):
            # ranges of a content-coded body cannot be spliced: one decoded stream instead
            state.whole_only = True
            raise RangesIgnoredError
        span = promised(response, what=job.label)
        check_version(state, response, total=span.total)
        if not span.ranged:
            if span.total is not None and span.total == state.size:
                keep(Opening(response, stack.pop_all().close, end=span.total))
            raise RangesIgnoredError
        check_size(state, span.total)
        drain(response)  # its one byte read, the connection serves one of the ranges next
        return str(response.url)


class Probed(NamedTuple):
    """What the first reply said of a file: where it is, its size and validator, ranges."""

    url: str
    size: int | None
    validator: str | None
    ranged: bool
    opening: Opening | None = None
    sha256: str | None = None  # what the reply says the whole file's is (served_sha256)

    def __repr__(self) -> str:  # (no -H header, signed URL or proxy login in a traceback)
        return unshown(self)


def probe(
    client: httpx2.Client,
    url: str,
    *,
    credentials: Credentials,
    what: str,
    carry: bool,
    saved_as: str | None = None,
) -> Probed:
    """Ask for the first byte; with ``carry``, the whole file from byte 0 (``bytes=0-``), its body
    left unread for the download: no round trip is spent only to learn the size, and the first
    stream streams on at full speed while the others start (as aria2c's first GET; engine rule 19).
    """
    asked = {"Range": "bytes=0-" if carry else "bytes=0-0"}
    with contextlib.ExitStack() as stack:
        response = stack.enter_context(
            follow(
                client, url, credentials=credentials, headers=asked, what=what, saved_as=saved_as
            )
        )
        # Its lengths count coded bytes and its ETag names the coding: size and version unknown
        # till decoded.
        encoded = response.status_code in (200, 206) and is_encoded(response, what=what)
        span = _first_bytes(response, what=what, credentials=credentials)
        etag, modified = (None, None) if encoded else validators(response)
        opening = None
        if carry and span.start == 0:
            # The file from byte 0 (a 206; a 200, Range ignored; one of no length, chunked or
            # close-delimited; a coded one): the download reads on, and closes it. Asking again
            # would fetch it a second time, and a one-time link not at all.
            opening = Opening(response, stack.pop_all().close, end=span.end)
        elif span.ranged and not encoded:
            drain(response)  # one byte: read it, and the connection carries the download next
        # The version the download is of: a strong ETag, else Last-Modified (If-Range takes either).
        return Probed(
            str(response.url),
            span.total,
            etag or modified,
            span.ranged and not encoded,
            opening,
            None if encoded else served_sha256(response.headers),
        )


def _first_bytes(response: httpx2.Response, *, what: str, credentials: Credentials) -> Span:
    """What the probe's answer holds; an empty file's 416 (``bytes */0``) as an empty whole file:
    it has no byte 0 to give (RFC 9110 §14.1.1)."""
    if response.status_code in (200, 206):
        return promised(response, what=what)
    empty = content_range_total(response.headers.get("Content-Range")) == 0
    if response.status_code == 416 and empty:
        return Span(0, 0, 0, ranged=False)
    raise error_for_status(response, what=what, credentials=credentials)


def validators(response: httpx2.Response) -> tuple[str | None, str | None]:
    """The strong ETag (§13.1.5) and the Last-Modified a second or more before the answer's Date
    (§8.8.2.2: else a file changed twice within its second has one date for two versions)."""
    etag, modified = response.headers.get("ETag"), response.headers.get("Last-Modified")
    strong = etag if etag and not etag.startswith("W/") else None
    if not modified or _seconds(response.headers.get("Date")) < _seconds(modified) + 1:
        modified = None
    return strong, modified


def _seconds(date: str | None) -> float:
    try:
        return email.utils.parsedate_to_datetime(date).timestamp() if date else -math.inf
    except (TypeError, ValueError, IndexError, OverflowError):
        return -math.inf


def check_version(
    state: DownloadState, response: httpx2.Response, *, total: int | None, whole: bool = False
) -> None:
    """The first answer fixes the file's version, later ones must be of it or ``SourceChanged`` (the
    file's size: ``total``); ``whole``: a 200 on the only stream, whose new version is taken at
    once. A validator left out is no contradiction (proxies strip)."""
    etag, modified = validators(response)
    sent = response.headers.get("Last-Modified")  # as sent, usable or not
    with state.lock:
        changed = state.validator is not None and _differs(state, etag, modified, sent)
        if changed and not whole:
            raise SourceChanged(new_size=total, seen=_change_seen(state, (etag, modified, sent)))
        if changed:
            state.count_change()
            state.job.retries.add("the file changed on the server, took the new version")
        if state.validator is None or changed:
            take_version(state, (etag, modified, sent))
        else:
            state.etag, state.last_modified = state.etag or etag, state.last_modified or modified
            state.modified_seen = state.modified_seen or sent


def take_version(state: DownloadState, version: Version) -> None:
    """(Under the lock) the version the file is of from now on: an answer's strong ETag, usable
    date and date as sent (``validators``); a start over is bound to the version that caused it,
    so that another one is a second change, however few answers that version lasted."""
    etag, modified, sent = version
    state.etag, state.last_modified, state.modified_seen = etag, modified, sent
    state.validator = etag or modified


def _change_seen(state: DownloadState, seen: Version) -> Version:
    """(Under the lock) an answer of another version: the attempt starts over on the first such
    one its streams read, and a second one besides it is one change more (each stream in flight
    reads an answer; counted once, however many read it)."""
    versions = state.changed_to
    if not versions:
        versions.append(seen)
    elif len(versions) == 1 and not _same(versions[0], seen):
        versions.append(seen)
        state.count_change()
    return versions[0]


def _same(one: Version, other: Version) -> bool:
    """Whether two answers may be of one version: two strong ETags decide, else two dates as sent;
    a validator left out is no contradiction (proxies strip)."""
    if one[0] and other[0]:
        return one[0] == other[0]
    return not (one[2] and other[2]) or one[2] == other[2]


def _differs(
    state: DownloadState, etag: str | None, modified: str | None, sent: str | None
) -> bool:
    """Whether an answer's validators name another version than the one the file is of."""
    # two strong ETags decide alone: equal means byte-identical (RFC 9110 §8.8.3)
    if etag and state.etag:
        return etag != state.etag
    # A date too close to its answer's Date cannot prove two answers are one version, but a date
    # that differs proves they are not: a server ignoring If-Range with a fresh date is another
    # version.
    if sent and state.modified_seen and sent != state.modified_seen:
        return True
    return bool(modified and state.last_modified and modified != state.last_modified)


def check_range(state: DownloadState, span: Span, offset: int, asked_end: int | None) -> int:
    """A range answer must start at ``offset``, end before ``asked_end`` and be of the file's size;
    returns where it ends (its length against its headers: ``promised``)."""
    label = state.job.label
    if span.start != offset:
        raise NetworkError(f"{label}: asked for bytes from {offset}, server sent from {span.start}")
    check_size(state, span.total)
    if span.end is None or (asked_end is not None and span.end > asked_end):
        asked = f"bytes {offset}-{'' if asked_end is None else asked_end - 1}"
        raise NetworkError(
            f"{label}: server sent bytes past the requested range ({span.shown}; asked for {asked})"
        )
    return span.end


def check_size(state: DownloadState, total: int | None) -> None:
    """The file's size an answer states (a whole answer's length, else its Content-Range total)
    is the known one.
    """
    if total is not None and state.size is not None and total != state.size:
        raise size_differs(state, total)


def size_differs(state: DownloadState, actual: int) -> Exception:
    """A pinned size that the server contradicts is an integrity failure; a probed one means a
    new version.
    """
    if not state.job.size_pinned:
        return SourceChanged(new_size=actual)
    return HashMismatch("size", f"{state.size} bytes", f"{actual} bytes (server)")
