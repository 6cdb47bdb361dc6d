"""The bucket side of ``mdl publish``: what it holds already (by SHA-256), uploads checksummed
and hashed as sent.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, BinaryIO

from mdl.buckets import (
    MiB,
    S3Object,
    S3Prefix,
    mdl_metadata,
    part_layout,
    part_size,
    s3_client,
    s3_error,
    s3_errors,
    sha256_of_head,
)
from mdl.errors import (
    AuthError,
    IntegrityError,
    InterruptedByUserError,
    LocalFSError,
    MdlError,
    NotFoundError,
)
from mdl.progress import Progress
from mdl.redact import Secrets, printable, safe_text
from mdl.report import FileOutcome, failed

log = logging.getLogger("mdl.publish")
HEAD_WORKERS = 16  # HEADs to decide what to skip are latency-bound: many at once
READ_CHUNK = MiB  # local reads when a multipart object's composite checksum is recomputed
# how often finished uploads are looked for (s3transfer futures have no completion callback)
POLL_SECONDS = 0.05
# the most of a model.sig or manifest read back (a signature is at most 64 MiB, as readers take)
SMALL_OBJECT_MAX = 64 << 20


@dataclass(frozen=True)
class ReadyFile:
    """A verified local file of a model: where its bytes are, and what they are."""

    model: str
    path: str  # save path in the model folder (the object key under <prefix>/<model>/)
    local: Path  # where the bytes are (a blob in the Hugging Face cache layout)
    size: int
    sha256: str
    source: str


class HashingReader:
    """A file read front to back, hashed as it goes. No ``seek``: s3transfer then reads it strictly
    in order, so the hash is of exactly the bytes sent. Opened at the first read (a batch of
    thousands holds only the ones in flight open), and kept open: one inode from start to end."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._handle: BinaryIO | None = None
        self.sha256, self.size = hashlib.sha256(), 0

    def read(self, amount: int = -1) -> bytes:
        if self._handle is None:
            if self.size:  # closed at its end: nothing more to read
                return b""
            self._handle = self.path.open("rb")
        data = self._handle.read(amount)
        self.sha256.update(data)
        self.size += len(data)
        # end of file: thousands queued hold no descriptor
        if amount is None or amount < 0 or len(data) < amount:
            self.close()
        return data

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


class Bucket:
    """The publish target: a bucket and prefix, through one boto3 client."""

    def __init__(
        self, target: S3Prefix, *, endpoint: str | None = None, secrets: Secrets | None = None
    ) -> None:
        self.target, self.client = target, s3_client(endpoint=endpoint, secrets=secrets)

    def _failures(self, what: str) -> AbstractContextManager[None]:
        return s3_errors(what, lambda exc, _: self._error(exc, what=what))

    def holds(self, key: str, file: ReadyFile) -> bool:
        """Whether the object at ``key`` is this file, by a SHA-256 the store computed: the
        full-object checksum, or the composite one recomputed from the local file cut as the
        object's parts are. Our ``x-amz-meta-sha256`` never decides: whoever can write the object
        can set it."""
        if (head := self._head(key)) is None or head.get("ContentLength") != file.size:
            return False
        if not isinstance(value := head.get("ChecksumSHA256"), str):
            return False
        full = sha256_of_head(head)
        # FULL_OBJECT: even of a multipart one
        if full is not None or head.get("ChecksumType") == "FULL_OBJECT":
            return (full or sha256_of_head({"ChecksumSHA256": value})) == file.sha256
        # Composite ("<b64>-N"; moto leaves the -N out, its ETag says multipart). A layout guessed
        # wrong costs an upload, never a wrong skip: equal composites mean equal part digests, so
        # equal bytes.
        digest, _, count = value.partition("-")
        first = self._head(key, PartNumber=1) or {}  # a part HEAD refused: no layout
        sizes = part_layout(
            file.size, first=first.get("ContentLength"), count=first.get("PartsCount")
        )
        if sizes is None or count not in ("", str(len(sizes))):
            return False
        return _composite_b64(file, sizes) == digest

    def _head(self, key: str, **extra: Any) -> dict[str, Any] | None:
        import botocore.exceptions

        try:
            head: dict[str, Any] = self.client.head_object(
                Bucket=self.target.bucket, Key=key, ChecksumMode="ENABLED", **extra
            )
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
            error = self._error(exc, what=self._shown(key))
            if isinstance(error, NotFoundError) or (
                extra and isinstance(exc, botocore.exceptions.ClientError)
            ):
                # a store that refuses part HEADs: the layout is unknown, the file goes up again
                return None
            raise error from None
        return head

    def key(self, file: ReadyFile) -> str:
        return self.target.key(file.model, file.path)

    def already_there(self, model: str, files: Sequence[ReadyFile]) -> set[str]:
        """The paths of ``files`` the bucket already holds with the same bytes (only those listed
        at their size).
        """
        prefix = self.target.key(model) + "/"
        with self._failures(self.target.uri(model)):
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.target.bucket, Prefix=prefix
            )
            sizes = {
                str(item["Key"]): int(item["Size"])
                for page in pages
                for item in page.get("Contents", [])
            }
        if not (candidates := [f for f in files if sizes.get(self.key(f)) == f.size]):
            return set()
        pool = ThreadPoolExecutor(max_workers=min(HEAD_WORKERS, len(candidates)))
        try:
            same = pool.map(lambda f: self.holds(self.key(f), f), candidates)
            return {f.path for f, kept in zip(candidates, list(same), strict=True) if kept}
        finally:
            # Ctrl-C does not wait for thousands of HEADs
            pool.shutdown(wait=False, cancel_futures=True)

    def send(
        self, files: Sequence[ReadyFile], *, connections: int, progress: Progress
    ) -> list[FileOutcome]:
        """Upload ``files`` through one transfer manager, each closed as soon as it is done, not in
        submission order. On an exception (Ctrl-C too) the manager cancels and aborts unfinished
        uploads."""
        from boto3.s3.transfer import (
            ProgressCallbackInvoker,
            TransferConfig,
            create_transfer_manager,
        )

        # one part size for the batch: its largest file's
        chunk = part_size(max(f.size for f in files))
        config = TransferConfig(
            multipart_threshold=chunk,
            multipart_chunksize=chunk,
            max_concurrency=connections,
            use_threads=True,
            # the classic manager: the CRT one (picked on some EC2 types) has another
            # non-seekable/checksum path
            preferred_transfer_client="classic",
        )
        # s3transfer keeps at most this many parts of non-seekable streams in memory at once.
        config.max_in_memory_upload_chunks = max(2, connections)
        outcomes: list[FileOutcome] = []
        try:
            with create_transfer_manager(self.client, config) as manager:
                pending: dict[int, tuple[ReadyFile, Any, HashingReader]] = {}
                try:
                    for index, f in enumerate(files):
                        reader = HashingReader(f.local)
                        extra = {"ChecksumAlgorithm": "SHA256", "Metadata": mdl_metadata(f.sha256)}
                        meter = [ProgressCallbackInvoker(_meter(progress, f))]
                        future = manager.upload(
                            reader,
                            self.target.bucket,
                            self.key(f),
                            extra_args=extra,
                            subscribers=meter,
                        )
                        pending[index] = (f, future, reader)
                    while pending:
                        done = [index for index, item in pending.items() if item[1].done()]
                        outcomes.extend(
                            self._close(*pending.pop(index), progress=progress) for index in done
                        )
                        if not done:
                            time.sleep(POLL_SECONDS)
                finally:
                    for _, _, reader in pending.values():  # interrupted: no descriptor is left open
                        reader.close()
        except KeyboardInterrupt:
            # The manager cancelled, aborting unfinished multipart uploads: complete objects stay,
            # to be skipped.
            raise InterruptedByUserError("interrupted while uploading") from None
        return outcomes

    def _close(
        self, f: ReadyFile, future: Any, reader: HashingReader, *, progress: Progress
    ) -> FileOutcome:
        """Wait for one file: bytes sent that are not the verified ones are deleted again (exit
        6).
        """
        label = f"{f.model}/{f.path}"
        try:
            self._finish(f, future, reader, label=label)
        except MdlError as exc:
            progress.finish(label, ok=False, message=exc.message.removeprefix(f"{label}: "))
            return replace(failed(f.model, f.path, exc), dest=self.target.uri(f.model, f.path))
        if f.size == 0:  # no bytes, no progress callback: its row starts here
            progress.start(label, label=label, total=0, model=f.model, path=f.path)
        progress.finish(label, ok=True)
        log.info("%s: uploaded to %s", label, self.target.uri(f.model, f.path))
        return self.outcome(f, "uploaded")

    def _finish(self, f: ReadyFile, future: Any, reader: HashingReader, *, label: str) -> None:
        try:
            with self._failures(label):
                future.result()
        except OSError as exc:
            raise LocalFSError(f"{label}: cannot read {f.local}: {exc.strerror or exc}") from exc
        finally:
            reader.close()
        sent = reader.sha256.hexdigest()
        if reader.size != f.size or sent != f.sha256:
            self.delete(self.key(f))
            raise IntegrityError(
                f"{label}: changed while it was uploaded ({reader.size} bytes with sha256 {sent},"
                f" verified {f.size} bytes with {f.sha256}); the object was removed again",
                hint="run `mdl verify` and publish again",
            )

    def outcome(self, f: ReadyFile, action: str) -> FileOutcome:
        """A file ``skipped`` (its object is already these bytes) or ``uploaded``."""
        reason = (
            "already in the bucket (the store's SHA-256 checksum matches)"
            if action == "skipped"
            else ""
        )
        fetched = f.size if action == "uploaded" else 0
        dest = self.target.uri(f.model, f.path)
        return FileOutcome(
            f.model, f.path, dest, f.size, f.sha256, action, reason=reason, fetched=fetched
        )

    def delete(self, key: str) -> None:
        """Best effort: a failure is logged, the caller's error says what went wrong."""
        import botocore.exceptions

        try:
            self.client.delete_object(Bucket=self.target.bucket, Key=key)
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
            log.warning("could not remove %s again: %s", self._shown(key), safe_text(str(exc)))

    def _shown(self, key: str) -> str:
        """An object of the bucket as messages name it (its key's control characters escaped)."""
        return S3Object(self.target.bucket, printable(key)).uri

    def read_small(self, key: str) -> bytes | None:
        """A ``model.sig`` or manifest of the bucket (None: none), read to at most one byte past
        what mdl writes of one: a bigger object is read no further, and equals nothing mdl
        writes."""
        try:
            with self._failures(self._shown(key)):
                body = self.client.get_object(Bucket=self.target.bucket, Key=key)["Body"]
                try:
                    return bytes(body.read(SMALL_OBJECT_MAX + 1))
                finally:
                    body.close()
        except NotFoundError:
            return None

    def put_small(self, key: str, data: bytes, *, content_type: str) -> None:
        with self._failures(self._shown(key)):
            self.client.put_object(
                Bucket=self.target.bucket,
                Key=key,
                Body=data,
                ContentType=content_type,
                ChecksumAlgorithm="SHA256",
                Metadata=mdl_metadata(hashlib.sha256(data).hexdigest()),
            )

    def _error(self, exc: BaseException, *, what: str) -> MdlError:
        error = s3_error(exc, what=safe_text(what))
        code = str(((getattr(exc, "response", None) or {}).get("Error") or {}).get("Code") or "")
        if code == "NoSuchBucket":
            error = NotFoundError(
                f"{safe_text(what)}: no such bucket {printable(self.target.bucket)!r}"
            )
        if isinstance(error, AuthError) and not error.hint:
            error.hint = (
                "publishing needs s3:ListBucket, s3:GetObject and s3:PutObject on the prefix"
            )
        return error


def _composite_b64(file: ReadyFile, sizes: Sequence[int]) -> str | None:
    """S3's composite SHA-256 of the local file cut into ``sizes`` (base64); None unless its
    verified bytes.
    """
    whole, digests = hashlib.sha256(), []
    try:
        with file.local.open("rb") as handle:
            for left in sizes:
                part = hashlib.sha256()
                while left:
                    if not (chunk := handle.read(min(left, READ_CHUNK))):
                        return None  # shorter than the object: not these bytes
                    part.update(chunk)
                    whole.update(chunk)
                    left -= len(chunk)
                digests.append(part.digest())
    except OSError as exc:  # the upload that follows reports it, for this file only
        log.info("%s/%s: cannot read %s to compare: %s", file.model, file.path, file.local, exc)
        return None
    composite = base64.b64encode(hashlib.sha256(b"".join(digests)).digest()).decode("ascii")
    return composite if whole.hexdigest() == file.sha256 else None


def _meter(progress: Progress, f: ReadyFile) -> Callable[[int], None]:
    """A file's progress from the transfer threads: its row starts with its first bytes on the
    wire.
    """
    label, lock, started = f"{f.model}/{f.path}", threading.Lock(), threading.Event()

    def advance(nbytes: int) -> None:
        with lock:
            if not started.is_set():
                started.set()
                progress.start(label, label=label, total=f.size, model=f.model, path=f.path)
        progress.advance(label, nbytes)

    return advance
