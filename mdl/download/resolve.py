"""Stage one of a pull: catalog models → what each is upstream (from catalog.lock where it pins
it); ``mdl resolve``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from contextlib import closing
from functools import partial
from typing import Any

from mdl.catalog.settings import Settings
from mdl.catalog.specs import ModelSpec
from mdl.download._outcomes import still_verified
from mdl.download._plan import recorded
from mdl.download.session import PullSession
from mdl.errors import AuthError, InterruptedByUserError, MdlError, NetworkError
from mdl.lockfile.model import Lock, LockedModel, resolved_from_locked
from mdl.lockfile.parts import PartHashes
from mdl.lockfile.policy import LockUse
from mdl.progress import Progress
from mdl.redact import redact_url
from mdl.report import FileOutcome, failed
from mdl.sources.resolve import RemoteFile, ResolvedModel, marked_signature, resolve_model
from mdl.store.inventory import file_state, model_status, unplaced_path
from mdl.store.layout import Layout, adopt_cached
from mdl.store.records import ModelRecord
from mdl.transfer.failures import UnreachableError

log = logging.getLogger("mdl.pull")
FORCE_NEEDS_HUB = (
    "--force downloads again, which needs the Hub; the installed copy is left as it was (without"
    " --force a run keeps it while the Hub is down)"
)


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
    resolved: list[ResolvedModel] = []
    failures: list[FileOutcome] = []
    outage: MdlError | None = None
    for spec in models:
        if session.cancel.is_set():
            raise InterruptedByUserError("interrupted while resolving")
        needs_hub = _needs_hub(spec)
        try:
            resolved.append(_resolve_one(session, spec, lock=lock, outage=outage))
        except MdlError as exc:
            if needs_hub and _is_unreachable(exc):
                outage = exc
            failures.extend(_failures(session, spec, exc, keep_installed=keep_installed))
    return resolved, failures


def _needs_hub(spec: ModelSpec) -> bool:
    return spec.is_snapshot or any(f.url is None for f in spec.files)


def _resolve_one(
    session: PullSession, spec: ModelSpec, *, lock: LockUse | None, outage: MdlError | None
) -> ResolvedModel:
    """The model from its pins in the lock, else upstream (``outage``: the Hub did not answer in
    this run, and is not asked again)."""
    locked = lock.pinned(spec) if lock is not None else None
    if locked is not None:  # pinned commit, files, sizes and sha256: no Hub API call at all
        return from_lock(session.settings, spec, locked, parts=lock.parts if lock else None)
    offline = session.settings.offline
    if spec.oci is not None and not offline:  # a registry's model: its manifest, no Hub
        return session.owned.registry.resolve_model(spec)
    needs_hub = _needs_hub(spec)
    if outage is not None and needs_hub:
        raise _told_for(spec, outage)
    hub = session.hub if needs_hub else None
    record = session.store.read_record(spec.name)
    if offline and session.layout.cache_root is not None:
        record = adopt_cached(spec, record, session.layout.cache_root)
    return resolve_model(spec, hub=hub, offline=offline, environ=session.environ, record=record)


def from_lock(
    settings: Settings,
    spec: ModelSpec,
    locked: LockedModel,
    *,
    parts: Mapping[str, PartHashes] | None = None,
) -> ResolvedModel:
    """The model as the lock pins it (its commit, files, sizes and sha256; ``parts``: the part
    hashes beside it, each file's range trust): no Hub API call."""
    from mdl.sources.huburls import hub_file_url, xet_token_url

    model = resolved_from_locked(
        locked,
        file_url=partial(hub_file_url, settings.endpoint),
        token_url=partial(xet_token_url, settings.endpoint),
        spec=spec,
        environ=settings.environ,
        secrets=settings.secrets,
        parts=parts,
    )
    return marked_signature(spec, model)


def _told_for(spec: ModelSpec, outage: MdlError) -> MdlError:
    """The same outage, told for this model."""
    _, sep, rest = outage.message.partition(": ")
    return type(outage)(f"{spec.name}: {rest if sep else outage.message}", hint=outage.hint)


def _failures(
    session: PullSession, spec: ModelSpec, exc: MdlError, *, keep_installed: bool
) -> list[FileOutcome]:
    """What a model that could not be resolved adds to the report: its installed files kept (see
    ``_kept``), else its failure (logged)."""
    kept = _kept(spec, exc, session.layout, token=session.token) if keep_installed else None
    if kept and not session.settings.force:
        log.warning("%s", kept[0].warning)
        return kept
    if kept is not None:  # an explicit flag outranks the outage's fallback: exit 5, not 0
        exc = type(exc)(exc.message, hint=FORCE_NEEDS_HUB)
    outcome = failed(spec.name, None, exc, dest=session.store.model_dir(spec.name))
    log.error("%s", outcome.error)  # names the model once ("tiny: …"), as stderr does
    return [outcome]


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
    why, kept = _why(spec, exc), _kept_what(record)
    warning = f"could not check {spec.name} for updates: {why}; keeping {kept}"
    return [
        FileOutcome(
            spec.name,
            f.path,
            str(f.dest),
            f.size,
            f.sha256,
            "skipped",
            reason="Hub unreachable: kept the verified copy",
            warning=warning,
        )
        for f in status.files
    ]


def _kept_what(record: ModelRecord) -> str:
    """The installed version in words: its commit when the files are all of one."""
    commits = {c for c in (record.commit, *(e.commit for e in record.files.values())) if c}
    return f"commit {commits.pop()[:12]}" if len(commits) == 1 else "the installed files"


def _why(spec: ModelSpec, exc: MdlError) -> str:
    """The error's message without its leading "<model>[/path]: "."""
    head, sep, rest = exc.message.partition(": ")
    return rest if sep and (head == spec.name or head.startswith(f"{spec.name}/")) else exc.message


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
            warning = lockfile.warnings.get(model.name)  # resolved fresh: not locked
            docs.append(
                {
                    "name": model.name,
                    "revision": model.revision,
                    "commit": model.commit,
                    "files": [_file_doc(session, r, follow, failures) for r in model.files],
                    "locked": warning is None and lockfile.lock is not None,
                }
            )
            if warning is not None:
                docs[-1]["warning"] = warning
        return docs, failures


def _file_doc(
    session: PullSession, remote: RemoteFile, follow: bool, failures: list[FileOutcome]
) -> dict[str, Any]:
    """One file as ``mdl resolve`` says it (``follow``: the URL its redirects end at; a failure
    to follow them is added to ``failures``)."""
    url = remote.url
    if follow and not session.settings.offline:
        try:
            url = session.probed(remote).url
        except MdlError as exc:
            failures.append(failed(remote.model, remote.path, exc))
    entry = recorded(session.store, remote)
    layout = session.layout
    state, placement = file_state(layout, remote.model, remote.path, remote.source, entry)
    other_bytes = entry is not None and entry.sha256 != remote.sha256
    if state == "installed" and remote.sha256 and other_bytes:
        state = "outdated"
    return {
        "path": remote.path,
        "dest": str(placement.shown if placement else unplaced_path(layout, remote.model)),
        "url": redact_url(url) if url else remote.source,
        "size": remote.size,
        "sha256": remote.sha256,
        "git_oid": remote.git_oid,
        "source": remote.source,
        "state": state,
    }
