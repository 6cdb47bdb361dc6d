"""An OCI registry's manifests and indexes, read as untrusted input (bounded, parsed strictly) and
turned into the files a model's layers are.

No network here: mdl.sources.oci asks the registry and hands the bytes to these functions."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from mdl.errors import OutsideJSONError, RegistryReplyError
from mdl.outsidejson import read_json
from mdl.paths import check_digest, path_problem
from mdl.redact import printable

# distribution's limit for a manifest (registry/handlers/manifests.go: maxManifestBodySize)
MAX_MANIFEST_BYTES = 4 << 20
# a reference by digest as a hint spells it ("oci://…@" would read as a login, and be redacted)
BY_DIGEST = "oci://REGISTRY/REPOSITORY@sha256:DIGEST"
MAX_LAYERS = 10_000  # more files than any model has; a manifest past it is refused, not walked
MAX_BLOB_SIZE = 1 << 50  # a descriptor's size past a PiB is no file a model has
MANIFEST = "application/vnd.oci.image.manifest.v1+json"
INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MANIFESTS = frozenset({MANIFEST, DOCKER_MANIFEST})
INDEXES = frozenset({INDEX, DOCKER_LIST})
# what a manifest GET asks for (a Docker list last: a registry converts nothing then)
ACCEPT = ", ".join((MANIFEST, INDEX, DOCKER_MANIFEST, DOCKER_LIST))
MODELPACK_ARTIFACT = "application/vnd.cncf.model.manifest.v1+json"
MODELPACK_MEDIA = "application/vnd.cncf.model."  # ModelPack's media types (layers, config)
MODELPACK_PATH = "org.cncf.model.filepath"  # CNCF ModelPack: the file's path in the model
TITLE = "org.opencontainers.image.title"  # what oras push writes: the file's name
CREATED = "org.opencontainers.image.created"  # the time a manifest states (RFC 3339)
ORAS_UNPACK = "io.deis.oras.content.unpack"  # oras push of a folder: a tarball to unpack
# a layer media type that is a tar archive (+gzip, +zstd, Docker's rootfs.diff.tar.gzip)
_TAR = re.compile(r"[.+]tar(?:$|[.+])")


class Descriptor(NamedTuple):
    """A content descriptor: what a manifest says of one blob or one manifest."""

    media_type: str
    digest: str  # "sha256:<64 hex>", checked
    size: int
    annotations: Mapping[str, str]
    artifact_type: str | None = None
    platform: bool = False  # an index's entry for a platform image

    @property
    def sha256(self) -> str:
        return self.digest.removeprefix("sha256:")


@dataclass(frozen=True, eq=False, repr=False)
class Manifest:
    """An image manifest (the files are its layers) or an index (its ``manifests``)."""

    media_type: str
    artifact_type: str | None
    layers: tuple[Descriptor, ...]  # an image manifest's
    manifests: tuple[Descriptor, ...]  # an index's
    annotations: Mapping[str, str] = field(default_factory=dict)

    @property
    def is_index(self) -> bool:
        return self.media_type in INDEXES


class LayerFile(NamedTuple):
    """One layer as a file of the model: its path under the model folder, its size and sha256."""

    path: str
    size: int
    sha256: str


def read_registry_json(raw: bytes, *, what: str) -> Any:
    """The one place a registry's JSON (a manifest, a token service's reply) is read: bounded,
    UTF-8, numbers in range, nesting bounded."""
    if len(raw) > MAX_MANIFEST_BYTES:
        raise RegistryReplyError(f"{what} is larger than {MAX_MANIFEST_BYTES >> 20} MiB")
    try:
        return read_json(raw, source=what, limit=MAX_MANIFEST_BYTES)
    except OutsideJSONError as exc:  # a registry's answer: exit 5, as the rest of its faults
        raise RegistryReplyError(exc.message) from None


def parse_manifest(raw: bytes, *, content_type: str | None, what: str) -> Manifest:
    """A manifest or an index as the registry sent it, checked field by field (a field of the
    wrong type, a digest that is not sha256, a size out of range: RegistryReplyError naming it)."""
    doc = read_registry_json(raw, what=what)
    if not isinstance(doc, dict):
        raise RegistryReplyError(f"{what} is not a JSON object")
    if doc.get("schemaVersion") != 2 or isinstance(doc.get("schemaVersion"), bool):
        raise RegistryReplyError(f"{what}: schemaVersion is not 2")
    media_type = _text(doc, "mediaType", what=what, required=False) or (content_type or "")
    media_type = media_type.split(";")[0].strip()
    if media_type not in MANIFESTS | INDEXES:
        raise RegistryReplyError(
            f"{what}: media type {printable(media_type, limit=100)!r} is no OCI manifest or index"
        )
    artifact_type = _text(doc, "artifactType", what=what, required=False)
    key = "manifests" if media_type in INDEXES else "layers"
    entries = doc.get(key)
    if not isinstance(entries, list) or len(entries) > MAX_LAYERS:
        raise RegistryReplyError(f"{what}: {key} is not a list of at most {MAX_LAYERS} entries")
    found = tuple(_descriptor(e, what=f"{what}: {key}[{i}]") for i, e in enumerate(entries))
    notes = _annotations(doc, what=what)
    if media_type in INDEXES:
        return Manifest(media_type, artifact_type, (), found, notes)
    return Manifest(media_type, artifact_type, found, (), notes)


def _text(doc: Mapping[str, Any], key: str, *, what: str, required: bool = True) -> str | None:
    """``doc[key]`` as a string, or RegistryReplyError naming it."""
    value = doc.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or len(value) > 1024:
        raise RegistryReplyError(f"{what}: {key} is not a string")
    return value


def _descriptor(entry: object, *, what: str) -> Descriptor:
    """One descriptor, strictly: a media type, a sha256 digest, a size in range, string
    annotations."""
    if not isinstance(entry, dict):
        raise RegistryReplyError(f"{what} is not a JSON object")
    media_type = _text(entry, "mediaType", what=what)
    assert media_type is not None
    digest = check_digest(entry.get("digest"), what=f"{what}: its digest")
    size = entry.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size <= MAX_BLOB_SIZE:
        raise RegistryReplyError(f"{what}: size {printable(str(size), limit=40)} is out of range")
    artifact_type = _text(entry, "artifactType", what=what, required=False)
    platform = entry.get("platform") is not None
    annotations = _annotations(entry, what=what)
    return Descriptor(media_type, digest, size, annotations, artifact_type, platform)


def _annotations(entry: Mapping[str, Any], *, what: str) -> dict[str, str]:
    """A manifest's or a descriptor's annotations: strings only."""
    annotations = entry.get("annotations") or {}
    if not isinstance(annotations, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in annotations.items()
    ):
        raise RegistryReplyError(f"{what}: annotations are not strings")
    return annotations


def manifest_digest(raw: bytes) -> str:
    """A manifest's digest: the sha256 of its bytes as sent."""
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def pick_artifact(index: Manifest, *, what: str) -> Descriptor:
    """The model artifact an index names: its one entry with an artifact type (ModelPack's
    first) and no platform; a platform image is never taken for a model."""
    artifacts = [d for d in index.manifests if d.artifact_type and not d.platform]
    modelpack = [d for d in artifacts if d.artifact_type == MODELPACK_ARTIFACT]
    chosen = modelpack or artifacts
    if len(chosen) == 1 and chosen[0].media_type in MANIFESTS:
        return chosen[0]
    raise _no_one_artifact(index, chosen, what=what)


def _no_one_artifact(index: Manifest, chosen: list[Descriptor], *, what: str) -> RegistryReplyError:
    """Why the index names no one model manifest: none, several, or one that is an index."""
    if len(chosen) > 1:
        return RegistryReplyError(
            f"{what} is an index that names {len(chosen)} model artifacts; mdl does not guess",
            hint=f"name the one wanted by its digest ({BY_DIGEST})",
        )
    if chosen:
        why = f"whose model artifact is another index ({chosen[0].media_type})"
    else:
        kinds = {"a platform image" if d.platform else d.media_type for d in index.manifests}
        why = f"that names no model artifact (it names: {', '.join(sorted(kinds)) or 'nothing'})"
    return RegistryReplyError(
        f"{what} is an index {why}",
        hint=f"name the artifact's manifest by its digest ({BY_DIGEST})",
    )


def layer_files(manifest: Manifest, *, what: str) -> list[LayerFile]:
    """The manifest's layers as files under the model folder: each path by the rule for every
    name mdl did not choose, no two at one place; a tar layer refused naming it."""
    files = [_layer_file(layer, what=f"{what}: layer {layer.digest}") for layer in manifest.layers]
    from mdl.sources.resolve import listing_clash

    clash = listing_clash([f.path for f in files])
    if clash is not None:
        raise RegistryReplyError(
            f"{what} {clash}; the model was refused before anything was fetched"
        )
    return files


def _layer_file(layer: Descriptor, *, what: str) -> LayerFile:
    """One layer's path (ModelPack's filepath, else oras's title), refused if it has no path or
    is a tar, whatever annotation names it: a ModelPack tar media type (or any tar one under a
    ModelPack path), or oras's unpack annotation."""
    annotations = layer.annotations
    path = annotations.get(MODELPACK_PATH) or annotations.get(TITLE)
    if not path:
        raise RegistryReplyError(
            f"{what} names no file path ({MODELPACK_PATH} or {TITLE}); mdl reads layers as files"
        )
    media_type = layer.media_type.lower()
    modelpack = MODELPACK_PATH in annotations or media_type.startswith(MODELPACK_MEDIA)
    # oras's tar media type is also what `oras push FILE` gives a plain file: its title stays one
    if (modelpack and _TAR.search(media_type)) or annotations.get(ORAS_UNPACK) == "true":
        raise RegistryReplyError(
            f"{what} ({printable(path, limit=120)!r}) is a tar archive"
            f" ({printable(layer.media_type, limit=100)}); mdl reads raw layers only",
            hint="push the files as raw layers (ModelPack's .raw media types, or oras push FILE)",
        )
    problem = path_problem(path)
    if problem is not None:
        raise RegistryReplyError(
            f"{what} names a file mdl cannot save, {printable(path, limit=120)!r}: {problem};"
            " the model was refused before anything was fetched"
        )
    return LayerFile(path, layer.size, layer.sha256)
