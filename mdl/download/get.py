"""``mdl get``: one-off sources into a folder, as a pull of them. The sources are read once into
one value (``OneOffs``: URLs, ``hf://`` files and whole repos, ``s3://``, job outputs) and the
layout's way is decided once (``get``); then listed → resolved (Hub files asked, URLs probed) →
planned from one look at the folder per file (a file already there by plan's GET rules) → fetched
and recorded in the folder's .mdl/get.json; a job's inline files are written."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from contextlib import closing
from dataclasses import replace
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from mdl.buckets.registry import store_for
from mdl.catalog.settings import Settings
from mdl.download._getrecord import ONE_OFF, offline_outcome, recorded_repos, vouched
from mdl.download.session import PullSession
from mdl.errors import IntegrityError, MdlError, UsageError
from mdl.paths import HfUri, OciRef
from mdl.progress import Progress
from mdl.redact import redact_url
from mdl.report import FileOutcome, RunReport, failed, log_outcome
from mdl.sources.joboutput import InlineCheck, InlineFile, UrlFile, write_inline
from mdl.sources.oneoff import (
    GetRequest,
    OneOffs,
    Parsed,
    Source,
    check_payloads,
    list_registry_files,
    list_repos,
    read_request,
    save_targets,
)
from mdl.sources.resolve import RemoteFile, resolve_file
from mdl.store.confined import rmdir_empty
from mdl.store.filesystem import stat_file
from mdl.store.store import Store

if TYPE_CHECKING:
    from mdl.download._plan import PlannedFile
    from mdl.store.layout import OnDisk
    from mdl.transfer.job import Opening

log = logging.getLogger("mdl.get")
# A get's record is the folder's .mdl/get.json (the store's record of model ONE_OFF, keyed by file
# name): what it wrote and what the server said of it (length, validator), so a second get of an
# unchanged file is a no-op (wget -N), and an offline one answers from it.
UNUSED_HEADERS = (
    "--header goes to the http(s) URLs given as sources, and none was given: no header was sent "
    "(hf:// files use the Hub token; s3:// and job outputs' links are presigned)"
)


def get(request: GetRequest, settings: Settings, *, progress: Progress) -> RunReport:
    """A get as asked: its sources read once (read_request), then the layout says the way, once:
    into the Hugging Face cache is a pull of them (get_into_cache), into a folder the get's own
    (get_sources)."""
    asked = read_request(
        request,
        endpoint=settings.endpoint,
        progress=progress,
        secrets=settings.secrets,
        offline=settings.offline,
    )
    if settings.layout == "hf-cache":
        from mdl.download.getcache import get_into_cache

        return get_into_cache(asked, settings, progress=progress)
    # exactly where -o/-d say, never into the Hugging Face cache
    folder = settings.dest if asked.output is None else asked.output.parent  # -o names one file
    plain = settings._replace(dest=folder.absolute(), layout="plain", hf_cache=None)
    return get_sources(asked, plain, progress=progress)


def get_sources(request: OneOffs, settings: Settings, *, progress: Progress) -> RunReport:
    """Fetch one-off sources into ``settings.dest`` (``output``'s folder with -o, a plain layout),
    verified and atomic; a file already there is kept with the expected bytes or as a get wrote it
    if upstream is unchanged (wget -N), else refused unless forced."""
    if request.unused_headers:
        log.warning("%s", UNUSED_HEADERS)
    with closing(GetRun(settings, progress)) as run:
        items = _listed(request, run)
        sha256, unused = request.sha256, request.unused_headers
        report = fetch_sources(items, run, output=request.output, sha256=sha256, unused=unused)
        return run.waits(report)


class GetRun:
    """A get's run: its session (the listing's and the downloads') opened when first needed, after
    the local checks, which name the file a folder that cannot be created is in the way of; closed
    with the get, which leaves no empty state folder under .mdl."""

    def __init__(self, settings: Settings, progress: Progress) -> None:
        self.settings, self.progress = settings, progress

    @cached_property
    def session(self) -> PullSession:
        return PullSession(self.settings, progress=self.progress)

    def close(self) -> None:
        # (a cached_property's value is in the instance's dict once made)
        if (session := vars(self).get("session")) is not None:
            session.owned.close()
            # deepest first; a partial or another run's stays
            for sub in ("partial", "locks", "records", ""):
                rmdir_empty(session.store.dest, session.store.state_dir / sub)

    def waits(self, report: RunReport) -> RunReport:
        """``report`` with the run's waits (the Hub's rate limits, a mirror's fill) when it opened
        a session (a local-only get: none)."""
        if (session := vars(self).get("session")) is None:
            return replace(report, hub_wait_seconds=0.0)
        owned = session.owned
        return replace(
            report, hub_wait_seconds=owned.hub_wait_seconds, waited=owned.fill_waits.seconds
        )


def _listed(request: OneOffs, run: GetRun) -> Sequence[Parsed]:
    """The sources with each registry model and whole Hub repo among them as its files (offline:
    the repo's files this folder's record holds)."""
    items: Sequence[Parsed] = request.items
    if any(isinstance(item, OciRef) for item in items):
        items = list_registry_files(items, run.session.owned.registry)
    if not any(isinstance(item, HfUri) for item in items):
        return items
    filters = {"include": request.include, "exclude": request.exclude}
    hub = run.session.hub
    if hub is None:
        return recorded_repos(items, run.session.store, **filters)
    return list_repos(items, hub, **filters)


def fetch_sources(
    items: Sequence[Parsed],
    run: GetRun,
    *,
    output: Path | None,
    sha256: str | None,
    unused: bool = False,
) -> RunReport:
    """What can be checked and done locally first (names, inline payloads, files in the way, inline
    writes); then the downloads (a whole repo's files said to be ``within`` the folder; ``unused``:
    -H went to no URL, said with every file)."""
    files = [item for item in items if not isinstance(item, HfUri | OciRef)]
    _refuse_one_file_flags(files, output=output, sha256=sha256)
    folder, force = run.settings.dest, run.settings.force
    targets = save_targets(files, output=output, directory=folder, force=force)
    outcomes = _written(files, targets, run, sha256=sha256)
    # the files to download: (index, source, target) of each URL not done already
    remote = [
        (i, item, targets[i])
        for i, item in enumerate(files)
        if isinstance(item, UrlFile) and i not in outcomes
    ]
    if remote:
        outcomes.update(_fetch_remote(run.session, remote, sha256=sha256))
    within, warning = str(folder), UNUSED_HEADERS if unused else None
    return RunReport(tuple(_said(outcomes[i], files[i], within, warning) for i in sorted(outcomes)))


def _written(
    files: Sequence[Source], targets: Sequence[Path], run: GetRun, *, sha256: str | None
) -> dict[int, FileOutcome]:
    """Inline payloads checked, files already at their targets judged (kept, or the whole get
    refused), then the inline files written: the outcomes of the files done here."""
    force, root, progress = run.settings.force, run.settings.dest, run.progress
    checks = check_payloads(files, sha256=sha256, progress=progress)
    outcomes = {} if force else _already_there(files, targets, checks, root=root, expected=sha256)
    writes = {index: check for index, check in checks.items() if index not in outcomes}
    progress.begin(total_bytes=sum(check.size for check in writes.values()), files=len(writes))
    for index, check in writes.items():
        place = (root, targets[index])  # nothing is written above root
        outcomes[index] = _write(files[index], place, check, force=force, progress=progress)
    return outcomes


def _refuse_one_file_flags(
    files: Sequence[Source], *, output: Path | None, sha256: str | None
) -> None:
    """-o and --sha256 name one file: usage errors when the sources stand for more."""
    if output is not None and len(files) != 1:
        raise UsageError(
            f"-o names one file, but the sources stand for {len(files)} files; use -d DIR"
        )
    if sha256 is not None and len(files) != 1:
        raise UsageError(
            f"--sha256 applies to a single file, but the sources stand for {len(files)} files"
        )


def _write(
    item: Source, place: tuple[Path, Path], check: InlineCheck, *, force: bool, progress: Progress
) -> FileOutcome:
    """A job output's inline file written to ``place`` (the folder it stays below, the target):
    its outcome (logged)."""
    from mdl.download._plan import FORCED, GET

    assert isinstance(item, InlineFile)
    root, target = place
    replaced = force and os.path.lexists(target)
    try:
        write_inline(item, target, root=root, check=check, progress=progress)
    except MdlError as exc:
        outcome = failed("", item.filename, exc, dest=target, source=item.where)
    else:
        # fetched: counted in the total like downloaded bytes (written from the job's output);
        # verified: whole in the document, the bytes written hashed and held to the checked
        # decoding (and any sha256 it was given)
        word, reason = (GET.replaced, FORCED) if replaced else (None, "")
        outcome = FileOutcome(
            "",
            item.filename,
            str(target),
            check.size,
            check.sha256,
            "downloaded",
            reason=reason,
            fetched=check.size,
            source=item.where,
            word=word,
            verified=True,
        )
    log_outcome(outcome)
    return outcome


def _said(outcome: FileOutcome, item: Source, within: str, warning: str | None) -> FileOutcome:
    """What the run says of a file besides what was done: the folder a whole repo went into, the
    unused -H.
    """
    if isinstance(item, UrlFile) and item.listed is not None:
        outcome = outcome._replace(within=within)
    if warning is not None:
        outcome = outcome._replace(warning="; ".join(filter(None, (outcome.warning, warning))))
    return outcome


def _already_there(
    items: Sequence[Source],
    targets: Sequence[Path],
    checks: dict[int, InlineCheck],
    *,
    root: Path,
    expected: str | None,
) -> dict[int, FileOutcome]:
    """Files already at their targets with the expected bytes are kept (``skipped``); any other but
    those a get wrote refuses the whole get (``in_place``: Hub files are held to theirs once the Hub
    has said them)."""
    from mdl.download._outcomes import kept_in_place

    kept: dict[int, FileOutcome] = {}
    refused: list[UsageError] = []
    folder = Store(root.absolute())
    for index, (item, target) in enumerate(zip(items, targets, strict=True)):
        if not os.path.lexists(target) or (isinstance(item, UrlFile) and item.hub is not None):
            continue
        path = target.relative_to(root).as_posix()  # as the folder's record names it
        if (ours := _ours(folder, item, target, path)) is None:
            continue  # the plan decides from the record, reading no byte back
        want = checks[index].sha256 if isinstance(item, InlineFile) else expected or item.sha256
        try:
            done = kept_in_place(target, path, sha256=want, where=item.where, ours=ours)
        except UsageError as exc:
            refused.append(exc)
            continue
        if done is not None:
            kept[index] = done
    if refused:
        first = refused[0]
        more = f"; {len(refused) - 1} more file(s) are in the way too" if len(refused) > 1 else ""
        first.hint = f"{first.hint}{more}; nothing was written"
        raise first
    return kept


def _ours(folder: Store, item: Source, target: Path, path: str) -> bool | None:
    """Whether the file at ``target`` (``path`` in the folder) is the one a get wrote there, by the
    folder's record, read once (else it is the user's; an inline file always is); None when the
    record vouches for it by size and mtime alone."""
    if isinstance(item, InlineFile):
        return False
    entry = folder.entry(ONE_OFF, path, sha256=None, git_oid=None)
    if vouched(entry, None if entry is None else stat_file(target)) is not None:
        return None
    from mdl.download._outcomes import still_verified

    return still_verified(target, entry)


def _fetch_remote(
    session: PullSession, items: list[tuple[int, UrlFile, Path]], *, sha256: str | None
) -> dict[int, FileOutcome]:
    """Download the remote files into the run's folder (``-d``: Hub files keep their folders under
    it; ``-o``: its folder)."""
    outcomes: dict[int, FileOutcome] = {}
    planned: dict[int, PlannedFile] = {}
    openings: list[Opening | None] = []  # probes' unread answers, closed however the get ends
    # the transfer's modules load while the first probe is out (waited for before their first use)
    loaded = session.owned.transfer_loaded
    try:
        carry = len(items) == 1
        for index, item, target in items:
            found = _planned(
                session, item, target, sha256=sha256, carry=carry, openings=openings, loaded=loaded
            )
            if not isinstance(found, FileOutcome):
                planned[index] = found
            else:
                outcomes[index] = found
        if planned:
            from mdl.download._fetch import fetch
            from mdl.download._plan import check_space

            plans = list(planned.values())
            session.store.ensure_dirs()
            check_space(plans)
            outcomes.update(zip(planned, fetch(session, plans), strict=True))
    finally:
        loaded()  # no import left running on its thread past the get, however it ends
        for opening in openings:
            # skipped, failed or never reached: its probe's answer is closed
            if opening is not None:
                opening.close()
    return outcomes


def _planned(
    session: PullSession,
    item: UrlFile,
    target: Path,
    *,
    sha256: str | None,
    carry: bool,
    openings: list[Opening | None],
    loaded: Callable[[], None],
) -> PlannedFile | FileOutcome:
    """The file's plan, or its outcome: kept in place, or failed (logged), from one look at the
    folder (``placed``). ``carry``: its probe may carry its first bytes when nothing is there, not
    even a partial (``openings``: where such an answer is kept until the get ends)."""
    from mdl.download._plan import placed, planned

    # its path in the folder (Hub files: with theirs)
    name = target.absolute().relative_to(session.store.dest).as_posix()
    force, offline = session.settings.force, session.settings.offline
    try:
        if item.hub is not None and session.hub is None:  # HF_HUB_OFFLINE: the record answers
            _, disk = placed(
                session.layout, RemoteFile("", name, "", source=item.where), offline=True
            )
            return offline_outcome(disk, item, name, target, force=force)
        remote = (
            _hub_file(session, item, name, sha256=sha256)
            if item.hub
            else _url_file(item, name, sha256=sha256)
        )
        placement, disk = placed(session.layout, remote, offline=offline)
        if item.hub is not None:
            loaded()
            kept = None if force else _kept(remote, disk, target, name, where=item.where)
            if kept is not None:
                return kept
        else:
            remote = _probed(session, remote, item, disk, carry=carry)
            openings.append(remote.opening)
        loaded()
        return planned(remote, placement, disk, force=force)
    except MdlError as exc:
        outcome = failed("", name, exc, dest=target, source=item.where)
        warning = session.netrc_warning(typed=item.typed)
        # a 401 may be why: said here too (fetch says it with the others)
        if warning is not None:
            outcome = outcome._replace(warning=warning)
        log_outcome(outcome)
        return outcome


def _kept(
    remote: RemoteFile, disk: OnDisk, target: Path, name: str, *, where: str
) -> FileOutcome | None:
    """A Hub file found where it goes: None when nothing is there or this folder's record vouches
    for it (its size and mtime as verified: the plan decides from the record, as pull's does,
    reading no byte back); else kept with the bytes the Hub names, or refused (kept_in_place)."""
    if disk.final is None or vouched(disk.entry, disk.final) is not None:
        return None
    from mdl.download._outcomes import kept_in_place

    oid = remote.git_oid
    return kept_in_place(target, name, sha256=remote.sha256, git_oid=oid, where=where)


def _hub_file(session: PullSession, item: UrlFile, name: str, *, sha256: str | None) -> RemoteFile:
    """An ``hf://`` file as the Hub lists it (or listed it with its repo), saved as ``name``."""
    from mdl.catalog.specs import FileSpec

    assert item.hub is not None
    repo_type, repo, revision, path = item.hub
    hub = session.hub
    assert hub is not None, "offline, the folder's record answers (_planned)"
    spec = FileSpec(
        item.where, repo, path, revision=revision, repo_type=repo_type, sha256=sha256, save_as=name
    )
    return item.listed or resolve_file("", spec, hub=hub, environ={})


def _url_file(item: UrlFile, name: str, *, sha256: str | None) -> RemoteFile:
    """A direct URL's file as given (probed later unless its size and sha256 are known, or
    HF_HUB_OFFLINE); a registry's blob as its manifest lists it."""
    assert item.url is not None
    if item.listed is not None:
        if sha256 and sha256 != item.listed.sha256:
            raise IntegrityError(
                f"{item.where}: --sha256 {sha256} is not the digest its manifest names,"
                f" {item.listed.sha256}; nothing was fetched"
            )
        return item.listed._replace(path=name)
    return RemoteFile(
        "",
        name,
        item.url,
        item.size,
        sha256 or item.sha256,
        source=item.where if store_for(item.where) else redact_url(item.url),
        headers=item.headers,
        typed=item.typed,
    )


def _probed(
    session: PullSession, remote: RemoteFile, item: UrlFile, disk: OnDisk, *, carry: bool
) -> RemoteFile:
    """A direct URL's size and ETag, unless its size and sha256 are known (a sha256 never turns
    ranges off), a registry's manifest lists it, or HF_HUB_OFFLINE; ``carry``: one file, nothing
    where it goes, not even a partial (it may be unchanged): its probe carries its first bytes. A
    size that contradicts the one given (the job output's, or the store's for an ``s3://`` object)
    is refused before any byte moves."""
    if item.listed or session.settings.offline or (remote.size is not None and remote.sha256):
        return remote
    carry = carry and disk.final is None and not disk.partial
    probed = session.probe(remote._replace(size=None), carry=carry)
    if item.size is None:
        return probed
    if probed.size is not None and probed.size != item.size:
        if probed.opening is not None:
            probed.opening.close()
        raise IntegrityError(
            f"{item.where}: {'the store lists' if store_for(item.where) else 'the job output says'}"
            f" {item.size} bytes, but its download from the server is"
            f" {probed.size} bytes"
        )
    return probed._replace(size=item.size, size_pinned=True)
