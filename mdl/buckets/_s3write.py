"""The S3 store, writable (``S3Store.writer``): a mirror's leases and fills and ``publish``'s
uploads through one ``S3Writer``, the small conditional requests of ``_s3conditional.py`` and the
uploads of ``_s3upload.py`` (whole or not at all, hashed as sent) sharing its clients."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from mdl.buckets import names
from mdl.buckets._s3conditional import S3Conditional
from mdl.buckets._s3upload import S3Upload, holds_file
from mdl.buckets.protocol import Seen
from mdl.buckets.s3 import parse_s3_uri
from mdl.redact import Secrets

PART_WORKERS = 4  # parts in flight at once (each held in memory while it is sent)


class S3Writer(S3Conditional):
    """One mirror's (or publish target's) S3 store, writable, for one run: its small conditional
    requests (``S3Conditional``) and its uploads (``S3Upload``), every write conditional but
    ``publish``'s uploads (``overwrite``)."""

    def __init__(
        self,
        endpoint: str | None = None,
        *,
        secrets: Secrets | None = None,
        sleep: Callable[[float], None] = time.sleep,
        parts: int = PART_WORKERS,
    ) -> None:
        super().__init__(endpoint, secrets=secrets, sleep=sleep)
        # parts (and whole files) read but not yet sent, over all of this writer's uploads
        self.parts, self.room = parts, threading.BoundedSemaphore(parts)

    def holds(self, uri: str, path: Path, *, size: int, sha256: str) -> bool:
        """Whether the object is this file, by a SHA-256 the store computed (``holds_file``)."""
        return holds_file(self.client(), parse_s3_uri(uri), path, size=size, sha256=sha256)

    def owned(self, uri: str, *, root: str) -> Seen | None:
        """The object (HEAD), with mdl's mark if its metadata holds one made for this URI."""
        return self.head(uri)

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
        return S3Upload(self, parse_s3_uri(uri), path, size, sha256, overwrite, sent, side).send()

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
        """The object made from ``parts`` (this bucket's, ``path`` cut at the part size their
        names say) by the store: a multipart upload of copies (UploadPartCopy), each proved its
        range of ``path`` (the copy's SHA-256, else its ETag as the range's MD5), completed and
        marked as ``upload`` does. None: the store cannot (a copy refused, names of no one part
        size) or a part is not these bytes."""
        cut = {n.size if isinstance(n := names.parse(part), names.Part) else 0 for part in parts}
        return S3Upload(self, parse_s3_uri(uri), path, size, sha256, side=side).assembled(
            [parse_s3_uri(part) for part in parts], cut.pop() if len(cut) == 1 else 0
        )
