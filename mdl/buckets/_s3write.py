"""The S3 store, writable (``S3Store.writer``): conditional writes for a mirror's leases and
fills (``If-None-Match: *``, ``If-Match``), the one S3 uploader (a fill's, ``publish``'s: whole or
not at all, hashed as sent), listings, and the endpoint's clock (its replies' ``Date``)."""

from __future__ import annotations

import base64
import hashlib
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mdl.buckets._parts import MIN_PART, MiB, fill_part, part_layout, part_size
from mdl.buckets.protocol import Listed, Seen
from mdl.buckets.s3 import (
    S3Object,
    b64_of_hex,
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
    sha256_of_head,
)
from mdl.errors import (
    IntegrityError,
    LocalFSError,
    MdlError,
    NetworkError,
    NotFoundError,
    UsageError,
)
from mdl.redact import Secrets, printable

log = logging.getLogger("mdl.s3")

# a file this big or bigger goes up in parts (a module constant: tests lower it)
MULTIPART_THRESHOLD = MIN_PART
PART_MINIMUM = MIN_PART  # the smallest part of an upload (S3 refuses parts under 5 MiB)
PART_WORKERS = 4  # parts in flight at once (each held in memory while it is sent)
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
# what a store answers to an UploadPartCopy it will not do (not implemented, refused, the part not
# readable or gone): the object is then uploaded from the local file
_NO_COPY = (400, 403, 404, 405, 501)
# a created object bigger than this (a fill's published part) goes on the upload client, with its
# SHA-256 for the store to check; smaller ones (a lease) on the lease-sized client
SMALL_BODY = MiB


class _Conflict(Exception):
    """409 to a CompleteMultipartUpload: another write to the key was in flight."""


class _Refused(Exception):
    """The store refused a conditional write: the condition did not hold."""

    def __init__(self, *, retried: bool) -> None:
        super().__init__("refused")
        # botocore retried the request (a reply lost on the way): the first try may have written it
        self.retried = retried


class S3Writer:
    """One mirror's (or publish target's) S3 store, writable, for one run: one boto3 client for
    uploads and one for lease-sized requests (each made at its first use, shared by threads),
    every write conditional but ``publish``'s uploads (``overwrite``)."""

    def __init__(
        self,
        endpoint: str | None = None,
        *,
        secrets: Secrets | None = None,
        sleep: Callable[[float], None] = time.sleep,
        parts: int = PART_WORKERS,
    ) -> None:
        self._endpoint, self._secrets, self._sleep = endpoint, secrets, sleep
        self._client: Any = None
        self._small: Any = None  # the client for lease-sized requests
        self._lock = threading.Lock()
        # parts (and whole files) read but not yet sent, over all of this writer's uploads
        self.parts, self._room = parts, threading.BoundedSemaphore(parts)
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
        return Seen(
            etag=str(reply["ETag"]),
            size=int(reply["ContentLength"]),
            modified=reply["LastModified"].timestamp(),
            now=self._date(reply),
            mark=mark_of(uri, reply.get("Metadata"), size=int(reply["ContentLength"])),
        )

    def _written(self, reply: dict[str, Any], *, size: int) -> Seen:
        """A write's reply as the object it made: written when the store answered."""
        now = self._date(reply)
        return Seen(etag=str(reply["ETag"]), size=size, modified=now, now=now)

    def _conditional(
        self, what: str, call: Callable[[], dict[str, Any]], *, gone_fails: bool = False
    ) -> dict[str, Any]:
        """A conditional request's reply; ``_Refused`` when its condition did not hold (412;
        404 too when ``gone_fails``: If-Match on an object that is gone). A ``409
        ConditionalRequestConflict`` is tried again a few times, then a NetworkError (exit 5)."""
        import botocore.exceptions

        # whether botocore sent any try before the last answer, over all our 409 tries: a try
        # whose reply was lost may have written, and a later 412 is then our own object
        retried = False
        for attempt in range(1, CONFLICT_TRIES + 1):
            try:
                return call()
            except botocore.exceptions.ClientError as exc:
                code, status = reply_code(exc)
                metadata = (exc.response or {}).get("ResponseMetadata") or {}
                retried = retried or bool(metadata.get("RetryAttempts"))
                if status == 412 or code == "PreconditionFailed" or (gone_fails and status == 404):
                    raise _Refused(retried=retried) from None
                if code != "ConditionalRequestConflict":
                    raise s3_error(exc, what=what) from None
                if attempt == CONFLICT_TRIES:
                    raise NetworkError(
                        f"{what}: another write to it was still in flight after {attempt} tries"
                        " (409 ConditionalRequestConflict)"
                    ) from None
                log.info("%s: 409 ConditionalRequestConflict; trying again", what)
                self._sleep(CONFLICT_BACKOFF * 2 ** (attempt - 1))
            except botocore.exceptions.BotoCoreError as exc:
                raise s3_error(exc, what=what) from None
        raise AssertionError("unreachable")  # pragma: no cover

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
                    small = int(reply["ContentLength"]) <= limit
                    data = bytes(body.read(limit + 1)) if small else b""
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
        sha256 = hashlib.sha256(data).hexdigest()
        extra = _marked(uri, sha256, len(data), side)
        if big:
            extra.update(ChecksumAlgorithm="SHA256", ChecksumSHA256=b64_of_hex(sha256))
        try:
            reply = self._conditional(
                uri,
                lambda: client.put_object(
                    Bucket=obj.bucket, Key=obj.key, Body=data, IfNoneMatch="*", **extra
                ),
            )
        except _Refused as refused:
            return self._ours(uri, data) if refused.retried else None
        return self._written(reply, size=len(data))

    def replace(self, uri: str, data: bytes, *, etag: str, side: str | None = None) -> Seen | None:
        """``data`` written only over version ``etag`` (If-Match); None: it changed or is gone.
        ``side``: marked as mdl's (its metadata)."""
        obj = parse_s3_uri(uri)
        client = self._s3_small()
        marked = _marked(uri, hashlib.sha256(data).hexdigest(), len(data), side)
        try:
            reply = self._conditional(
                uri,
                lambda: client.put_object(
                    Bucket=obj.bucket, Key=obj.key, Body=data, IfMatch=etag, **marked
                ),
                gone_fails=True,  # AWS and moto answer 404 to If-Match on a missing key
            )
        except _Refused as refused:
            return self._ours(uri, data) if refused.retried else None
        return self._written(reply, size=len(data))

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
                self._conditional(
                    uri,
                    lambda: client.delete_object(Bucket=obj.bucket, Key=obj.key, IfMatch=etag),
                    gone_fails=True,
                )
            except _Refused:
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

    def holds(self, uri: str, path: Path, *, size: int, sha256: str) -> bool:
        """Whether the object is this file, by a SHA-256 the store computed (``S3Upload.there``)."""
        return S3Upload(self, parse_s3_uri(uri), path, size, sha256).there()

    def owned(self, uri: str, *, root: str) -> Seen | None:
        """The object (HEAD), with mdl's mark if its metadata holds one made for this URI."""
        return self.head(uri)

    def listing(self, prefix: str, *, most: int | None = None) -> Iterator[Listed]:
        """Every object whose URI starts with ``prefix`` (``s3://bucket/…``), a page at a time
        (``most``: the caller stops taking pages)."""
        bucket, _, key_prefix = prefix.removeprefix("s3://").partition("/")
        if not prefix.startswith("s3://") or not is_bucket_name(bucket):
            raise UsageError(f"{prefix}: expected s3://bucket/prefix")

        def named(exc: BaseException, error: MdlError) -> MdlError:
            gone = f"{prefix}: no such bucket {printable(bucket)!r}"
            return NotFoundError(gone) if reply_code(exc)[0] == "NoSuchBucket" else error

        with s3_errors(prefix, named):
            pages = (
                self.client()
                .get_paginator("list_objects_v2")
                .paginate(Bucket=bucket, Prefix=key_prefix)
            )
            for page in pages:
                for item in page.get("Contents", []):
                    yield Listed(
                        uri=f"s3://{bucket}/{item['Key']}",
                        size=int(item["Size"]),
                        modified=item["LastModified"].timestamp(),
                    )

    def abandoned(self, prefix: str, *, before: float, remove: bool) -> list[Listed]:
        """The multipart uploads under ``prefix`` (a fill killed midway leaves its parts,
        billed, never an object); those begun before ``before`` aborted when ``remove``."""
        bucket, _, key_prefix = prefix.removeprefix("s3://").partition("/")
        found: list[Listed] = []
        with s3_errors(prefix):
            pages = self.client().get_paginator("list_multipart_uploads")
            for page in pages.paginate(Bucket=bucket, Prefix=key_prefix):
                for upload in page.get("Uploads", []):
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

    def upload(
        self,
        uri: str,
        path: Path,
        *,
        size: int,
        sha256: str,
        root: str,
        overwrite: bool = False,
        sent: Callable[[int], None] | None = None,
        side: str = "",
    ) -> bool:
        """The verified file at ``path``, whole or not at all (a multipart upload aborted on any
        failure), with the store's SHA-256 checksum and mdl's mark (``side``'s, bound to ``uri``),
        only if there is none (If-None-Match: *; False) unless ``overwrite``; hashed as read (a
        file changed since verified: exit 6). ``sent``: told each part's bytes, may stop it."""
        upload = S3Upload(self, parse_s3_uri(uri), path, size, sha256, overwrite, sent, side)
        with _reading(uri, path):
            return upload.whole() if size < MULTIPART_THRESHOLD else upload.in_parts()

    def assemble(
        self,
        uri: str,
        parts: Sequence[str],
        path: Path,
        *,
        size: int,
        sha256: str,
        root: str,
        side: str = "",
    ) -> bool | None:
        """The object made from ``parts`` (this bucket's, ``path`` cut at ``part_size``) by the
        store: a multipart upload of copies (UploadPartCopy), each proved its range of ``path``
        (the copy's SHA-256, else its ETag as the range's MD5), completed and marked as ``upload``
        does. None: the store cannot (a copy refused) or a part is not these bytes."""
        upload = S3Upload(self, parse_s3_uri(uri), path, size, sha256, side=side)
        with _reading(uri, path):
            return upload.assembled([parse_s3_uri(part) for part in parts])


def _marked(uri: str, sha256: str, size: int, side: str | None) -> dict[str, Any]:
    """A small write's metadata: mdl's mark when ``side`` is given (a fill's part), else none."""
    if side is None:
        return {}
    return {"Metadata": mdl_metadata(uri, sha256=sha256, size=size, side=side)}


@contextmanager
def _reading(uri: str, path: Path) -> Iterator[None]:
    """A local file's read failure as ours (LocalFSError)."""
    try:
        yield
    except OSError as exc:
        raise LocalFSError(
            f"{uri}: cannot read {printable(str(path))}: {exc.strerror or exc}"
        ) from exc


@dataclass(frozen=True)
class S3Upload:
    """One verified file going up through ``writer`` (``S3Writer.upload`` says how)."""

    writer: S3Writer
    obj: S3Object
    path: Path
    size: int
    sha256: str
    overwrite: bool = False
    sent: Callable[[int], None] | None = None
    side: str = ""  # whose (mdl's mark)

    def _metadata(self) -> dict[str, str]:
        return mdl_metadata(self.obj.uri, sha256=self.sha256, size=self.size, side=self.side)

    def _if_none(self) -> dict[str, str]:
        return {} if self.overwrite else {"IfNoneMatch": "*"}

    def there(self) -> bool:
        """Whether the object is already this file, by a SHA-256 the store computed over its
        bytes: the full-object checksum, or the composite one recomputed from the local file cut
        as the object's parts are. Our ``x-amz-meta-sha256`` never decides: whoever can write the
        object can set it."""
        head = self._head() or {}
        value = head.get("ChecksumSHA256")
        if head.get("ContentLength") != self.size or not isinstance(value, str):
            return False
        full = sha256_of_head(head)
        # FULL_OBJECT: even of a multipart one
        if full is not None or head.get("ChecksumType") == "FULL_OBJECT":
            return (full or sha256_of_head({"ChecksumSHA256": value})) == self.sha256
        # Composite ("<b64>-N"; moto leaves the -N out, its ETag says multipart). A layout guessed
        # wrong costs an upload, never a wrong skip: equal composites mean equal part digests, so
        # equal bytes.
        digest, _, count = value.partition("-")
        first = self._head(PartNumber=1) or {}  # a part HEAD refused: no layout
        sizes = part_layout(
            self.size, first=first.get("ContentLength"), count=first.get("PartsCount")
        )
        if sizes is None or count not in ("", str(len(sizes))):
            return False
        return self._compositeb64_of_hex(sizes) == digest

    def _head(self, **extra: Any) -> dict[str, Any] | None:
        """The object's HEAD with its checksum; None: none, or (a part's) refused."""
        import botocore.exceptions

        try:
            with s3_errors(self.obj.uri):
                try:
                    head: dict[str, Any] = self.writer.client().head_object(
                        Bucket=self.obj.bucket, Key=self.obj.key, ChecksumMode="ENABLED", **extra
                    )
                except botocore.exceptions.ClientError:
                    if extra:  # a store that refuses part HEADs: the layout is unknown
                        return None
                    raise
        except NotFoundError:
            return None
        return head

    def _compositeb64_of_hex(self, sizes: list[int]) -> str | None:
        """S3's composite SHA-256 of the local file cut into ``sizes`` (base64); None unless its
        verified bytes."""
        whole, digests = hashlib.sha256(), []
        try:
            with self.path.open("rb") as handle:
                for left in sizes:
                    part = hashlib.sha256()
                    while left:
                        if not (chunk := handle.read(min(left, MIN_PART))):
                            return None  # shorter than the object: not these bytes
                        part.update(chunk)
                        whole.update(chunk)
                        left -= len(chunk)
                    digests.append(part.digest())
        except OSError as exc:  # the upload that follows reports it, for this file only
            log.info("%s: cannot read %s to compare: %s", self.obj.uri, self.path, exc)
            return None
        composite = base64.b64encode(hashlib.sha256(b"".join(digests)).digest()).decode("ascii")
        return composite if whole.hexdigest() == self.sha256 else None

    def whole(self) -> bool:
        """One PUT of the whole file, read to memory first (a part's worth of room)."""
        obj, client = self.obj, self.writer.client()
        with self.writer._room:
            with self.path.open("rb") as handle:
                data = handle.read(self.size + 1)  # one byte more: a file that grew is refused
            self._check(len(data), hashlib.sha256(data).hexdigest())
            try:
                self.writer._conditional(
                    obj.uri,
                    lambda: client.put_object(
                        Bucket=obj.bucket,
                        Key=obj.key,
                        Body=data,
                        ChecksumAlgorithm="SHA256",
                        ChecksumSHA256=b64_of_hex(self.sha256),  # the store refuses other bytes
                        Metadata=self._metadata(),
                        **self._if_none(),
                    ),
                )
            except _Refused as refused:
                # tried again after a lost reply: ours if its ETag is our bytes' MD5 (no KMS)
                md5 = hashlib.md5(data, usedforsecurity=False).hexdigest()
                return refused.retried and self._has_etag(md5)
        if self.sent is not None and data:  # no bytes, no report (a folder's copy makes none)
            self.sent(len(data))
        return True

    def in_parts(self) -> bool:
        """A multipart upload of the file's parts, a SHA-256 each (``_multipart``)."""
        return self._multipart(self._send_parts) is True  # its own parts: never declined

    def assembled(self, sources: list[S3Object]) -> bool | None:
        """The object from copies of ``sources`` (``S3Writer.assemble``); None: it cannot be."""
        chunk = fill_part(self.size)
        count = -(-self.size // chunk)
        if len(sources) != count or not count or any(s.bucket != self.obj.bucket for s in sources):
            log.info(
                "%s: %d parts cannot make it (%d parts of this bucket expected); uploading it",
                self.obj.uri,
                len(sources),
                count,
            )
            return None
        return self._multipart(lambda upload_id: self._copy_parts(upload_id, sources, chunk))

    def _multipart(
        self, fill: Callable[[str], list[dict[str, Any]] | None], tries: int = CONFLICT_TRIES
    ) -> bool | None:
        """A multipart upload (SHA-256 checksums, mdl's metadata), its parts made by ``fill``
        (None: it cannot make them), completed only if there is no such object (unless
        ``overwrite``); aborted on any failure, so nothing half-written stays behind."""
        obj, client = self.obj, self.writer.client()
        with s3_errors(obj.uri):
            upload_id = client.create_multipart_upload(
                Bucket=obj.bucket,
                Key=obj.key,
                ChecksumAlgorithm="SHA256",
                Metadata=self._metadata(),
            )["UploadId"]
        try:
            parts = fill(upload_id)
            done = None if parts is None else self._complete(upload_id, parts)
        except _Conflict:
            # AWS: a 409 to CompleteMultipartUpload means starting the upload again (the upload
            # id may be spent)
            self._abort(upload_id)
            if tries <= 1:
                raise NetworkError(
                    f"{obj.uri}: another write to it was still in flight after"
                    f" {CONFLICT_TRIES} uploads (409 ConditionalRequestConflict)"
                ) from None
            log.info("%s: 409 on completing the upload; starting it again", obj.uri)
            self.writer._sleep(CONFLICT_BACKOFF * 2 ** (CONFLICT_TRIES - tries))
            return self._multipart(fill, tries - 1)
        except BaseException:
            self._abort(upload_id)
            raise
        if not done:
            self._abort(upload_id)
        return done

    def _complete(self, upload_id: str, parts: list[dict[str, Any]]) -> bool:
        """The upload completed (only if there is no such object, unless ``overwrite``); False:
        there is. ``_Conflict`` on a 409: the upload is to be started again."""
        import botocore.exceptions

        obj = self.obj
        try:
            with s3_errors(obj.uri):
                try:
                    self.writer.client().complete_multipart_upload(
                        Bucket=obj.bucket,
                        Key=obj.key,
                        UploadId=upload_id,
                        MultipartUpload={"Parts": parts},
                        **self._if_none(),
                    )
                except botocore.exceptions.ClientError as exc:
                    code, status = reply_code(exc)
                    retried = bool(
                        ((exc.response or {}).get("ResponseMetadata") or {}).get("RetryAttempts")
                    )
                    if status == 412 or code == "PreconditionFailed":
                        raise _Refused(retried=retried) from None
                    if status == 409:
                        raise _Conflict from None
                    raise
        except _Refused as refused:
            return refused.retried and self._ours_parts(parts)
        except NotFoundError:
            # NoSuchUpload: botocore tried again after a lost reply (a big object's completion can
            # outlast the read timeout) and the first try may have completed it: ours only if the
            # object there carries our mark for our SHA-256
            seen = self.writer.head(self.obj.uri)
            if seen is None or seen.mark is None or seen.mark.sha256 != self.sha256:
                raise
        return True

    def _ours_parts(self, parts: list[dict[str, Any]]) -> bool:
        """After a refused completion that botocore had tried before (a lost reply): whether the
        object there is this upload, by its multipart ETag (the MD5 of the parts' MD5s, "-N")."""
        try:
            md5s = b"".join(bytes.fromhex(str(p["ETag"]).strip('"')) for p in parts)
        except ValueError:  # a store whose part ETags are not MD5s: it cannot say
            return False
        md5 = hashlib.md5(md5s, usedforsecurity=False).hexdigest()
        return self._has_etag(f"{md5}-{len(parts)}")

    def _has_etag(self, etag: str) -> bool:
        seen = self.writer.head(self.obj.uri)
        return seen is not None and seen.etag.strip('"') == etag

    def _send_parts(self, upload_id: str) -> list[dict[str, Any]]:
        """Read the file in order here (hashing it whole), send its parts on a few threads."""
        obj, client, room = self.obj, self.writer.client(), self.writer._room
        chunk = part_size(self.size, minimum=PART_MINIMUM)
        whole, read = hashlib.sha256(), 0
        failed = threading.Event()  # a part failed: read no further

        def send(number: int, data: bytes) -> dict[str, Any]:
            try:
                digest = base64.b64encode(hashlib.sha256(data).digest()).decode("ascii")
                with s3_errors(obj.uri):
                    reply = client.upload_part(
                        Bucket=obj.bucket,
                        Key=obj.key,
                        UploadId=upload_id,
                        PartNumber=number,
                        Body=data,
                        ChecksumAlgorithm="SHA256",
                        ChecksumSHA256=digest,
                    )
                if self.sent is not None:
                    self.sent(len(data))
                return {"PartNumber": number, "ETag": reply["ETag"], "ChecksumSHA256": digest}
            except BaseException:
                failed.set()
                raise
            finally:
                room.release()

        futures: list[Future[dict[str, Any]]] = []
        with self.path.open("rb") as handle, ThreadPoolExecutor(self.writer.parts) as pool:
            try:
                while not failed.is_set() and (data := handle.read(chunk)):
                    whole.update(data)
                    read += len(data)
                    room.acquire()
                    futures.append(pool.submit(send, len(futures) + 1, data))
                sent = [future.result() for future in futures]  # a part's failure raises here
                self._check(read, whole.hexdigest())
                return sent
            except BaseException:
                for future in futures:
                    if future.cancel():
                        room.release()  # never sent: its room is back
                raise

    def _md5(self, number: int, chunk: int) -> str:
        """The MD5 of part ``number`` of the local file (``chunk`` bytes a part)."""
        with self.path.open("rb") as handle:
            handle.seek((number - 1) * chunk)
            return hashlib.md5(handle.read(chunk), usedforsecurity=False).hexdigest()

    def _copy_parts(
        self, upload_id: str, sources: list[S3Object], chunk: int
    ) -> list[dict[str, Any]] | None:
        """Copy each of ``sources`` as a part (a few at once) while the file is read here in
        order (hashing it whole); None: a copy was refused, or is not its range of the file."""
        import botocore.exceptions

        obj, client = self.obj, self.writer.client()

        def copy(number: int, source: S3Object, digest: str) -> dict[str, Any] | None:
            with s3_errors(obj.uri):
                try:
                    said = client.upload_part_copy(
                        Bucket=obj.bucket,
                        Key=obj.key,
                        UploadId=upload_id,
                        PartNumber=number,
                        CopySource={"Bucket": source.bucket, "Key": source.key},
                    )["CopyPartResult"]
                except botocore.exceptions.ClientError as exc:
                    if reply_code(exc)[1] not in _NO_COPY:
                        raise
                    log.info("%s: the store does not copy %s into it: %s", obj.uri, source.uri, exc)
                    return None
            # the store's SHA-256 of the copy, else its ETag (a plain PUT's: the MD5 of the bytes,
            # read again only then: most stores say the SHA-256)
            checksum = said.get("ChecksumSHA256")
            if (checksum or str(said.get("ETag")).strip('"')) != (
                digest if checksum else self._md5(number, chunk)
            ):
                log.warning(
                    "%s: %s is not part %d of the verified file", obj.uri, source.uri, number
                )
                return None
            return {"PartNumber": number, "ETag": said["ETag"], "ChecksumSHA256": digest}

        whole, read = hashlib.sha256(), 0
        futures: list[Future[dict[str, Any] | None]] = []
        pool = ThreadPoolExecutor(self.writer.parts)
        try:
            with self.path.open("rb") as handle:
                for number, source in enumerate(sources, 1):
                    data = handle.read(chunk)
                    whole.update(data)
                    read += len(data)
                    digest = base64.b64encode(hashlib.sha256(data).digest()).decode("ascii")
                    futures.append(pool.submit(copy, number, source, digest))
                read += len(handle.read(1))  # a file that grew is not the verified one
            self._check(read, whole.hexdigest())
            copied = [future.result() for future in futures]
        finally:
            pool.shutdown(cancel_futures=True)
        return None if None in copied else [part for part in copied if part]

    def _abort(self, upload_id: str) -> None:
        """Best effort: a failure is logged (the store's lifecycle rule, if any, reaps the parts);
        the caller's error says what went wrong."""
        import botocore.exceptions

        obj = self.obj
        try:
            self.writer.client().abort_multipart_upload(
                Bucket=obj.bucket, Key=obj.key, UploadId=upload_id
            )
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
            if reply_code(exc)[0] == "NoSuchUpload":  # completed after all (a lost reply)
                return
            log.warning("%s: could not abort the multipart upload: %s", obj.uri, exc)

    def _check(self, size: int, sha256: str) -> None:
        """The bytes read to send are the verified ones, or exit 6 before the object is
        complete."""
        if (size, sha256) != (self.size, self.sha256):
            raise IntegrityError(
                f"{self.obj.uri}: the local file changed since it was verified ({size} bytes"
                f" with sha256 {sha256}, verified {self.size} bytes with {self.sha256});"
                " not uploaded",
                hint="run `mdl verify` and try again",
            )
