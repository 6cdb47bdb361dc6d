"""The read-only S3 API over a Shelf: ListBuckets, HeadBucket, GetBucketLocation, ListObjectsV2
(and V1), HeadObject, GetObject (one range or part 1, conditional) and GetObjectAttributes; any
other sub-resource is 501 NotImplemented. Answers are values (status, headers, body, a slice of
a verified file, or the ranges of one still being fetched that verified); the server writes them.
Every refusal is an S3 error document."""

from __future__ import annotations

import base64
import binascii
import os
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime
from urllib.parse import quote
from xml.sax.saxutils import escape

from mdl.buckets.s3 import b64_of_hex
from mdl.endpoint.shelf import Early, NotServed, Shelf, ShelfObject
from mdl.errors import UnsafePathError
from mdl.wait import Wait

MAX_KEYS = 1000  # the most one listing page holds, as S3's
# ASCII digits (``\d`` would read other scripts' digits too); a number past 19 digits is past
# any object's end (never ``int()`` of it: Python refuses 4,300 digits and more)
_RANGE = re.compile(r"bytes=([0-9]*)-([0-9]*)")
_BIG = 10**19
_COUNT = re.compile(r"[0-9]{1,9}")
_XML = "application/xml"
_NS = 'xmlns="http://s3.amazonaws.com/doc/2006-03-01/"'
# a continuation token is the last key listed, so a listing goes on where it stopped
_TOKEN_MAX = 4096
_PART = re.compile(r"[0-9]{1,5}")
# the query parameters that override a GetObject's (and HeadObject's) response headers
_OVERRIDES = {
    "response-content-type": "Content-Type",
    "response-content-language": "Content-Language",
    "response-expires": "Expires",
    "response-cache-control": "Cache-Control",
    "response-content-disposition": "Content-Disposition",
    "response-content-encoding": "Content-Encoding",
}
# the query parameters each read takes (S3's API reference; a signature's own are the auth
# part's, never here). Another name is a sub-resource this endpoint does not implement (one of
# _SUBRESOURCES, or any name without a value: acl, tagging, policy, versions, uploads, ...): 501
# NotImplemented, never the object or the listing. A name with a value that S3 does not read
# (``?t=1``, a cache buster) is ignored, as S3 ignores it; so is a header a presigner hoisted into
# the query (``X-Amz-Content-Sha256``, JavaScript's v3). ``x-id`` is the operation's name some
# SDKs add (JavaScript's v3).
_OBJECT_READ = frozenset({"partNumber", "versionId", "x-id", *_OVERRIDES})
_TAKES = {
    "ListBuckets": frozenset({"max-buckets", "continuation-token", "prefix", "bucket-region",
                              "x-id"}),
    "HeadBucket": frozenset({"x-id"}),
    "GetBucketLocation": frozenset({"location", "x-id"}),
    "ListObjects": frozenset({"list-type", "prefix", "delimiter", "max-keys", "continuation-token",
                              "start-after", "marker", "encoding-type", "fetch-owner", "x-id"}),
    "GetObject": _OBJECT_READ,
    "HeadObject": _OBJECT_READ,
    "GetObjectAttributes": frozenset({"attributes", "versionId", "x-id"}),
}  # fmt: skip
# S3's sub-resources and operation parameters that take a value (a read of one is never the object
# or the listing)
_SUBRESOURCES = frozenset(
    {"accelerate", "acl", "analytics", "attributes", "cors", "delete", "encryption",
     "intelligent-tiering", "inventory", "legal-hold", "lifecycle", "list-type", "location",
     "logging", "metadataConfiguration", "metadataTable", "metrics", "notification",
     "object-lock", "ownershipControls", "partNumber", "policy", "policyStatus",
     "publicAccessBlock", "renameObject", "replication", "requestPayment", "restore",
     "retention", "select", "select-type", "session", "tagging", "torrent", "uploadId", "uploads",
     "versionId", "versioning", "versions", "website", "x-id", "part-number-marker", "max-parts",
     "key-marker", "upload-id-marker", "version-id-marker", "max-uploads"}
)  # fmt: skip
# what GetObjectAttributes can be asked for (``x-amz-object-attributes``)
ATTRIBUTES = ("ETag", "Checksum", "ObjectParts", "StorageClass", "ObjectSize")


@dataclass
class Answer:
    """One response: a body, or ``count`` bytes of the verified file ``fd`` from ``offset``, or
    ``count`` bytes released ``early`` (closed once sent)."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    fd: int | None = None
    offset: int = 0
    count: int = 0
    early: Early | None = None
    code: str | None = None  # the S3 error code, for the log line of a client error
    message: str = ""

    @property
    def ordinary(self) -> bool:
        """A refusal that is S3's ordinary answer to an ordinary question (a HEAD of a "folder",
        a conditional or ranged GET answered as asked), not a sign that anything is wrong."""
        return self.code in _ORDINARY

    @property
    def length(self) -> int:
        """The bytes its body sends."""
        return len(self.body) if self.fd is None and self.early is None else self.count

    def close(self) -> None:
        """Let go of what it holds of the object (once sent, or not to be)."""
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        if self.early is not None:
            self.early.close()
            self.early = None


# what clients ask every day and handle themselves: a key that is not there ("is this a
# folder?"), a precondition that did not hold, a range past the end (how the AWS CRT finds an
# empty object)
_ORDINARY = frozenset({"NoSuchKey", "PreconditionFailed", "InvalidRange", "InvalidPartNumber"})


def s3_error(status: int, code: str, message: str, resource: str = "", **more: object) -> Answer:
    """An S3 error document (a HEAD's is sent without its body); ``more`` are its elements past
    Code, Message and Resource (``ActualObjectSize=0``)."""
    extra = "".join(f"<{name}>{escape(str(value))}</{name}>" for name, value in more.items())
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n<Error>'
        f"<Code>{code}</Code><Message>{escape(message)}</Message>"
        f"<Resource>{escape(resource)}</Resource>{extra}<RequestId>{request_id()}</RequestId>"
        "</Error>"
    ).encode()
    return Answer(status, {"Content-Type": _XML}, body, code=code, message=message)


def _unsatisfiable(size: int, resource: str, *, code: str = "InvalidRange") -> Answer:
    """416: what was asked is past the object's end; every one says the object's size, in the
    body and in ``Content-Range`` (the AWS CRT knows an empty object only by
    ``<ActualObjectSize>0``)."""
    refused = s3_error(
        416, code, "The requested range is not satisfiable", resource, ActualObjectSize=size
    )
    refused.headers["Content-Range"] = f"bytes */{size}"
    return refused


def request_id() -> str:
    """A request's id, as S3 sends it (its header and its error document's RequestId)."""
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
    operation = _operation(method, bucket, key, params)
    refused = _refused_query(operation, params, resource)
    if refused is not None:
        return refused
    if not bucket:
        return _list_buckets(endpoint)
    if bucket != endpoint.bucket:
        return s3_error(404, "NoSuchBucket", "The specified bucket does not exist", resource)
    try:
        shelf.settle(Wait.within(endpoint.wait, cancel))
        return _read(operation, endpoint, shelf, key=key, params=params, headers=headers,
                     cancel=cancel)  # fmt: skip
    except NotServed as exc:
        return s3_error(exc.status, exc.code, exc.message, resource)
    except UnsafePathError as exc:  # a link or a co-tenant's folder on the way: said, not served
        return s3_error(403, "AccessDenied", exc.message, resource)


def _refused_query(operation: str, params: Mapping[str, str], resource: str) -> Answer | None:
    """501 for a query parameter ``operation`` does not take (a sub-resource not implemented),
    404 for a version other than an unversioned bucket's one (``null``); None: read on."""
    unknown = next(
        (name for name, value in params.items()
         if name not in _TAKES[operation] and _sub_resource(name, value)),
        None,
    )  # fmt: skip
    if unknown is None and params.get("x-id", operation) not in (operation, f"{operation}V2"):
        unknown = f"x-id={params['x-id']}"  # another read at the same target (V2: ListObjectsV2)
    if unknown is not None:
        return s3_error(
            501,
            "NotImplemented",
            f"{unknown[:64]!r} is not a parameter of {operation}, or a sub-resource this "
            "endpoint does not implement (it serves objects and listings, read-only)",
            resource,
        )
    if params.get("versionId", "null") != "null":
        return s3_error(404, "NoSuchVersion", "The specified version does not exist.", resource)
    return None


def _sub_resource(name: str, value: str) -> bool:
    """Whether a query parameter no read here takes asks for something else (S3 reads it as a
    sub-resource), rather than one S3 ignores (a cache buster, a header hoisted by a presigner)."""
    if name.lower().startswith("x-amz-"):
        return False
    return value == "" or name in _SUBRESOURCES


def _read(
    operation: str,
    endpoint: BucketFacts,
    shelf: Shelf,
    *,
    key: str,
    params: Mapping[str, str],
    headers: Mapping[str, str],
    cancel: threading.Event,
) -> Answer:
    """The answer of a read of the endpoint's bucket (NotServed: its S3 error)."""
    if operation == "GetBucketLocation":
        return _xml(f"<LocationConstraint {_NS}>{endpoint.region}</LocationConstraint>")
    if operation == "HeadBucket":
        return Answer(200, {"x-amz-bucket-region": endpoint.region})
    if operation == "ListObjects":
        return _list_objects(endpoint, shelf, params)
    if operation == "GetObjectAttributes":
        return _attributes(endpoint, shelf, key, headers, cancel)
    method = "HEAD" if operation == "HeadObject" else "GET"
    return _object(endpoint, shelf, method, key, params, headers, cancel)


def _operation(method: str, bucket: str, key: str, params: Mapping[str, str]) -> str:
    """The read a request asks for, by its method, its target and its sub-resource."""
    if not bucket:
        return "ListBuckets"
    if not key:
        if method == "HEAD":
            return "HeadBucket"
        return "GetBucketLocation" if "location" in params else "ListObjects"
    if method == "HEAD":
        return "HeadObject"
    return "GetObjectAttributes" if "attributes" in params else "GetObject"


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
    after = _listed_after(params, v2=v2)
    if after is None:
        return s3_error(400, "InvalidArgument", "The continuation token provided is incorrect")
    most = min(int(raw_max), MAX_KEYS)
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
    fields += _v2_fields(params, page, shown) if v2 else _v1_fields(after, page, shown)
    body = "".join(fields) + _items(page, shown)
    return _xml(f"<ListBucketResult {_NS}>{body}</ListBucketResult>")


def _listed_after(params: Mapping[str, str], *, v2: bool) -> str | None:
    """The key a listing page starts after: a V2's continuation token (None: not one this
    endpoint gave), else its ``start-after``; a V1's ``marker``."""
    token = params.get("continuation-token")
    if token is None:
        return params.get("start-after", "") if v2 else params.get("marker", "")
    try:
        return _untoken(token)
    except ValueError:
        return None


def _v2_fields(params: Mapping[str, str], page: _Page, shown: Callable[[str], str]) -> list[str]:
    """What only a ListObjectsV2 page says: its count, the token it was asked with and the next
    one, its ``start-after``."""
    fields = [f"<KeyCount>{len(page.contents) + len(page.prefixes)}</KeyCount>"]
    if "continuation-token" in params:
        fields.append(
            f"<ContinuationToken>{escape(params['continuation-token'])}</ContinuationToken>"
        )
    if params.get("start-after"):
        fields.append(f"<StartAfter>{escape(shown(params['start-after']))}</StartAfter>")
    if page.truncated:
        fields.append(f"<NextContinuationToken>{_token(page.last)}</NextContinuationToken>")
    return fields


def _v1_fields(after: str, page: _Page, shown: Callable[[str], str]) -> list[str]:
    """What only a V1 listing page says: its marker, and the next one."""
    fields = [f"<Marker>{escape(shown(after))}</Marker>"]
    if page.truncated:
        fields.append(f"<NextMarker>{escape(shown(page.last))}</NextMarker>")
    return fields


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
    for obj in objects if most else ():  # (max-keys=0: an empty page, nothing more to ask)
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
        f"<LastModified>{_iso(obj.modified)}</LastModified><ETag>{escape(obj.etag)}</ETag>"
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
    if not token or len(token) > _TOKEN_MAX:  # (every token this endpoint gives names a key)
        raise ValueError(token)
    try:
        return base64.b64decode(token.encode(), altchars=b"-_", validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise ValueError(token) from None


def _iso(modified: int) -> str:
    return datetime.fromtimestamp(modified, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _object(
    endpoint: BucketFacts,
    shelf: Shelf,
    method: str,
    key: str,
    params: Mapping[str, str],
    headers: Mapping[str, str],
    cancel: threading.Event,
) -> Answer:
    """HeadObject, GetObject: one answer, from the object as soon as what it says holds (a HEAD:
    its size known; a GET: its ETag too), then, for a GET that sends bytes, what the shelf gives
    of them (the verified file, or the range asked, released early)."""
    part = _part_number(params, headers)
    overrides = _overrides(params)
    wait = Wait.within(endpoint.wait, cancel)
    obj = shelf.described(key, etag=method == "GET", wait=wait)
    reply = _answer_for(obj, part, headers, overrides, method)
    if method == "HEAD" or reply.status not in (200, 206):
        return reply
    span = (reply.offset, reply.offset + reply.count) if reply.status == 206 else None
    sent = shelf.read(obj, span, wait)
    if isinstance(sent, Early):
        reply.early = sent
    else:
        reply.fd = sent
    return reply


def _answer_for(
    obj: ShelfObject,
    part: int | None,
    headers: Mapping[str, str],
    overrides: Mapping[str, str],
    method: str,
) -> Answer:
    """The answer about ``obj`` (its bytes not opened yet): 304 or 412 by its preconditions,
    416 for a range (or part) past its end, else 200 or 206 with its headers."""
    precondition = _precondition(obj, headers)
    if precondition is not None:
        return precondition
    size = obj.size or 0
    span = _range(_asked_range(obj, headers), size) if part is None else _part(part, size)
    if span is None:
        return _unsatisfiable(
            size, f"/{obj.key}", code=("InvalidRange" if part is None else "InvalidPartNumber")
        )
    first, last, partial = span
    checksum = method == "GET" or headers.get("x-amz-checksum-mode", "").upper() == "ENABLED"
    out = _object_headers(obj, last - first + 1, checksum=checksum and not partial)
    if partial:
        out["Content-Range"] = f"bytes {first}-{last}/{size}"
    out.update(overrides)
    return Answer(206 if partial else 200, out, offset=first, count=last - first + 1)


def _asked_range(obj: ShelfObject, headers: Mapping[str, str]) -> str | None:
    """The Range to answer: none when an ``If-Range`` names another version than ``obj`` (RFC
    9110 13.1.5: its entity tag compared strongly, or its date the object's Last-Modified
    exactly): the whole object then, never a part of other bytes than the client holds."""
    condition = headers.get("if-range")
    if condition is None:
        return headers.get("range")
    condition = condition.strip()
    if condition.startswith(('"', "W/")):
        same = condition == obj.etag
    else:
        since = http_date(condition)
        same = obj.modified == since
    return headers.get("range") if same else None


def _part_number(params: Mapping[str, str], headers: Mapping[str, str]) -> int | None:
    """The part asked for (``partNumber``), None: none; NotServed when it is not one S3 reads."""
    part = params.get("partNumber")
    if part is None:
        return None
    if "range" in headers:
        raise NotServed(
            400, "InvalidRequest", "Cannot specify both Range header and partNumber query parameter"
        )
    if not _PART.fullmatch(part) or not 1 <= int(part) <= 10000:
        raise NotServed(
            400, "InvalidArgument", "Part number must be an integer between 1 and 10000, inclusive"
        )
    return int(part)


def _part(part: int, size: int) -> tuple[int, int, bool] | None:
    """A part's bytes: an object mdl serves is one part, 1 (all of it, 206; of an empty object,
    nothing: 200, what the AWS CRT asks once a range told it the object is empty)."""
    return (0, size - 1, size > 0) if part == 1 else None


def _overrides(params: Mapping[str, str]) -> dict[str, str]:
    """The response headers the query overrides (``response-content-type``, ...): printable
    ASCII only, never a line break into the answer's headers."""
    asked = {name: params[name] for name in _OVERRIDES if name in params}
    for name, value in asked.items():
        if not (value.isascii() and value.isprintable()):
            raise NotServed(400, "InvalidArgument", f"{name} must be printable ASCII")
    return {_OVERRIDES[name]: value for name, value in asked.items()}


def _object_headers(obj: ShelfObject, length: int, *, checksum: bool = False) -> dict[str, str]:
    headers = {
        "Content-Length": str(length),
        "Content-Type": "application/octet-stream",
        "ETag": obj.etag,
        "Last-Modified": _last_modified(obj.modified),
        "Accept-Ranges": "bytes",
    }
    if checksum and obj.sha256 is not None:
        # the whole object's checksum on a whole-object answer only: boto3 checks it against the
        # body, and refuses it on a ranged one
        headers["x-amz-checksum-sha256"] = b64_of_hex(obj.sha256)
        headers["x-amz-checksum-type"] = "FULL_OBJECT"
    return headers


def _precondition(obj: ShelfObject, headers: Mapping[str, str]) -> Answer | None:
    """412 or 304 by the request's preconditions, in RFC 9110 13.2.2's order (S3's too): If-Match,
    else If-Unmodified-Since; then If-None-Match, else If-Modified-Since."""
    if _fails(obj, headers):
        return s3_error(
            412,
            "PreconditionFailed",
            "At least one of the pre-conditions you specified did not hold",
            f"/{obj.key}",
        )
    if _unchanged(obj, headers):
        return Answer(304, {"ETag": obj.etag, "Last-Modified": _last_modified(obj.modified)})
    return None


def _fails(obj: ShelfObject, headers: Mapping[str, str]) -> bool:
    match = headers.get("if-match")
    if match is not None:  # (If-Unmodified-Since is then ignored)
        return not _etag_listed(obj.etag, match, weak=False)
    since = http_date(headers.get("if-unmodified-since"))
    return since is not None and obj.modified > since


def _unchanged(obj: ShelfObject, headers: Mapping[str, str]) -> bool:
    none_match = headers.get("if-none-match")
    if none_match is not None:  # (If-Modified-Since is then ignored)
        return _etag_listed(obj.etag, none_match, weak=True)
    since = http_date(headers.get("if-modified-since"))
    return since is not None and obj.modified <= since


def _etag_listed(etag: str, header: str, *, weak: bool) -> bool:
    """Whether ``header`` (``*`` or a list of entity tags) names ``etag``: strong comparison
    for If-Match, weak (``W/`` ignored) for If-None-Match (RFC 9110 8.8.3.2)."""
    tags = [tag.strip() for tag in header.split(",")]
    if weak:
        tags = [tag.removeprefix("W/") for tag in tags]
    return tags == ["*"] or etag in tags


def http_date(text: str | None) -> int | None:
    """An HTTP-date (RFC 9110 5.6.7: IMF-fixdate, or the obsolete RFC 850 and asctime forms) as
    whole seconds since the epoch; None: absent or not one (the header is then ignored, as RFC
    9110 says). A date without a zone is UTC (HTTP's dates are GMT)."""
    if text is None or len(text) > 64:
        return None
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp())


def _last_modified(modified: int) -> str:
    """``Last-Modified``: one whole second for one ETag (``ShelfObject.modified``: what the dates
    of the preconditions are compared with)."""
    return format_datetime(datetime.fromtimestamp(modified, tz=UTC), usegmt=True)


def _attributes(
    endpoint: BucketFacts,
    shelf: Shelf,
    key: str,
    headers: Mapping[str, str],
    cancel: threading.Event,
) -> Answer:
    """GetObjectAttributes: what HeadObject says (its size known before the bytes arrive, else
    once they verified), as XML: ``ETag`` (unquoted, as S3 writes it there), ``Checksum`` (the
    sha256), ``StorageClass``, ``ObjectSize``; ``ObjectParts`` only of a multipart upload, never
    here."""
    wanted = object_attributes(headers.get("x-amz-object-attributes"))
    if wanted is None:
        raise NotServed(
            400,
            "InvalidArgument",
            "x-amz-object-attributes must list some of " + ", ".join(ATTRIBUTES),
        )
    obj = shelf.described(key, etag=False, wait=Wait.within(endpoint.wait, cancel))
    fields = []
    if "ETag" in wanted:
        fields.append(f"<ETag>{escape(obj.etag.strip(chr(34)))}</ETag>")
    if "Checksum" in wanted and obj.sha256 is not None:
        fields.append(
            f"<Checksum><ChecksumSHA256>{b64_of_hex(obj.sha256)}</ChecksumSHA256>"
            "<ChecksumType>FULL_OBJECT</ChecksumType></Checksum>"
        )
    if "StorageClass" in wanted:
        fields.append("<StorageClass>STANDARD</StorageClass>")
    if "ObjectSize" in wanted:
        fields.append(f"<ObjectSize>{obj.size or 0}</ObjectSize>")
    reply = _xml(
        f"<GetObjectAttributesResponse {_NS}>{''.join(fields)}</GetObjectAttributesResponse>"
    )
    reply.headers["Last-Modified"] = _last_modified(obj.modified)
    return reply


def object_attributes(header: str | None) -> frozenset[str] | None:
    """The attributes an ``x-amz-object-attributes`` header names (comma-separated); None: absent,
    empty, or naming one S3 does not have."""
    if header is None or len(header) > 256:
        return None
    names = [name.strip() for name in header.split(",")]
    if not all(name in ATTRIBUTES for name in names):
        return None
    return frozenset(names)


def _number(text: str) -> int | None:
    """A range's number (None: not given), one past 19 significant digits read as 10**19 (past
    every object's end)."""
    if text == "":
        return None
    digits = text.lstrip("0") or "0"  # (leading zeros are the same number: RFC 9110)
    return int(digits) if len(digits) <= 19 else _BIG


def _range(header: str | None, size: int) -> tuple[int, int, bool] | None:
    """(first, last, partial) of the bytes asked for (RFC 9110 14.1.2), None: not satisfiable. A
    header that is not one valid byte range (one ending before it starts, too: RFC 9110 14.1.1) is
    ignored (the whole object), as S3 does."""
    found = _RANGE.fullmatch(header.strip()) if header is not None else None
    if found is None or found.groups() == ("", ""):
        return 0, size - 1, False
    first, last = (_number(text) for text in found.groups())
    if first is None:  # the last N bytes
        return (max(0, size - last), size - 1, True) if last and size else None
    if last is not None and last < first:
        return 0, size - 1, False
    if first >= size:
        return None
    return first, size - 1 if last is None else min(last, size - 1), True
