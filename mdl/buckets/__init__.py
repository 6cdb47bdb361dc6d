"""Object stores (``s3://``, ``file://``) behind one Protocol, found by URL scheme: URIs and mirror
templates checked, GETs presigned for the engines, failures explained."""

from typing import TYPE_CHECKING

from mdl.lazy import export_lazily

if TYPE_CHECKING:
    from mdl.buckets.folder import (
        LOCAL_HOST,
        FolderStore,
        FolderWriter,
        file_etag,
        file_url,
        parse_file_uri,
    )
    from mdl.buckets.lease import (
        TERM,
        GaveUp,
        Lease,
        Renewing,
        honours_conditions,
        is_lease,
        lease_prefix,
        namespace,
        object_of,
        take,
        wait_for,
    )
    from mdl.buckets.protocol import (
        MARKS,
        ConditionalWritesIgnored,
        Listed,
        ObjectStore,
        Seen,
        StoredObject,
        Writer,
        folder_of,
    )
    from mdl.buckets.registry import STORES, Presigner, store_for, store_schemes
    from mdl.buckets.s3 import SHA256_META, mdl_metadata, parse_s3_prefix, s3_client, sha256_of_head

__all__ = [
    "LOCAL_HOST",
    "MARKS",
    "SHA256_META",
    "STORES",
    "TERM",
    "ConditionalWritesIgnored",
    "FolderStore",
    "FolderWriter",
    "GaveUp",
    "Lease",
    "Listed",
    "ObjectStore",
    "Presigner",
    "Renewing",
    "Seen",
    "StoredObject",
    "Writer",
    "file_etag",
    "file_url",
    "folder_of",
    "honours_conditions",
    "is_lease",
    "lease_prefix",
    "mdl_metadata",
    "namespace",
    "object_of",
    "parse_file_uri",
    "parse_s3_prefix",
    "s3_client",
    "sha256_of_head",
    "store_for",
    "store_schemes",
    "take",
    "wait_for",
]

export_lazily(
    __name__,
    {
        "LOCAL_HOST": "folder",
        "FolderStore": "folder",
        "FolderWriter": "folder",
        "file_etag": "folder",
        "file_url": "folder",
        "parse_file_uri": "folder",
        "TERM": "lease",
        "GaveUp": "lease",
        "Lease": "lease",
        "Renewing": "lease",
        "honours_conditions": "lease",
        "is_lease": "lease",
        "lease_prefix": "lease",
        "namespace": "lease",
        "object_of": "lease",
        "take": "lease",
        "wait_for": "lease",
        "MARKS": "protocol",
        "ConditionalWritesIgnored": "protocol",
        "Listed": "protocol",
        "ObjectStore": "protocol",
        "Seen": "protocol",
        "StoredObject": "protocol",
        "Writer": "protocol",
        "folder_of": "protocol",
        "STORES": "registry",
        "Presigner": "registry",
        "store_for": "registry",
        "store_schemes": "registry",
        "SHA256_META": "s3",
        "parse_s3_prefix": "s3",
        "s3_client": "s3",
        "sha256_of_head": "s3",
        "mdl_metadata": "s3",
    },
)
