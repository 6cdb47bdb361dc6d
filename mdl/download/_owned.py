"""What one pull owns and closes together, made once for the run: its HTTP transport and client
with their hooks, the registries, the presigner, the engines and Xet (made when a file first asks),
the mirror to fill, the range checks, and what the run learns of its sources."""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable, Mapping
from functools import partial
from typing import TYPE_CHECKING

from mdl.buckets.registry import Presigner, store_for, store_schemes
from mdl.catalog.settings import Settings
from mdl.errors import AuthError, MdlError
from mdl.lazy import import_ahead
from mdl.progress import Progress
from mdl.report import WallWaits
from mdl.store.filesystem import DirSyncs
from mdl.transfer.connection import NetTransport
from mdl.transfer.http import Credentials, RetryPolicy, TokenGuard, make_client
from mdl.transfer.job import MAX_AUTO_CONNECTIONS, RetryLog, TransferJob
from mdl.transfer.ratelimit import HubGate

if TYPE_CHECKING:
    # each loaded when the run first needs it: a plain URL's get needs none of them
    from mdl.buckets.protocol import Writer
    from mdl.sources.oci import Registry
    from mdl.transfer.engine import Engine
    from mdl.transfer.job import EngineConfig
    from mdl.transfer.ranges import Releases
    from mdl.transfer.scheduling import RateLimiter
    from mdl.xet.fetch import XetSource

MANY_JOBS = 32  # small files in flight at once when --jobs is not given (see workers.job_counts)
# a sick mirror is left for the next source quickly; the origin gets the full retries
MIRROR_RETRIES = 1
pull_log = logging.getLogger("mdl.pull")
# Internal, for tests only (not a setting: a fleet has no reason to change it): a lease's term in
# seconds, so that a test can see a lapsed S3 lease taken over without waiting the real term.
TERM_VARIABLE = "MDL_INTERNAL_LEASE_TERM"
# what a run's transfers run (the files' plans and the store's inventory with them, the engine),
# imported while its first request is out: a probe's round trip, 0.3 s from a far bucket
TRANSFER_MODULES = ("mdl.download._fetch", "mdl.transfer.engine")


class RunOwned:
    """What the run owns and closes together (``close``; Ctrl-C: ``abort``): its client and
    transport, the Hub's gate, the engines, Xet, the mirror to fill, the range checks, and what it
    learns of its sources (mirrors down, waits on fills, the origin's rate)."""

    def __init__(
        self,
        settings: Settings,
        *,
        retry: RetryPolicy,
        progress: Progress,
        cancel: threading.Event,
        releases: Releases | None,
    ) -> None:
        self.settings, self.retry, self.progress, self.cancel = settings, retry, progress, cancel
        self._releases = releases
        # one fsync per folder per record write, not one per file (RecordQueue flushes)
        self.dirs = DirSyncs()
        # big files' ranges (twice: a stream asks for its next piece before its current one ends),
        # plus the small files in flight (more when --jobs is left to follow the work)
        small = settings.jobs if settings.jobs_set else max(settings.jobs, MANY_JOBS)
        streams = max(settings.connections, MAX_AUTO_CONNECTIONS)  # (a big file's, by default)
        pool_size = max(4, 2 * settings.jobs * streams + small)
        self.transport = NetTransport(
            timeout=settings.timeout, environ=dict(settings.environ or {}), pool_size=pool_size
        )
        self.client = make_client(
            timeout=settings.timeout,
            pool_size=pool_size,
            transport=self.transport,
            secrets=settings.secrets,
        )
        # Every request of the run passes this hook: the Hub token never leaves for another origin.
        self.guard = TokenGuard.on(self.client, settings.endpoint)
        # ... and this one: every request to the Hub's origin waits while the Hub says so, every
        # connection of the run alike (docs/transfers.md "The Hub's rate limits")
        self.gate = HubGate(
            settings.endpoint,
            cancel=self.cancel,
            few=max(settings.jobs, settings.connections),
            retry_after_cap=self.retry.retry_after_cap,
            note=partial(self.progress.waiting, ""),  # the whole run waits
        ).hook(self.client)
        # mirrors in object stores (s3://): presigned GETs from one client per store and endpoint
        # (boto3 is imported only when one is asked)
        self.presigner = Presigner(dict(settings.mirror_endpoints), secrets=settings.secrets)
        # made by the first file that asks (mdl.xet and mdl.download._fill load then; the engines
        # when a file is fetched: a get's probe goes out before their modules load)
        self._made = threading.Lock()
        self._engines: tuple[Engine, Engine, EngineConfig, RateLimiter | None] | None = None
        # the transfer's modules load while the run's first request is out (a listing, a probe)
        self._loading: list[Callable[[], None]] = []
        self.client.event_hooks["request"].append(self._load_ahead)
        self._xet: XetSource | None = None
        self._registry: Registry | None = None  # (oci:// sources: made when one is first asked)
        self._fills: Fills | None = None
        # A mirror that is down, denied or has no such bucket is asked once per run, not once per
        # file.
        self.dead_mirrors: set[str] = set()
        self.mirror_lock = threading.Lock()
        # the run's waits on other machines filling a mirror (the report's ``waited``), and what
        # fetching a file here costs, as this machine measured it (bounds those waits)
        self.fill_waits = WallWaits()
        self.origin_rate = OriginRate()

    def _load_ahead(self, _: object) -> None:
        """A request hook: the first request, as it goes out, starts importing the transfer's
        modules on a thread (started before it, that thread would slow the request's own code)."""
        if not self._loading:
            self._loading.append(import_ahead(*TRANSFER_MODULES))

    def transfer_loaded(self) -> None:
        """Wait for the modules the first request began importing (if it did): their import is
        then never begun on the caller's thread too."""
        for loading in self._loading:
            loading()

    @property
    def registry(self) -> Registry:
        """The run's OCI registries (a login and a token per repository), made when an ``oci://``
        source is first asked: a run without one loads nothing of mdl.sources.oci."""
        with self._made:
            if self._registry is None:
                from mdl.sources.oci import Registry  # (only for an oci:// source)

                environ, secrets = dict(self.settings.environ or {}), self.settings.secrets
                self._registry = Registry(
                    self.client, environ=environ, secrets=secrets, retry=self.retry
                )
            return self._registry

    def made(self) -> tuple[Engine, Engine, EngineConfig, RateLimiter | None]:
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
                mirror = config._replace(
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
        return self.made()[0]

    @property
    def mirror_engine(self) -> Engine:
        return self.made()[1]

    def xet(
        self,
        hub: Callable[[], Credentials],
        recorded: Callable[[str], list[str]],
        bound: Callable[[TransferJob, str], bool],
    ) -> XetSource:
        """Xet-backed Hub files: by chunk, with the read tokens and the chunks on disk the run's
        files share (``hub``, ``recorded``, ``bound``: the session's, ``PullSession.xet``)."""
        _, _, config, limiter = self.made()
        with self._made:
            if self._xet is None:
                from mdl.xet.fetch import XetSource

                self._xet = XetSource(
                    self.client,
                    retry=self.retry,
                    progress=self.progress,
                    cancel=self.cancel,
                    # as many streams as the plain path would open for the same file
                    streams=config.streams,
                    stall_timeout=self.settings.stall_timeout,
                    hub=hub,
                    secrets=self.settings.secrets,
                    dirs=self.dirs,
                    recorded=recorded,
                    bound=bound,
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


class Target:
    """The run's mirror to fill: its template, its store, writable, and mdl's namespace in it.
    (Not a NamedTuple: this run's, a weak key of what it said, download._fill._SAID.)"""

    __slots__ = ("__weakref__", "root", "template", "writer")

    def __init__(self, template: str, writer: Writer, root: str) -> None:
        self.template = template
        self.writer = writer
        self.root = root


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
