"""What one run's stages share: settings, layout and store, its use of catalog.lock (read once, one
warning per model resolved fresh, ``--locked``'s refusal), the Hub client and token (lazy), HTTP
pool, engines, the mirror to fill (probed once); and one file's sources as the stages ask them
(FileSources: its mirrors, then its origin)."""

from __future__ import annotations

import logging
import os
import shlex
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property, partial
from typing import TYPE_CHECKING

from mdl.buckets.registry import Presigner, store_for, store_schemes
from mdl.catalog.settings import Settings
from mdl.errors import (
    INTERRUPTED,
    AuthError,
    IntegrityError,
    InterruptedByUserError,
    MdlError,
    NetworkError,
    NoSpaceError,
    UsageError,
)
from mdl.lazy import import_ahead
from mdl.progress import Progress
from mdl.redact import redact_url
from mdl.report import WallWaits
from mdl.report import warned as warned  # (where pull and publish find it)
from mdl.sources.netrc import NetrcLogins, read_netrc
from mdl.sources.resolve import RemoteFile, mirror_targets, with_probe
from mdl.store.filesystem import DirSyncs
from mdl.store.layout import Layout
from mdl.store.records import ExpectedFile
from mdl.store.store import Store
from mdl.transfer.connection import NetTransport, origin
from mdl.transfer.context import JobContext
from mdl.transfer.http import Credentials, RetryPolicy, TokenGuard, make_client
from mdl.transfer.job import (
    MAX_AUTO_CONNECTIONS,
    Landing,
    PartSource,
    RetryLog,
    TransferJob,
    TransferResult,
)
from mdl.transfer.ratelimit import HubGate
from mdl.transfer.replies import Probed, probe
from mdl.transfer.resume import discard_partial

if TYPE_CHECKING:
    # each loaded when the run first needs it: a plain URL's get needs none of them
    import httpx2

    from mdl.buckets.protocol import ObjectStore, Writer
    from mdl.download.demand import Demand
    from mdl.sources.hub import Hub
    from mdl.sources.oci import Registry
    from mdl.transfer.engine import Engine, Paused
    from mdl.transfer.job import EngineConfig
    from mdl.transfer.ranges import Releases
    from mdl.transfer.scheduling import RateLimiter
    from mdl.xet.fetch import XetSource

MANY_JOBS = 32  # small files in flight at once when --jobs is not given (see workers.job_counts)
# a sick mirror is left for the next source quickly; the origin gets the full retries
MIRROR_RETRIES = 1
log = logging.getLogger("mdl.lock")
Pins = dict[str, tuple[ExpectedFile, ...]]  # model → the files catalog.lock pins for it
pull_log = logging.getLogger("mdl.pull")
# Internal, for tests only (not a setting: a fleet has no reason to change it): a lease's term in
# seconds, so that a test can see a lapsed S3 lease taken over without waiting the real term.
TERM_VARIABLE = "MDL_INTERNAL_LEASE_TERM"
# what a run's transfers run (the files' plans and the store's inventory with them, the engine),
# imported while its first request is out: a probe's round trip, 0.3 s from a far bucket
TRANSFER_MODULES = ("mdl.download._fetch", "mdl.transfer.engine")


class TransferAhead:
    """A request hook: the first request, as it goes out, starts importing the transfer's modules
    on a thread (started before it, that thread would slow the request's own code)."""

    def __init__(self) -> None:
        self._loading: list[Callable[[], None]] = []

    def __call__(self, _: object) -> None:
        if not self._loading:
            self._loading.append(import_ahead(*TRANSFER_MODULES))

    def wait(self) -> None:
        """Wait for the modules the first request began importing (if it did): their import is
        then never begun on the caller's thread too."""
        for loading in self._loading:
            loading()


class Registries:
    """The run's OCI registries (a login and a token per repository), made when an ``oci://``
    source is first asked: a run without one loads nothing of mdl.sources.oci."""

    def __init__(self, client: httpx2.Client, settings: Settings, retry: RetryPolicy) -> None:
        self.client, self.settings, self.retry = client, settings, retry
        self._lock = threading.Lock()
        self._made: Registry | None = None

    @property
    def registry(self) -> Registry:
        with self._lock:
            if self._made is None:
                from mdl.sources.oci import Registry  # (only for an oci:// source)

                environ, secrets = dict(self.settings.environ or {}), self.settings.secrets
                self._made = Registry(
                    self.client, environ=environ, secrets=secrets, retry=self.retry
                )
            return self._made

    def credentials(self, remote: RemoteFile) -> Credentials | None:
        """What a registry's file's requests carry (its source is ``oci://…``); None for another."""
        if not remote.source.startswith("oci://"):
            return None
        return self.registry.credentials(remote.source)


class PullSession:
    def __init__(
        self,
        settings: Settings,
        *,
        progress: Progress,
        cancel: threading.Event | None = None,
        demand: Demand | None = None,
    ) -> None:
        self.settings = settings
        self.progress = progress
        self.cancel = cancel or threading.Event()
        # a loader reads the files while they come (mdl serve --pull): their order, its waits
        self.demand = demand
        self._releases = demand.releases if demand is not None else None
        # the bytes each file's head fetched ahead of it (``serve --pull``): this run's, not resumed
        self.layout = Layout(settings)
        # model records (and, in the plain layout, everything else)
        self.store: Store = self.layout.records
        self.environ = dict(settings.environ or {})
        self.retry = RetryPolicy(retries=settings.retries, max_time=settings.retry_max_time)
        # one fsync per folder per record write, not one per file (RecordQueue flushes)
        self.dirs = DirSyncs()
        # big files' ranges (twice: a stream asks for its next piece before its current one ends),
        # plus the small files in flight (more when --jobs is left to follow the work)
        small = settings.jobs if settings.jobs_set else max(settings.jobs, MANY_JOBS)
        streams = max(settings.connections, MAX_AUTO_CONNECTIONS)  # (a big file's, by default)
        pool_size = max(4, 2 * settings.jobs * streams + small)
        self.transport = NetTransport(
            timeout=settings.timeout, environ=self.environ, pool_size=pool_size
        )
        self.client = make_client(
            timeout=settings.timeout,
            pool_size=pool_size,
            transport=self.transport,
            secrets=settings.secrets,
        )
        # oci:// sources: the run's registries, made when one is first asked
        self.registries = Registries(self.client, settings, self.retry)
        # Every request of the run passes this hook: the Hub token never leaves for another origin.
        self.guard = TokenGuard.on(self.client, settings.endpoint)
        # ... and this one: every request to the Hub's origin waits while the Hub says so, every
        # connection of the run alike (docs/transfers.md "The Hub's rate limits")
        self.gate = HubGate(
            settings.endpoint,
            cancel=self.cancel,
            few=max(settings.jobs, settings.connections),
            retry_after_cap=self.retry.retry_after_cap,
            note=partial(progress.waiting, ""),  # the whole run waits
        ).hook(self.client)
        # mirrors in object stores (s3://): presigned GETs from one client per store and endpoint
        # (boto3 is imported only when one is asked)
        self.presigner = Presigner(dict(settings.mirror_endpoints), secrets=settings.secrets)
        # made by the first file that asks (mdl.xet and mdl.download._fill load then; the engines
        # when a file is fetched: a get's probe goes out before their modules load)
        self._made = threading.Lock()
        self._engines: tuple[Engine, Engine, EngineConfig, RateLimiter | None] | None = None
        # the transfer's modules load while the run's first request is out (a listing, a probe)
        self.client.event_hooks["request"].append(transfer := TransferAhead())
        self.transfer_loaded = transfer.wait
        self._xet: XetSource | None = None
        self._fills: Fills | None = None
        # A mirror that is down, denied or has no such bucket is asked once per run, not once per
        # file.
        self.dead_mirrors: set[str] = set()
        self.mirror_lock = threading.Lock()
        # the run's waits on other machines filling a mirror (the report's ``waited``), and what
        # fetching a file here costs, as this machine measured it (bounds those waits)
        self.fill_waits = WallWaits()
        self.origin_rate = OriginRate()

    def _engines_made(self) -> tuple[Engine, Engine, EngineConfig, RateLimiter | None]:
        """The engine, the mirrors' engine, the engine's config and the run's rate limiter."""
        with self._made:
            if self._engines is None:
                self.transfer_loaded()
                from mdl.transfer.engine import Engine
                from mdl.transfer.job import EngineConfig
                from mdl.transfer.scheduling import RateLimiter

                settings = self.settings
                config = EngineConfig(
                    connections=settings.connections,
                    scale_connections=not settings.connections_set,
                    retry=self.retry,
                    stall_timeout=settings.stall_timeout,
                )
                mirror = replace(
                    config,
                    scale_connections=False,
                    retry=RetryPolicy(retries=MIRROR_RETRIES),
                    max_stalls=MIRROR_RETRIES,
                )
                limiter = RateLimiter(settings.limit_rate) if settings.limit_rate else None
                engine = partial(
                    Engine,
                    self.client,
                    progress=self.progress,
                    cancel=self.cancel,
                    limiter=limiter,
                    dirs=self.dirs,
                )
                self._engines = (engine(config), engine(mirror), config, limiter)
            return self._engines

    @property
    def releases(self) -> Releases:
        """The range checks of this pull's fetches and the memory they hold (a serving pull's:
        its ``Demand``'s, which the endpoint reads through)."""
        if self._releases is None:
            from mdl.transfer.ranges import Releases  # (a pull with part hashes only)

            self._releases = Releases()
        return self._releases

    @property
    def engine(self) -> Engine:
        return self._engines_made()[0]

    @property
    def mirror_engine(self) -> Engine:
        return self._engines_made()[1]

    @property
    def xet(self) -> XetSource:
        """Xet-backed Hub files: by chunk, with the read tokens and the chunks on disk the run's
        files share."""
        _, _, config, limiter = self._engines_made()
        with self._made:
            if self._xet is None:
                from mdl.xet.fetch import XetSource

                settings = self.settings
                self._xet = XetSource(
                    self.client,
                    retry=self.retry,
                    progress=self.progress,
                    cancel=self.cancel,
                    # as many streams as the plain path would open for the same file
                    streams=config.streams,
                    stall_timeout=settings.stall_timeout,
                    hub=lambda: Credentials(hub_origin=origin(settings.endpoint), token=self.token),
                    secrets=settings.secrets,
                    dirs=self.dirs,
                    recorded=self.recorded_xet,
                    bound=self.xet_bound,
                    # --limit-rate caps the run: xorb bytes count with every other download's
                    limiter=limiter,
                )
            return self._xet

    @property
    def fills(self) -> Fills:
        """--fill-mirror: the mirror to fill, probed once for the run."""
        with self._made:
            if self._fills is None:
                self._fills = Fills(self.settings)
            return self._fills

    def mark_mirror_down(self, template: str) -> bool:
        """Leave the mirror for the rest of the run; True the first time (say it once)."""
        with self.mirror_lock:
            first = template not in self.dead_mirrors
            self.dead_mirrors.add(template)
            return first

    def close(self) -> None:
        self.gate.log_total()
        self.client.close()
        self.transfer_loaded()  # no import left running on its thread past the run

    @property
    def hub_wait_seconds(self) -> float:
        """How long the run waited on the Hub's rate limits (the run report's
        ``hub_wait_seconds``)."""
        return round(self.gate.waited, 1)

    def recorded_xet(self, model: str) -> list[str]:
        """The Xet hashes of the model's files on disk, as its record says (what a new revision
        may copy chunks of).
        """
        record = self.store.read_record(model)
        return (
            [entry.xet for entry in record.files.values() if entry.xet]
            if record is not None
            else []
        )

    def xet_bound(self, job: TransferJob, xet: str) -> bool:
        """Whether ``xet`` is bound to the job's pinned bytes: the model's record says this machine
        verified a file of exactly that sha256 and size whole, fetched by chunk as a file of that
        Xet hash (a Xet fetch checks both over the same bytes: ``xet_checked``; an older mdl's
        record may hold the Hub's word)."""
        sha256, size = job.identity.sha256, job.identity.size
        if not job.model or not job.path or sha256 is None or size is None:
            return False
        record = self.store.read_record(job.model)
        entry = record.entry_for(job.path, sha256=sha256, git_oid=None) if record else None
        return (
            entry is not None
            and entry.verified
            and entry.xet_checked
            and (entry.sha256, entry.size, entry.xet) == (sha256, size, xet)
        )

    def abort(self) -> None:
        """Ctrl-C: stop every stream of both engines now (their partial data is kept; they share
        ``cancel``). The sockets are shut down before the engines close their answers: a closed
        answer's socket has no descriptor left to shut down, and a read already waiting on it would
        wait on (and the server go on sending) until data came."""
        self.cancel.set()  # first: a stream woken by the shutdown stops instead of retrying
        try:
            self.transport.abort()
        finally:  # whatever happened there, the engines still close every answer
            engines = self._engines  # (none made yet: no answer of theirs to close)
            if engines is not None:
                engines[0].abort()
                engines[1].abort()

    @cached_property
    def token(self) -> str | None:
        from mdl.sources.hub import resolve_token  # (mdl.sources.hub: only when a token is asked)

        token = self.settings.token or resolve_token(self.environ)
        self.guard.protect(token)
        self.settings.secrets.add(token)  # whatever sink a server's echo of it would reach
        return token

    @cached_property
    def hub(self) -> Hub | None:  # None when HF_HUB_OFFLINE is set
        if self.settings.offline:
            return None
        from mdl.sources.hub import Hub

        return Hub(
            self.settings.endpoint,
            self.token,
            client=self.client,
            retry=self.retry,
            cancel=self.cancel,
        )

    @cached_property
    # read once, when the run's first direct URL asks (a problem: logged there)
    def netrc(self) -> NetrcLogins:
        return read_netrc(self.settings.netrc, self.settings.secrets)

    def credentials(self, remote: RemoteFile) -> Credentials:
        """The one place that decides what a file's requests carry: the Hub token for Hub files (to
        the Hub origin only); for a direct URL the user typed (``remote.typed``) its own headers,
        with a netrc login when they have no Authorization, to that URL's origin only (never after a
        redirect elsewhere: ``Credentials``); for one a document or a listing named (a job output's
        link, a presigned GET), nothing of the user's."""
        if remote.hub:
            return Credentials(hub_origin=origin(self.settings.endpoint), token=self.token)
        if (registry := self.registries.credentials(remote)) is not None:
            return registry  # a registry's blob: its token, to the registry only
        if not remote.typed:
            return Credentials()
        headers = dict(remote.headers)
        login = self.netrc.authorization(remote.url, headers)
        if login is not None:
            headers["Authorization"] = login
        return Credentials(extra=headers, extra_origin=origin(remote.url), netrc=login is not None)

    def netrc_warning(self, *, typed: bool) -> str | None:
        """Why the netrc file was not used, for the outcome of a direct URL the user typed (None: it
        was, or the file is not one a netrc login would go to)."""
        return self.netrc.problem if typed else None

    def probe(self, remote: RemoteFile, *, carry: bool = False) -> RemoteFile:
        """A direct URL with its size and validator (``carry``: and its first bytes, left for the
        download to read, holding a connection until then: only for a few files at a time)."""
        found = self.probed(remote, carry=carry)
        return with_probe(
            remote,
            size=found.size,
            etag=found.validator,
            located=found.url if found.ranged else None,
            opening=found.opening,
            sha256=found.sha256,
        )

    def probed(self, remote: RemoteFile, *, carry: bool = False) -> Probed:
        """What the first request for the file learned (``.url``: where it redirects to in the
        end).
        """
        what = label_of(remote)
        ask = partial(
            probe,
            self.client,
            remote.url,
            credentials=self.credentials(remote),
            what=what,
            carry=carry,
            saved_as=remote.path,
        )
        return self.retry.run(ask, what=what, wait=self.cancel.wait)


def label_of(remote: RemoteFile) -> str:
    """``model/path`` as shown in progress and messages (just the path for one-off ``get``
    files).
    """
    return f"{remote.model}/{remote.path}" if remote.model else remote.path


@dataclass(frozen=True)
class Target:
    """The run's mirror to fill: its template, its store, writable, and mdl's namespace in it."""

    template: str
    writer: Writer
    root: str


class Fills:
    """The run's mirror to fill, chosen and probed once, by the first file that needs it (the
    others wait on the probe): the first mirror in a store; None when there is none or it cannot
    hold a lease."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.token = os.urandom(6).hex()
        # who holds a lease, for the people who look at one: this machine, this process, this run
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{self.token}"
        self.term = lease_term(settings.environ)
        self._lock = threading.Lock()
        self._chosen = False
        self._target: Target | None = None

    def target(self, retries: RetryLog) -> Target | None:
        """The mirror to fill (the probe's warning, if any, said with the file that asked first)."""
        with self._lock:
            if not self._chosen:
                self._chosen = True
                self._target = self._probed(retries)
            return self._target

    def _probed(self, retries: RetryLog) -> Target | None:
        from mdl.buckets import names
        from mdl.buckets.lease import honours_conditions
        from mdl.buckets.protocol import ConditionalWritesIgnored

        template = next((t for t in self.settings.mirrors if store_for(t) is not None), None)
        if template is None:
            retries.warn(f"no {store_schemes()} mirror to fill (http(s) mirrors are read-only)")
            return None
        store = store_for(template)
        assert store is not None
        root = names.namespace(template)
        if root is None:
            retries.warn(
                f"mirror {template}: a file's name there could be mdl's own '.mdl' (the template's"
                " first folder is filled from {path} or starts with '.'); not filling it"
            )
            return None
        scratch = names.Probe(names.folder_of(template), self.token).uri
        try:
            writer = store.writer(
                endpoint=dict(self.settings.mirror_endpoints).get(template),
                secrets=self.settings.secrets,
            )
            honoured = honours_conditions(writer, scratch)
        except ConditionalWritesIgnored:
            honoured = False
        except MdlError as exc:
            cannot = "cannot be written here" if isinstance(exc, AuthError) else "cannot be filled"
            retries.warn(f"mirror {template} {cannot} ({exc.message}); not filling it")
            return None
        if not honoured:
            what = (
                "ignores exclusive creates or does not keep a file's version (inode, mtime, size)"
                if store.scheme == "file"
                else "ignores conditional writes"
            )
            retries.warn(f"mirror {template} {what}; not filling it")
            return None
        pull_log.info(
            "filling mirror %s (lease holder %s, term %gs)", template, self.holder, self.term
        )
        return Target(template, writer, root)


class OriginRate:
    """This machine's own rate from the origin this run, in bytes/s: the bytes of its fetches of
    at least ``LEAST`` bytes over their seconds (smaller ones measure latency). What fetching a
    file here costs, measured, never claimed: the bound of a wait on another machine's fill
    whose parts cannot be verified (mdl.buckets.lease.wait_for)."""

    LEAST = 1 << 20

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._bytes, self._seconds = 0, 0.0

    def add(self, fetched: int, seconds: float) -> None:
        if fetched >= self.LEAST and seconds > 0:
            with self._lock:
                self._bytes += fetched
                self._seconds += seconds

    def rate(self) -> float | None:
        """Bytes/s measured so far; None: no fetch measured yet."""
        with self._lock:
            return self._bytes / self._seconds if self._seconds else None


def lease_term(environ: Mapping[str, str]) -> float:
    """The lease term: TERM, or (tests) the internal variable's seconds."""
    from mdl.buckets.lease import TERM  # (mdl.buckets.lease: only for --fill-mirror)

    text = environ.get(TERM_VARIABLE)
    try:
        term = float(text) if text else TERM
    except ValueError:
        return TERM
    return term if term > 0 else TERM


@dataclass(frozen=True)
class FileSources:
    """One file's sources, as its fetch (and, with --fill-mirror, mdl.download._fill) asks them:
    its mirrors, one mirror, its origin. ``refused``: the bytes each source that failed sent (a
    mirror, a Xet fetch that fell back to plain HTTP): the file's ``fetched`` counts them."""

    session: PullSession
    job: TransferJob
    remote: RemoteFile
    refused: list[int] = field(default_factory=list)
    missed: list[tuple[str, MdlError]] = field(default_factory=list)  # a failed mirror: url, why
    landing: Landing | None = None  # who hears the origin's fetch land (a fill's publisher)
    swarm: PartSource | None = None  # the fleet's swarm the origin's fetch takes part in
    fresh: bool = False  # nothing of the file on disk: a small one may take one GET (Engine.fetch)
    paused: Paused | None = None  # its fetch paused after its head (``ahead``), to go on with

    @property
    def beside(self) -> JobContext:
        """What the file's fetch is handed beside its job: its range trust, this run's probe
        answer, its listener, and (a pull that serves loaders) the releases that find its check."""
        trust, served = self.remote.trust, self.session.demand is not None
        return JobContext(
            landing=self.landing,
            trust=trust,
            in_order=served,  # loaders read it as it lands
            # (a swarm's parts are fetched one piece each: no open-ended first answer)
            opening=self.remote.opening if self.swarm is None else None,
            # (a check needs them: a trust's, or a Xet file's a loader reads as it lands)
            releases=self.session.releases if trust is not None or served else None,
            swarm=self.swarm,
        )

    def ahead(self, end: int) -> Paused | None:
        """Head first (``serve --pull``): bytes ``[0, end)`` fetched now from the source the file's
        fetch asks first, its first live mirror (a bucket, a shared folder, a URL) else its origin,
        and that fetch paused there (``Engine.ahead``): the file's fetch given it goes on with it
        when it asks that engine. None: they did not all come."""
        session = self.session
        for template, url in mirror_targets(session.settings.mirrors, self.remote):
            if template not in session.dead_mirrors:
                return session.mirror_engine.ahead(*self._there(template, url), end)
        return session.engine.ahead(self.job, self.beside, end)

    def _paused_by(self, engine: Engine) -> Paused | None:
        """The file's paused fetch when ``engine`` paused it (only that engine goes on with it)."""
        return self.paused if self.paused is not None and self.paused.engine is engine else None

    def origin(self) -> TransferResult:
        """The file from its origin (by Xet chunk where it can), its rate measured."""
        if self.paused is not None and self.paused.engine is not self.session.engine:
            self.paused.close()  # a head paused at a mirror that then failed: let go
        started = time.monotonic()
        result = self._origin()
        self.session.origin_rate.add(result.fetched, time.monotonic() - started)
        return result

    def _origin(self) -> TransferResult:
        session, job, remote = self.session, self.job, self.remote
        # (a swarm shares ranged fetches of the file: over plain HTTP)
        if remote.xet is not None and session.settings.xet and self.swarm is None:
            from mdl.xet.failures import XetFallback  # (a Xet file's pull only)

            try:
                return session.xet.fetch(job, remote.xet, self.beside)
            except XetFallback as why:
                self.refused.append(why.fetched)
                pull_log.info(
                    "%s: not fetched by chunk: %s; fetching it over plain HTTP", job.label, why
                )
        paused = self._paused_by(session.engine)
        return session.engine.fetch(job, self.beside, fresh=self.fresh, paused=paused)

    def mirrors(self, skip: frozenset[str] = frozenset()) -> TransferResult | None:
        """The file from the first mirror that delivers its verified bytes, or None: the origin's
        turn (``skip``: templates not to ask, the one a fill found without the file)."""
        for template, url in mirror_targets(self.session.settings.mirrors, self.remote):
            if template in self.session.dead_mirrors or template in skip:
                continue
            result = self.mirror(template, url)
            if result is not None:
                return result
        return None

    def mirror(self, template: str, url: str) -> TransferResult | None:
        """The file from the mirror ``template`` (at ``url``), verified, or None: a warning said why
        (``refused``: the bytes it sent, when they were refused)."""
        session, job = self.session, self.job
        label, retries = job.label, job.retries
        store = store_for(url)
        shown = redact_url(url)

        def said(exc: MdlError) -> None:
            """Why the mirror did not serve the file, in words for every machine that meets it."""
            why = exc.message.removeprefix(f"{label}: ")
            # the store's error code says it better than the reply to a signed URL does
            if store is not None:
                why = store.reason(exc.server_text or exc.message, exc.status) or why
            if isinstance(exc, IntegrityError):  # bad bytes there: every machine meets them
                endpoint = dict(session.settings.mirror_endpoints).get(template)
                retries.warn(
                    f"{label}: mirror {shown} holds bad bytes ({why}); trying the next source;"
                    f" {repair_hint(template, job.model, endpoint)}"
                )
            elif not _mirror_is_down(exc, store=store):
                # A fleet node that silently bypasses its mirror defeats the mirror: every fallback
                # is a warning.
                retries.warn(f"{label}: mirror {shown} failed ({why}); trying the next source")
            elif session.mark_mirror_down(template):  # said once, with the first file it failed
                retries.warn(
                    f"mirror {redact_url(template)} is not usable ({why}); using the next source"
                )
            else:
                retries.add(f"mirror {shown} failed ({why})")

        try:
            engine = session.mirror_engine
            result = engine.fetch(*self._there(template, url), paused=self._paused_by(engine))
        except (InterruptedByUserError, NoSpaceError):  # a full disk here: no source cures it
            raise
        except MdlError as exc:
            self.refused.append(exc.fetched)
            self.missed.append((url, exc))
            if session.cancel.is_set():
                raise InterruptedByUserError(INTERRUPTED) from exc
            # The next source resumes on the bytes kept only when its hash will check them (with
            # --no-verify, or no hash, nothing would catch a splice).
            if not (job.verify and job.identity.has_hash):
                discard_partial(job)
            said(exc)
            return None
        pull_log.info("%s: fetched from mirror %s", label, shown)
        return replace(result, mirror=shown)

    def _there(self, template: str, url: str) -> tuple[TransferJob, JobContext]:
        """The file's job and context at the mirror ``template`` (at ``url``)."""
        # A mirror gets no credentials of ours (a store's: a GET presigned with its own keys) and no
        # origin's probe; its bytes must match the origin's hashes: always verified, a mismatch not
        # retried there (the next source is).
        mirrored = replace(
            self.job,
            credentials=Credentials(),
            verify=True,
            retry_on_mismatch=False,
            fallback=True,
            renewable=False,
            located=None,
        )
        store = store_for(url)
        where = self.session.presigner.presign(url, template=template) if store else url
        return replace(mirrored, url=where), replace(self.beside, landing=None, opening=None)


def repair_hint(template: str, model: str | None, endpoint: str | None) -> str:
    """How to put the file's verified bytes back at a mirror whose object failed its hash: the one
    command, ``mdl publish`` (it replaces an object whose bytes are not the file's), when the
    template is the layout it writes (``PREFIX/{model}/{sha256}``, ``versions.template_of``); else
    where to do it."""
    from mdl.buckets.versions import prefix_of  # (pydantic: only once a mirror holds bad bytes)

    prefix = prefix_of(template)
    if prefix is None or store_for(template) is None or model is None:
        return "replace the object where the mirror is served from"
    words = ["mdl", "publish", model, "--to", redact_url(prefix)]
    if endpoint is not None:
        words += ["--endpoint-url", redact_url(endpoint)]
    return f"repair it: {shlex.join(words)}"


def _mirror_is_down(exc: MdlError, *, store: ObjectStore | None) -> bool:
    """Whether a mirror failed as a whole (nothing listens, bad keys, no such bucket, no library),
    not only for one file (missing there, other bytes, a reset or a 5xx that may pass): then it is
    left for the run."""
    said = f"{exc.message} {exc.server_text or ''}"
    # the store's library missing (its is_down says), or its endpoint unusable; a bad key is per
    # file
    if isinstance(exc, UsageError):
        return "endpoint" in said.lower() or (store is not None and store.is_down(said))
    if isinstance(exc, NetworkError) and exc.status is None:
        return any(
            words in said
            for words in ("cannot connect", "cannot reach", "did not accept a connection")
        )
    return store.is_down(said) if store is not None else isinstance(exc, AuthError)
