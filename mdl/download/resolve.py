"""Stage one of a pull: catalog models → what each is upstream (from catalog.lock where it pins
it); ``mdl resolve``.
"""

from __future__ import annotations

import logging
import stat as st
from collections.abc import Sequence
from contextlib import closing
from functools import partial
from pathlib import Path
from typing import Any

from mdl.catalog import ModelSpec, Settings
from mdl.download.plan import recorded
from mdl.download.session import PullSession
from mdl.errors import AuthError, InterruptedByUserError, MdlError, NetworkError
from mdl.lockfile import Lock, LockUse, resolved_from_locked
from mdl.progress import Progress
from mdl.redact import redact_url
from mdl.report import FileOutcome, failed
from mdl.sources import ResolvedModel, hub_file_url, marked_signature, resolve_model, xet_token_url
from mdl.store import (
    FileRecord,
    Layout,
    adopt_cached,
    file_state,
    hash_file,
    model_status,
    unplaced_path,
)
from mdl.transfer import UnreachableError

log = logging.getLogger("mdl.pull")


def resolve(
    session: PullSession,
    models: Sequence[ModelSpec],
    *,
    lock: LockUse | None,
    keep_installed: bool = False,
) -> tuple[list[ResolvedModel], list[FileOutcome]]:
    """Resolve every model (``lock``: by catalog.lock's pins, as its policy says); one that fails is
    reported and the others go on (a Hub that did not answer at all is not asked again;
    ``keep_installed``: see ``_kept``)."""
    if lock is not None:
        lock.require(models)  # --locked: refused before anything is asked or fetched
    offline = session.settings.offline
    resolved: list[ResolvedModel] = []
    failures: list[FileOutcome] = []
    outage: MdlError | None = None
    for spec in models:
        if session.cancel.is_set():
            raise InterruptedByUserError("interrupted while resolving")
        needs_hub = spec.is_snapshot or any(f.url is None for f in spec.files)
        locked = lock.pinned(spec) if lock is not None else None
        try:
            if locked is not None:  # pinned commit, files, sizes and sha256: no Hub API call at all
                endpoint = session.settings.endpoint
                model = resolved_from_locked(
                    locked,
                    file_url=partial(hub_file_url, endpoint),
                    token_url=partial(xet_token_url, endpoint),
                    spec=spec,
                    environ=session.environ,
                    secrets=session.settings.secrets,
                )
                resolved.append(marked_signature(spec, model))
                continue
            # the same outage, told for this model: the Hub is not asked again
            if outage is not None and needs_hub:
                _, sep, rest = outage.message.partition(": ")
                raise type(outage)(
                    f"{spec.name}: {rest if sep else outage.message}", hint=outage.hint
                )
            hub = session.hub if needs_hub else None
            record = session.store.read_record(spec.name)
            if offline and session.layout.cache_root is not None:
                record = adopt_cached(spec, record, session.layout.cache_root)
            resolved.append(
                resolve_model(
                    spec, hub=hub, offline=offline, environ=session.environ, record=record
                )
            )
        except MdlError as exc:
            if needs_hub and _is_unreachable(exc):
                outage = exc
            kept = _kept(spec, exc, session.layout, token=session.token) if keep_installed else None
            if kept is not None:
                failures.extend(kept)
                continue
            outcome = failed(spec.name, None, exc, dest=session.store.model_dir(spec.name))
            log.error("%s", outcome.error)  # names the model once ("tiny: …"), as stderr does
            failures.append(outcome)
    return resolved, failures


def _is_unreachable(exc: MdlError) -> bool:
    """The Hub did not answer at all (no connection, or no answer in time): asking again in this
    run is futile.
    """
    cause: BaseException | None = exc
    while cause is not None and not isinstance(cause, UnreachableError):
        cause = cause.__cause__
    return cause is not None


def _kept(
    spec: ModelSpec, exc: MdlError, layout: Layout, *, token: str | None
) -> list[FileOutcome] | None:
    """The model's files as ``skipped`` with one warning when the Hub is down (or refuses a check
    made without a token) and the model is installed at a verified commit, as hf_hub_download serves
    its cache; else None."""
    if not (isinstance(exc, NetworkError) or (isinstance(exc, AuthError) and token is None)):
        return None  # with a token, a refusal is news to report
    status = model_status(spec, layout)
    record = status.record
    if status.status != "installed" or record is None or not status.files:
        return None
    if not all(still_verified(f.final, record.files.get(f.path)) for f in status.files):
        return None
    commits = {
        commit
        for commit in (record.commit, *(entry.commit for entry in record.files.values()))
        if commit
    }
    kept = f"commit {commits.pop()[:12]}" if len(commits) == 1 else "the installed files"
    # the message without its leading "<model>[/path]: "
    head, sep, rest = exc.message.partition(": ")
    why = rest if sep and (head == spec.name or head.startswith(f"{spec.name}/")) else exc.message
    warning = f"could not check {spec.name} for updates: {why}; keeping {kept}"
    log.warning("%s", warning)
    reason = "Hub unreachable: kept the verified copy"
    return [
        FileOutcome(
            spec.name,
            f.path,
            str(f.dest),
            f.size,
            f.sha256,
            "skipped",
            reason=reason,
            warning=warning,
        )
        for f in status.files
    ]


def still_verified(path: Path, entry: FileRecord | None) -> bool:
    """The file at ``path`` is the one its record verified: same size and mtime, or (touched
    since) same sha256.
    """
    if entry is None:
        return False
    try:
        found = path.lstat()
        if not st.S_ISREG(found.st_mode) or found.st_size != entry.size:
            return False
        return found.st_mtime_ns == entry.mtime_ns or hash_file(path)[1] == entry.sha256
    except OSError:
        return False


def resolve_models(
    models: Sequence[ModelSpec],
    settings: Settings,
    *,
    follow: bool,
    progress: Progress,
    lock: Lock | None = None,
) -> tuple[list[dict[str, Any]], list[FileOutcome]]:
    """Resolve models (network, unless catalog.lock pins them): concrete files, URLs, sizes,
    sha256, commit.
    """
    # catalog.lock: read once for the run, if ``lock`` was not read already
    lockfile = LockUse(settings, lock=lock)
    with closing(PullSession(settings, progress=progress)) as session:
        resolved, failures = resolve(session, models, lock=lockfile)
        docs: list[dict[str, Any]] = []
        for model in resolved:
            files = []
            for remote in model.files:
                url = remote.url
                if follow and not settings.offline:
                    try:
                        url = session.probed(remote).url
                    except MdlError as exc:
                        failures.append(failed(remote.model, remote.path, exc))
                entry = recorded(session.store, remote)
                state, placement = file_state(
                    session.layout, remote.model, remote.path, remote.source, entry
                )
                dest = placement.shown if placement else unplaced_path(session.layout, remote.model)
                if (
                    state == "installed"
                    and entry is not None
                    and remote.sha256
                    and entry.sha256 != remote.sha256
                ):
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
            warning = lockfile.warnings.get(model.name)  # resolved fresh: not locked
            doc = {
                "name": model.name,
                "revision": model.revision,
                "commit": model.commit,
                "files": files,
            }
            docs.append({**doc, "locked": warning is None and lockfile.lock is not None})
            if warning is not None:
                docs[-1]["warning"] = warning
        return docs, failures
