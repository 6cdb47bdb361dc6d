"""A model's signatures in its registry: the OCI 1.1 referrers of its manifest whose artifact type
is a sigstore bundle (what ``model.sig`` is; the type cosign gives a bundle it attaches), found
through the referrers API (``GET /v2/REPO/referrers/DIGEST``), else, where a registry lacks it, the
referrers tag schema (an index tagged ``sha256-<hex of the manifest digest>``). Pointers only: a
bundle found here is fetched by its digest, and must verify against the catalog's signer and cover
the model's files exactly before it counts (mdl.download._ocisigned).

``attach_signature`` writes one (``publish --to oci://… --sign``): the bundle as the one layer of
an image manifest whose ``subject`` is the model's, pushed by digest, and added to the tag schema's
index where the registry has no referrers API."""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from mdl.errors import NotFoundError, RegistryReplyError
from mdl.paths import OciRef
from mdl.sources.ocimanifest import (
    INDEX,
    MANIFEST,
    MANIFESTS,
    Descriptor,
    Manifest,
    manifest_digest,
    parse_manifest,
    read_registry_json,
)

if TYPE_CHECKING:
    from mdl.sources.oci import Registry
    from mdl.sources.ocipush import RegistryWriter

log = logging.getLogger("mdl.oci")

SIGNATURE_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"  # cosign's, model_signing's
EMPTY_TYPE = "application/vnd.oci.empty.v1+json"  # the OCI empty descriptor's: the bytes ``{}``
EMPTY = b"{}"
MAX_SIGNATURES = 16  # referrers tried at most (anyone who may push can add one)


def fallback_tag(digest: str) -> str:
    """The referrers tag schema's tag for a subject: ``sha256-<hex>``."""
    return digest.replace(":", "-", 1)


def referrers(registry: Registry, ref: OciRef, *, what: str) -> Manifest | None:
    """The referrers index of ``ref``'s (pinned) manifest: the registry's listing (asked for
    signatures only; a registry may list more), else the index its fallback tag names; None: no
    referrer at all."""
    listing = _listed(registry, ref, what=what)
    if listing is None:  # no referrers API: the tag schema
        tagged = _tagged(registry, ref, what=what)
        listing = tagged[1] if tagged is not None else None
    return listing


def _listed(registry: Registry, ref: OciRef, *, what: str) -> Manifest | None:
    """The referrers API's index of ``ref``'s manifest; None: the registry has no such API."""
    assert ref.digest is not None
    url = f"{ref.base}/referrers/{ref.digest}?artifactType={quote(SIGNATURE_TYPE, safe='')}"
    got = registry.small_reply(ref, url, what=what)
    if got is None:
        return None
    return _index(got[0], got[1], what=f"{what}: the referrers of {ref.digest}")


def _tagged(registry: Registry, ref: OciRef, *, what: str) -> tuple[bytes, Manifest] | None:
    """The index the referrers tag schema names for ``ref``'s manifest (its bytes, and it read);
    None: no such tag."""
    assert ref.digest is not None
    tag = fallback_tag(ref.digest)
    got = registry.small_reply(ref, f"{ref.base}/manifests/{tag}", what=what)
    if got is None:
        return None
    return got[0], _index(got[0], got[1], what=f"{what}: the index tagged {tag}")


def _index(raw: bytes, content_type: str | None, *, what: str) -> Manifest:
    listing = parse_manifest(raw, content_type=content_type, what=what)
    if not listing.is_index:
        raise RegistryReplyError(f"{what} is not an index ({listing.media_type})")
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
            manifest = registry.manifest(ref._replace(tag=None, digest=entry.digest), what=what)[1]
        except NotFoundError:  # listed, since deleted
            continue
        bundles = [layer for layer in manifest.layers if layer.media_type == SIGNATURE_TYPE]
        if manifest.artifact_type != SIGNATURE_TYPE or len(bundles) != 1:
            log.info("%s: referrer %s is no signature mdl reads; passed over", what, entry.digest)
            continue
        found.append(bundles[0])
    return found


def referrer_manifest(subject: bytes, bundle: bytes) -> bytes:
    """The image manifest that attaches ``bundle`` (a signature) to the manifest ``subject`` (its
    bytes as pushed): its one layer, the OCI empty config, its ``subject`` that manifest's
    descriptor."""
    kind = parse_manifest(subject, content_type=None, what="the signed manifest").media_type
    doc = {
        "schemaVersion": 2,
        "mediaType": MANIFEST,
        "artifactType": SIGNATURE_TYPE,
        "config": _described(EMPTY_TYPE, EMPTY) | {"data": "e30="},
        "layers": [_described(SIGNATURE_TYPE, bundle)],
        "subject": _described(kind, subject),
    }
    return json.dumps(doc, separators=(",", ":")).encode()


def _described(media_type: str, data: bytes) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": manifest_digest(data), "size": len(data)}


def attach_signature(writer: RegistryWriter, subject: bytes, bundle: bytes, *, what: str) -> str:
    """``bundle`` attached to the manifest ``subject`` (its bytes, pushed to ``writer``'s
    repository) as a referrer pushed by digest, and, where the registry has no referrers API,
    added to the index its fallback tag names (read, added to, written back: two writers at once
    may lose one's entry, as the distribution spec warns); the referrer's digest."""
    from mdl.sources.ocipush import Blob

    writer.push_blob(Blob.of(EMPTY), what=f"{what}: the empty config")
    writer.push_blob(Blob.of(bundle), what=f"{what}: its signature")
    body = referrer_manifest(subject, bundle)
    said = f"{what}: its signature's referrer"
    digest = writer.push_manifest(body, media_type=MANIFEST, what=said)
    ref = writer.ref._replace(tag=None, digest=manifest_digest(subject))
    if _listed(writer.registry, ref, what=said) is None:
        entry = _described(MANIFEST, body) | {"artifactType": SIGNATURE_TYPE}
        _tag_referrer(writer, ref, entry, what=said)
    log.info("%s: %s attached to %s", said, digest, ref.digest)
    return digest


def _tag_referrer(writer: RegistryWriter, ref: OciRef, entry: dict[str, Any], *, what: str) -> None:
    """``entry`` added to the referrers tag schema's index of ``ref``'s manifest (made when none
    is tagged), every entry it had kept as it was."""
    assert ref.digest is not None
    tagged = _tagged(writer.registry, ref, what=what)
    doc: dict[str, Any] = {"schemaVersion": 2, "mediaType": INDEX, "manifests": []}
    if tagged is not None:
        doc = read_registry_json(tagged[0], what=what)
        if any(d.digest == entry["digest"] for d in tagged[1].manifests):
            return
    doc["manifests"].append(entry)
    body = json.dumps(doc, separators=(",", ":")).encode()
    writer.push_manifest(body, media_type=INDEX, what=what, tag=fallback_tag(ref.digest))
