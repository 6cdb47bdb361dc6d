"""``mdl pull``: resolve, decide per file, check space, then fetch under per-file locks and record."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mdl.catalog import ModelSpec, Settings
from mdl.download.plan import Action, Decision, LocalState, decide
from mdl.errors import (
    InterruptedByUserError,
    LocalFSError,
    MdlError,
    NoSpaceError,
)
from mdl.progress import Progress
from mdl.redact import redact_url
from mdl.report import FileOutcome, RunReport, failed
from mdl.sources import Hub, RemoteFile, ResolvedModel, mirror_urls, resolve_model, resolve_token, with_probe
from mdl.store import FileRecord, Layout, Placement, Store, adopt_cached, hash_file, now_iso, stat_file
from mdl.transfer import (
    Credentials,
    Engine,
    EngineConfig,
    Identity,
    RateLimiter,
    RetryPolicy,
    TransferJob,
    TransferResult,
    discard_partial,
    make_client,
    open_stream,
    origin,
    saved_progress,
)
from mdl.units import human_size

if TYPE_CHECKING:
    from mdl.store import HeldLocks

log = logging.getLogger("mdl.pull")
RECORD_FLUSH_INTERVAL = 1.0  # seconds between writes of a model's record while its files complete
MIRROR_RETRIES = 1  # a sick mirror is left for the next source quickly; the origin gets the full retries

# What each action is called once done (the JSON contract's words).
DONE_WORD = {
    Action.SKIP: "skipped",
    Action.DOWNLOAD: "downloaded",
    Action.RESUME: "resumed",
    Action.REPAIR: "repaired",
    Action.CHECK: "skipped",
}


@dataclass(frozen=True)
class PlannedFile:
    """A file, where it goes, and what pull decided to do with it."""

    remote: RemoteFile
    decision: Decision
    partial_bytes: int
    placement: Placement

    @property
    def final_path(self) -> Path:
        """Where the verified bytes are renamed to."""
        return self.placement.final


class Puller:
    """One run's machinery: the store, the Hub client (lazy), the HTTP pool and the engine."""

    def __init__(self, settings: Settings, *, progress: Progress, cancel: threading.Event | None = None) -> None:
        self.settings = settings
        self.progress = progress
        self.cancel = cancel or threading.Event()
        self.layout = Layout(settings)
        self.store: Store = self.layout.records  # model records (and, in the plain layout, everything else)
        self._records_lock = threading.Lock()
        self._pending: dict[str, list[tuple[FileRecord, HeldLocks | None]]] = {}
        self._held = threading.local()  # the file lock the current job thread holds
        self._held.lock = None
        self._pending_commit: dict[str, tuple[str | None, str | None]] = {}
        self._last_flush: dict[str, float] = {}
        self.environ = dict(settings.environ or {})
        self._hub: Hub | None = None
        self._token: str | None = None
        self._token_read = False
        self.retry = RetryPolicy(retries=settings.retries)
        self.client = make_client(
            read_timeout=settings.stall_timeout,
            pool_size=max(4, settings.jobs * settings.connections + settings.jobs),
        )
        self.engine = Engine(
            self.client,
            EngineConfig(connections=settings.connections, retry=self.retry),
            progress=progress,
            cancel=self.cancel,
            limiter=RateLimiter(settings.limit_rate) if settings.limit_rate else None,
            relocate=lambda job: job.url,  # a Hub resolve URL redirects to a freshly signed CDN URL
        )
        self.mirror_engine = Engine(
            self.client,
            EngineConfig(
                connections=settings.connections,
                retry=RetryPolicy(retries=MIRROR_RETRIES),
                max_stalls=MIRROR_RETRIES,
            ),
            progress=progress,
            cancel=self.cancel,
            limiter=self.engine.limiter,
        )

    def close(self) -> None:
        """Release the connection pool."""
        self.client.close()

    @property
    def token(self) -> str | None:
        """The Hub token, read once when first needed."""
        if not self._token_read:
            self._token = self.settings.token or resolve_token(self.environ)
            self._token_read = True
        return self._token

    def hub(self) -> Hub | None:
        """The Hub client, or None when HF_HUB_OFFLINE is set."""
        if self.settings.offline:
            return None
        if self._hub is None:
            self._hub = Hub(self.settings.endpoint, self.token, retry=self.retry)
        return self._hub

    def credentials(self, remote: RemoteFile) -> Credentials:
        """The Hub token for Hub files (to the Hub origin only); a direct URL's own headers otherwise."""
        if remote.hub:
            return Credentials(hub_origin=origin(self.settings.endpoint), token=self.token)
        return Credentials(extra=dict(remote.headers))

    # -- resolve and plan --------------------------------------------------------------------------

    def resolve(self, models: Sequence[ModelSpec]) -> tuple[list[ResolvedModel], list[FileOutcome]]:
        """Resolve every model; a model that fails is reported and the others go on."""
        resolved: list[ResolvedModel] = []
        failures: list[FileOutcome] = []
        for spec in models:
            if self.cancel.is_set():
                raise InterruptedByUserError("interrupted while resolving")
            try:
                hub = self.hub() if _needs_hub(spec) else None
                record = self.store.read_record(spec.name)
                if self.settings.offline and self.layout.cache_root is not None:
                    record = adopt_cached(spec, record, self.layout.cache_root)
                resolved.append(
                    resolve_model(spec, hub=hub, offline=self.settings.offline, environ=self.environ, record=record)
                )
            except MdlError as exc:
                log.error("%s: %s", spec.name, exc.message)
                failures.append(failed(spec.name, None, exc, dest=self.store.model_dir(spec.name)))
        return resolved, failures

    def probe(self, remote: RemoteFile) -> RemoteFile:
        """For a direct URL the catalog gives no sha256 for: learn its size and ETag (one request)."""
        _, size, etag = self._probe(remote)
        return with_probe(remote, size=size, etag=etag)

    def final_url(self, remote: RemoteFile) -> str:
        """Where the file's URL redirects to in the end (the CDN URL for Hub files)."""
        return self._probe(remote)[0]

    def _probe(self, remote: RemoteFile) -> tuple[str, int | None, str | None]:
        """Ask for the first byte, following redirects: (final URL, total size, strong ETag)."""
        what = label_of(remote)
        return self.retry.run(lambda: self._probe_once(remote), what=what, wait=self.cancel.wait)

    def _probe_once(self, remote: RemoteFile) -> tuple[str, int | None, str | None]:
        with open_stream(
            self.client,
            remote.url,
            credentials=self.credentials(remote),
            headers={"Range": "bytes=0-0"},
            what=label_of(remote),
        ) as response:
            from mdl.transfer import ContentRangeError, error_for_status, parse_content_range

            if response.status_code == 206:
                try:
                    _, _, total = parse_content_range(response.headers.get("Content-Range", ""))
                except ContentRangeError:
                    total = None
            elif response.status_code == 200:
                length = response.headers.get("Content-Length")
                total = int(length) if length and length.isdigit() else None
            else:
                hub = remote.hub and origin(str(response.url)) == origin(self.settings.endpoint)
                raise error_for_status(response, what=label_of(remote), hub=hub)
            etag = response.headers.get("ETag")
            return str(response.url), total, etag if etag and not etag.startswith("W/") else None

    def place(self, remote: RemoteFile) -> Placement:
        """Where the file goes in this run's layout."""
        return self.layout.place(
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
                raise _offline_error(remote) from None
            raise
        record = self.store.read_record(remote.model)
        entry = record.files.get(remote.path) if record is not None else None
        part, state = placement.store.part_paths(remote.model, remote.path)
        partial = saved_progress(state, identity_of(remote)) if part.exists() else 0
        stat = stat_file(placement.final)
        if stat is not None and not _is_regular(stat):
            stat = None
        local = LocalState.of(stat, partial_bytes=partial)
        return PlannedFile(remote, decide(remote, entry, local, force=self.settings.force), partial, placement)

    # -- execute -----------------------------------------------------------------------------------

    def run(self, models: Sequence[ModelSpec]) -> RunReport:
        """Pull the models: resolve, plan, check space, fetch, record."""
        resolved, outcomes = self.resolve(models)
        plans: list[PlannedFile] = []
        for model in resolved:
            for remote in model.files:
                try:
                    if self.settings.offline:
                        plans.append(self.plan(remote))
                        continue
                    if not remote.hub and not remote.sha256:
                        remote = self.probe(remote)
                    plans.append(self.plan(remote))
                except MdlError as exc:
                    outcomes.append(failed(remote.model, remote.path, exc))
        if self.settings.dry_run:
            return RunReport(tuple(outcomes) + tuple(_dry(p) for p in plans), dry_run=True)
        if any(p.decision.action is not Action.SKIP for p in plans):
            self.store.ensure_dirs()
            self.check_space(plans)
        outcomes.extend(self.execute(plans, commits={m.name: (m.revision, m.commit) for m in resolved}))
        return RunReport(tuple(outcomes))

    def check_space(self, plans: Sequence[PlannedFile]) -> None:
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

    def execute(
        self, plans: Sequence[PlannedFile], *, commits: dict[str, tuple[str | None, str | None]]
    ) -> list[FileOutcome]:
        """Run every plan on ``jobs`` threads; Ctrl-C stops the streams and keeps their partial data."""
        todo = [p for p in plans if p.decision.action is not Action.SKIP]
        total = sum(
            (p.remote.size or 0) - (p.partial_bytes if p.decision.action is Action.RESUME else 0)
            for p in todo
            if p.decision.action is not Action.CHECK
        )
        self.progress.begin(total_bytes=total, files=len(todo))
        results: dict[int, FileOutcome] = {}
        for index, plan in enumerate(plans):
            if plan.decision.action is Action.SKIP:
                try:
                    self.layout.link(plan.placement)  # the blob may be there for another commit's snapshot
                except MdlError as exc:
                    results[index] = failed(plan.remote.model, plan.remote.path, exc, dest=plan.placement.shown)
                    continue
                results[index] = self._outcome(
                    plan, Action.SKIP, size=plan.remote.size, sha256=_recorded_sha(self, plan)
                )
        try:
            return self._execute(plans, commits=commits, results=results)
        finally:
            self.flush_records()

    def _execute(
        self,
        plans: Sequence[PlannedFile],
        *,
        commits: dict[str, tuple[str | None, str | None]],
        results: dict[int, FileOutcome],
    ) -> list[FileOutcome]:
        with ThreadPoolExecutor(max_workers=self.settings.jobs, thread_name_prefix="file") as pool:
            futures: dict[int, Future[FileOutcome]] = {
                index: pool.submit(self._pull_one, plan, commits.get(plan.remote.model, (None, None)))
                for index, plan in enumerate(plans)
                if plan.decision.action is not Action.SKIP
            }
            try:
                for index, future in futures.items():
                    results[index] = _wait(future)
            except KeyboardInterrupt:
                self.cancel.set()
                self.engine.abort()
                self.mirror_engine.abort()
                for future in futures.values():
                    future.cancel()
                pool.shutdown(wait=True, cancel_futures=True)
                raise InterruptedByUserError("interrupted; partial downloads were kept, run again to resume") from None
        if self.cancel.is_set():
            raise InterruptedByUserError("interrupted; partial downloads were kept, run again to resume")
        return [results[i] for i in sorted(results)]

    def _pull_one(self, plan: PlannedFile, commit: tuple[str | None, str | None]) -> FileOutcome:
        remote = plan.remote
        label = label_of(remote)
        try:
            self._held.lock = plan.placement.store.acquire_file_lock(
                remote.model,
                remote.path,
                timeout=self.settings.lock_timeout,
                on_wait=lambda: self.progress.note(f"{label}: another mdl run is fetching it; waiting for it"),
                cancel=self.cancel,
                shared_lock=plan.placement.lock,
            )
            try:
                # Another run may have finished (or changed) it while we waited: decide again under the lock.
                fresh = self.plan(remote) if not self.settings.force else plan
                return self._act(fresh, commit)
            finally:
                if self._held.lock is not None:  # not handed over to a queued record: release it now
                    self._held.lock.release()
                    self._held.lock = None
        except InterruptedByUserError:
            raise
        except MdlError as exc:
            log.error("%s", exc.message if exc.message.startswith(label) else f"{label}: {exc.message}")
            self.progress.finish(label, ok=False, message=exc.message)
            return failed(remote.model, remote.path, exc, dest=plan.placement.shown)

    def _act(self, plan: PlannedFile, commit: tuple[str | None, str | None]) -> FileOutcome:
        remote = plan.remote
        action = plan.decision.action
        if action is Action.SKIP:
            self.layout.link(plan.placement)
            return self._outcome(plan, Action.SKIP, size=remote.size, sha256=_recorded_sha(self, plan))
        if action is Action.CHECK:
            try:
                size, sha256, git_oid = hash_file(plan.final_path, git=bool(remote.git_oid))
            except OSError as exc:
                raise LocalFSError(f"{label_of(remote)}: cannot read {plan.final_path}: {exc.strerror or exc}") from exc
            if _matches(remote, size=size, sha256=sha256, git_oid=git_oid, record_sha=_recorded_sha(self, plan)):
                self.layout.link(plan.placement)
                self._record(plan, size=size, sha256=sha256, git_oid=git_oid, etag=remote.etag, commit=commit)
                return self._outcome(plan, Action.CHECK, size=size, sha256=sha256)
            log.info("%s/%s: local file does not match, fetching it again", remote.model, remote.path)
            action = Action.REPAIR
        if self.settings.offline:  # no network at all, mirrors included
            raise _offline_error(remote)
        result = self._transfer(plan)
        self.layout.link(plan.placement)
        self._record(
            plan,
            size=result.size,
            sha256=result.sha256,
            git_oid=result.git_oid,
            etag=result.etag or remote.etag,  # the validator of the bytes we actually got
            commit=commit,
        )
        if action is Action.DOWNLOAD and result.resumed_from > 0:
            action = Action.RESUME
        elif action is Action.RESUME and result.resumed_from == 0:
            action = Action.DOWNLOAD  # the partial could not be used: it was fetched from zero
        return self._outcome(
            plan, action, size=result.size, sha256=result.sha256, fetched=result.fetched, mirror=result.mirror
        )

    def _transfer(self, plan: PlannedFile) -> TransferResult:
        remote = plan.remote
        label = label_of(remote)
        part, state = plan.placement.store.part_paths(remote.model, remote.path)
        job = TransferJob(
            label=label,
            url=remote.url,
            identity=identity_of(remote),
            credentials=self.credentials(remote),
            final_path=plan.final_path,
            part_path=part,
            state_path=state,
            source=remote.source,
            verify=self.settings.verify,
            size_pinned=remote.size_pinned,
            renewable=remote.hub,  # a direct URL that is refused stays refused: asking again cannot help
        )
        for url in mirror_urls(self.settings.mirrors, remote):
            shown = redact_url(url)
            try:
                # A mirror gets no credentials, and its bytes must match the origin's hashes: always verified,
                # and a mismatch is not retried there (the next source is).
                result = self.mirror_engine.fetch(
                    replace(
                        job, url=url, credentials=Credentials(), verify=True, retry_on_mismatch=False, renewable=False
                    )
                )
            except InterruptedByUserError:
                raise
            except MdlError as exc:
                if self.cancel.is_set():
                    raise InterruptedByUserError("interrupted; partial downloads were kept") from exc
                # Never let the next source resume on a mirror's bytes: only verified bytes may be trusted, and
                # with --no-verify nothing would catch a splice.
                discard_partial(job)
                why = exc.message.removeprefix(f"{label}: ")
                log.warning("%s: mirror %s failed (%s); trying the next source", label, shown, why)
                self.progress.note(f"{label}: mirror {shown} failed ({why}); trying the next source")
                continue
            log.info("%s: fetched from mirror %s", label, shown)
            self.progress.finish(label, ok=True)
            return replace(result, mirror=shown)
        result = self.engine.fetch(job)
        self.progress.finish(label, ok=True)
        return result

    def _record(
        self,
        plan: PlannedFile,
        *,
        size: int,
        sha256: str,
        git_oid: str | None,
        etag: str | None,
        commit: tuple[str | None, str | None],
    ) -> None:
        remote = plan.remote
        try:
            stat = plan.final_path.stat()
        except OSError as exc:
            raise LocalFSError(f"{label_of(remote)}: {plan.final_path} vanished: {exc.strerror or exc}") from exc
        self._queue_record(
            remote.model,
            commit,
            FileRecord(
                path=remote.path,
                size=size,
                sha256=sha256,
                mtime_ns=stat.st_mtime_ns,
                source=remote.source,
                git_oid=git_oid,
                etag=etag,
                commit=remote.commit,
                fetched_at=now_iso(),
            ),
        )

    def _queue_record(self, model: str, commit: tuple[str | None, str | None], record: FileRecord) -> None:
        """Add a file to the model's record, writing it at most once a second (and at the end of the run).

        Rewriting the whole record per file is O(files²) and serialises the jobs on the record lock; a file
        whose entry was not written yet (kill -9) is only re-hashed by the next run, never trusted blindly.
        """
        lock, self._held.lock = (
            getattr(self._held, "lock", None),
            None,
        )  # released once this record is on disk (engine rule 11)
        if lock is not None:
            # The blob is in place and linked: free its shared lock now. Held until the batched record flush,
            # it would block this very run's other jobs on the same blob (identical files, two models on one
            # repo) and any hf_hub_download, with nothing left to flush it.
            lock.release_shared()
        with self._records_lock:
            self._pending.setdefault(model, []).append((record, lock))
            self._pending_commit[model] = commit
            due = time.monotonic() - self._last_flush.get(model, 0.0) >= RECORD_FLUSH_INTERVAL
        if due:
            self.flush_records(model)

    def flush_records(self, model: str | None = None) -> None:
        """Write the queued file records (of one model, or all) to the store."""
        with self._records_lock:
            models = [model] if model is not None else list(self._pending)
            batches = {m: (self._pending.pop(m, []), self._pending_commit.get(m, (None, None))) for m in models}
            for m in models:
                self._last_flush[m] = time.monotonic()
        for m, (queued, commit) in batches.items():
            try:
                if queued:
                    records = tuple(record for record, _ in queued)
                    self.store.update_record(m, revision=commit[0], commit=commit[1], puts=records)
            finally:
                # Only now may a waiting run take these files: it will find them recorded, not re-fetch them.
                for _, lock in queued:
                    if lock is not None:
                        lock.release()

    def _outcome(
        self,
        plan: PlannedFile,
        action: Action,
        *,
        size: int | None,
        sha256: str | None,
        fetched: int = 0,
        mirror: str | None = None,
    ) -> FileOutcome:
        return FileOutcome(
            model=plan.remote.model,
            path=plan.remote.path,
            dest=str(plan.placement.shown),
            size=size,
            sha256=sha256,
            action=DONE_WORD[action],
            reason=plan.decision.reason,
            fetched=fetched,
            mirror=mirror,
        )


def identity_of(remote: RemoteFile) -> Identity:
    """What a partial download must match to be resumed (a Hub file is known by its hashes, not a CDN ETag)."""
    return Identity(remote.size, remote.sha256, remote.git_oid, remote.etag if not remote.hub else None)


def label_of(remote: RemoteFile) -> str:
    """``model/path`` as shown in progress and messages (just the path for one-off ``get`` files)."""
    return f"{remote.model}/{remote.path}" if remote.model else remote.path


def _needs_hub(spec: ModelSpec) -> bool:
    return spec.is_snapshot or any(f.url is None for f in spec.files)


def _is_regular(stat: Any) -> bool:
    import stat as st

    return st.S_ISREG(stat.st_mode)


def _recorded_sha(puller: Puller, plan: PlannedFile) -> str | None:
    record = puller.store.read_record(plan.remote.model)
    entry = record.files.get(plan.remote.path) if record is not None else None
    return entry.sha256 if entry is not None else plan.remote.sha256


def _matches(remote: RemoteFile, *, size: int, sha256: str, git_oid: str | None, record_sha: str | None) -> bool:
    if remote.size is not None and size != remote.size:
        return False
    if remote.sha256:
        return sha256 == remote.sha256
    if remote.git_oid:
        return git_oid == remote.git_oid
    return record_sha is not None and sha256 == record_sha


def _offline_error(remote: RemoteFile) -> MdlError:
    from mdl.errors import NetworkError

    return NetworkError(f"{remote.model}/{remote.path}: HF_HUB_OFFLINE is set and the file must be fetched")


def _dry(plan: PlannedFile) -> FileOutcome:
    return FileOutcome(
        model=plan.remote.model,
        path=plan.remote.path,
        dest=str(plan.placement.shown),
        size=plan.remote.size,
        sha256=plan.remote.sha256,
        action=plan.decision.action.value,
        reason=plan.decision.reason,
    )


def _wait(future: Future[FileOutcome]) -> FileOutcome:
    # A short timeout keeps the main thread responsive to Ctrl-C (a blocking wait would swallow it).
    while True:
        try:
            return future.result(timeout=0.2)
        except TimeoutError:
            continue


def pull_models(models: Sequence[ModelSpec], settings: Settings, *, progress: Progress) -> RunReport:
    """Pull the given catalog models into ``settings.dest``."""
    puller = Puller(settings, progress=progress)
    try:
        return puller.run(models)
    finally:
        puller.close()
