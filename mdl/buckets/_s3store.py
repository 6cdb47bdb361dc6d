"""``S3Store``: the registry's store for ``s3://``: reads and presigned GETs through
``mdl/buckets/s3.py``, conditional writes through ``mdl/buckets/_s3write.py``."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from mdl.buckets.protocol import StoredObject
from mdl.buckets.s3 import (
    S3Signer,
    head_s3,
    is_bucket_name,
    parse_s3_uri,
    presign_get,
    s3_client,
    sha256_of_head,
)
from mdl.errors import UsageError
from mdl.redact import Secrets, safe_text

if TYPE_CHECKING:
    from mdl.buckets._s3write import S3Writer  # (loaded by the first write: a pull only reads)

_ERROR_CODE = re.compile(r"<Code>\s*([A-Za-z0-9.]{1,64})\s*</Code>")
_CODE_WORDS = {
    "NoSuchBucket": "no such bucket",
    "NoSuchKey": "not in the bucket",
    "AccessDenied": "access denied",
    "InvalidAccessKeyId": "access denied (unknown access key)",
    "SignatureDoesNotMatch": "access denied (bad signature: check the secret key)",
    "ExpiredToken": "access denied (the credentials expired)",
    "SlowDown": "throttled (503 SlowDown)",
}


# What an S3 store answers when the mirror as a whole cannot serve us (the keys, the bucket), as
# opposed to AccessDenied / NoSuchKey, which a read-only policy without s3:ListBucket also answers
# for one missing object; and the s3 extra missing (boto3).
_S3_DOWN = (
    "mdl[s3]",
    "NoSuchBucket",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "AllAccessDisabled",
)


class S3Store:
    """``s3://`` for the registry: buckets by boto3, GETs presigned."""

    scheme = "s3"
    takes_endpoint = True  # a MinIO or another compatible beside AWS
    quotes_values = False  # keys are quoted when signed

    def check_template(self, template: str, *, where: str) -> None:
        """The bucket of an ``s3://bucket/prefix/{model}/{path}`` mirror must be a bucket name."""
        bucket = template[len("s3://") :].partition("/")[0]
        if not is_bucket_name(bucket):
            raise UsageError(
                f"{where}: {bucket!r} is not a bucket name in {template!r}"
                " (s3://bucket/prefix/{model}/{path})"
            )

    def one_off(self, uri: str, *, secrets: Secrets | None) -> StoredObject:
        """An ``s3://`` argument of ``mdl get``: a presigned URL, the HEAD's size and SHA-256."""
        obj = parse_s3_uri(uri)
        client = s3_client(secrets=secrets)
        head = head_s3(client, obj)
        size = head.get("ContentLength")
        size = size if isinstance(size, int) else None
        return StoredObject(
            obj.key.rsplit("/", 1)[-1],
            presign_get(client, obj),
            size,
            sha256_of_head(head),
            where=safe_text(obj.uri),
        )

    def signer(self, *, endpoint: str | None, secrets: Secrets | None) -> S3Signer:
        """A presigner with one client for ``endpoint`` (made at its first use)."""
        return S3Signer(endpoint, secrets=secrets)

    def reason(self, text: str | None, status: int | None) -> str | None:
        """What an S3 error reply to a presigned request says, in a few words (its XML
        ``<Code>``), or None."""
        found = _ERROR_CODE.search(text or "")
        if found is None:
            return None
        code = found.group(1)
        return _CODE_WORDS.get(code, f"{code} (HTTP {status})" if status else code)

    def is_down(self, said: str) -> bool:
        """No such bucket, or keys the store does not take."""
        return any(code in said for code in _S3_DOWN)

    def writer(self, *, endpoint: str | None, secrets: Secrets | None, parts: int = 4) -> S3Writer:
        """The store, writable: conditional writes through one client (made at its first use)."""
        from mdl.buckets._s3write import S3Writer

        return S3Writer(endpoint, secrets=secrets, parts=parts)
