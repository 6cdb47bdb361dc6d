"""The bucket side of ``mdl publish``: what it holds already (by SHA-256), uploads checksummed
and hashed as sent.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from mdl.buckets import (
    MiB,
    S3Object,
    S3Prefix,
    S3Writer,
    mdl_metadata,
    part_layout,
    s3_error,
    s3_errors,
    sha256_of_head,
)
from mdl.errors import AuthError, InterruptedByUserError, MdlError, NotFoundError
from mdl.progress import Progress
from mdl.redact import Secrets, printable
from mdl.report import FileOutcome, failed

log = logging.getLogger("mdl.publish")
HEAD_WORKERS = 16  # HEADs to decide what to skip are latency-bound: many at once
READ_CHUNK = MiB  # local reads when a multipart object's composite checksum is recomputed
NEEDS = "publishing needs s3:ListBucket, s3:GetObject and s3:PutObject on the prefix"
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


class Bucket:
    """The publish target: a bucket and prefix, through one writer (``S3Writer``: one client, its
    uploads ``connections`` parts in flight at most)."""

    def __init__(
        self,
        target: S3Prefix,
        *,
        endpoint: str | None = None,
        secrets: Secrets | None = None,
        connections: int = 2,
    ) -> None:
        self.writer = S3Writer(endpoint, secrets=secrets, parts=max(2, connections))
        self.target, self.client = target, self.writer.client()

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

    def send(self, files: Sequence[ReadyFile], *, progress: Progress) -> list[FileOutcome]:
        """Upload ``files``, as many at once as the writer has parts in flight, each closed as
        soon as it is done. Ctrl-C stops them all: unfinished multipart uploads are aborted,
        complete objects stay (to be skipped)."""
        stop = threading.Event()
        pool = ThreadPoolExecutor(max_workers=self.writer.parts)
        try:
            futures = [pool.submit(self._send, f, progress, stop) for f in files]
            return [future.result() for future in as_completed(futures)]
        except KeyboardInterrupt:
            stop.set()
            raise InterruptedByUserError("interrupted while uploading") from None
        finally:
            pool.shutdown(cancel_futures=True)

    def _send(self, f: ReadyFile, progress: Progress, stop: threading.Event) -> FileOutcome:
        """One file, uploaded over whatever is there (its object was compared first)."""
        label, uri = f"{f.model}/{f.path}", self.target.uri(f.model, f.path)
        try:
            self.writer.upload(
                uri,
                f.local,
                size=f.size,
                sha256=f.sha256,
                root=uri,
                overwrite=True,
                sent=_meter(progress, f, stop),
            )
        except MdlError as exc:
            if stop.is_set():
                raise
            if isinstance(exc, AuthError) and not exc.hint:
                exc.hint = NEEDS
            progress.finish(label, ok=False, message=exc.message.removeprefix(f"{uri}: "))
            return replace(failed(f.model, f.path, exc), dest=uri)
        if f.size == 0:  # no bytes, no progress callback: its row starts here
            progress.start(label, label=label, total=0, model=f.model, path=f.path)
        progress.finish(label, ok=True)
        log.info("%s: uploaded to %s", label, uri)
        return self.outcome(f, "uploaded")

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
            log.warning("could not remove %s again: %s", self._shown(key), exc)

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
        error = s3_error(exc, what=what)
        code = str(((getattr(exc, "response", None) or {}).get("Error") or {}).get("Code") or "")
        if code == "NoSuchBucket":
            error = NotFoundError(f"{what}: no such bucket {printable(self.target.bucket)!r}")
        if isinstance(error, AuthError) and not error.hint:
            error.hint = NEEDS
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


def _meter(progress: Progress, f: ReadyFile, stop: threading.Event) -> Callable[[int], None]:
    """A file's progress from the upload threads: its row starts with its first bytes on the
    wire; once ``stop`` is set, no more bytes go (the upload is aborted)."""
    label, lock, started = f"{f.model}/{f.path}", threading.Lock(), threading.Event()

    def advance(nbytes: int) -> None:
        if stop.is_set():
            raise InterruptedByUserError("interrupted while uploading")
        with lock:
            if not started.is_set():
                started.set()
                progress.start(label, label=label, total=f.size, model=f.model, path=f.path)
        progress.advance(label, nbytes)

    return advance
