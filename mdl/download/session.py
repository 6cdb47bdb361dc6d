"""A pull's session, by lifetime: what is fixed for the run (settings, layout and store, a serving
pull's demand), what it owns and closes together (``_owned.RunOwned``), its logins (the Hub token,
netrc: read when first asked); and one file's sources as the stages ask them (FileSources: its
mirrors, then its origin)."""

from __future__ import annotations

import logging
import threading
import time
from functools import cached_property, partial
from typing import TYPE_CHECKING

from mdl.buckets.registry import store_for
from mdl.catalog.settings import Settings
from mdl.download._owned import TERM_VARIABLE as TERM_VARIABLE  # (where the fleet's tests find it)
from mdl.download._owned import RunOwned
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
from mdl.progress import Progress
from mdl.redact import redact_url
from mdl.sources.netrc import NetrcLogins, read_netrc
from mdl.sources.resolve import RemoteFile, mirror_targets, registry_mirror, with_probe
from mdl.store.layout import Layout
from mdl.store.store import Store
from mdl.transfer.connection import origin
from mdl.transfer.context import JobContext, Ledger
from mdl.transfer.http import Credentials, RetryPolicy, say_wait
from mdl.transfer.job import Landing, PartSource, TransferJob, TransferResult
from mdl.transfer.replies import Probed, probe
from mdl.transfer.resume import discard_partial

pull_log = logging.getLogger("mdl.pull")

if TYPE_CHECKING:
    # each loaded when the run first needs it: a plain URL's get needs none of them
    from mdl.buckets.protocol import ObjectStore
    from mdl.download.demand import Demand
    from mdl.sources.hub import Hub
    from mdl.transfer.engine import Paused
    from mdl.xet.fetch import XetSource


class PullSession:
    """One pull, by lifetime: what is fixed for the run (its settings, layout and store of
    records, environ, a serving pull's ``demand``), what it owns and closes together
    (``owned``: client, engines, the Hub's gate, ...), its logins (the Hub token, netrc: read when
    first asked). What is per file: ``FileSources``."""

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
        self.layout = Layout(settings)
        # model records (and, in the plain layout, everything else)
        self.store: Store = self.layout.records
        self.environ = dict(settings.environ or {})
        self.owned = RunOwned(
            settings,
            # every wait before a retry said (a file's probe, the Hub's API): a line, no row
            retry=RetryPolicy(
                retries=settings.retries,
                max_time=settings.retry_max_time,
                said=partial(say_wait, progress, row=False),
            ),
            progress=progress,
            cancel=self.cancel,
            releases=demand.releases if demand is not None else None,
        )

    def close(self) -> None:
        self.owned.close()

    @property
    def xet(self) -> XetSource:
        """Xet-backed Hub files (``RunOwned.xet``), bound to this run's token and records."""
        endpoint = self.settings.endpoint
        hub = lambda: Credentials(hub_origin=origin(endpoint), token=self.token)  # noqa: E731
        return self.owned.xet(hub, self.recorded_xet, self.xet_bound)

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
        entry = self.store.entry(job.model, job.path, sha256=sha256, git_oid=None)
        return (
            entry is not None
            and entry.verified
            and entry.xet_checked
            and (entry.sha256, entry.size, entry.xet) == (sha256, size, xet)
        )

    @cached_property
    def token(self) -> str | None:
        from mdl.catalog.settings import hf_token_name, hub_token_problem
        from mdl.sources.hub import stored_token  # (mdl.sources.hub: only when a token is asked)

        token = self.settings.token
        if token is not None:  # (judged here: a run that never asks the Hub takes any)
            where = hf_token_name(self.settings.environ or {})
            if (bad := hub_token_problem(token, where)) is not None:
                raise bad
        else:
            token = stored_token()
        self.owned.guard.protect(token)
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
            client=self.owned.client,
            retry=self.owned.retry,
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
        registry = (
            self.owned.registry.credentials(remote.source)
            if remote.source.startswith("oci://")  # (no oci:// source: mdl.sources.oci not loaded)
            else None
        )
        if registry is not None:
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
            self.owned.client,
            remote.url,
            credentials=self.credentials(remote),
            what=what,
            carry=carry,
            saved_as=remote.path,
        )
        return self.owned.retry.run(ask, what=what, wait=self.cancel.wait)


def label_of(remote: RemoteFile) -> str:
    """``model/path`` as shown in progress and messages (just the path for one-off ``get``
    files).
    """
    return f"{remote.model}/{remote.path}" if remote.model else remote.path


class FileSources:
    """One file's sources, as its fetch (and, with --fill-mirror, mdl.download._fill) asks them:
    its mirrors, one mirror, its origin. ``ledger``: the bytes every source and try of the file
    moved (a mirror refused, a Xet fetch that fell back to plain HTTP: all the same)."""

    __slots__ = (
        "fresh",
        "job",
        "landing",
        "ledger",
        "missed",
        "paused",
        "remote",
        "session",
        "swarm",
    )

    def __init__(
        self,
        session: PullSession,
        job: TransferJob,
        remote: RemoteFile,
        ledger: Ledger | None = None,
        *,
        fresh: bool = False,
        paused: Paused | None = None,
    ) -> None:
        self.session = session
        self.job = job
        self.remote = remote
        self.ledger = Ledger() if ledger is None else ledger
        self.missed: list[tuple[str, MdlError]] = []  # a failed mirror: url, why
        # who hears the origin's fetch land (a fill's publisher)
        self.landing: Landing | None = None
        self.swarm: PartSource | None = None  # the fleet's swarm the origin's fetch takes part in
        # nothing of the file on disk: a small one may take one GET (Engine.fetch)
        self.fresh = fresh
        self.paused = paused  # its fetch paused after its head (``ahead``), to go on with

    def heard(self, landing: Landing | None, swarm: PartSource | None = None) -> FileSources:
        """These sources, the origin's fetch heard by ``landing`` (and part of ``swarm``): the same
        file, ledger and failed mirrors."""
        sources = FileSources(
            self.session, self.job, self.remote, self.ledger, fresh=self.fresh, paused=self.paused
        )
        sources.missed = self.missed
        sources.landing = landing
        sources.swarm = self.swarm if swarm is None else swarm
        return sources

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
            releases=self.session.owned.releases if trust is not None or served else None,
            swarm=self.swarm,
            ledger=self.ledger,
        )

    def ahead(self, end: int) -> Paused | None:
        """Head first (``serve --pull``): bytes ``[0, end)`` fetched now from the source the file's
        fetch asks first, its first live mirror (a bucket, a shared folder, a URL) else its origin,
        and that fetch paused there (``Engine.ahead``): the file's fetch given it goes on with it
        when it asks that engine. None: they did not all come."""
        session = self.session
        for template, url in mirror_targets(session.settings.mirrors, self.remote):
            if template not in session.owned.dead_mirrors:
                return session.owned.mirror_engine.ahead(*self._there(template, url), end)
        return session.owned.engine.ahead(self.job, self.beside, end)

    def origin(self) -> TransferResult:
        """The file from its origin (by Xet chunk where it can), its rate measured."""
        if self.paused is not None and self.paused.engine is not self.session.owned.engine:
            self.paused.close()  # a head paused at a mirror that then failed: let go
        started, before = time.monotonic(), self.ledger.bytes["origin"]
        result = self._origin()
        self.session.owned.origin_rate.add(
            self.ledger.bytes["origin"] - before, time.monotonic() - started
        )
        return result

    def _origin(self) -> TransferResult:
        session, job, remote = self.session, self.job, self.remote
        # (a swarm shares ranged fetches of the file: over plain HTTP)
        if remote.xet is not None and session.settings.xet and self.swarm is None:
            from mdl.xet.failures import XetFallback  # (a Xet file's pull only)

            try:
                return session.xet.fetch(job, remote.xet, self.beside)
            except XetFallback as why:
                pull_log.info(
                    "%s: not fetched by chunk: %s; fetching it over plain HTTP", job.label, why
                )
        # (an engine goes on with a fetch it paused, none other)
        return session.owned.engine.fetch(job, self.beside, fresh=self.fresh, paused=self.paused)

    def mirrors(self, skip: frozenset[str] = frozenset()) -> TransferResult | None:
        """The file from the first mirror that delivers its verified bytes, or None: the origin's
        turn (``skip``: templates not to ask, the one a fill found without the file)."""
        for template, url in mirror_targets(self.session.settings.mirrors, self.remote):
            if template in self.session.owned.dead_mirrors or template in skip:
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
            elif session.owned.mark_mirror_down(
                template
            ):  # said once, with the first file it failed
                retries.warn(
                    f"mirror {redact_url(template)} is not usable ({why}); using the next source"
                )
            else:
                retries.add(f"mirror {shown} failed ({why})")

        try:
            result = session.owned.mirror_engine.fetch(
                *self._there(template, url), paused=self.paused
            )
        except (InterruptedByUserError, NoSpaceError):  # a full disk here: no source cures it
            raise
        except MdlError as exc:
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
        return result._replace(mirror=shown)

    def _there(self, template: str, url: str) -> tuple[TransferJob, JobContext]:
        """The file's job and context at the mirror ``template`` (at ``url``)."""
        # A mirror gets no credentials of ours (a store's: a GET presigned with its own keys; a
        # registry's: its own login, to it only) and no origin's probe; its bytes must match the
        # origin's hashes: always verified, a mismatch not retried there (the next source is).
        ref = registry_mirror(template, self.remote) if template.startswith("oci://") else None
        registry = self.session.owned.registry.auth(ref) if ref is not None else None
        mirrored = self.job._replace(
            credentials=registry.credentials() if registry is not None else Credentials(),
            verify=True,
            retry_on_mismatch=False,
            fallback=True,
            renewable=False,
            located=None,
        )
        store = store_for(url)
        where = self.session.owned.presigner.presign(url, template=template) if store else url
        return mirrored._replace(url=where), self.beside._replace(landing=None, opening=None)


def repair_hint(template: str, model: str | None, endpoint: str | None) -> str:
    """How to put the file's verified bytes back at a mirror whose object failed its hash: the one
    command, ``mdl publish`` (it replaces an object whose bytes are not the file's), when the
    template is the layout it writes (``PREFIX/{model}/{sha256}``, ``versions.template_of``); else
    where to do it."""
    import shlex

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
