"""What a lock holds (models, files, pins), how a catalog entry is fingerprinted, and the conversions between a
locked model and the ``ResolvedModel`` the download part fetches."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mdl.catalog import ModelSpec, expand_headers
from mdl.errors import UsageError
from mdl.redact import redact_url, remember_url_secrets
from mdl.store import HubFileRef, hub_source, parse_hub_source

if TYPE_CHECKING:  # the HTTP side is loaded only by what fetches (a plain `mdl list` stays light)
    from mdl.sources import RemoteFile, ResolvedModel

LOCK_VERSION = 1

# (repo, path in repo, repo_type, revision) → the Hub resolve URL (the Hub client's file_url).
FileUrl = Callable[[str, str, str, str], str]


@dataclass(frozen=True)
class LockedFile:
    """One file pinned: where it goes in the model folder, where it comes from, and exactly what it is."""

    path: str  # save path inside the model folder
    size: int
    sha256: str
    source: str  # hf://[datasets/|spaces/]owner/name@commit/path, or a direct URL without secrets
    git_oid: str | None = None  # git blob id of small (non-LFS) Hub files
    revision: str | None = None  # the branch or tag a Hub file of a multi-file model was asked at

    @property
    def hub(self) -> HubFileRef | None:
        """Repo, type, commit and path in the repo of a Hub file; None for a direct URL."""
        return parse_hub_source(self.source)


@dataclass(frozen=True)
class LockedModel:
    """One model pinned: the fingerprint of its catalog entry (a changed entry makes it stale) and its files."""

    name: str
    fingerprint: str
    revision: str | None
    commit: str | None
    files: tuple[LockedFile, ...]


@dataclass(frozen=True)
class Lock:
    """A whole lock file: models by name."""

    models: Mapping[str, LockedModel] = field(default_factory=dict)
    version: int = LOCK_VERSION

    def fresh(self, spec: ModelSpec) -> LockedModel | None:
        """The model's locked entry when it exists and matches the catalog entry as it is now; else None."""
        locked = self.models.get(spec.name)
        return locked if locked is not None and locked.fingerprint == fingerprint(spec) else None

    def stale_or_missing(self, specs: list[ModelSpec]) -> list[str]:
        """Names of the models the lock does not pin as the catalog says now."""
        return [spec.name for spec in specs if self.fresh(spec) is None]

    def with_models(self, models: Mapping[str, LockedModel], *, keep: Callable[[str], bool]) -> Lock:
        """This lock with ``models`` put in, keeping only the old entries ``keep`` accepts."""
        merged = {name: m for name, m in self.models.items() if keep(name)}
        merged.update(models)
        return Lock(models=dict(sorted(merged.items())))


def fingerprint(spec: ModelSpec) -> str:
    """A hash of everything in a catalog entry that decides which bytes it means (not its description or tags).

    Headers are left out: they say how to ask, not what to get. A presigned URL that changes its signature
    does change the fingerprint (its query is part of the URL): such an entry is re-resolved.
    """
    doc: dict[str, Any] = {
        "repo": spec.repo,
        "repo_type": spec.repo_type,
        "revision": spec.revision,
        "include": list(spec.include),
        "exclude": list(spec.exclude),
        "files": [
            {
                "repo": f.repo,
                "path": f.path,
                "url": f.url,
                "revision": f.revision,
                "repo_type": f.repo_type,
                "sha256": f.sha256,
                "size": f.size,
                "as": f.save_as,
            }
            for f in spec.files
        ],
    }
    canonical = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def locked_from_resolved(spec: ModelSpec, resolved: ResolvedModel, sha256: Mapping[str, str]) -> LockedModel:
    """The lock entry for a freshly resolved model; ``sha256`` gives the hash of files the Hub did not (by path).

    Raises UsageError naming the file when a size or sha256 is still unknown (the caller hashes first).
    """
    files: list[LockedFile] = []
    for remote in sorted(resolved.files, key=lambda r: r.path):
        digest = remote.sha256 or sha256.get(remote.path)
        if digest is None or remote.size is None:
            raise UsageError(f"{spec.name}/{remote.path}: size and sha256 must be known to lock it")
        if remote.hub:
            ref = parse_hub_source(remote.source)
            if ref is None or ref.commit is None:
                raise UsageError(f"{spec.name}/{remote.path}: no commit to pin it to")
            revision = remote.revision if resolved.revision is None else None
            source = hub_source(ref.repo, ref.repo_type, ref.commit, ref.path)
            files.append(LockedFile(remote.path, remote.size, digest, source, remote.git_oid, revision))
        else:
            files.append(LockedFile(remote.path, remote.size, digest, redact_url(remote.url)))
    return LockedModel(spec.name, fingerprint(spec), resolved.revision, resolved.commit, tuple(files))


def resolved_from_locked(
    locked: LockedModel, *, file_url: FileUrl, spec: ModelSpec | None, environ: Mapping[str, str]
) -> ResolvedModel:
    """The files to fetch for a locked model: pinned commits, sizes and sha256, no Hub listing.

    Direct URLs come from the catalog entry (``spec``), which may carry a signed query and headers the lock
    never holds; with ``spec`` None (``--frozen``) the lock's URL is used as written.
    """
    catalog_files = {f.save_path: f for f in spec.files} if spec is not None else {}
    from mdl.sources import RemoteFile, ResolvedModel

    files: list[RemoteFile] = []
    for f in locked.files:
        ref = f.hub
        if ref is not None and ref.commit is not None:
            files.append(
                RemoteFile(
                    model=locked.name,
                    path=f.path,
                    url=file_url(ref.repo, ref.path, ref.repo_type, ref.commit),
                    size=f.size,
                    sha256=f.sha256,
                    git_oid=f.git_oid,
                    commit=ref.commit,
                    source=f.source,
                    hub=True,
                    revision=f.revision or locked.revision,
                    repo=ref.repo,
                )
            )
            continue
        entry = catalog_files.get(f.path)
        url = entry.url if entry is not None and entry.url else f.source
        remember_url_secrets(url)  # a lock written by hand may hold a signed URL
        headers = expand_headers(entry, environ) if entry is not None else ()
        files.append(
            RemoteFile(
                model=locked.name,
                path=f.path,
                url=url,
                size=f.size,
                sha256=f.sha256,
                source=redact_url(url),
                headers=headers,
            )
        )
    return ResolvedModel(locked.name, locked.revision, locked.commit, tuple(files))
