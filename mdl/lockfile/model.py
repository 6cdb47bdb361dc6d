"""What a lock holds (plain frozen types: the rules they were checked by as the lock was read or
made are mdl.lockfile.checked's, which loads pydantic); a catalog entry's fingerprint; a locked
model to and from the ``ResolvedModel`` the download fetches."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from mdl.catalog.load import expand_headers
from mdl.catalog.specs import FileSpec, ModelSpec
from mdl.paths import parse_oci_source
from mdl.redact import Secrets, redact_url
from mdl.store.layout import HubFileRef, parse_hub_source

if TYPE_CHECKING:  # the HTTP side is loaded only by what fetches (a plain `mdl list` stays light)
    from mdl.lockfile.parts import PartHashes
    from mdl.sources.resolve import RemoteFile, ResolvedModel

LOCK_VERSION = 1

# (repo, path in repo, repo_type, revision) → the Hub resolve URL (the Hub client's file_url).
FileUrl = Callable[[str, str, str, str], str]
# (repo, repo_type, commit) → where the Hub gives a Xet read token for the repo at that commit.
TokenUrl = Callable[[str, str, str], str]


@dataclasses.dataclass(frozen=True, slots=True)
class LockedFile:
    """One file pinned: its save path in the model folder, its source, and exactly what it is
    (checked as a lock is read or made: mdl.lockfile.checked; this type itself checks nothing)."""

    path: str  # save path inside the model folder
    size: int
    sha256: str
    source: str  # hf://…@commit/path, or a URL sans secrets
    git_oid: str | None = None  # git blob id of small (non-LFS) Hub files
    # the branch or tag a Hub file of a multi-file model was asked at
    revision: str | None = None
    xet: str | None = None  # its Xet hash (Hub files in Xet)

    @property
    def hub(self) -> HubFileRef | None:  # None for a direct URL
        return parse_hub_source(self.source)


@dataclasses.dataclass(frozen=True, slots=True)
class LockedModel:
    """One model pinned: its catalog entry's fingerprint (a changed entry makes it stale) and its
    files (at least one, no two saved to one path: checked as the lock is read or made).
    """

    name: str
    fingerprint: str
    revision: str | None = None
    commit: str | None = None
    files: tuple[LockedFile, ...] = ()


@dataclasses.dataclass(frozen=True)
class Lock:
    models: Mapping[str, LockedModel] = dataclasses.field(default_factory=dict)

    def fresh(self, spec: ModelSpec) -> LockedModel | None:
        """The model's locked entry when it exists and matches the catalog entry as it is now;
        else None.
        """
        locked = self.models.get(spec.name)
        return locked if locked is not None and locked.fingerprint == fingerprint(spec) else None

    def with_models(
        self, models: Mapping[str, LockedModel], *, keep: Callable[[str], bool]
    ) -> Lock:
        """This lock with ``models`` put in, keeping only the old entries ``keep`` accepts."""
        merged = {**{name: m for name, m in self.models.items() if keep(name)}, **models}
        return Lock(models=dict(sorted(merged.items())))


def fingerprint(spec: ModelSpec) -> str:
    """A hash of what in a catalog entry decides which bytes it means: not its description, tags or
    headers (how to ask, not what to get); a presigned URL's new signature does change it (the entry
    is re-resolved)."""
    doc: dict[str, Any] = {
        k: getattr(spec, k) for k in ("repo", "repo_type", "revision", "include", "exclude")
    }
    file_keys = ("repo", "path", "url", "revision", "repo_type", "sha256", "size")
    doc["files"] = [{"as": f.save_as, **{k: getattr(f, k) for k in file_keys}} for f in spec.files]
    if spec.oci is not None:  # (only then: the fingerprints of other entries stay as they were)
        doc["oci"] = spec.oci
    # its model.sig is one of the model's files (whom it trusts is not: no bytes)
    if spec.signature is not None:
        doc["signature"] = spec.signature.file
    canonical = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def resolved_from_locked(
    locked: LockedModel,
    *,
    file_url: FileUrl,
    token_url: TokenUrl,
    spec: ModelSpec | None,
    environ: Mapping[str, str],
    secrets: Secrets,
    parts: Mapping[str, PartHashes] | None = None,
) -> ResolvedModel:
    """The files to fetch for a locked model, with no Hub listing. Direct URLs come from the catalog
    entry (``spec``: a signed query and headers the lock never holds), else (``--frozen``) from the
    lock as written; a Hub file's Xet hash from the lock, its token asked for at the pinned commit;
    a file's range trust from the part hashes beside the lock (``parts``) held for its very bytes.
    """
    catalog_files = {f.save_path: f for f in spec.files} if spec is not None else {}
    from mdl.lockfile.parts import trust_for
    from mdl.sources.resolve import RemoteFile, ResolvedModel, XetRef

    files: list[RemoteFile] = []
    for f in locked.files:
        ref = f.hub
        extra: dict[str, Any]
        if ref is not None and ref.commit is not None:
            url = file_url(ref.repo, ref.path, ref.repo_type, ref.commit)
            extra = {
                "git_oid": f.git_oid,
                "commit": ref.commit,
                "source": f.source,
                "hub": True,
                "repo": ref.repo,
            }
            extra["revision"] = f.revision or locked.revision
            extra["xet"] = (
                XetRef(f.xet, token_url(ref.repo, ref.repo_type, ref.commit)) if f.xet else None
            )
        elif (oci := parse_oci_source(f.source)) is not None:  # a blob of the pinned manifest
            url, extra = oci[0].blob_url(f"sha256:{f.sha256}"), {"source": f.source}
        else:
            url, extra = _direct(f, catalog_files.get(f.path), environ=environ, secrets=secrets)
        extra["trust"] = trust_for(parts, f.sha256, f.size) if parts else None
        files.append(
            RemoteFile(
                model=locked.name, path=f.path, url=url, size=f.size, sha256=f.sha256, **extra
            )
        )
    return ResolvedModel(locked.name, locked.revision, locked.commit, tuple(files))


def _direct(
    f: LockedFile, entry: FileSpec | None, *, environ: Mapping[str, str], secrets: Secrets
) -> tuple[str, dict[str, Any]]:
    """A locked direct URL: the catalog's entry only when it names this URL (a lock given by
    --lock may pin another version's, at the same path), else the lock's as written."""
    if entry is None or not entry.url or redact_url(entry.url) != f.source:
        entry = None
    url = entry.url if entry is not None and entry.url else f.source
    secrets.add_url(url)  # a lock written by hand may hold a signed URL
    extra: dict[str, Any] = {
        "source": redact_url(url),
        "headers": expand_headers(entry, environ) if entry is not None else (),
        "typed": True,  # the catalog's URL, or the lock's as written from it
    }
    return url, extra
