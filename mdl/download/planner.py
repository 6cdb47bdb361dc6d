"""Models to planned files: resolve upstream, probe direct URLs, look at the disk (no hashing), decide, check space."""

from __future__ import annotations

import logging
import stat as st
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mdl.catalog import ModelSpec
from mdl.download.kept import is_unreachable, relabel
from mdl.download.kept import keep_installed as kept_files
from mdl.download.plan import FORCED, Action, Decision, LocalState, decide
from mdl.download.session import PullSession
from mdl.errors import InterruptedByUserError, MdlError, NetworkError, NoSpaceError, UnsafePathError, UsageError
from mdl.lockfile import resolved_from_locked
from mdl.paths import path_clash, shown_path
from mdl.report import FileOutcome, failed
from mdl.sources import RemoteFile, ResolvedModel, resolve_model, with_probe
from mdl.store import Placement, Store, adopt_cached, not_a_file, stat_file
from mdl.transfer import Identity, Probed, probe, saved_progress
from mdl.units import human_size

log = logging.getLogger("mdl.pull")


@dataclass(frozen=True)
class PlannedFile:
    """A file, where it goes, and what pull decided to do with it."""

    remote: RemoteFile
    decision: Decision
    partial_bytes: int
    placement: Placement
    warning: str | None = None  # a FIFO, socket or device where the file goes: replaced, and said so

    @property
    def final_path(self) -> Path:
        """Where the verified bytes are renamed to."""
        return self.placement.final


class Planner:
    """Resolves models and plans each of their files, before any byte is fetched."""

    def __init__(self, session: PullSession, *, use_lock: bool = True) -> None:
        self.session = session
        self.settings = session.settings
        # False for `mdl lock`: resolve upstream even where catalog.lock pins a model (that is what it renews).
        self.use_lock = use_lock

    def resolve(
        self, models: Sequence[ModelSpec], *, keep_installed: bool = False
    ) -> tuple[list[ResolvedModel], list[FileOutcome]]:
        """Resolve every model; a model that fails is reported and the others go on.

        ``keep_installed`` (pull): a model the Hub cannot be asked about, installed and verified, is kept
        (``skipped`` with a warning, see kept.py) instead of failing. A Hub that did not answer at all is not
        asked again in this run: the other models that need it get the same error at once.
        """
        session = self.session
        if self.use_lock:
            session.lockfile.require(models)  # --locked: refused before anything is asked or fetched
        resolved: list[ResolvedModel] = []
        failures: list[FileOutcome] = []
        outage: MdlError | None = None
        for spec in models:
            if session.cancel.is_set():
                raise InterruptedByUserError("interrupted while resolving")
            locked = session.lockfile.pinned(spec) if self.use_lock else None
            try:
                if locked is not None:  # pinned commit, files, sizes and sha256: no Hub API call at all
                    resolved.append(
                        resolved_from_locked(locked, file_url=self.file_url, spec=spec, environ=session.environ)
                    )
                    continue
                if outage is not None and _needs_hub(spec):
                    raise relabel(outage, spec)
                hub = session.hub() if _needs_hub(spec) else None
                record = session.store.read_record(spec.name)
                if self.settings.offline and session.layout.cache_root is not None:
                    record = adopt_cached(spec, record, session.layout.cache_root)
                resolved.append(
                    resolve_model(spec, hub=hub, offline=self.settings.offline, environ=session.environ, record=record)
                )
            except MdlError as exc:
                if _needs_hub(spec) and is_unreachable(exc):
                    outage = exc
                kept = kept_files(spec, exc, session.layout, token=session.token) if keep_installed else None
                if kept is not None:
                    failures.extend(kept)
                    continue
                outcome = failed(spec.name, None, exc, dest=session.store.model_dir(spec.name))
                log.error("%s", outcome.error)  # names the model once ("tiny: …"), as stderr does
                failures.append(outcome)
        return resolved, failures

    def file_url(self, repo: str, path: str, repo_type: str, revision: str) -> str:
        """The Hub resolve URL of a file at a commit (built locally, as ``hf_hub_url`` does: no request)."""
        from huggingface_hub import hf_hub_url
        from huggingface_hub.errors import HFValidationError

        try:
            return hf_hub_url(repo, path, repo_type=repo_type, revision=revision, endpoint=self.settings.endpoint)
        except HFValidationError as exc:  # a repo id the catalog allows but the Hub does not (org/a--b)
            raise UsageError(f"{repo}: not a valid Hub repo id ({exc})") from None

    def plan_models(self, resolved: Sequence[ResolvedModel]) -> tuple[list[PlannedFile], list[FileOutcome]]:
        """Plan every file of the resolved models (probing direct URLs the catalog gives no sha256 for)."""
        plans: list[PlannedFile] = []
        failures: list[FileOutcome] = []
        for model in resolved:
            dest = self.session.store.model_dir(model.name)
            clash = path_clash(remote.path for remote in model.files)
            if clash is not None:  # refused whole, before any byte: half a model is no use
                exc = UnsafePathError(
                    f"{model.name}: {clash[0]!r} is a file and also the folder of {clash[1]!r}; both cannot be saved"
                )
                log.error("%s", exc.message)
                failures.append(failed(model.name, None, exc, dest=dest))
                continue
            planned: list[PlannedFile] = []
            for remote in model.files:
                try:
                    if not self.settings.offline and not remote.hub and not remote.sha256:
                        remote = self.probe(remote)  # its size and validator say whether it changed upstream
                    plan = self.plan(remote)
                    planned.append(plan)
                except MdlError as exc:
                    failures.append(failed(remote.model, remote.path, exc))
            try:
                for plan in planned:
                    if plan.decision.action is not Action.SKIP:
                        plan.placement.check_writable(label=label_of(plan.remote))
            except MdlError as exc:
                log.error("%s", exc.message)
                failures.append(failed(model.name, None, exc, dest=dest))
                continue
            plans.extend(planned)
        return plans, failures

    def probe(self, remote: RemoteFile, *, carry: bool = False) -> RemoteFile:
        """For a direct URL: learn its size and validator (one request; ``carry``: with its first bytes, left
        for the download to read, ``mdl.transfer.probe``). Only for a few files at a time: each holds a
        connection until its download takes it."""
        found = self._probe(remote, carry=carry)
        located = found.url if found.ranged else None
        return with_probe(remote, size=found.size, etag=found.validator, located=located, opening=found.opening)

    def final_url(self, remote: RemoteFile) -> str:
        """Where the file's URL redirects to in the end (the CDN URL for Hub files)."""
        return self._probe(remote, carry=False).url

    def _probe(self, remote: RemoteFile, *, carry: bool) -> Probed:
        what = label_of(remote)
        credentials = self.session.credentials(remote)
        return self.session.retry.run(
            lambda: probe(self.session.client, remote.url, credentials=credentials, what=what, carry=carry),
            what=what,
            wait=self.session.cancel.wait,
        )

    def place(self, remote: RemoteFile) -> Placement:
        """Where the file goes in this run's layout."""
        return self.session.layout.place(
            remote.model,
            remote.path,
            source=remote.source,
            sha256=remote.sha256,
            git_oid=remote.git_oid,
            revision=remote.revision,
        )

    def plan(self, remote: RemoteFile) -> PlannedFile:
        """Look at the disk (no hashing) and decide."""
        try:
            placement = self.place(remote)
        except MdlError:
            if self.settings.offline:  # never pulled: where it would go is only known upstream
                raise offline_error(remote) from None
            raise
        record = self.session.store.read_record(remote.model)
        entry = record.files.get(remote.path) if record is not None else None
        part, state = placement.store.part_paths(remote.model, remote.path)
        partial = saved_progress(state, identity_of(remote)) if part.exists() else 0
        stat = stat_file(placement.final)
        if stat is not None and not _is_regular(stat):
            stat = None
        local = LocalState.of(stat, partial_bytes=partial)
        # A one-off get's file (no model) is kept only for the version the server names (wget -N), never a size alone.
        decision = decide(remote, entry, local, force=self.settings.force, unnamed=bool(remote.model))
        warning = _in_the_way(placement)
        if warning is not None and self.settings.force and decision.action is Action.DOWNLOAD:
            decision = Decision(Action.DOWNLOAD, FORCED)  # get --force: what was there is replaced, as a file is
        return PlannedFile(remote, decision, partial, placement, warning)


def check_space(plans: Sequence[PlannedFile]) -> None:
    """Engine rule 10: refuse before transferring when the known sizes do not fit (per destination)."""
    needed: dict[Store, int] = {}
    for plan in plans:
        size = plan.remote.size or 0
        if plan.decision.action in (Action.DOWNLOAD, Action.REPAIR):
            more = size
        elif plan.decision.action is Action.RESUME:
            more = max(0, size - plan.partial_bytes)
        else:
            continue
        needed[plan.placement.store] = needed.get(plan.placement.store, 0) + more
    for store, total in needed.items():
        store.ensure_dirs()
        free = store.free_bytes()
        if total > free:
            raise NoSpaceError(
                f"not enough space in {store.dest}: {human_size(total)} still to download, {human_size(free)} free"
            )


def identity_of(remote: RemoteFile) -> Identity:
    """What a partial download must match to be resumed (a Hub file is known by its hashes, not a CDN ETag)."""
    return Identity(remote.size, remote.sha256, remote.git_oid, remote.etag if not remote.hub else None)


def label_of(remote: RemoteFile) -> str:
    """``model/path`` as shown in progress and messages (just the path for one-off ``get`` files)."""
    return f"{remote.model}/{remote.path}" if remote.model else remote.path


def offline_error(remote: RemoteFile) -> MdlError:
    """The error for a file that HF_HUB_OFFLINE keeps us from fetching."""
    return NetworkError(f"{remote.model}/{remote.path}: HF_HUB_OFFLINE is set and the file must be fetched")


def _needs_hub(spec: ModelSpec) -> bool:
    return spec.is_snapshot or any(f.url is None for f in spec.files)


def _in_the_way(placement: Placement) -> str | None:
    """The warning for a FIFO, socket or device where the file (or its snapshot entry) goes: never opened, it is
    replaced by the atomic rename, as a damaged file is. A folder is refused before any byte is fetched
    (``Placement.check_writable``)."""
    for path in dict.fromkeys((placement.final, placement.shown)):
        kind = not_a_file(path)
        if kind is not None and kind != "a folder":
            return f"{shown_path(path)} is {kind}, not a file; it is replaced"
    return None


def _is_regular(stat: Any) -> bool:
    return st.S_ISREG(stat.st_mode)
