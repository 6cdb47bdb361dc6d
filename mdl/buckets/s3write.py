"""The S3 store, writable (``S3Store.writer``): conditional writes for a mirror's leases and
fills (``If-None-Match: *``, ``If-Match``), uploads whole or not at all, listings, and the store's
clock (its replies' ``Date``)."""

from __future__ import annotations

import base64
import hashlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, BinaryIO

from mdl.buckets.parts import MIN_PART, part_size
from mdl.buckets.protocol import Listed, Seen
from mdl.buckets.s3 import (
    MARK_META,
    SHA256_META,
    S3Object,
    is_bucket_name,
    mdl_metadata,
    parse_s3_uri,
    s3_client,
    s3_error,
    s3_errors,
)
from mdl.errors import IntegrityError, LocalFSError, NetworkError, NotFoundError, UsageError
from mdl.redact import Secrets, printable, safe_text

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


class _Conflict(Exception):
    """409 to a CompleteMultipartUpload: another write to the key was in flight."""


class _Refused(Exception):
    """The store refused a conditional write: the condition did not hold."""

    def __init__(self, *, retried: bool) -> None:
        super().__init__("refused")
        # botocore retried the request (a reply lost on the way): the first try may have written it
        self.retried = retried


def _reply_code(exc: BaseException) -> tuple[str, int | None]:
    """A ClientError's S3 error code and HTTP status."""
    response = getattr(exc, "response", None) or {}
    code = str((response.get("Error") or {}).get("Code") or "")
    status = (response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
    return code, status if isinstance(status, int) else None


def _headers(reply: dict[str, Any]) -> dict[str, str]:
    headers = (reply.get("ResponseMetadata") or {}).get("HTTPHeaders") or {}
    return headers if isinstance(headers, dict) else {}


def _b64(hex_digest: str) -> str:
    return base64.b64encode(bytes.fromhex(hex_digest)).decode("ascii")


class S3Writer:
    """One mirror's S3 store, writable, for one run: one boto3 client (made at its first use,
    shared by threads), every write conditional."""

    def __init__(
        self,
        endpoint: str | None = None,
        *,
        secrets: Secrets | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._endpoint, self._secrets, self._sleep = endpoint, secrets, sleep
        self._client: Any = None
        self._small: Any = None  # the client for lease-sized requests
        self._lock = threading.Lock()
        self._bucket: str | None = None  # the last bucket used: ``now`` asks it for the time
        self._no_date_said = False
        self._delete_if_match = True  # until the store refuses DeleteObject's If-Match

    def _s3(self) -> Any:
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

    def _object(self, uri: str) -> S3Object:
        obj = parse_s3_uri(uri)
        self._bucket = obj.bucket
        return obj

    def _date(self, reply: dict[str, Any]) -> float:
        """The store's clock when it answered: the reply's ``Date`` (RFC 9110, every S3 reply has
        one). Our own clock only when the store sends none: a lease's age then is ours, off by as
        much as the clocks disagree."""
        said = _headers(reply).get("date")
        if said:
            try:
                return parsedate_to_datetime(said).timestamp()
            except (TypeError, ValueError):
                pass
        if not self._no_date_said:
            self._no_date_said = True
            log.warning("S3: the store's replies carry no usable Date header; using this clock")
        return time.time()

    def _seen(self, reply: dict[str, Any]) -> Seen:
        return Seen(
            etag=str(reply["ETag"]),
            size=int(reply["ContentLength"]),
            modified=reply["LastModified"].timestamp(),
            now=self._date(reply),
            marked=MARK_META in (reply.get("Metadata") or {}),  # a HEAD's: mdl's mark
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
                code, status = _reply_code(exc)
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
        obj = self._object(uri)
        try:
            with s3_errors(safe_text(uri)):
                reply = self._s3_small().head_object(Bucket=obj.bucket, Key=obj.key)
        except NotFoundError:
            return None
        return self._seen(reply)

    def read(self, uri: str, *, limit: int) -> tuple[bytes, Seen] | None:
        """A small object (a lease) and what the store says of it, or None: at most ``limit`` + 1
        bytes, none of an object its ``Content-Length`` says is bigger (the body is not read)."""
        obj = self._object(uri)
        try:
            with s3_errors(safe_text(uri)):
                reply = self._s3_small().get_object(Bucket=obj.bucket, Key=obj.key)
                body = reply["Body"]
                try:
                    small = int(reply["ContentLength"]) <= limit
                    data = bytes(body.read(limit + 1)) if small else b""
                finally:
                    body.close()
        except NotFoundError:
            return None
        return data, self._seen(reply)

    def create(self, uri: str, data: bytes) -> Seen | None:
        """``data`` written only if there is no such object (If-None-Match: *); None: there is."""
        obj = self._object(uri)
        client = self._s3_small()
        try:
            reply = self._conditional(
                safe_text(uri),
                lambda: client.put_object(
                    Bucket=obj.bucket, Key=obj.key, Body=data, IfNoneMatch="*"
                ),
            )
        except _Refused as refused:
            return self._ours(uri, data) if refused.retried else None
        return self._written(reply, size=len(data))

    def replace(self, uri: str, data: bytes, *, etag: str) -> Seen | None:
        """``data`` written only over version ``etag`` (If-Match); None: it changed or is gone."""
        obj = self._object(uri)
        client = self._s3_small()
        try:
            reply = self._conditional(
                safe_text(uri),
                lambda: client.put_object(Bucket=obj.bucket, Key=obj.key, Body=data, IfMatch=etag),
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
        obj = self._object(uri)
        # S3 answers 204 to a DELETE whether or not the object was there: a HEAD says which, and
        # compares the version where the store does not implement DeleteObject's If-Match.
        seen = self.head(uri)
        if seen is None or (etag is not None and seen.etag != etag):
            return False
        client, what = self._s3_small(), safe_text(uri)
        if etag is not None and self._delete_if_match:
            try:
                self._conditional(
                    what,
                    lambda: client.delete_object(Bucket=obj.bucket, Key=obj.key, IfMatch=etag),
                    gone_fails=True,
                )
            except _Refused:
                return False
            except NetworkError as exc:
                if exc.status not in _NO_CONDITIONAL_DELETE:
                    raise
                log.info("%s: the store refuses DeleteObject's If-Match; comparing by HEAD", what)
                self._delete_if_match = False
            else:
                return True
        # A plain delete after the HEAD above. The race: another machine replaces the object
        # between our HEAD and this DELETE, and we remove its version. For a lease that costs one
        # term: the new holder's renewal finds the lease gone, and the next taker creates it
        # afresh; a mirror object is only ever removed by prune, which leaves leased ones.
        with s3_errors(what):
            client.delete_object(Bucket=obj.bucket, Key=obj.key)
        return True

    def upload(self, uri: str, path: Path, *, size: int, sha256: str, root: str) -> bool:
        """The verified file at ``path``, written whole or not at all and only if there is no such
        object (If-None-Match: *), with the store's SHA-256 checksum and mdl's mark (its metadata:
        ``root`` is not needed); False: one is there. The bytes sent are hashed as read: a file
        that changed since it was verified is exit 6."""
        obj = self._object(uri)
        try:
            if size < MULTIPART_THRESHOLD:
                return self._put_whole(obj, path, size=size, sha256=sha256)
            return self._put_parts(obj, path, size=size, sha256=sha256)
        except OSError as exc:
            raise LocalFSError(
                f"{safe_text(uri)}: cannot read {printable(str(path))}: {exc.strerror or exc}"
            ) from exc

    def owned(self, uri: str, *, root: str) -> Seen | None:
        """The object (HEAD), ``marked`` when its metadata carries mdl's mark (the one writer of
        an object sets its metadata)."""
        return self.head(uri)

    def _put_whole(self, obj: S3Object, path: Path, *, size: int, sha256: str) -> bool:
        with path.open("rb") as handle:
            data = handle.read(size + 1)  # one byte more: a file that grew since is refused below
        _check_sent(
            obj, size=len(data), sha256=hashlib.sha256(data).hexdigest(), want=(size, sha256)
        )
        client = self._s3()
        try:
            self._conditional(
                safe_text(obj.uri),
                lambda: client.put_object(
                    Bucket=obj.bucket,
                    Key=obj.key,
                    Body=data,
                    ChecksumAlgorithm="SHA256",
                    ChecksumSHA256=_b64(sha256),  # the store refuses bytes that are not these
                    IfNoneMatch="*",
                    Metadata=mdl_metadata(sha256),
                ),
            )
        except _Refused as refused:
            # tried again after a lost reply: ours if its ETag is our bytes' MD5 (S3 without KMS)
            md5 = hashlib.md5(data, usedforsecurity=False).hexdigest()
            return refused.retried and self._has_etag(obj, md5)
        return True

    def _put_parts(
        self, obj: S3Object, path: Path, *, size: int, sha256: str, tries: int = CONFLICT_TRIES
    ) -> bool:
        """A multipart upload (a SHA-256 per part), completed only if there is no such object;
        aborted on any failure, so nothing half-written stays behind."""
        client, what = self._s3(), safe_text(obj.uri)
        with s3_errors(what):
            upload_id = client.create_multipart_upload(
                Bucket=obj.bucket,
                Key=obj.key,
                ChecksumAlgorithm="SHA256",
                Metadata=mdl_metadata(sha256),
            )["UploadId"]
        try:
            with path.open("rb") as handle:
                parts = self._send_parts(obj, upload_id, handle, size=size, sha256=sha256)
            done = self._complete(obj, upload_id, parts, sha256=sha256)
        except _Conflict:
            # AWS: a 409 to CompleteMultipartUpload means starting the upload again (the upload
            # id may be spent)
            self._abort(obj, upload_id)
            if tries <= 1:
                raise NetworkError(
                    f"{safe_text(obj.uri)}: another write to it was still in flight after"
                    f" {CONFLICT_TRIES} uploads (409 ConditionalRequestConflict)"
                ) from None
            log.info("%s: 409 on completing the upload; starting it again", safe_text(obj.uri))
            self._sleep(CONFLICT_BACKOFF * 2 ** (CONFLICT_TRIES - tries))
            return self._put_parts(obj, path, size=size, sha256=sha256, tries=tries - 1)
        except BaseException:
            self._abort(obj, upload_id)
            raise
        if not done:
            self._abort(obj, upload_id)
        return done

    def _complete(
        self, obj: S3Object, upload_id: str, parts: list[dict[str, Any]], *, sha256: str
    ) -> bool:
        """The upload completed only if there is no such object; False: there is. ``_Conflict``
        on a 409: the upload is to be started again."""
        import botocore.exceptions

        client, what = self._s3(), safe_text(obj.uri)
        try:
            with s3_errors(what):
                try:
                    client.complete_multipart_upload(
                        Bucket=obj.bucket,
                        Key=obj.key,
                        UploadId=upload_id,
                        MultipartUpload={"Parts": parts},
                        IfNoneMatch="*",
                    )
                except botocore.exceptions.ClientError as exc:
                    code, status = _reply_code(exc)
                    retried = bool(
                        ((exc.response or {}).get("ResponseMetadata") or {}).get("RetryAttempts")
                    )
                    if status == 412 or code == "PreconditionFailed":
                        raise _Refused(retried=retried) from None
                    if status == 409:
                        raise _Conflict from None
                    raise
        except _Refused as refused:
            return refused.retried and self._ours_parts(obj, parts)
        except NotFoundError:
            # NoSuchUpload: botocore tried again after a lost reply (a big object's completion can
            # outlast the read timeout) and the first try may have completed it: ours only if the
            # object there says our SHA-256
            if not self._says_sha256(obj, sha256):
                raise
        return True

    def _says_sha256(self, obj: S3Object, sha256: str) -> bool:
        try:
            with s3_errors(safe_text(obj.uri)):
                head = self._s3_small().head_object(Bucket=obj.bucket, Key=obj.key)
        except NotFoundError:
            return False
        return (head.get("Metadata") or {}).get(SHA256_META) == sha256

    def _ours_parts(self, obj: S3Object, parts: list[dict[str, Any]]) -> bool:
        """After a refused completion that botocore had tried before (a lost reply): whether the
        object there is this upload, by its multipart ETag (the MD5 of the parts' MD5s, "-N")."""
        try:
            md5s = b"".join(bytes.fromhex(str(p["ETag"]).strip('"')) for p in parts)
        except ValueError:  # a store whose part ETags are not MD5s: it cannot say
            return False
        md5 = hashlib.md5(md5s, usedforsecurity=False).hexdigest()
        return self._has_etag(obj, f"{md5}-{len(parts)}")

    def _has_etag(self, obj: S3Object, etag: str) -> bool:
        seen = self.head(obj.uri)
        return seen is not None and seen.etag.strip('"') == etag

    def _send_parts(
        self, obj: S3Object, upload_id: str, handle: BinaryIO, *, size: int, sha256: str
    ) -> list[dict[str, Any]]:
        """Read the file in order here (hashing it whole), send its parts on a few threads."""
        client, what = self._s3(), safe_text(obj.uri)
        chunk = part_size(size, minimum=PART_MINIMUM)
        whole, read = hashlib.sha256(), 0
        room = threading.BoundedSemaphore(PART_WORKERS)  # parts read but not yet sent
        failed = threading.Event()  # a part failed: read no further

        def send(number: int, data: bytes) -> dict[str, Any]:
            try:
                digest = base64.b64encode(hashlib.sha256(data).digest()).decode("ascii")
                with s3_errors(what):
                    reply = client.upload_part(
                        Bucket=obj.bucket,
                        Key=obj.key,
                        UploadId=upload_id,
                        PartNumber=number,
                        Body=data,
                        ChecksumAlgorithm="SHA256",
                        ChecksumSHA256=digest,
                    )
                return {"PartNumber": number, "ETag": reply["ETag"], "ChecksumSHA256": digest}
            except BaseException:
                failed.set()
                raise
            finally:
                room.release()

        futures: list[Future[dict[str, Any]]] = []
        with ThreadPoolExecutor(max_workers=PART_WORKERS) as pool:
            try:
                while not failed.is_set() and (data := handle.read(chunk)):
                    whole.update(data)
                    read += len(data)
                    room.acquire()
                    futures.append(pool.submit(send, len(futures) + 1, data))
                sent = [future.result() for future in futures]  # a part's failure raises here
                _check_sent(obj, size=read, sha256=whole.hexdigest(), want=(size, sha256))
                return sent
            except BaseException:
                for future in futures:
                    future.cancel()
                raise

    def _abort(self, obj: S3Object, upload_id: str) -> None:
        """Best effort: a failure is logged (the store's lifecycle rule, if any, reaps the parts);
        the caller's error says what went wrong."""
        import botocore.exceptions

        try:
            self._s3().abort_multipart_upload(Bucket=obj.bucket, Key=obj.key, UploadId=upload_id)
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
            if _reply_code(exc)[0] == "NoSuchUpload":  # completed after all (a lost reply)
                return
            log.warning(
                "%s: could not abort the multipart upload: %s",
                safe_text(obj.uri),
                safe_text(str(exc)),
            )

    def listing(self, prefix: str, *, most: int | None = None) -> Iterator[Listed]:
        """Every object whose URI starts with ``prefix`` (``s3://bucket/…``), a page at a time
        (``most``: the caller stops taking pages)."""
        shown = safe_text(prefix)
        bucket, _, key_prefix = prefix.removeprefix("s3://").partition("/")
        if not prefix.startswith("s3://") or not is_bucket_name(bucket):
            raise UsageError(f"{shown}: expected s3://bucket/prefix")
        self._bucket = bucket
        with s3_errors(shown):
            pages = (
                self._s3()
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
        """The multipart uploads under ``prefix`` begun before ``before`` (a fill killed midway
        leaves its parts, billed, never an object), aborted when ``remove``."""
        bucket, _, key_prefix = prefix.removeprefix("s3://").partition("/")
        found: list[Listed] = []
        with s3_errors(safe_text(prefix)):
            pages = self._s3().get_paginator("list_multipart_uploads")
            for page in pages.paginate(Bucket=bucket, Prefix=key_prefix):
                for upload in page.get("Uploads", []):
                    begun = upload["Initiated"].timestamp()
                    if begun >= before:
                        continue
                    obj = S3Object(bucket, upload["Key"])
                    if remove:
                        self._s3().abort_multipart_upload(
                            Bucket=bucket, Key=obj.key, UploadId=upload["UploadId"]
                        )
                    found.append(Listed(obj.uri, 0, begun))
        return found

    def now(self) -> float:
        """The store's clock: the ``Date`` of a HEAD of the last bucket used (a refusal carries
        one too), or of a bucket listing before any."""
        import botocore.exceptions

        client = self._s3_small()
        try:
            if self._bucket is not None:
                reply = client.head_bucket(Bucket=self._bucket)
            else:
                reply = client.list_buckets()
        except botocore.exceptions.ClientError as exc:
            # the store answered: its refusal still says the time
            reply = exc.response or {}
            if "date" not in _headers(reply):
                raise s3_error(exc, what="S3: the store's clock") from None
        except botocore.exceptions.BotoCoreError as exc:
            raise s3_error(exc, what="S3: the store's clock") from None
        return self._date(reply)


def _check_sent(obj: S3Object, *, size: int, sha256: str, want: tuple[int, str]) -> None:
    """The bytes read to send are the verified ones, or exit 6 before the object is complete."""
    if (size, sha256) != want:
        raise IntegrityError(
            f"{safe_text(obj.uri)}: the local file changed since it was verified ({size} bytes"
            f" with sha256 {sha256}, verified {want[0]} bytes with {want[1]}); not uploaded",
            hint="run `mdl verify` and try again",
        )
