"""``mdl pull``: resolve -> plan -> (space) -> fetch -> report, each stage handing its data to the
next.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from contextlib import closing
from dataclasses import replace
from pathlib import Path
from typing import Any

from mdl.catalog.settings import Settings
from mdl.catalog.specs import ModelSpec
from mdl.download._exact import leave_locked_versions
from mdl.download._fetch import fetch
from mdl.download._lockedsig import sign_locked
from mdl.download._ocisigned import referred_signatures
from mdl.download._outcomes import dry_run_outcome
from mdl.download._plan import Action, PlannedFile, check_space, plan_models
from mdl.download._signed import Signatures, check_signatures
from mdl.download.demand import Demand
from mdl.download.resolve import resolve
from mdl.download.session import PullSession
from mdl.lockfile.model import Lock
from mdl.lockfile.policy import LockUse
from mdl.progress import Progress
from mdl.report import WARNING_CAUSE, FileOutcome, RunReport, log_outcome, warned
from mdl.sources.resolve import RemoteFile, ResolvedModel
from mdl.store.expected import ExpectedFile
from mdl.store.records import ModelRecord, SignatureRecord
from mdl.store.store import Store


def pull_models(
    models: Sequence[ModelSpec],
    settings: Settings,
    *,
    progress: Progress,
    lock: Lock | None = None,
    cancel: threading.Event | None = None,
    demand: Demand | None = None,
) -> RunReport:
    """Pull the given catalog models into ``settings.dest`` (pinned by ``lock``, else by the lock
    settings name); ``cancel`` stops it from another thread, ``demand`` orders it for a loader.
    """
    # catalog.lock: read once for the run, if ``lock`` was not read already
    lockfile = LockUse(settings, lock=lock)
    session = PullSession(settings, progress=progress, cancel=cancel, demand=demand)
    try:
        return _pull(session, models, settings, lockfile)
    finally:
        if demand is not None:  # (planned, or it never will be: loaders go on with what is here)
            demand.planned.set()


def _pull(
    session: PullSession, models: Sequence[ModelSpec], settings: Settings, lockfile: LockUse
) -> RunReport:
    with closing(session):
        resolved, outcomes = resolve(session, models, lock=lockfile, keep_installed=True)
        resolved, refused = sign_locked(session, models, resolved, lockfile)
        outcomes.extend(refused)
        resolved, refused, passed_over = referred_signatures(session, models, resolved)
        outcomes.extend(refused)
        signatures = check_signatures(session, models, resolved)
        resolved = signatures.models
        outcomes.extend(signatures.failures)
        plans, failures = plan_models(session, resolved)
        outcomes.extend(failures)
        # models or files that failed before any transfer: their lines first
        for outcome in outcomes:
            log_outcome(outcome)
        if settings.dry_run:
            planned = tuple(outcomes) + tuple(dry_run_outcome(p) for p in plans)
            extra = leave_locked_versions(
                session, models, resolved, lockfile, planned, withheld=signatures.withheld
            )
            report = RunReport(
                planned, dry_run=True, hub_wait_seconds=session.owned.hub_wait_seconds, extra=extra
            )
            return _warned(report, lockfile)
        if any(p.decision.action is not Action.SKIP for p in plans):
            session.store.ensure_dirs()
            check_space(plans)
        offline = {o.model for o in outcomes if o.failing} if settings.offline else None
        _expect(
            session.store,
            resolved,
            plans,
            signatures,
            catalog=settings.catalog_path,
            offline=offline,
        )
        if session.demand is not None:
            session.demand.planned.set()
        outcomes.extend(fetch(session, plans))
        signed = _record_signed(session.store, resolved, signatures, outcomes)
        extra = leave_locked_versions(
            session, models, resolved, lockfile, outcomes, withheld=signatures.withheld
        )
        report = RunReport(
            tuple(outcomes),
            signatures={
                spec.name: _said(spec, signatures, signed)
                for spec in models
                if spec.signature is not None
            },
            hub_wait_seconds=session.owned.hub_wait_seconds,
            waited=session.owned.fill_waits.seconds,
            extra=extra,
        )
        said = {**passed_over, **signatures.warnings}  # (one model has one or the other)
        return _warned(warned(report, said), lockfile)


def _warned(report: RunReport, lockfile: LockUse) -> RunReport:
    """The report with what the lock said: why a model was not pinned, and (on every file it
    pinned) that the part hashes beside it were not used."""
    report = warned(report, lockfile.warnings)
    if lockfile.parts_warning is None:
        return report
    cause = WARNING_CAUSE + lockfile.parts_warning
    files = tuple(
        o if o.model in lockfile.warnings else o._replace(retries=(*o.retries, cause))
        for o in report.files
    )
    return replace(report, files=files)


def _said(spec: ModelSpec, signatures: Signatures, installed: set[str]) -> dict[str, Any]:
    """The model's signature as ``verify --json`` and ``list --json`` say it: verified when it
    verified and this run installed every file it signs."""
    assert spec.signature is not None
    kept = signatures.records.get(spec.name)
    return {
        "verified": spec.name in installed,
        "by": kept.by if kept is not None else None,
        "file": kept.file if kept is not None else spec.signature.installed_as,
    }


def _expect(
    store: Store,
    resolved: Sequence[ResolvedModel],
    plans: Sequence[PlannedFile],
    signatures: Signatures,
    *,
    catalog: Path | None,
    offline: set[str] | None = None,
) -> None:
    """Write what each model should be into its record before the first byte moves (atomically): a
    pull that stops halfway leaves a model every offline view calls ``partial``, never
    ``installed``. ``offline``: HF_HUB_OFFLINE, with the models that failed: no byte moves, so only
    a model with no record is written (found whole in the Hugging Face cache): a read-only
    consumer writes nothing."""
    # probed: sizes direct URLs told
    planned = {(p.remote.model, p.remote.path): p.remote for p in plans}
    # whose models these are: prune's to remove, not another's
    whose = str(catalog) if catalog is not None else None
    for model in resolved:
        files = [planned.get((model.name, f.path), f) for f in model.files]
        expected = _expected(files, signatures.withheld.get(model.name, ()))
        record = store.read_record(model.name)
        if _answered_offline(record, model, offline):
            continue
        # A file its signature does not sign, installed by an earlier pull (before the catalog asked
        # for a signer), is no longer vouched for: its record goes, so no view calls it (or its
        # model) installed and signed.
        unsigned = signatures.unsigned.get(model.name, ())
        recorded = tuple(path for path in unsigned if record and path in record.files)
        if not recorded and _as_expected(record, model, expected, whose=whose):
            continue
        store.update_record(
            model.name,
            revision=model.revision,
            commit=model.commit,
            remove=recorded,
            expected=expected,
            catalog=whose,
        )


def _answered_offline(
    record: ModelRecord | None, model: ResolvedModel, offline: set[str] | None
) -> bool:
    """Offline (``offline``: the models that failed), whether the model's record stays as it is:
    it failed, or it has one (it answered, or the cache's ref: a reader may not write it)."""
    if offline is None:
        return False
    return model.name in offline or record is not None


def _as_expected(
    record: ModelRecord | None,
    model: ResolvedModel,
    expected: dict[str, ExpectedFile],
    *,
    whose: str | None,
) -> bool:
    """Whether the record says already what the model should be (nothing to write)."""
    if record is None:
        return False
    return (record.expected, record.commit, record.revision, record.catalog) == (
        expected,
        model.commit,
        model.revision or record.revision,
        whose or record.catalog,
    )


def _expected(
    files: Iterable[RemoteFile], withheld: Iterable[ExpectedFile]
) -> dict[str, ExpectedFile]:
    """The files a model should have, by path: those not as signed (``withheld``) too, so it is
    not installed without them."""
    expected = {f.path: ExpectedFile(f.path, f.size, f.sha256, f.git_oid, f.source) for f in files}
    expected.update((f.path, f) for f in withheld)
    return expected


def _record_signed(
    store: Store,
    resolved: Sequence[ResolvedModel],
    signatures: Signatures,
    outcomes: Sequence[FileOutcome],
) -> set[str]:
    """Each signed model this run installed whole: its signature recorded with the files (path →
    sha256) it vouched for, once every one of them is in place as signed. Only then: a pull that
    stops halfway, or that a newer version upstream fails, leaves the record naming the signed
    version still on disk (``list`` calls it installed)."""
    failing = {o.model for o in outcomes if o.failing}
    installed: set[str] = set()
    for model in resolved:
        signature = signatures.records.get(model.name)
        if signature is None or model.name in failing or model.name in signatures.withheld:
            continue
        if _signature_recorded(store, model, signature):
            installed.add(model.name)
    return installed


def _signature_recorded(store: Store, model: ResolvedModel, signature: SignatureRecord) -> bool:
    """Record the model's signature with its files' sha256, when each of them is recorded; whether
    it was (the model is installed whole)."""
    record = store.read_record(model.name)
    recorded = record.files if record is not None else {}
    files = {f.path: recorded[f.path].sha256 for f in model.files if f.path in recorded}
    if len(files) != len(model.files):  # not each of them recorded: not installed whole
        return False
    if record is None or (record.signature, record.signed_files) != (signature, files):
        store.update_record(
            model.name, revision=None, commit=None, signature=signature, signed_files=files
        )
    return True
