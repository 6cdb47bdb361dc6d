"""``mdl pull``: resolve, decide per file, check space, then fetch on ``jobs`` threads and assemble the report."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor

from mdl.catalog import ModelSpec, Settings
from mdl.download.fetcher import FileFetcher
from mdl.download.filelog import log_outcome
from mdl.download.lockfile_use import warned
from mdl.download.outcomes import dry_run_outcome
from mdl.download.plan import Action
from mdl.download.planner import PlannedFile, Planner, check_space
from mdl.download.record_queue import Commit, RecordQueue
from mdl.download.session import MANY_JOBS, PullSession
from mdl.errors import InterruptedByUserError, MdlError
from mdl.lockfile import Lock
from mdl.progress import Progress
from mdl.report import FileOutcome, RunReport, failed
from mdl.sources import Hub, RemoteFile, ResolvedModel
from mdl.store import ExpectedFile, Layout, Store
from mdl.transfer import SPLIT_THRESHOLD


class Puller:
    """One run: its session, planner, record queue and file fetcher, and the loop that drives them."""

    def __init__(
        self,
        settings: Settings,
        *,
        progress: Progress,
        cancel: threading.Event | None = None,
        keep_records: bool = True,
        lock: Lock | None = None,
    ) -> None:
        self.settings = settings
        self.progress = progress
        self.session = PullSession(settings, progress=progress, cancel=cancel, lock=lock)
        self.cancel = self.session.cancel
        self.planner = Planner(self.session)
        self.records = RecordQueue(self.session.store, keep=keep_records, dirs=self.session.dirs)
        self.fetcher = FileFetcher(self.session, self.planner, self.records)

    @property
    def layout(self) -> Layout:
        """This run's destination layout."""
        return self.session.layout

    @property
    def store(self) -> Store:
        """Where model records go."""
        return self.session.store

    def close(self) -> None:
        """Release the connection pool."""
        self.session.close()

    def hub(self) -> Hub | None:
        """The Hub client, or None when HF_HUB_OFFLINE is set."""
        return self.session.hub()

    def resolve(self, models: Sequence[ModelSpec]) -> tuple[list[ResolvedModel], list[FileOutcome]]:
        """Resolve every model; a model that fails is reported and the others go on."""
        return self.planner.resolve(models)

    def probe(self, remote: RemoteFile, *, carry: bool = False) -> RemoteFile:
        """For a direct URL: learn its size and validator (one request; ``carry``: with its first bytes)."""
        return self.planner.probe(remote, carry=carry)

    def plan(self, remote: RemoteFile) -> PlannedFile:
        """Look at the disk (no hashing) and decide."""
        return self.planner.plan(remote)

    def check_space(self, plans: Sequence[PlannedFile]) -> None:
        """Engine rule 10: refuse before transferring when the known sizes do not fit (per destination)."""
        check_space(plans)

    def run(self, models: Sequence[ModelSpec]) -> RunReport:
        """Pull the models: resolve, plan, check space, fetch, record."""
        resolved, outcomes = self.planner.resolve(models, keep_installed=True)
        plans, failures = self.planner.plan_models(resolved)
        outcomes.extend(failures)
        for outcome in outcomes:  # models or files that failed before any transfer: their lines first
            log_outcome(outcome)
        if self.settings.dry_run:
            planned = tuple(outcomes) + tuple(dry_run_outcome(p) for p in plans)
            return warned(RunReport(planned, dry_run=True), self.session.lockfile.warnings)
        if any(p.decision.action is not Action.SKIP for p in plans):
            self.store.ensure_dirs()
            check_space(plans)
        self.expect(resolved, plans)
        outcomes.extend(self.execute(plans, commits={m.name: (m.revision, m.commit) for m in resolved}))
        return warned(RunReport(tuple(outcomes)), self.session.lockfile.warnings)

    def expect(self, resolved: Sequence[ResolvedModel], plans: Sequence[PlannedFile]) -> None:
        """Write what each model should be into its record before the first byte moves (atomically): a pull
        that stops halfway leaves a model every offline view calls ``partial``, never ``installed``."""
        planned = {(p.remote.model, p.remote.path): p.remote for p in plans}  # probed: sizes direct URLs told
        for model in resolved:
            files = (planned.get((model.name, f.path), f) for f in model.files)
            expected = {f.path: ExpectedFile(f.path, f.size, f.sha256, f.git_oid, f.source) for f in files}
            record = self.store.read_record(model.name)
            if record is None or record.expected != expected or record.commit != model.commit:
                self.store.update_record(model.name, revision=model.revision, commit=model.commit, expected=expected)

    def execute(self, plans: Sequence[PlannedFile], *, commits: dict[str, Commit]) -> list[FileOutcome]:
        """Run every plan on ``jobs`` threads; Ctrl-C stops the streams and keeps their partial data."""
        todo = [p for p in plans if p.decision.action is not Action.SKIP]
        # Bytes still to fetch, plus those a check hashes (a check that fails takes its bytes back, see fetcher.py);
        # unknown while any file's size is (a server that never says it): never a made-up "0 B".
        total: int | None = None
        if all(p.remote.size is not None for p in todo):
            kept = sum(p.partial_bytes for p in todo if p.decision.action is Action.RESUME)
            total = sum(p.remote.size or 0 for p in todo) - kept
        self.progress.begin(total_bytes=total, files=len(todo))
        results: dict[int, FileOutcome] = {}
        for index, plan in enumerate(plans):
            if plan.decision.action is Action.SKIP:
                try:
                    results[index] = self.fetcher.skip(plan)
                except MdlError as exc:
                    results[index] = failed(
                        plan.remote.model, plan.remote.path, exc, dest=plan.placement.shown, source=plan.remote.source
                    )
                log_outcome(results[index])
        try:
            return self._execute(plans, commits=commits, results=results)
        finally:
            self.records.flush()

    def _execute(
        self, plans: Sequence[PlannedFile], *, commits: dict[str, Commit], results: dict[int, FileOutcome]
    ) -> list[FileOutcome]:
        todo = {i: p for i, p in enumerate(plans) if p.decision.action is not Action.SKIP}
        small_jobs, big_jobs = job_counts(self.settings, list(todo.values()))
        with (
            ThreadPoolExecutor(max_workers=small_jobs, thread_name_prefix="file") as small_pool,
            ThreadPoolExecutor(max_workers=big_jobs, thread_name_prefix="big") as big_pool,
        ):
            pools = (small_pool, big_pool)
            futures: dict[int, Future[FileOutcome]] = {
                index: pools[is_big(plan) and not self.settings.jobs_set].submit(
                    self.fetcher.pull_one, plan, commits.get(plan.remote.model, (None, None))
                )
                for index, plan in todo.items()
            }
            try:
                for index, future in futures.items():
                    results[index] = _wait(future)
            except KeyboardInterrupt:
                self.session.abort()
                for future in futures.values():
                    future.cancel()
                for pool in pools:
                    pool.shutdown(wait=True, cancel_futures=True)
                raise InterruptedByUserError("interrupted; partial downloads were kept, run again to resume") from None
        if self.cancel.is_set():
            raise InterruptedByUserError("interrupted; partial downloads were kept, run again to resume")
        return [results[i] for i in sorted(results)]


def is_big(plan: PlannedFile) -> bool:
    """A file fetched as parallel ranges (its streams, not more files, keep the link busy)."""
    size = plan.remote.size
    return size is not None and size >= SPLIT_THRESHOLD


def job_counts(settings: Settings, todo: Sequence[PlannedFile]) -> tuple[int, int]:
    """Files in flight at once: (small files, big files).

    ``--jobs`` (or MDL_JOBS, or the catalog) fixes one number for every file. Left alone, it follows the work:
    small files are latency-bound (a round trip or two each, a few ms of bytes), so up to ``MANY_JOBS`` of
    them go at once on the one pooled client; big files keep ``jobs`` in flight, each with its own ranges.
    """
    if settings.jobs_set:
        return settings.jobs, 1
    small = sum(1 for plan in todo if not is_big(plan))
    return max(1, min(MANY_JOBS, small)), max(1, settings.jobs)


def _wait(future: Future[FileOutcome]) -> FileOutcome:
    # A short timeout keeps the main thread responsive to Ctrl-C (a blocking wait would swallow it).
    while True:
        try:
            return future.result(timeout=0.2)
        except TimeoutError:
            continue


def pull_models(
    models: Sequence[ModelSpec], settings: Settings, *, progress: Progress, lock: Lock | None = None
) -> RunReport:
    """Pull the given catalog models into ``settings.dest`` (pinned by ``lock``, else by the lock settings name)."""
    puller = Puller(settings, progress=progress, lock=lock)
    try:
        return puller.run(models)
    finally:
        puller.close()
