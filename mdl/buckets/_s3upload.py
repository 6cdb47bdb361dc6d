"""Uploads to S3 (``S3Upload``): a verified file whole or not at all, hashed as it is read and sent
(one PUT, or a multipart upload with a SHA-256 per part, aborted on any failure), or assembled by
the store from copies of published parts; and whether an object is already a local file
(``holds_file``, by a SHA-256 the store computed)."""

from __future__ import annotations

import base64
import hashlib
import logging
import re
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from mdl.buckets._parts import MIN_PART, part_layout, upload_part_size
from mdl.buckets._s3conditional import (
    CONFLICT_BACKOFF,
    CONFLICT_TRIES,
    Refused,
    precondition_failed,
    put,
    was_retried,
)
from mdl.buckets.protocol import Seen
from mdl.buckets.s3 import S3Object, given, mdl_metadata, reply_code, s3_errors, sha256_of_head
from mdl.errors import IntegrityError, LocalFSError, NetworkError, NotFoundError
from mdl.redact import printable

log = logging.getLogger("mdl.s3")

# a file this big or bigger goes up in parts (a module constant: tests lower it)
MULTIPART_THRESHOLD = MIN_PART
PART_MINIMUM = MIN_PART  # the smallest part of an upload (S3 refuses parts under 5 MiB)
# what a store answers to an UploadPartCopy it will not do (not implemented, refused, the part not
# readable or gone): the object is then uploaded from the local file
_NO_COPY = (400, 403, 404, 405, 501)
# an ETag that is an MD5: of the bytes (a PUT's), or of the parts' MD5s and their count (multipart)
_MD5_ETAG = re.compile(r"(?P<md5>[0-9a-f]{32})(?:-(?P<parts>[1-9][0-9]{0,4}))?")


class Sender(Protocol):
    """What an upload needs of the writer it goes through (``S3Writer``)."""

    parts: int  # parts in flight at once
    # parts (and whole files) read but not yet sent, over all of the writer's uploads
    room: threading.BoundedSemaphore
    sleep: Callable[[float], None]  # between tries of a completion met by a 409

    def client(self) -> Any:
        """The client for uploads."""

    def head(self, uri: str) -> Seen | None:
        """The object (HEAD), with mdl's mark if it holds one made for it."""


class _Conflict(Exception):
    """409 to a CompleteMultipartUpload: another write to the key was in flight."""


def holds_file(client: Any, obj: S3Object, path: Path, *, size: int, sha256: str) -> bool:
    """Whether the object is already the file at ``path`` (``size`` bytes, ``sha256``), by a
    digest the store computed over its bytes: the full-object SHA-256 checksum, or the composite
    one recomputed from the local file cut as the object's parts are; a store that keeps no
    checksum (rclone's ``serve s3``, s3rver), by its ETag, the MD5 of the bytes (of a multipart
    object: of its parts' MD5s, ``-N``), with the local bytes' SHA-256 checked in the same read.
    Our ``x-amz-meta-sha256`` never decides: whoever can write the object can set it."""
    head = _checksummed(client, obj) or {}
    value = head.get("ChecksumSHA256")
    if head.get("ContentLength") != size:
        return False
    if not isinstance(value, str):
        return _etag_holds(client, obj, path, head, sha256)
    full = sha256_of_head(head)
    # FULL_OBJECT: even of a multipart one
    if full is not None or head.get("ChecksumType") == "FULL_OBJECT":
        return (full or sha256_of_head({"ChecksumSHA256": value})) == sha256
    # Composite ("<b64>-N"; moto leaves the -N out, its ETag says multipart). A layout guessed
    # wrong costs an upload, never a wrong skip: equal composites mean equal part digests, so
    # equal bytes.
    digest, _, count = value.partition("-")
    sizes = _layout(client, obj, size)
    if sizes is None or count not in ("", str(len(sizes))):
        return False
    digests = _cut(obj, path, sizes, sha256, hashlib.sha256)
    return (
        digests is not None
        and base64.b64encode(hashlib.sha256(b"".join(digests)).digest()).decode() == digest
    )


def _etag_holds(client: Any, obj: S3Object, path: Path, head: dict[str, Any], sha256: str) -> bool:
    """Whether the object's ETag is the MD5 of the local file's bytes (a multipart object's: of
    its parts' MD5s, cut as the store says, else as mdl's uploads cut), those bytes ``sha256``'s.
    An ETag that is no MD5 (an encrypted object's) costs an upload, never a wrong skip."""
    etag = str(head.get("ETag") or "").strip('"').lower()
    if not (found := _MD5_ETAG.fullmatch(etag)):
        return False
    size = given(head, "ContentLength", int, where=obj.uri)
    if found["parts"] is None:
        sizes: list[int] | None = [size]
    else:
        sizes = _layout(client, obj, size) or part_layout(
            size, first=upload_part_size(size, minimum=PART_MINIMUM), count=int(found["parts"])
        )
    if sizes is None or (found["parts"] is not None and len(sizes) != int(found["parts"])):
        return False
    digests = _cut(obj, path, sizes, sha256, hashlib.md5)
    if digests is None:
        return False
    if found["parts"] is None:
        return digests[0].hex() == found["md5"]
    return hashlib.md5(b"".join(digests)).hexdigest() == found["md5"]


def _layout(client: Any, obj: S3Object, size: int) -> list[int] | None:
    """The part sizes of the object as the store says (a HEAD of its first part); None: not
    said."""
    first = _checksummed(client, obj, PartNumber=1) or {}  # a part HEAD refused: no layout
    return part_layout(size, first=first.get("ContentLength"), count=first.get("PartsCount"))


def _checksummed(client: Any, obj: S3Object, **extra: Any) -> dict[str, Any] | None:
    """The object's HEAD with its checksum; None: none, or (a part's) refused."""
    import botocore.exceptions

    try:
        with s3_errors(obj.uri):
            try:
                head: dict[str, Any] = client.head_object(
                    Bucket=obj.bucket, Key=obj.key, ChecksumMode="ENABLED", **extra
                )
            except botocore.exceptions.ClientError:
                if extra:  # a store that refuses part HEADs: the layout is unknown
                    return None
                raise
    except NotFoundError:
        return None
    return head


def _cut(
    obj: S3Object, path: Path, sizes: list[int], sha256: str, part_hash: Callable[[], Any]
) -> list[bytes] | None:
    """The digests (``part_hash``) of the local file cut into ``sizes``; None unless its bytes
    are ``sha256``'s (or it cannot be read)."""
    whole, digests = hashlib.sha256(), []
    try:
        with path.open("rb") as handle:
            for left in sizes:
                part = part_hash()
                while left:
                    if not (chunk := handle.read(min(left, MIN_PART))):
                        return None  # shorter than the object: not these bytes
                    part.update(chunk)
                    whole.update(chunk)
                    left -= len(chunk)
                digests.append(part.digest())
    except OSError as exc:  # the upload that follows reports it, for this file only
        log.info("%s: cannot read %s to compare: %s", obj.uri, path, exc)
        return None
    return digests if whole.hexdigest() == sha256 else None


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

    writer: Sender
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

    def send(self) -> bool:
        """The file, whole or not at all: one PUT under ``MULTIPART_THRESHOLD`` bytes, else a
        multipart upload of its parts, a SHA-256 each (``_multipart``: its own parts are never
        declined)."""
        with _reading(self.obj.uri, self.path):
            if self.size < MULTIPART_THRESHOLD:
                return self._whole()
            return self._multipart(self._send_parts) is True

    def _whole(self) -> bool:
        """One PUT of the whole file, read to memory first (a part's worth of room)."""
        with self.writer.room:
            with self.path.open("rb") as handle:
                data = handle.read(self.size + 1)  # one byte more: a file that grew is refused
            self._check(len(data), hashlib.sha256(data).hexdigest())
            try:
                put(
                    self.writer.client(),
                    self.obj,
                    data,
                    sleep=self.writer.sleep,
                    sha256=self.sha256,  # the store refuses other bytes
                    metadata=self._metadata(),
                    **self._if_none(),
                )
            except Refused as refused:
                # tried again after a lost reply: ours if its ETag is our bytes' MD5 (no KMS)
                md5 = hashlib.md5(data, usedforsecurity=False).hexdigest()
                return refused.retried and self._has_etag(md5)
        if self.sent is not None and data:  # no bytes, no report (a folder's copy makes none)
            self.sent(len(data))
        return True

    def assembled(self, sources: list[S3Object], chunk: int) -> bool | None:
        """The object from copies of ``sources``, ``chunk`` bytes each but the last (a fleet's
        parts: ``S3Writer.assemble``); None: it cannot be."""
        count = -(-self.size // chunk) if chunk > 0 else 0
        if len(sources) != count or not count or any(s.bucket != self.obj.bucket for s in sources):
            log.info(
                "%s: %d parts cannot make it (%d parts of this bucket expected); uploading it",
                self.obj.uri,
                len(sources),
                count,
            )
            return None
        with _reading(self.obj.uri, self.path):
            return self._multipart(_Copies(self, sources, chunk))

    def _multipart(
        self, fill: Callable[[str], list[dict[str, Any]] | None], tries: int = CONFLICT_TRIES
    ) -> bool | None:
        """A multipart upload (SHA-256 checksums, mdl's metadata), its parts made by ``fill``
        (None: it cannot make them), completed only if there is no such object (unless
        ``overwrite``); aborted on any failure, so nothing half-written stays behind."""
        obj, client = self.obj, self.writer.client()
        with s3_errors(obj.uri):
            begun = client.create_multipart_upload(
                Bucket=obj.bucket,
                Key=obj.key,
                ChecksumAlgorithm="SHA256",
                Metadata=self._metadata(),
            )
        upload_id = given(begun, "UploadId", str, where=obj.uri)
        try:
            parts = fill(upload_id)
            if parts is not None and self.sent is not None:
                self.sent(0)  # the last word before the object is complete: it may stop it
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
            self.writer.sleep(CONFLICT_BACKOFF * 2 ** (CONFLICT_TRIES - tries))
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
                    if precondition_failed(exc):
                        raise Refused(retried=was_retried(exc)) from None
                    if reply_code(exc)[1] == 409:
                        raise _Conflict from None
                    raise
        except Refused as refused:
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
        return self._has_etag(
            f"{hashlib.md5(md5s, usedforsecurity=False).hexdigest()}-{len(parts)}"
        )

    def _has_etag(self, etag: str) -> bool:
        seen = self.writer.head(self.obj.uri)
        return seen is not None and seen.etag.strip('"') == etag

    def _send_parts(self, upload_id: str) -> list[dict[str, Any]]:
        """Read the file in order here (hashing it whole), send its parts on a few threads."""
        obj, client, room = self.obj, self.writer.client(), self.writer.room
        chunk = upload_part_size(self.size, minimum=PART_MINIMUM)
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
                etag = given(reply, "ETag", str, where=obj.uri)
                return {"PartNumber": number, "ETag": etag, "ChecksumSHA256": digest}
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


@dataclass(frozen=True)
class _Copies:
    """The parts of an upload made by the store from copies of ``sources`` (a fleet's published
    parts, ``chunk`` bytes each but the last), each proved its range of the verified file: the
    ``fill`` of :meth:`S3Upload._multipart` for :meth:`S3Upload.assembled`."""

    upload: S3Upload
    sources: list[S3Object]
    chunk: int

    def __call__(self, upload_id: str) -> list[dict[str, Any]] | None:
        """Copy each source as a part (a few at once) while the file is read here in order
        (hashing it whole); None: a copy was refused, or is not its range of the file."""
        import botocore.exceptions

        obj, client = self.upload.obj, self.upload.writer.client()

        def copy(number: int, source: S3Object, digest: str) -> dict[str, Any] | None:
            with s3_errors(obj.uri):
                try:
                    said = (
                        client.upload_part_copy(
                            Bucket=obj.bucket,
                            Key=obj.key,
                            UploadId=upload_id,
                            PartNumber=number,
                            CopySource={"Bucket": source.bucket, "Key": source.key},
                        ).get("CopyPartResult")
                        or {}
                    )
                except botocore.exceptions.ClientError as exc:
                    if reply_code(exc)[1] not in _NO_COPY:
                        raise
                    log.info("%s: the store does not copy %s into it: %s", obj.uri, source.uri, exc)
                    return None
            # the store's SHA-256 of the copy, else its ETag (a plain PUT's: the MD5 of the bytes,
            # read again only then: most stores say the SHA-256)
            checksum = said.get("ChecksumSHA256")
            if (checksum or str(said.get("ETag")).strip('"')) != (
                digest if checksum else self._md5(number)
            ):
                log.warning(
                    "%s: %s is not part %d of the verified file", obj.uri, source.uri, number
                )
                return None
            etag = given(said, "ETag", str, where=obj.uri)
            return {"PartNumber": number, "ETag": etag, "ChecksumSHA256": digest}

        whole, read = hashlib.sha256(), 0
        futures: list[Future[dict[str, Any] | None]] = []
        pool = ThreadPoolExecutor(self.upload.writer.parts)
        try:
            with self.upload.path.open("rb") as handle:
                for number, source in enumerate(self.sources, 1):
                    data = handle.read(self.chunk)
                    whole.update(data)
                    read += len(data)
                    digest = base64.b64encode(hashlib.sha256(data).digest()).decode("ascii")
                    futures.append(pool.submit(copy, number, source, digest))
                read += len(handle.read(1))  # a file that grew is not the verified one
            self.upload._check(read, whole.hexdigest())
            copied = [future.result() for future in futures]
        finally:
            pool.shutdown(cancel_futures=True)
        return None if None in copied else [part for part in copied if part]

    def _md5(self, number: int) -> str:
        """The MD5 of part ``number`` of the local file."""
        with self.upload.path.open("rb") as handle:
            handle.seek((number - 1) * self.chunk)
            return hashlib.md5(handle.read(self.chunk), usedforsecurity=False).hexdigest()
