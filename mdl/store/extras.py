"""A model's folder made one version's: after a pull of a lock, the files mdl installed there for
another version (recorded, not among the version's) are removed as ``mdl prune`` removes them, and
the files mdl never installed there are named and left."""

from __future__ import annotations

import os
from collections.abc import Collection

from mdl.store.asrecorded import place_of
from mdl.store.layout import Layout
from mdl.store.prune import KeptPath, PruneReport, _prune_model, _Pruning, note_strays
from mdl.store.records import FileRecord

# why a file left in the folder stays: mdl did not install it there (the user's, another tool's)
NOT_INSTALLED = "not installed by mdl"


def leave_version(
    layout: Layout, model: str, keep: Collection[str], *, dry_run: bool
) -> PruneReport:
    """Make ``model``'s folder hold the version whose files are ``keep`` (paths in the model):
    each other file mdl recorded there is removed under the model's locks, each only if it is still
    what mdl wrote (a changed one stays, said; a removal is a rename aside then an unlink: a run
    killed between the two leaves a hidden ``.mdl-prune`` entry that ``mdl clean`` finishes); each
    file there mdl never recorded stays, said. In the Hugging Face cache, Hub files stay: each
    commit has its own snapshot. ``dry_run``: only said."""
    run = _Pruning(layout, dry_run, set())
    record = layout.records.read_record(model)
    if record is None:
        return _report(run)
    wanted = set(keep)
    extra = {path: entry for path, entry in record.files.items() if path not in wanted}
    plain = {
        path: entry
        for path, entry in extra.items()
        if (placed := place_of(layout, model, entry)) is None or placed.link is None
    }
    if plain:
        _prune_model(run, record, plain, {}, whole=False)
        _note_left(run, model, plain)
    # the files there neither the version nor mdl's record names: mdl did not install them (a
    # loader reading the whole folder reads them too)
    folder = layout.plain.model_dir(model)
    if folder.is_dir() and not folder.is_symlink():
        known = {folder / path for path in {*wanted, *record.files}} | {k.path for k in run.kept}
        note_strays(run, model, folder, known=known, why=NOT_INSTALLED)
    return _report(run)


def _note_left(run: _Pruning, model: str, targets: dict[str, FileRecord]) -> None:
    """The targets neither removed nor kept for a reason of their own (the model skipped: a run
    holds its locks; a removal that failed): still there, said with why."""
    why = "; ".join([*run.warnings, *(e.message for e in run.errors)]) or "not removed"
    done = {r.path for r in run.removed} | {k.path for k in run.kept}
    for entry in targets.values():
        placed = place_of(run.layout, model, entry)
        if placed is not None and placed.final not in done and os.path.lexists(placed.final):
            run.kept.append(KeptPath(placed.final, model, f"not removed: {why}"))


def _report(run: _Pruning) -> PruneReport:
    return PruneReport(
        tuple(run.removed), tuple(run.kept), tuple(run.warnings), tuple(run.errors), run.dry_run
    )
