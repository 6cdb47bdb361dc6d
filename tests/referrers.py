"""Signatures as OCI referrers, made in the test as a registry client would push them: the bundle
as the one layer of an image manifest whose ``subject`` is the model's manifest, its config the OCI
empty descriptor, and (a registry without the referrers API, such as distribution 2.8) an index
under the referrers tag schema's ``sha256-<hex>`` tag."""

from __future__ import annotations

import json
from typing import Any

from registry import EMPTY_CONFIG, INDEX, MANIFEST, DistributionRegistry, sha256_digest

BUNDLE = "application/vnd.dev.sigstore.bundle.v0.3+json"
EMPTY = "application/vnd.oci.empty.v1+json"


def referrer(subject: str, subject_size: int, bundle: bytes) -> bytes:
    """The referrer manifest of ``bundle`` for the manifest ``subject``."""
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": MANIFEST,
            "artifactType": BUNDLE,
            "config": {"mediaType": EMPTY, "digest": sha256_digest(EMPTY_CONFIG), "size": 2},
            "layers": [{"mediaType": BUNDLE, "digest": sha256_digest(bundle), "size": len(bundle)}],
            "subject": {"mediaType": MANIFEST, "digest": subject, "size": subject_size},
        }
    ).encode()


def index_of(*entries: tuple[str, int]) -> bytes:
    """A referrers index naming the referrer manifests ``entries`` (digest, size)."""
    manifests: list[dict[str, Any]] = [
        {"mediaType": MANIFEST, "digest": digest, "size": size, "artifactType": BUNDLE}
        for digest, size in entries
    ]
    return json.dumps({"schemaVersion": 2, "mediaType": INDEX, "manifests": manifests}).encode()


def attach(
    registry: DistributionRegistry, repository: str, subject: str, bundles: list[bytes]
) -> list[tuple[str, int]]:
    """``bundles`` pushed as referrers of ``subject`` (a manifest of ``repository``), by digest;
    their (digest, size), in order. Tagging the index is the caller's (``tag_index``)."""
    registry.push_blob(repository, EMPTY_CONFIG)
    size = len(manifest_bytes(registry, repository, subject))
    pushed = []
    for bundle in bundles:
        registry.push_blob(repository, bundle)
        body = referrer(subject, size, bundle)
        pushed.append((registry.push_manifest(repository, sha256_digest(body), body), len(body)))
    return pushed


def tag_index(
    registry: DistributionRegistry, repository: str, subject: str, entries: list[tuple[str, int]]
) -> None:
    """The referrers tag schema: the index of ``entries`` tagged ``sha256-<hex of subject>``."""
    tag = subject.replace(":", "-", 1)
    registry.push_manifest(repository, tag, index_of(*entries), INDEX)


def manifest_bytes(registry: DistributionRegistry, repository: str, digest: str) -> bytes:
    import httpx2

    got = httpx2.get(
        f"{registry.url}/v2/{repository}/manifests/{digest}",
        headers={"Accept": f"{MANIFEST}, {INDEX}", **registry.pusher(repository)},
        timeout=30,
    )
    assert got.status_code == 200, got.text
    return got.content
