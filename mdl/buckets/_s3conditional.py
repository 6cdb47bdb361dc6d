"""S3's small requests, the ones a mirror's leases make (``S3Conditional``): HEAD, a small GET,
conditional PUT and DELETE (``If-None-Match: *``, ``If-Match``; a ``409
ConditionalRequestConflict`` tried again), listings and the store's clock (its replies' ``Date``);
and the one PUT of an object (``put``), a lease's or an upload's, with its SHA-256 when one is
given."""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from mdl.buckets._parts import MiB
from mdl.buckets.protocol import Listed, Seen
from mdl.buckets.s3 import (
    S3Object,
    b64_of_hex,
    given,
    is_bucket_name,
    mark_of,
    mdl_metadata,
    parse_s3_uri,
    reply_code,
    reply_date,
    reply_headers,
    s3_client,
    s3_error,
    s3_errors,
)
from mdl.errors import MdlError, NetworkError, NotFoundError, UsageError
from mdl.redact import Secrets, printable

log = logging.getLogger("mdl.s3")

# 409 ConditionalRequestConflict: another conditional write to the key is in flight. S3 asks the
# client to retry; botocore's retries do not cover it.
CONFLICT_TRIES = 5
CONFLICT_BACKOFF = 0.1  # seconds before the second try, doubled for each one after
# Lease-sized requests (HEAD, GET of a lease, conditional PUT and DELETE of one, the clock) go on
# a client of their own whose tries all end within about a lease's term (5 s to connect and to
# read, 3 tries in all), where a part upload needs a minute to read: a renewal must fail rather
# than hang. The holder's deadline (lease.Renewing) keeps the lease safe either way.
SMALL_TIMEOUT = 5.0
SMALL_RETRIES = 2
# what a store answers to a DeleteObject If-Match it does not implement: 501 NotImplemented, or
# 400 InvalidArgument/InvalidRequest (the header refused)
_NO_CONDITIONAL_DELETE = (400, 501)
# a created object bigger than this (a fill's published part) goes on the upload client, with its
# SHA-256 for the store to check; smaller ones (a lease) on the lease-sized client
SMALL_BODY = MiB


# Every listing's bound (every caller's: a listing of a bucket is this one): its pages (S3's hold
# a thousand names: ten million), and pages in a row that name nothing (S3 may answer a few past
# deleted names; a store that keeps saying "more" and names nothing is looping)
LISTED_PAGES = 10_000
EMPTY_PAGES = 100


class Refused(Exception):
    """The store refused a conditional write: the condition did not hold."""

    def __init__(self, *, retried: bool) -> None:
        super().__init__("refused")
        # botocore retried the request (a reply lost on the way): the first try may have written it
        self.retried = retried


def precondition_failed(exc: BaseException) -> bool:
    """Whether a ClientError says the request's condition did not hold (412)."""
    code, status = reply_code(exc)
    return status == 412 or code == "PreconditionFailed"


def was_retried(exc: BaseException) -> bool:
    """Whether botocore sent a try before the one a ClientError answers (a reply lost on the
    way: the first try may have written)."""
    metadata = (getattr(exc, "response", None) or {}).get("ResponseMetadata") or {}
    return bool(metadata.get("RetryAttempts"))


def conditional(
    what: str,
    call: Callable[[], dict[str, Any]],
    *,
    sleep: Callable[[float], None],
    gone_fails: bool = False,
) -> dict[str, Any]:
    """A conditional request's reply; ``Refused`` when its condition did not hold (412; 404 too
    when ``gone_fails``: If-Match on an object that is gone). A ``409
    ConditionalRequestConflict`` is tried again a few times (``sleep`` between), then a
    NetworkError (exit 5)."""
    import botocore.exceptions

    # whether botocore sent any try before the last answer, over all our 409 tries: a try
    # whose reply was lost may have written, and a later 412 is then our own object
    retried = False
    for attempt in range(1, CONFLICT_TRIES + 1):
        try:
            return call()
        except botocore.exceptions.ClientError as exc:
            code, status = reply_code(exc)
            retried = retried or was_retried(exc)
            if precondition_failed(exc) or (gone_fails and status == 404):
                raise Refused(retried=retried) from None
            if code != "ConditionalRequestConflict":
                raise s3_error(exc, what=what) from None
            if attempt == CONFLICT_TRIES:
                raise NetworkError(
                    f"{what}: another write to it was still in flight after {attempt} tries"
                    " (409 ConditionalRequestConflict)"
                ) from None
            log.info("%s: 409 ConditionalRequestConflict; trying again", what)
            sleep(CONFLICT_BACKOFF * 2 ** (attempt - 1))
        except botocore.exceptions.BotoCoreError as exc:
            raise s3_error(exc, what=what) from None
    raise AssertionError("unreachable")  # pragma: no cover


def put(
    client: Any,
    obj: S3Object,
    data: bytes,
    *,
    sleep: Callable[[float], None],
    sha256: str | None = None,
    metadata: dict[str, str] | None = None,
    **condition: str,
) -> dict[str, Any]:
    """The one PUT of an object (``conditional``): ``data`` only if ``condition`` holds
    (``IfNoneMatch="*"``, ``IfMatch=etag``; none: over whatever is there), with its ``sha256``
    when given (the store refuses other bytes) and ``metadata`` (mdl's mark)."""
    extra: dict[str, Any] = dict(condition)
    if sha256 is not None:
        extra.update(ChecksumAlgorithm="SHA256", ChecksumSHA256=b64_of_hex(sha256))
    if metadata is not None:
        extra["Metadata"] = metadata
    return conditional(
        obj.uri,
        lambda: client.put_object(Bucket=obj.bucket, Key=obj.key, Body=data, **extra),
        sleep=sleep,
        gone_fails="IfMatch" in condition,  # AWS and moto answer 404 to If-Match on a missing key
    )


def _mark(
    uri: str, data: bytes, side: str | None, sha256: str | None = None
) -> dict[str, str] | None:
    """A small write's metadata: mdl's mark when ``side`` is given (a fill's part; ``sha256``:
    its bytes' digest if known), else none (a lease's bytes are never hashed for it)."""
    if side is None:
        return None
    digest = sha256 or hashlib.sha256(data).hexdigest()
    return mdl_metadata(uri, sha256=digest, size=len(data), side=side)


class S3Conditional:
    """One S3 store's small requests for one run, as a mirror's leases make them: one boto3 client
    for uploads and listings and one for lease-sized requests (each made at its first use, shared
    by threads); every write conditional."""

    def __init__(
        self,
        endpoint: str | None = None,
        *,
        secrets: Secrets | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._endpoint, self._secrets, self.sleep = endpoint, secrets, sleep
        self._client: Any = None
        self._small: Any = None  # the client for lease-sized requests
        self._lock = threading.Lock()
        self._no_date_said = False
        self._delete_if_match = True  # until the store refuses DeleteObject's If-Match

    def client(self) -> Any:
        """The client for uploads and listings (made at its first use)."""
        with self._lock:
            if self._client is None:
                self._client = s3_client(endpoint=self._endpoint, secrets=self._secrets)
            return self._client

    def _s3_small(self) -> Any:
        with self._lock:
            if self._small is None:
                self._small = s3_client(
                    endpoint=self._endpoint,
                    secrets=self._secrets,
                    timeout=SMALL_TIMEOUT,
                    retries=SMALL_RETRIES,
                )
            return self._small

    def _date(self, reply: dict[str, Any]) -> float:
        """The store's clock when it answered (``reply_date``). Our own clock only when the store
        sends none: a lease's age then is ours, off by as much as the clocks disagree."""
        if (said := reply_date(reply)) is not None:
            return said
        if not self._no_date_said:
            self._no_date_said = True
            log.warning("S3: the store's replies carry no usable Date header; using this clock")
        return time.time()

    def _seen(self, uri: str, reply: dict[str, Any]) -> Seen:
        size = given(reply, "ContentLength", int, where=uri)
        return Seen(
            etag=given(reply, "ETag", str, where=uri),
            size=size,
            modified=given(reply, "LastModified", datetime, where=uri).timestamp(),
            now=self._date(reply),
            mark=mark_of(uri, reply.get("Metadata"), size=size),
        )

    def _written(self, uri: str, reply: dict[str, Any], *, size: int) -> Seen:
        """A write's reply as the object it made: written when the store answered."""
        now = self._date(reply)
        return Seen(etag=given(reply, "ETag", str, where=uri), size=size, modified=now, now=now)

    def head(self, uri: str) -> Seen | None:
        """The object as the store describes it (HEAD), or None."""
        obj = parse_s3_uri(uri)
        try:
            with s3_errors(uri):
                reply = self._s3_small().head_object(Bucket=obj.bucket, Key=obj.key)
        except NotFoundError:
            return None
        return self._seen(uri, reply)

    def read(self, uri: str, *, limit: int, aged: bool = True) -> tuple[bytes, Seen] | None:
        """A small object (a lease) and what the store says of it, or None: at most ``limit`` + 1
        bytes, none of an object its ``Content-Length`` says is bigger (the body is not read)."""
        obj = parse_s3_uri(uri)
        try:
            with s3_errors(uri):
                reply = self._s3_small().get_object(Bucket=obj.bucket, Key=obj.key)
                body = reply["Body"]
                try:
                    small = given(reply, "ContentLength", int, where=uri) <= limit
                    data = bytes(body.read(limit + 1)) if small else b""
                    if small:  # the read that finds the end: botocore checks the length and the
                        body.read(1)  # x-amz-checksum-* on it (the body ended: nothing more)
                finally:
                    body.close()
        except NotFoundError:
            return None
        return data, self._seen(uri, reply)

    def create(self, uri: str, data: bytes, *, side: str | None = None) -> Seen | None:
        """``data`` written only if there is no such object (If-None-Match: *); None: there is. A
        body over ``SMALL_BODY`` (a published part) goes with its SHA-256: the store refuses bytes
        altered on the way. ``side``: marked as mdl's, as ``upload`` marks (its metadata)."""
        obj = parse_s3_uri(uri)
        big = len(data) > SMALL_BODY
        client = self.client() if big else self._s3_small()
        sha256 = hashlib.sha256(data).hexdigest() if big else None
        try:
            reply = put(
                client, obj, data, sleep=self.sleep, sha256=sha256,
                metadata=_mark(uri, data, side, sha256), IfNoneMatch="*",
            )  # fmt: skip
        except Refused as refused:
            return self._ours(uri, data) if refused.retried else None
        return self._written(uri, reply, size=len(data))

    def replace(self, uri: str, data: bytes, *, etag: str, side: str | None = None) -> Seen | None:
        """``data`` written only over version ``etag`` (If-Match); None: it changed or is gone.
        ``side``: marked as mdl's (its metadata)."""
        mark = _mark(uri, data, side)
        try:
            reply = put(
                self._s3_small(), parse_s3_uri(uri), data, sleep=self.sleep, metadata=mark,
                IfMatch=etag,
            )  # fmt: skip
        except Refused as refused:
            return self._ours(uri, data) if refused.retried else None
        return self._written(uri, reply, size=len(data))

    def _ours(self, uri: str, data: bytes) -> Seen | None:
        """After a refusal on a retried request: whether the first try wrote ``data`` (its reply
        was lost). A lease's bytes name its holder and its take, so equal bytes are ours."""
        found = self.read(uri, limit=len(data))
        return found[1] if found is not None and found[0] == data else None

    def delete(self, uri: str, *, etag: str | None = None) -> bool:
        """Remove the object (only version ``etag`` when given); False: it was not there or had
        changed."""
        obj = parse_s3_uri(uri)
        # S3 answers 204 to a DELETE whether or not the object was there: a HEAD says which, and
        # compares the version where the store does not implement DeleteObject's If-Match.
        seen = self.head(uri)
        if seen is None or (etag is not None and seen.etag != etag):
            return False
        client = self._s3_small()
        if etag is not None and self._delete_if_match:
            try:
                conditional(
                    uri,
                    lambda: client.delete_object(Bucket=obj.bucket, Key=obj.key, IfMatch=etag),
                    sleep=self.sleep,
                    gone_fails=True,
                )
            except Refused:
                return False
            except NetworkError as exc:
                if exc.status not in _NO_CONDITIONAL_DELETE:
                    raise
                log.info("%s: the store refuses DeleteObject's If-Match; comparing by HEAD", uri)
                self._delete_if_match = False
            else:
                return True
        # A plain delete after the HEAD above. The race: another machine replaces the object
        # between our HEAD and this DELETE, and we remove its version. For a lease that costs one
        # term: the new holder's renewal finds the lease gone, and the next taker creates it
        # afresh; a mirror object is only ever removed by prune, which leaves leased ones.
        with s3_errors(uri):
            client.delete_object(Bucket=obj.bucket, Key=obj.key)
        return True

    def listing(self, prefix: str, *, most: int | None = None) -> Iterator[Listed]:
        """Every object whose URI starts with ``prefix`` (``s3://bucket/…``), a page at a time
        (``most``: the caller stops taking pages), each page checked (``_pages``)."""
        bucket, _, key_prefix = prefix.removeprefix("s3://").partition("/")
        if not prefix.startswith("s3://") or not is_bucket_name(bucket):
            raise UsageError(f"{prefix}: expected s3://bucket/prefix")

        def named(exc: BaseException, error: MdlError) -> MdlError:
            return (
                NotFoundError(f"{prefix}: no such bucket {printable(bucket)!r}")
                if reply_code(exc)[0] == "NoSuchBucket"
                else error
            )

        with s3_errors(prefix, named):
            for page in _pages(self.client(), _OBJECTS, bucket, key_prefix, where=prefix):
                for item in page:
                    yield Listed(
                        uri=f"s3://{bucket}/{item['Key']}",
                        size=item["Size"],
                        modified=item["LastModified"].timestamp(),
                    )

    def abandoned(self, prefix: str, *, before: float, remove: bool) -> list[Listed]:
        """The multipart uploads under ``prefix`` (a fill killed midway leaves its parts,
        billed, never an object); those begun before ``before`` aborted when ``remove``."""
        bucket, _, key_prefix = prefix.removeprefix("s3://").partition("/")
        found: list[Listed] = []
        with s3_errors(prefix):
            # every page checked before anything is aborted on it
            pages = _pages(self.client(), _UPLOADS, bucket, key_prefix, where=prefix)
            for upload in [upload for page in pages for upload in page]:
                begun = upload["Initiated"].timestamp()
                obj = S3Object(bucket, upload["Key"])
                if remove and begun < before:
                    self.client().abort_multipart_upload(
                        Bucket=bucket, Key=obj.key, UploadId=upload["UploadId"]
                    )
                found.append(Listed(obj.uri, 0, begun))
        return found

    def now(self) -> float:
        """The endpoint's clock, whichever bucket was used: the ``Date`` of a bucket listing (a
        refusal carries one too)."""
        import botocore.exceptions

        try:
            reply = self._s3_small().list_buckets()
        except botocore.exceptions.ClientError as exc:
            # the store answered: its refusal still says the time
            reply = exc.response or {}
            if "date" not in reply_headers(reply):
                raise s3_error(exc, what="S3: the store's clock") from None
        except botocore.exceptions.BotoCoreError as exc:
            raise s3_error(exc, what="S3: the store's clock") from None
        return self._date(reply)


@dataclass(frozen=True)
class _Paged:
    """A paged S3 listing: its call, its reply's items (each named once by ``named``), and its
    tokens (the reply's field each page gives, the request's field that asks for the next): the
    first one a page that says more follow must give, the others sent when given (S3 Express's
    directory buckets give no NextUploadIdMarker)."""

    call: str
    items: str
    named: tuple[str, ...]
    tokens: tuple[tuple[str, str], ...]
    most: str  # the request's field that bounds a page (S3's own bound, PAGE_ITEMS, asked)
    fields: tuple[tuple[str, type], ...]  # what each item carries, as botocore parses S3's XML


_OBJECTS = _Paged(
    "list_objects_v2",
    "Contents",
    ("Key",),
    (("NextContinuationToken", "ContinuationToken"),),
    "MaxKeys",
    (("Key", str), ("Size", int), ("LastModified", datetime)),
)
_UPLOADS = _Paged(
    "list_multipart_uploads",
    "Uploads",
    ("Key", "UploadId"),
    (("NextKeyMarker", "KeyMarker"), ("NextUploadIdMarker", "UploadIdMarker")),
    "MaxUploads",
    (("Key", str), ("UploadId", str), ("Initiated", datetime)),
)
PAGE_ITEMS = 1000  # the most names a page of S3 holds: one with more is no store's


def _pages(
    client: Any, paged: _Paged, bucket: str, key_prefix: str, *, where: str
) -> Iterator[list[dict[str, Any]]]:
    """A listing's items a page at a time, each page believed only once checked, or NetworkError
    (exit 5) naming ``where``: every item's key starts with the prefix asked and is not named
    again on its page or the one before (a listing names each once: one that repeats is looping;
    its order is not every store's promise, S3 Express's directory buckets keep none); a page
    that says more follow goes on with its tokens, given (``_Paged``) and never given before (none:
    the listing is incomplete, never taken as everything), within ``LISTED_PAGES`` and
    ``EMPTY_PAGES``. What is held is a page's names and the tokens, not every name listed."""
    asked: dict[str, Any] = {"Bucket": bucket, "Prefix": key_prefix, paged.most: PAGE_ITEMS}
    before: set[tuple[str, ...]] = set()
    tokens: set[bytes] = set()  # (their digests: a token may be kilobytes, pages thousands)
    empty = 0
    for _ in range(LISTED_PAGES):
        page = getattr(client, paged.call)(**asked)
        items = page.get(paged.items, [])
        if not isinstance(page.get("IsTruncated"), bool):  # S3 says it on every page
            raise NetworkError(f"{where}: a reply that is no listing (it says no IsTruncated)")
        if len(items) > PAGE_ITEMS:
            raise NetworkError(
                f"{where}: a hostile listing: a page of {len(items)} names, more than the"
                f" {PAGE_ITEMS} asked; nothing is done on it"
            )
        named = _named(items, paged, key_prefix, before, where=where)
        yield items
        if not page.get("IsTruncated"):
            return
        token = tuple(str(page.get(given) or "") for given, _ in paged.tokens)
        empty, before = (0 if items else empty + 1), named
        why = _unfollowed(token, tokens, empty)
        if why is not None:
            raise NetworkError(
                f"{where}: an incomplete listing: a page says more follow, with {why};"
                " nothing is done on it"
            )
        tokens.add(_digest(token))
        asked.update({ask: got for (_, ask), got in zip(paged.tokens, token, strict=True) if got})
    raise NetworkError(
        f"{where}: a listing of more than {LISTED_PAGES} pages; nothing is done on it"
    )


def _named(
    items: list[dict[str, Any]],
    paged: _Paged,
    key_prefix: str,
    before: set[tuple[str, ...]],
    *,
    where: str,
) -> set[tuple[str, ...]]:
    """A page's names (``_pages``), each under the prefix asked, named once on it and the page
    ``before``, with the fields S3 gives every item (``_Paged.fields``)."""
    named: set[tuple[str, ...]] = set()
    for item in items:
        key = str(item.get("Key", ""))
        for field, kind in paged.fields:
            if not isinstance(value := item.get(field), kind) or (
                isinstance(value, int) and value < 0
            ):
                raise _hostile(where, key, f"without its {field}")
        name = tuple(str(item[field]) for field in paged.named)
        again = name in named or name in before
        if again or not key.startswith(key_prefix):
            raise _hostile(where, key, "again" if again else "not under it")
        named.add(name)
    return named


def _unfollowed(token: tuple[str, ...], tokens: set[bytes], empty: int) -> str | None:
    """Why a page that says more follow is not followed (its ``token``, the digests of those given
    before, the pages in a row naming nothing): None when it is."""
    if not token[0]:
        return "no continuation token"
    if _digest(token) in tokens:
        return "a token it gave before"
    return f"{empty} pages naming nothing" if empty > EMPTY_PAGES else None


def _digest(token: tuple[str, ...]) -> bytes:
    return hashlib.sha256("\0".join(token).encode("utf-8", "surrogatepass")).digest()


def _hostile(where: str, key: str, said: str) -> NetworkError:
    return NetworkError(
        f"{where}: a hostile listing names {printable(key, limit=120)!r} ({said}); nothing is done"
        " on it"
    )
