"""Object stores (``s3://``) behind one Protocol, found by URL scheme: URIs and mirror templates
checked, GETs presigned for the engines, failures explained."""

from mdl.buckets.lease import LEASE_SUFFIX, is_lease, is_stale
from mdl.buckets.protocol import Listed, ObjectStore, Seen, StoredObject, Writer
from mdl.buckets.registry import STORES, Presigner, store_for, store_schemes
from mdl.buckets.s3 import (
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
    "STORES",
    "Listed",
    "ObjectStore",
    "Presigner",
    "S3Object",
    "S3Prefix",
    "Seen",
    "StoredObject",
    "Writer",
    "is_lease",
    "is_stale",
    "parse_s3_prefix",
    "s3_client",
    "s3_error",
    "s3_errors",
    "sha256_of_head",
    "store_for",
    "store_schemes",
]
