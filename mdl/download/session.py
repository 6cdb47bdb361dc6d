"""What one run's stages share: settings, layout and store, its use of catalog.lock (read once, one
warning per model resolved fresh, ``--locked``'s refusal), the Hub client and token (lazy), HTTP
pool, engines."""

from __future__ import annotations

import logging
import threading
from dataclasses import replace
from functools import cached_property, partial
from typing import TYPE_CHECKING

from mdl.buckets import Presigner
from mdl.catalog import Settings
from mdl.progress import Progress
from mdl.report import warned as warned  # (where pull and publish find it)
from mdl.sources import NetrcLogins, RemoteFile, read_netrc, with_probe
from mdl.store import DirSyncs, ExpectedFile, Layout, Store
from mdl.transfer import (
    Credentials,
    HubGate,
    NetTransport,
    Probed,
    RetryPolicy,
    TokenGuard,
    make_client,
    origin,
    probe,
)

if TYPE_CHECKING:
    # each loaded when the run first needs it: a plain URL's get needs none of them
    from mdl.download.fill import Fills
    from mdl.sources import Hub
    from mdl.transfer import Engine, EngineConfig, RateLimiter
    from mdl.xet import XetSource

MANY_JOBS = 16  # small files in flight at once when --jobs is not given (see workers.job_counts)
# a sick mirror is left for the next source quickly; the origin gets the full retries
MIRROR_RETRIES = 1
log = logging.getLogger("mdl.lock")
Pins = dict[str, tuple[ExpectedFile, ...]]  # model → the files catalog.lock pins for it


class PullSession:
    def __init__(
        self, settings: Settings, *, progress: Progress, cancel: threading.Event | None = None
    ) -> None:
        self.settings = settings
        self.progress = progress
        self.cancel = cancel or threading.Event()
        self.layout = Layout(settings)
        # model records (and, in the plain layout, everything else)
        self.store: Store = self.layout.records
        self.environ = dict(settings.environ or {})
        self.retry = RetryPolicy(retries=settings.retries)
        # one fsync per folder per record write, not one per file (RecordQueue flushes)
        self.dirs = DirSyncs()
        # big files' ranges, plus the small files in flight (more when --jobs is left to follow the
        # work)
        small = settings.jobs if settings.jobs_set else max(settings.jobs, MANY_JOBS)
        pool_size = max(4, settings.jobs * settings.connections + small)
        self.transport = NetTransport(
            timeout=settings.timeout, environ=self.environ, pool_size=pool_size
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
            note=partial(progress.waiting, ""),  # the whole run waits
        ).hook(self.client)
        # mirrors in object stores (s3://): presigned GETs from one client per store and endpoint
        # (boto3 is imported only when one is asked)
        self.presigner = Presigner(dict(settings.mirror_endpoints), secrets=settings.secrets)
        # made by the first file that asks (mdl.xet and mdl.download.fill load then; the engines
        # when a file is fetched: a get's probe goes out before their modules load)
        self._made = threading.Lock()
        self._engines: tuple[Engine, Engine, EngineConfig, RateLimiter | None] | None = None
        self._xet: XetSource | None = None
        self._fills: Fills | None = None
        # A mirror that is down, denied or has no such bucket is asked once per run, not once per
        # file.
        self.dead_mirrors: set[str] = set()
        self.mirror_lock = threading.Lock()

    def _engines_made(self) -> tuple[Engine, Engine, EngineConfig, RateLimiter | None]:
        """The engine, the mirrors' engine, the engine's config and the run's rate limiter."""
        with self._made:
            if self._engines is None:
                from mdl.transfer import Engine, EngineConfig, RateLimiter

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
                from mdl.xet import XetSource

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
                    # --limit-rate caps the run: xorb bytes count with every other download's
                    limiter=limiter,
                )
            return self._xet

    @property
    def fills(self) -> Fills:
        """--fill-mirror: the mirror to fill, probed once for the run."""
        with self._made:
            if self._fills is None:
                from mdl.download.fill import Fills

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
        from mdl.sources import resolve_token  # (mdl.sources.hub: only when a token is asked)

        token = self.settings.token or resolve_token(self.environ)
        self.guard.protect(token)
        self.settings.secrets.add(token)  # whatever sink a server's echo of it would reach
        return token

    @cached_property
    def hub(self) -> Hub | None:  # None when HF_HUB_OFFLINE is set
        if self.settings.offline:
            return None
        from mdl.sources import Hub

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
        located = found.url if found.ranged else None
        return with_probe(
            remote, size=found.size, etag=found.validator, located=located, opening=found.opening
        )

    def probed(self, remote: RemoteFile, *, carry: bool = False) -> Probed:
        """What the first request for the file learned (``.url``: where it redirects to in the
        end).
        """
        what = label_of(remote)
        credentials = self.credentials(remote)
        ask = partial(
            probe,
            self.client,
            remote.url,
            credentials=credentials,
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
