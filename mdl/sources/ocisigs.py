"""A model's signatures in its registry: the OCI 1.1 referrers of its manifest whose artifact type
is a sigstore bundle (what ``model.sig`` is; the type cosign gives a bundle it attaches), found
through the referrers API (``GET /v2/REPO/referrers/DIGEST``), else, where a registry lacks it, the
referrers tag schema (an index tagged ``sha256-<hex of the manifest digest>``). Pointers only: a
bundle found here is fetched by its digest, and must verify against the catalog's signer and cover
the model's files exactly before it counts (mdl.download._ocisigned)."""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import TYPE_CHECKING
from urllib.parse import quote

from mdl.errors import NotFoundError, RegistryReplyError
from mdl.paths import OciRef
from mdl.sources.ocimanifest import MANIFESTS, Descriptor, Manifest, parse_manifest

if TYPE_CHECKING:
    from mdl.sources.oci import Registry

log = logging.getLogger("mdl.oci")

SIGNATURE_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"  # cosign's, model_signing's
EMPTY_TYPE = "application/vnd.oci.empty.v1+json"  # the OCI empty descriptor's: the bytes ``{}``
MAX_SIGNATURES = 16  # referrers tried at most (anyone who may push can add one)


def fallback_tag(digest: str) -> str:
    """The referrers tag schema's tag for a subject: ``sha256-<hex>``."""
    return digest.replace(":", "-", 1)


def referrers(registry: Registry, ref: OciRef, *, what: str) -> Manifest | None:
    """The referrers index of ``ref``'s (pinned) manifest: the registry's listing (asked for
    signatures only; a registry may list more), else the index its fallback tag names; None: no
    referrer at all."""
    assert ref.digest is not None
    url = f"{ref.base}/referrers/{ref.digest}?artifactType={quote(SIGNATURE_TYPE, safe='')}"
    said = f"{what}: the referrers of {ref.digest}"
    got = registry.small_reply(ref, url, what=what)
    if got is not None:
        listing = parse_manifest(got[0], content_type=got[1], what=said)
    else:  # no referrers API: the tag schema
        tagged = replace(ref, tag=fallback_tag(ref.digest), digest=None)
        try:
            listing = registry.manifest(tagged, what=what)[1]
        except NotFoundError:
            return None
    if not listing.is_index:
        raise RegistryReplyError(f"{said} are not an index ({listing.media_type})")
    return listing


def signature_layers(registry: Registry, ref: OciRef, *, what: str) -> list[Descriptor]:
    """The bundles the signature referrers of ``ref``'s manifest hold (one layer each), in the
    listing's order; a referrer of another shape is passed over (said in the log)."""
    listing = referrers(registry, ref, what=what)
    entries = [
        d
        for d in (listing.manifests if listing is not None else ())
        if d.artifact_type == SIGNATURE_TYPE and d.media_type in MANIFESTS
    ]
    if len(entries) > MAX_SIGNATURES:
        shown = (what, len(entries), MAX_SIGNATURES)
        log.warning("%s: %d signature referrers; the first %d tried", *shown)
    found: list[Descriptor] = []
    for entry in entries[:MAX_SIGNATURES]:
        try:
            manifest = registry.manifest(replace(ref, tag=None, digest=entry.digest), what=what)[1]
        except NotFoundError:  # listed, since deleted
            continue
        bundles = [layer for layer in manifest.layers if layer.media_type == SIGNATURE_TYPE]
        if manifest.artifact_type != SIGNATURE_TYPE or len(bundles) != 1:
            log.info("%s: referrer %s is no signature mdl reads; passed over", what, entry.digest)
            continue
        found.append(bundles[0])
    return found
