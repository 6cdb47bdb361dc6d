"""The read-only S3 API over a Shelf: ListBuckets, HeadBucket, GetBucketLocation, ListObjectsV2
(and V1), HeadObject, GetObject with one range. Answers are values (status, headers, body or a
slice of a verified file); the server writes them. Every refusal is an S3 error document."""

from __future__ import annotations

import base64
import binascii
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from urllib.parse import quote
from xml.sax.saxutils import escape

from mdl.endpoint.shelf import NotServed, Shelf, ShelfObject

MAX_KEYS = 1000  # the most one listing page holds, as S3's
LOOK_AGAIN = 0.1  # seconds before a file that changed under a GET is looked at again
# ASCII digits (``\d`` would read other scripts' digits too); a number past 19 digits is past
# any object's end (never ``int()`` of it: Python refuses 4,300 digits and more)
_RANGE = re.compile(r"bytes=([0-9]*)-([0-9]*)")
_BIG = 10**19
_COUNT = re.compile(r"[0-9]{1,9}")
_XML = "application/xml"
_NS = 'xmlns="http://s3.amazonaws.com/doc/2006-03-01/"'
# a continuation token is the last key listed, so a listing goes on where it stopped
_TOKEN_MAX = 4096


@dataclass
class Answer:
    """One response: a body, or ``count`` bytes of the verified file ``fd`` from ``offset``."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    fd: int | None = None
    offset: int = 0
    count: int = 0
    code: str | None = None  # the S3 error code, for the log line of a client error
    message: str = ""


def s3_error(status: int, code: str, message: str, resource: str = "") -> Answer:
    """An S3 error document (a HEAD's is sent without its body)."""
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n<Error>'
        f"<Code>{code}</Code><Message>{escape(message)}</Message>"
        f"<Resource>{escape(resource)}</Resource><RequestId>{_request_id()}</RequestId></Error>"
    ).encode()
    return Answer(status, {"Content-Type": _XML}, body, code=code, message=message)


def _request_id() -> str:
    return f"{time.time_ns():x}"


@dataclass(frozen=True)
class BucketFacts:
    """The endpoint's fixed facts: its one bucket, how long a GET waits for bytes to verify."""

    bucket: str
    wait: float
    region: str = "us-east-1"


def answer(
    endpoint: BucketFacts,
    shelf: Shelf,
    *,
    method: str,
    bucket: str,
    key: str,
    params: Mapping[str, str],
    headers: Mapping[str, str],
    cancel: threading.Event,
) -> Answer:
    """The answer to one authenticated request (path-style: bucket and key already split)."""
    resource = f"/{bucket}/{key}" if key else f"/{bucket}"
    if method not in ("GET", "HEAD"):
        return s3_error(405, "MethodNotAllowed", "this endpoint is read-only", resource)
    if not bucket:
        return _list_buckets(endpoint)
    if bucket != endpoint.bucket:
        return s3_error(404, "NoSuchBucket", "The specified bucket does not exist", resource)
    try:
        shelf.settle(deadline=time.monotonic() + endpoint.wait, cancel=cancel)
    except NotServed as exc:
        return s3_error(exc.status, exc.code, exc.message, resource)
    if not key:
        if "location" in params:
            return _xml(f"<LocationConstraint {_NS}>{endpoint.region}</LocationConstraint>")
        if method == "HEAD":
            return Answer(200, {"x-amz-bucket-region": endpoint.region})
        return _list_objects(endpoint, shelf, params)
    try:
        return _object(endpoint, shelf, method, key, headers, cancel)
    except NotServed as exc:
        return s3_error(exc.status, exc.code, exc.message, resource)


def _list_buckets(endpoint: BucketFacts) -> Answer:
    return _xml(
        f"<ListAllMyBucketsResult {_NS}><Owner><ID>mdl</ID><DisplayName>mdl</DisplayName></Owner>"
        f"<Buckets><Bucket><Name>{endpoint.bucket}</Name>"
        "<CreationDate>2026-01-01T00:00:00.000Z</CreationDate></Bucket></Buckets>"
        "</ListAllMyBucketsResult>"
    )


def _xml(text: str) -> Answer:
    return Answer(
        200, {"Content-Type": _XML}, f'<?xml version="1.0" encoding="UTF-8"?>\n{text}'.encode()
    )


def _list_objects(endpoint: BucketFacts, shelf: Shelf, params: Mapping[str, str]) -> Answer:
    """ListObjectsV2 (``list-type=2``), else V1: prefix, delimiter, max-keys, a continuation
    token (V2) or marker (V1), start-after, ``encoding-type=url``."""
    v2 = params.get("list-type") == "2"
    prefix, delimiter = params.get("prefix", ""), params.get("delimiter", "")
    raw_max = params.get("max-keys", str(MAX_KEYS))
    if not _COUNT.fullmatch(raw_max):
        return s3_error(400, "InvalidArgument", "max-keys must be a whole number")
    most = min(int(raw_max), MAX_KEYS)
    token = params.get("continuation-token")
    after = params.get("start-after", "") if v2 else params.get("marker", "")
    if token is not None:
        try:
            after = _untoken(token)
        except ValueError:
            return s3_error(400, "InvalidArgument", "The continuation token provided is incorrect")
    page = _page(shelf.objects(), prefix=prefix, delimiter=delimiter, after=after, most=most)
    shown = _shown_as(params.get("encoding-type"))
    fields = [
        f"<Name>{endpoint.bucket}</Name>",
        f"<Prefix>{escape(shown(prefix))}</Prefix>",
        f"<MaxKeys>{most}</MaxKeys>",
        f"<IsTruncated>{'true' if page.truncated else 'false'}</IsTruncated>",
    ]
    if delimiter:
        fields.append(f"<Delimiter>{escape(shown(delimiter))}</Delimiter>")
    if params.get("encoding-type") == "url":
        fields.append("<EncodingType>url</EncodingType>")
    if v2:
        fields.append(f"<KeyCount>{len(page.contents) + len(page.prefixes)}</KeyCount>")
        if token is not None:
            fields.append(f"<ContinuationToken>{escape(token)}</ContinuationToken>")
        if params.get("start-after"):
            fields.append(f"<StartAfter>{escape(shown(params['start-after']))}</StartAfter>")
        if page.truncated:
            fields.append(f"<NextContinuationToken>{_token(page.last)}</NextContinuationToken>")
    else:
        fields.append(f"<Marker>{escape(shown(after))}</Marker>")
        if page.truncated:
            fields.append(f"<NextMarker>{escape(shown(page.last))}</NextMarker>")
    body = "".join(fields) + _items(page, shown)
    return _xml(f"<ListBucketResult {_NS}>{body}</ListBucketResult>")


@dataclass
class _Page:
    """One listing page: its objects and common prefixes, whether more follow, and where the next
    page starts after."""

    contents: list[ShelfObject] = field(default_factory=list)
    prefixes: list[str] = field(default_factory=list)
    truncated: bool = False
    last: str = ""


def _page(
    objects: list[ShelfObject], *, prefix: str, delimiter: str, after: str, most: int
) -> _Page:
    """The page of ``objects`` (sorted by key) after ``after``: at most ``most`` entries, keys
    under a delimiter rolled up into their common prefix (one entry each)."""
    page = _Page()
    for obj in objects:
        if obj.size is None or not obj.key.startswith(prefix) or obj.key.encode() <= after.encode():
            continue
        rolled = _rolled_up(obj.key, prefix, delimiter)
        if rolled is not None and (
            (page.prefixes and page.prefixes[-1] == rolled) or rolled.encode() <= after.encode()
        ):
            continue  # this common prefix is listed already (on this page or an earlier one)
        if len(page.contents) + len(page.prefixes) == most:
            page.truncated = True
            break
        if rolled is None:
            page.contents.append(obj)
            page.last = obj.key
        else:
            page.prefixes.append(rolled)
            page.last = rolled + "\U0010ffff"  # past every key under it
    return page


def _shown_as(encoding: str | None) -> Callable[[str], str]:
    """How keys are written: URL-encoded when the client asked (``encoding-type=url``)."""
    if encoding == "url":
        return lambda text: quote(text, safe="/")
    return lambda text: text


def _items(page: _Page, shown: Callable[[str], str]) -> str:
    return "".join(
        f"<Contents><Key>{escape(shown(obj.key))}</Key>"
        f"<LastModified>{_iso(obj.mtime_ns)}</LastModified><ETag>{escape(obj.etag)}</ETag>"
        f"<Size>{obj.size}</Size><StorageClass>STANDARD</StorageClass></Contents>"
        for obj in page.contents
    ) + "".join(
        f"<CommonPrefixes><Prefix>{escape(shown(p))}</Prefix></CommonPrefixes>"
        for p in page.prefixes
    )


def _rolled_up(key: str, prefix: str, delimiter: str) -> str | None:
    """The common prefix ``key`` rolls up into (None: it is listed itself)."""
    if not delimiter:
        return None
    at = key.find(delimiter, len(prefix))
    return None if at < 0 else key[: at + len(delimiter)]


def _token(last: str) -> str:
    return base64.urlsafe_b64encode(last.encode()).decode()


def _untoken(token: str) -> str:
    if len(token) > _TOKEN_MAX:
        raise ValueError(token)
    try:
        return base64.b64decode(token.encode(), altchars=b"-_", validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise ValueError(token) from None


def _iso(mtime_ns: int | None) -> str:
    when = datetime.fromtimestamp((mtime_ns or 0) / 1e9, tz=UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _object(
    endpoint: BucketFacts,
    shelf: Shelf,
    method: str,
    key: str,
    headers: Mapping[str, str],
    cancel: threading.Event,
) -> Answer:
    found = shelf.lookup(key)
    if found is None:
        raise NotServed(404, "NoSuchKey", "The specified key does not exist.")
    if method == "HEAD" and found.size is not None and not found.verified:
        # the size is known before the bytes arrive (the record expects it): a loader plans now
        return Answer(200, _object_headers(found, found.size))
    deadline = time.monotonic() + endpoint.wait
    while True:
        obj = shelf.verified(key, deadline=deadline, cancel=cancel)
        size = obj.size or 0
        precondition = _precondition(obj, headers)
        if precondition is not None:
            return precondition
        span = _range(headers.get("range"), size)
        if span is None:
            return s3_error(
                416, "InvalidRange", "The requested range is not satisfiable", f"/{key}"
            )
        if method == "HEAD":
            return Answer(200, _object_headers(obj, size))
        fd = shelf.open(obj)
        if fd is None:  # changed (or unreadable) since it was looked at: look again, in time
            if time.monotonic() >= deadline or cancel.wait(LOOK_AGAIN):
                raise NotServed(
                    503, "ServiceUnavailable", f"{key} is not the file that verified: try again"
                )
            continue
        first, last, partial = span
        out = _object_headers(obj, last - first + 1, whole=not partial)
        if partial:
            out["Content-Range"] = f"bytes {first}-{last}/{size}"
        return Answer(206 if partial else 200, out, fd=fd, offset=first, count=last - first + 1)


def _object_headers(obj: ShelfObject, length: int, *, whole: bool = False) -> dict[str, str]:
    headers = {
        "Content-Length": str(length),
        "Content-Type": "application/octet-stream",
        "ETag": obj.etag,
        "Last-Modified": format_datetime(
            datetime.fromtimestamp((obj.mtime_ns or 0) / 1e9, tz=UTC), usegmt=True
        ),
        "Accept-Ranges": "bytes",
    }
    if whole and obj.sha256 is not None:
        # the whole object's checksum on a whole-object answer only: boto3 checks it against the
        # body, and refuses it on a ranged one
        headers["x-amz-checksum-sha256"] = base64.b64encode(bytes.fromhex(obj.sha256)).decode()
        headers["x-amz-checksum-type"] = "FULL_OBJECT"
    return headers


def _precondition(obj: ShelfObject, headers: Mapping[str, str]) -> Answer | None:
    match, none_match = headers.get("if-match"), headers.get("if-none-match")
    if match is not None and match.strip() not in ("*", obj.etag):
        return s3_error(
            412,
            "PreconditionFailed",
            "At least one of the pre-conditions you specified did not hold",
        )
    if none_match is not None and none_match.strip() in ("*", obj.etag):
        return Answer(304, {"ETag": obj.etag})
    return None


def _number(text: str) -> str:
    """A range's number as text, one past 19 digits read as 10**19 (past every object's end)."""
    return str(_BIG) if len(text) > 19 else text


def _range(header: str | None, size: int) -> tuple[int, int, bool] | None:
    """(first, last, partial) of the bytes asked for (RFC 9110 14.1.2), None: not satisfiable. A
    header that is not one byte range is ignored (the whole object), as S3 does."""
    if header is None:
        return (0, size - 1, False) if size else (0, -1, False)
    found = _RANGE.fullmatch(header.strip())
    if found is None or found.group(1) == found.group(2) == "":
        return (0, size - 1, False) if size else (0, -1, False)
    start, end = (_number(text) for text in found.groups())
    if start == "":  # the last N bytes
        count = int(end)
        if count == 0 or size == 0:
            return None
        return max(0, size - count), size - 1, True
    first = int(start)
    last = size - 1 if end == "" else min(int(end), size - 1)
    if first >= size or (end != "" and int(end) < first):
        return None
    return first, last, True
