"""``mdl resolve``: what each model is upstream (files, URLs, sizes, sha256, commit) beside its local state."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mdl.catalog import ModelSpec, Settings
from mdl.download.planner import Planner
from mdl.download.session import PullSession
from mdl.errors import MdlError
from mdl.lockfile import Lock
from mdl.progress import Progress
from mdl.redact import redact_url
from mdl.report import FileOutcome, failed
from mdl.store import file_state, unplaced_path


def resolve_models(
    models: Sequence[ModelSpec], settings: Settings, *, follow: bool, progress: Progress, lock: Lock | None = None
) -> tuple[list[dict[str, Any]], list[FileOutcome]]:
    """Resolve models (network, unless catalog.lock pins them): concrete files, URLs, sizes, sha256, commit."""
    session = PullSession(settings, progress=progress, lock=lock)
    planner = Planner(session)
    try:
        resolved, failures = planner.resolve(models)
        docs: list[dict[str, Any]] = []
        for model in resolved:
            files = []
            for remote in model.files:
                url = remote.url
                if follow and not settings.offline:
                    try:
                        url = planner.final_url(remote)
                    except MdlError as exc:
                        failures.append(failed(remote.model, remote.path, exc))
                record = session.store.read_record(remote.model)
                entry = record.files.get(remote.path) if record is not None else None
                state, placement = file_state(session.layout, remote.model, remote.path, remote.source, entry)
                dest = placement.shown if placement else unplaced_path(session.layout, remote.model)
                if state == "installed" and entry is not None and remote.sha256 and entry.sha256 != remote.sha256:
                    state = "outdated"
                files.append(
                    {
                        "path": remote.path,
                        "dest": str(dest),
                        "url": redact_url(url) if url else remote.source,
                        "size": remote.size,
                        "sha256": remote.sha256,
                        "git_oid": remote.git_oid,
                        "source": remote.source,
                        "state": state,
                    }
                )
            doc: dict[str, Any] = {"name": model.name, "revision": model.revision, "commit": model.commit}
            warning = session.lockfile.warnings.get(model.name)
            doc.update({"files": files, "locked": model.name not in session.lockfile.warnings and _locked(session)})
            if warning is not None:
                doc["warning"] = warning
            docs.append(doc)
        return docs, failures
    finally:
        session.close()


def _locked(session: PullSession) -> bool:
    """Whether the run's models came from a lock (one exists and the model was not resolved fresh)."""
    return session.lockfile.lock is not None
