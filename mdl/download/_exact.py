"""The stage after fetch for the models a lock pinned: each one installed whole leaves its folder as
the version the lock names (``mdl.store.extras``), and the report says what went and what stayed.
A rollback to a version with fewer files leaves none of the newer version's beside it (a loader that
reads every file there would mix the two)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from mdl.catalog.specs import ModelSpec
from mdl.download.session import PullSession
from mdl.lockfile.policy import LockUse
from mdl.report import ExtraFile, FileOutcome
from mdl.sources.resolve import ResolvedModel

if TYPE_CHECKING:
    from mdl.store.prune import PruneReport


def leave_locked_versions(
    session: PullSession,
    specs: Sequence[ModelSpec],
    resolved: Sequence[ResolvedModel],
    lockfile: LockUse,
    outcomes: Iterable[FileOutcome],
    *,
    withheld: Mapping[str, object],
) -> tuple[ExtraFile, ...]:
    """Each model the lock pins, resolved, not failing and not withheld (a signed model still
    partial), left as its version (``withheld``: by model, what a signature held back); the files
    removed from its folder and those left there that are not of it."""
    failing = {o.model for o in outcomes if o.failing}
    by_name = {spec.name: spec for spec in specs}
    extra: list[ExtraFile] = []
    for model in resolved:
        spec = by_name.get(model.name)
        if model.name in failing or model.name in withheld or spec is None:
            continue
        if lockfile.pinned(spec) is None:  # resolved fresh: upstream's list is no lock's version
            continue
        # (the folder's walk: prune's and the inventory's modules, for a model a lock pinned)
        from mdl.store.extras import leave_version

        report = leave_version(
            session.layout,
            model.name,
            {f.path for f in model.files},
            dry_run=session.settings.dry_run,
        )
        extra.extend(_said(session, model.name, report, lockfile.name))
    return tuple(extra)


def _said(session: PullSession, model: str, report: PruneReport, lock: str) -> list[ExtraFile]:
    """What the report did, file by file, in the folder's terms."""
    folder = session.layout.plain.model_dir(model)
    removed = [
        ExtraFile(
            model,
            _relative(r.path, folder),
            str(r.path),
            r.size,
            "removed",
            f"not in {lock}: installed by mdl for another version",
        )
        for r in report.removed
    ]
    kept = [
        ExtraFile(model, _relative(k.path, folder), str(k.path), None, "kept", _why(k.reason, lock))
        for k in report.kept
    ]
    return [*removed, *kept]


def _why(reason: str, lock: str) -> str:
    """Why a file not of the version stays, in the words of the lock it is not in."""
    from mdl.store.extras import NOT_INSTALLED

    left = ": left as it is" if reason == NOT_INSTALLED else ""
    return f"not in {lock}; {reason}{left}"


def _relative(path: Path, folder: Path) -> str:
    """``path`` in the model's folder (as the lock names files), else as it is."""
    return path.relative_to(folder).as_posix() if path.is_relative_to(folder) else str(path)
