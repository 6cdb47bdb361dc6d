"""The bucket side of ``mdl publish``: what is already there, uploads with S3's SHA-256 checksums, manifests.

Uploads go through boto3's transfer manager (s3transfer): parallel multipart uploads of big files, every part
sent with ``x-amz-checksum-sha256`` so that the store refuses a part damaged on the way. Each file is read once,
in order, from one open file (a file replaced on disk by a concurrent pull cannot splice into the upload), and
hashed as it is read: an object whose bytes were not the verified ones is deleted again.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from mdl.errors import AuthError, IntegrityError, LocalFSError, MdlError, NotFoundError
from mdl.redact import printable, safe_text
from mdl.sources import S3Prefix, s3_client, s3_error, sha256_of_head
from mdl.upload.local import ReadyFile

log = logging.getLogger("mdl.publish")

MiB = 1024 * 1024
MIN_PART = 16 * MiB  # S3 wants ≥ 5 MiB parts; 16 MiB keeps the request count low at real round-trip times
MAX_PARTS = 9_000  # S3 allows 10,000 parts per upload: leave room
HEAD_WORKERS = 16  # HEADs to decide what to skip are latency-bound: many at once
SHA256_META = "sha256"  # x-amz-meta-sha256: the object's full SHA-256 (a multipart checksum is of its parts)


def part_size(largest: int) -> int:
    """The multipart part size for a batch whose largest file is ``largest`` bytes: at least MIN_PART, in whole
    MiB, and few enough parts for S3's limit."""
    return max(MIN_PART, math.ceil(largest / MAX_PARTS / MiB) * MiB)


@dataclass(frozen=True)
class Upload:
    """One file to send: the verified local file and its key."""

    file: ReadyFile
    key: str


class HashingReader:
    """A file read front to back, hashed as it goes. It has no ``seek``: s3transfer then reads it strictly in
    order (its non-seekable path), so the hash is of exactly the bytes sent. Opened at the first read (a batch
    of thousands of files holds only the ones in flight open), and kept open: one inode from start to end."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._handle: BinaryIO | None = None
        self.sha256 = hashlib.sha256()
        self.size = 0

    def read(self, amount: int = -1) -> bytes:
        if self._handle is None:
            if self.size:  # closed at its end: nothing more to read
                return b""
            self._handle = self.path.open("rb")
        data = self._handle.read(amount)
        self.sha256.update(data)
        self.size += len(data)
        if amount is None or amount < 0 or len(data) < amount:  # end of file: thousands queued hold no descriptor
            self.close()
        return data

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


class Bucket:
    """The publish target: a bucket and prefix, through one boto3 client."""

    def __init__(self, target: S3Prefix, *, endpoint: str | None = None) -> None:
        self.target = target
        self.client = s3_client(endpoint=endpoint)

    def listed(self, model: str) -> dict[str, int]:
        """Key → size of every object under ``<prefix>/<model>/`` (a missing bucket is exit 4, denied 3)."""
        import botocore.exceptions

        found: dict[str, int] = {}
        prefix = self.target.key(model) + "/"
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.target.bucket, Prefix=prefix)
            for page in pages:
                for item in page.get("Contents", []):
                    found[str(item["Key"])] = int(item["Size"])
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
            raise self._error(exc, what=self.target.uri(model)) from None
        return found

    def holds(self, key: str, *, size: int, sha256: str) -> bool:
        """Whether the object at ``key`` is already this file: same size and SHA-256 (ours in its metadata, and
        the store's own full-object checksum where it keeps one)."""
        import botocore.exceptions

        try:
            head = self.client.head_object(Bucket=self.target.bucket, Key=key, ChecksumMode="ENABLED")
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
            error = self._error(exc, what=f"s3://{self.target.bucket}/{printable(key)}")
            if isinstance(error, NotFoundError):
                return False
            raise error from None
        stored = sha256_of_head(head)
        meta = (head.get("Metadata") or {}).get(SHA256_META)
        return head.get("ContentLength") == size and meta == sha256 and stored in (None, sha256)

    def already_there(self, uploads: Sequence[Upload], sizes: dict[str, int]) -> set[str]:
        """The keys of ``uploads`` the bucket already holds with the same bytes (HEADs in parallel, and only for
        keys listed with the right size)."""
        candidates = [u for u in uploads if sizes.get(u.key) == u.file.size]
        if not candidates:
            return set()
        pool = ThreadPoolExecutor(max_workers=min(HEAD_WORKERS, len(candidates)))
        try:
            same = pool.map(lambda u: self.holds(u.key, size=u.file.size, sha256=u.file.sha256), candidates)
            return {u.key for u, kept in zip(candidates, list(same), strict=True) if kept}
        finally:
            pool.shutdown(wait=False, cancel_futures=True)  # Ctrl-C does not wait for thousands of HEADs

    @contextmanager
    def uploader(self, *, connections: int, largest: int) -> Iterator[Any]:
        """A transfer manager for one batch: ``connections`` requests at once, parts sized for ``largest``; on
        an exception (Ctrl-C included) it cancels, and unfinished multipart uploads are aborted."""
        from boto3.s3.transfer import TransferConfig, create_transfer_manager

        chunk = part_size(largest)
        config = TransferConfig(
            multipart_threshold=chunk,
            multipart_chunksize=chunk,
            max_concurrency=connections,
            use_threads=True,
            # the classic manager: the CRT one (picked on some EC2 types) has another non-seekable/checksum path
            preferred_transfer_client="classic",
        )
        # s3transfer keeps at most this many parts of non-seekable streams in memory at once.
        config.max_in_memory_upload_chunks = max(2, connections)
        with create_transfer_manager(self.client, config) as manager:
            yield manager

    def start(self, manager: Any, upload: Upload, *, on_bytes: Callable[[int], None]) -> tuple[Any, HashingReader]:
        """Begin sending one file; its future and the reader that hashes what is sent."""
        from boto3.s3.transfer import ProgressCallbackInvoker

        reader = HashingReader(upload.file.local)
        extra = {"ChecksumAlgorithm": "SHA256", "Metadata": {SHA256_META: upload.file.sha256}}
        future = manager.upload(
            reader, self.target.bucket, upload.key, extra_args=extra, subscribers=[ProgressCallbackInvoker(on_bytes)]
        )
        return future, reader

    def finish(self, upload: Upload, future: Any, reader: HashingReader) -> None:
        """Wait for one file; the bytes sent must be the verified ones, else the object is deleted (exit 6)."""
        import botocore.exceptions

        label = f"{upload.file.model}/{upload.file.path}"
        try:
            future.result()
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
            raise self._error(exc, what=label) from None
        except OSError as exc:
            raise LocalFSError(f"{label}: cannot read {upload.file.local}: {exc.strerror or exc}") from exc
        finally:
            reader.close()
        sent = reader.sha256.hexdigest()
        if reader.size != upload.file.size or sent != upload.file.sha256:
            self.delete(upload.key)
            raise IntegrityError(
                f"{label}: changed while it was uploaded ({reader.size} bytes with sha256 {sent}, verified "
                f"{upload.file.size} bytes with {upload.file.sha256}); the object was removed again",
                hint="run `mdl verify` and publish again",
            )

    def delete(self, key: str) -> None:
        """Remove an object (best effort: a failure is logged, the caller's error says what went wrong)."""
        import botocore.exceptions

        try:
            self.client.delete_object(Bucket=self.target.bucket, Key=key)
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
            log.warning(
                "could not remove s3://%s/%s again: %s", self.target.bucket, printable(key), safe_text(str(exc))
            )

    def read_small(self, key: str) -> bytes | None:
        """A small object's bytes (a manifest), or None when there is none."""
        import botocore.exceptions

        try:
            reply = self.client.get_object(Bucket=self.target.bucket, Key=key)
            data: bytes = reply["Body"].read()
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
            error = self._error(exc, what=f"s3://{self.target.bucket}/{printable(key)}")
            if isinstance(error, NotFoundError):
                return None
            raise error from None
        return data

    def put_small(self, key: str, data: bytes, *, content_type: str) -> None:
        """Write a small object (a manifest) in one request, checked by the store against its SHA-256."""
        import botocore.exceptions

        try:
            self.client.put_object(
                Bucket=self.target.bucket,
                Key=key,
                Body=data,
                ContentType=content_type,
                ChecksumAlgorithm="SHA256",
                Metadata={SHA256_META: hashlib.sha256(data).hexdigest()},
            )
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
            raise self._error(exc, what=f"s3://{self.target.bucket}/{printable(key)}") from None

    def _error(self, exc: BaseException, *, what: str) -> MdlError:
        error = s3_error(exc, what=safe_text(what))
        code = str(((getattr(exc, "response", None) or {}).get("Error") or {}).get("Code") or "")
        if code == "NoSuchBucket":
            error = NotFoundError(f"{safe_text(what)}: no such bucket {printable(self.target.bucket)!r}")
        if isinstance(error, AuthError) and not error.hint:
            error.hint = "publishing needs s3:ListBucket, s3:GetObject and s3:PutObject on the prefix"
        return error
