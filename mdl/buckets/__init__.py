"""Object stores (``s3://``, ``file://``) behind one Protocol, found by URL scheme: URIs and mirror
templates checked, GETs presigned for the engines, failures explained."""

from mdl.buckets.folder import (
    LOCAL_HOST,
    FolderStore,
    FolderWriter,
    file_etag,
    file_url,
    parse_file_uri,
)
from mdl.buckets.lease import (
    LEASE_SUFFIX,
    TERM,
    Lease,
    Renewing,
    honours_conditions,
    is_lease,
    is_stale,
    lease_uri,
    take,
    wait_for,
)
from mdl.buckets.parts import MiB, part_layout, part_size
from mdl.buckets.protocol import (
    ConditionalWritesIgnored,
    Listed,
    ObjectStore,
    Seen,
    StoredObject,
    Writer,
)
from mdl.buckets.registry import STORES, Presigner, store_for, store_schemes
from mdl.buckets.s3 import (
    SHA256_META,
    S3Object,
    S3Prefix,
    parse_s3_prefix,
    s3_client,
    s3_error,
    s3_errors,
    sha256_of_head,
)

__all__ = [
    "LEASE_SUFFIX",
    "LOCAL_HOST",
    "SHA256_META",
    "STORES",
    "TERM",
    "ConditionalWritesIgnored",
    "FolderStore",
    "FolderWriter",
    "Lease",
    "Listed",
    "MiB",
    "ObjectStore",
    "Presigner",
    "Renewing",
    "S3Object",
    "S3Prefix",
    "Seen",
    "StoredObject",
    "Writer",
    "file_etag",
    "file_url",
    "honours_conditions",
    "is_lease",
    "is_stale",
    "lease_uri",
    "parse_file_uri",
    "parse_s3_prefix",
    "part_layout",
    "part_size",
    "s3_client",
    "s3_error",
    "s3_errors",
    "sha256_of_head",
    "store_for",
    "store_schemes",
    "take",
    "wait_for",
]
