"""A mirror keeps every version it was given: each file once, by its content, at
``<prefix>/<model>/<sha256>`` (``LAYOUT``), and each version's manifest at
``<prefix>/.mdl/versions/<model>/<id>.json`` (``names.Version``), ``id`` being the version's own
digest (``version_id``). No object is keyed by a name a later version reuses: publishing v2 never
touches what v1's lock names, and a file both versions hold is stored once.

A manifest read back is outside bytes: read within ``MAX_MANIFEST_BYTES``, validated strictly, and
trusted for nothing but where to look (every byte a node fetches is held to its own pin; a signature
a manifest points at is verified with the catalog's signer and held to the files it must cover)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import asdict
from typing import Annotated

from pydantic import ConfigDict, Field, Strict
from pydantic.dataclasses import dataclass

from mdl.buckets import names
from mdl.errors import MdlError
from mdl.outsidejson import read_json
from mdl.signing.statement import git_path

# the template nodes read a published prefix with; `publish --to` writes exactly it
LAYOUT = "{model}/{sha256}"
MANIFEST_VERSION = 2
# a manifest of 100,000 files is ~25 MB: more is no manifest mdl wrote
MAX_MANIFEST_BYTES = 32 << 20

_STRICT = ConfigDict(extra="ignore")  # a later mdl may add keys; what is read is strict
_Hex64 = Annotated[str, Strict(), Field(pattern=r"^[0-9a-f]{64}$")]
_Text = Annotated[str, Strict(), Field(min_length=1, max_length=4096)]
_Size = Annotated[int, Strict(), Field(ge=0, le=2**63 - 1)]


def template_of(prefix: str) -> str:
    """The mirror template nodes use for what ``publish --to prefix`` wrote."""
    return f"{prefix.rstrip('/')}/{LAYOUT}"


def prefix_of(template: str) -> str | None:
    """The prefix a template of this layout reads (``s3://b/hub/{model}/{sha256}`` →
    ``s3://b/hub``); None when the template is of another shape."""
    head, sep, tail = template.rpartition("/" + LAYOUT)
    return head if sep and not tail and "{" not in head and "}" not in head else None


def version_id(files: Iterable[tuple[str, int, str]], *, signature: str | None = None) -> str:
    """A version's id: the SHA-256 of its files' (path, size, sha256), sorted by path, the file at
    ``signature`` (the model's model.sig, which signs the others) left out; what publish names its
    manifest by and a lock finds it by."""
    rows = sorted((p, s, h) for p, s, h in files if p != signature)
    canonical = json.dumps(rows, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def version_ids(files: Iterable[tuple[str, int, str]], *, signature: str) -> tuple[str, ...]:
    """The ids a version pinning ``files`` (path, size, sha256) may be published under, as
    ``publish`` names it (``signature``: the path of its signature file, left out): over every
    file, and over all but git's (a copy pulled signed never installs those, so its publish cannot
    name them)."""
    rows = list(files)
    every = version_id(rows, signature=signature)
    return tuple(dict.fromkeys((every, version_id(_without_git(rows), signature=signature))))


def _without_git(rows: list[tuple[str, int, str]]) -> list[tuple[str, int, str]]:
    return [row for row in rows if not git_path(row[0])]


def manifest_uri(prefix: str, model: str, vid: str) -> str:
    """Where the manifest of version ``vid`` of ``model`` lies under the published ``prefix``."""
    return names.Version(prefix.rstrip("/") + "/", model, vid).uri


@dataclass(frozen=True, config=_STRICT, slots=True)
class ManifestFile:
    """One file of a version: its save path in the model folder, its size and sha256 (its object
    is ``<prefix>/<model>/<sha256>``), and where it came from (redacted)."""

    path: _Text
    size: _Size
    sha256: _Hex64
    source: Annotated[str, Strict(), Field(max_length=8192)] = ""


@dataclass(frozen=True, config=_STRICT, slots=True)
class Manifest:
    """A published version of a model: what a node on its lock fetches, and the signature over
    it when one was published (``signature``: its file, stored by content like the rest)."""

    model: _Text
    id: _Hex64
    files: tuple[ManifestFile, ...]
    revision: Annotated[str, Strict(), Field(max_length=256)] | None = None
    commit: Annotated[str, Strict(), Field(max_length=256)] | None = None
    signature: ManifestFile | None = None
    version: Annotated[int, Strict()] = MANIFEST_VERSION

    def to_bytes(self) -> bytes:
        """The manifest as written: sorted, indented JSON, the same bytes for the same version
        (a re-publish compares and writes nothing)."""
        doc = {
            "version": self.version,
            "model": self.model,
            "id": self.id,
            "revision": self.revision,
            "commit": self.commit,
            "files": [asdict(f) for f in sorted(self.files, key=lambda f: f.path)],
            "signature": None if self.signature is None else asdict(self.signature),
        }
        text = json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False)
        return (text + "\n").encode("utf-8")


def parse_manifest(data: bytes) -> Manifest | None:
    """A manifest's bytes read back (at most ``MAX_MANIFEST_BYTES``); None when they are not one
    mdl writes (not JSON, another shape, an id that is not its files' own): never trusted
    further."""
    try:
        doc = read_json(data, source="a version manifest", limit=MAX_MANIFEST_BYTES)
        if not isinstance(doc, dict) or doc.get("version") != MANIFEST_VERSION:
            return None
        found = Manifest(
            model=doc["model"],
            id=doc["id"],
            files=tuple(ManifestFile(**f) for f in doc["files"]),
            revision=doc.get("revision"),
            commit=doc.get("commit"),
            signature=ManifestFile(**doc["signature"]) if doc.get("signature") else None,
        )
    except (MdlError, ValueError, KeyError, TypeError):  # ValidationError is a ValueError
        return None
    sig = found.signature.path if found.signature is not None else None
    rows = [(f.path, f.size, f.sha256) for f in found.files]
    if len({path for path, _, _ in rows}) < len(rows):  # mdl names a file once: a copy's rows
        return None
    return found if version_id(rows, signature=sig) == found.id else None
