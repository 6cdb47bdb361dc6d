"""Write catalog.lock for a catalog from what the Hub stand-in holds (until ``mdl lock`` writes
them in tests).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from servers import HubServer

from mdl.catalog.load import lock_beside
from mdl.lockfile.io import write_lock
from mdl.lockfile.model import Lock, LockedFile, LockedModel, fingerprint
from mdl.lockfile.remembered import load_catalog
from mdl.redact import redact_url
from mdl.store.layout import hub_source


def lock_catalog(
    catalog: Path,
    hub: HubServer,
    *,
    only: tuple[str, ...] = (),
    urls: dict[str, bytes] | None = None,
) -> Path:
    """Lock every model of ``catalog`` (or ``only`` these) at the commits their revisions name on
    ``hub`` now.

    Snapshots lock every file of the repo (the tests' catalogs use no include/exclude); direct URLs
    take their bytes from ``urls`` (by URL) to be hashed. Returns the lock's path.
    """
    cat = load_catalog(catalog)
    models: dict[str, LockedModel] = {}
    for spec in cat.models:
        if only and spec.name not in only:
            continue
        files: list[LockedFile] = []
        commit: str | None = None
        if spec.repo is not None:
            repo = hub.repo(spec.repo, spec.repo_type)  # type: ignore[arg-type]
            found = repo.resolve_revision(spec.revision)
            assert found is not None
            commit = found.sha
            for path, f in sorted(found.files.items()):
                source = hub_source(spec.repo, spec.repo_type, commit, path)
                files.append(LockedFile(path, f.size, f.sha256, source, None if f.lfs else f.oid))
            models[spec.name] = LockedModel(
                spec.name, fingerprint(spec), spec.revision, commit, tuple(files)
            )
            continue
        commits = set()
        for file in spec.files:
            if file.url is not None:
                data = (urls or {})[file.url]
                digest = hashlib.sha256(data).hexdigest()
                files.append(LockedFile(file.save_path, len(data), digest, redact_url(file.url)))
                continue
            assert file.repo is not None and file.path is not None
            kind = file.repo_type or "model"
            at = hub.repo(file.repo, kind).resolve_revision(file.revision or "main")  # type: ignore[arg-type]
            assert at is not None
            f = at.files[file.path]
            commits.add(at.sha)
            source = hub_source(file.repo, kind, at.sha, file.path)
            revision = file.revision or "main"
            files.append(
                LockedFile(
                    file.save_path, f.size, f.sha256, source, None if f.lfs else f.oid, revision
                )
            )
        commit = commits.pop() if len(commits) == 1 else None
        models[spec.name] = LockedModel(spec.name, fingerprint(spec), None, commit, tuple(files))
    path = lock_beside(catalog)
    write_lock(path, Lock(models=dict(sorted(models.items()))))
    return path


def sha256_tree(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (outside .mdl) by relative path → its sha256."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and ".mdl" not in p.relative_to(folder).parts
    }
