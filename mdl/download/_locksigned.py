"""``mdl lock`` of a model whose catalog names a signer: the lock pins the signature of the very
version it pins. Found through that version's manifest on a mirror (``mdl publish --sign`` names it
there: ``versions.manifest_uri``), else at the source; verified with the catalog's signer and held
to every file the lock pins (``held_to_signature``: the one rule of ``lock``, ``--upgrade`` and
``--check``). A manifest is outside bytes: a pointer only, never a proof (what it points at is
fetched by its sha256, verified, and must cover the files)."""

from __future__ import annotations

import contextlib
import logging
import shlex
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Protocol

from mdl.buckets.registry import store_for
from mdl.catalog.settings import Settings
from mdl.catalog.specs import ModelSpec
from mdl.download._fetch import fetch_from_sources, file_lock, transfer_job
from mdl.download._sighere import fetching_said, signature_here
from mdl.download.resolve import from_lock
from mdl.download.session import FileSources, PullSession, label_of
from mdl.errors import IntegrityError, InterruptedByUserError, MdlError, NetworkError, NotFoundError
from mdl.lockfile.model import Lock, LockedModel
from mdl.paths import is_http_url
from mdl.progress import Progress
from mdl.redact import redact_url
from mdl.report import FileOutcome, failed
from mdl.signing.library import MAX_SIGNATURE_BYTES, require_library, verify_signature
from mdl.signing.statement import SignedManifest, Trust
from mdl.sources.resolve import RemoteFile, mirror_targets
from mdl.store.confined import unlink
from mdl.store.layout import signed_name
from mdl.store.verify import read_signature, too_big_for_a_signature
from mdl.transfer.job import TransferJob, TransferResult
from mdl.units import first_few, plural

if TYPE_CHECKING:
    from mdl.buckets import versions

log = logging.getLogger("mdl.lock")


class Pinned(Protocol):
    """A file as the lock pins it (a LockedFile, or a RemoteFile about to be locked)."""

    @property
    def path(self) -> str: ...
    @property
    def source(self) -> str: ...
    @property
    def size(self) -> int | None: ...
    @property
    def sha256(self) -> str | None: ...


def held_to_signature(
    spec: ModelSpec,
    trust: Trust,
    data: bytes,
    files: Iterable[Pinned],
    *,
    signature: str,
    settings: Settings,
) -> SignedManifest:
    """The signature ``data`` (the model's file at ``signature``) verified with the catalog's
    signer ``trust``, and every other file the lock pins covered by it (``SignedManifest.covers``):
    the statement it signs; IntegrityError (exit 6) naming the signature when it does not verify,
    or naming the files it does not cover: a lock never pins a signature with files it does not
    sign."""
    what = f"{spec.name}/{signature}"
    statement = verify_signature(data, trust, what=what)
    missing = [
        f.path
        for f in files
        if f.path != signature
        and not statement.covers(signed_name(f.path, f.source), f.size, f.sha256)
    ]
    if not missing:
        return statement
    raise IntegrityError(
        f"{spec.name}: its signature ({signature}) does not cover {plural(len(missing), 'file')}"
        f" the lock pins: {first_few(missing)}",
        hint=sign_hint(spec.name, settings),
    )


def sign_hint(model: str, settings: Settings) -> str:
    """How to give a version the signature it lacks: sign it where it is published (the first
    store mirror of the published layout), or at its source."""
    from mdl.buckets import versions  # (pydantic, ~0.1 CPU-s: a pull that signs or mirrors)

    prefixes = (versions.prefix_of(t) for t in settings.mirrors if store_for(t) is not None)
    to = next((redact_url(p) for p in prefixes if p is not None), "PREFIX")
    return (
        f"sign this version (mdl publish {shlex.quote(model)} --to {shlex.quote(to)}"
        " --sign KEY.pem), or sign it at its source (model_signing sign)"
    )


def lock_signature(
    session: PullSession,
    spec: ModelSpec,
    files: Sequence[RemoteFile],
    sig: RemoteFile,
    known: Callable[[RemoteFile], RemoteFile | None],
    *,
    warn: Callable[[str], None],
) -> RemoteFile:
    """The signature file ``sig`` of the model ``spec`` whose other ``files`` are about to be
    locked, with its size and sha256, once it is verified and covers them: when upstream gives no
    sha256 for it, the ones the version's manifests on the mirrors name, in turn; then (``known``:
    what the lock learns without fetching) fetched from the mirrors, then the source. A manifest
    pointing at a signature that does not hold (anyone who may write the mirror can write one)
    costs a warning, never the version: the next candidate is tried, and its refusal is said only
    when no candidate holds."""
    trust = spec.signature
    assert trust is not None
    refused: IntegrityError | None = None
    settings = session.settings
    unread: list[str] = []  # manifests a mirror could not be asked for (an outage, not "none")
    for remote, data in _pointed(session, files, sig, unread) if sig.sha256 is None else ():
        try:
            held_to_signature(spec, trust, data, files, signature=sig.path, settings=settings)
            return remote
        except IntegrityError as exc:
            warn(f"{exc.message} (the signature a mirror's manifest names); trying the next source")
            log.warning("%s", exc.message)
            refused = refused or exc
    try:
        got = signature_bytes(session, known(sig) or sig)
    except NotFoundError as exc:
        if refused is not None:
            raise refused from None
        if unread:
            raise NetworkError(
                f"{label_of(sig)}: its source has no signature and the manifest of this version"
                f" could not be read ({unread[0]})",
                hint="retry once the mirror answers: the signature may be there",
            ) from None
        raise IntegrityError(
            f"{label_of(sig)}: the catalog asks for a signature and this version has none"
            f" ({exc.message})",
            hint=sign_hint(spec.name, session.settings),
        ) from None
    assert got is not None  # from the source: its bytes, or an error
    remote, data = got
    held_to_signature(spec, trust, data, files, signature=sig.path, settings=settings)
    return remote


def _pointed(
    session: PullSession, files: Sequence[RemoteFile], sig: RemoteFile, unread: list[str]
) -> Iterator[tuple[RemoteFile, bytes]]:
    """The signatures the manifests of this version (its files' ``version_id``) name on the store
    mirrors of the published layout, in order, each fetched from the mirrors by its sha256 (the
    source's turn comes after them)."""
    rows = [(f.path, f.size or 0, f.sha256 or "") for f in files]
    for template, vid, pointer in manifest_signatures(session, sig.model, rows, sig.path, unread):
        wanted = sig._replace(size=pointer.size, sha256=pointer.sha256, git_oid=None, xet=None)
        got = signature_bytes(session, wanted, mirrors_only=True)
        if got is not None:
            log.info("%s: the signature version %s's manifest names", label_of(sig), vid[:12])
            yield _placed(got[0], template), got[1]


def manifest_signatures(
    session: PullSession,
    model: str,
    rows: Iterable[tuple[str, int, str]],
    signature: str,
    unread: list[str],
) -> Iterator[tuple[str, str, versions.ManifestFile]]:
    """The signatures (pointers only: what each names is fetched by its sha256 and verified) the
    manifests of this version (``rows``: its files, ``signature`` its signature's path) name on the
    store mirrors of the published layout, in order: each with its mirror's template and the
    version id it was found by."""
    from mdl.buckets import versions  # (pydantic: as in sign_hint)

    ids = versions.version_ids(rows, signature=signature)
    for template in session.settings.mirrors:
        prefix = versions.prefix_of(template)
        if prefix is None or template in session.owned.dead_mirrors:
            continue
        for vid in ids:
            pointer = _manifest_signature(session, template, prefix, model, vid, unread)
            if pointer is not None:
                yield template, vid, pointer


def _placed(remote: RemoteFile, template: str) -> RemoteFile:
    """The signature found on the mirror ``template``; one with no place at its source (a model of
    direct URLs: ``kept_in_bucket``) is pinned at that mirror's object, where it lives."""
    if is_http_url(remote.url):
        return remote
    ((_, uri),) = mirror_targets([template], remote)
    return remote._replace(url=uri, source=redact_url(uri))


def _manifest_signature(
    session: PullSession, template: str, prefix: str, model: str, vid: str, unread: list[str]
) -> versions.ManifestFile | None:
    """The signature the manifest of version ``vid`` under ``prefix`` names, or None (no
    manifest, none named, or bytes that are not one mdl writes: said in the log)."""
    from mdl.buckets import versions  # (pydantic: as in sign_hint)

    store = store_for(template)
    if store is None:
        return None
    uri = versions.manifest_uri(prefix, model, vid)
    shown = redact_url(uri)
    settings = session.settings
    try:
        writer = store.writer(
            endpoint=dict(settings.mirror_endpoints).get(template), secrets=settings.secrets
        )
        read = writer.read(uri, limit=versions.MAX_MANIFEST_BYTES, aged=False)
    except InterruptedByUserError:
        raise
    except MdlError as exc:
        log.info("%s: not read: %s", shown, exc.message)
        unread.append(f"{shown}: {exc.message}")
        return None
    if read is None:
        return None
    found = versions.parse_manifest(read[0])
    if found is None or found.model != model or found.id != vid:
        log.warning("%s: not a manifest of this version mdl writes; ignored", shown)
        return None
    if found.signature is None or found.signature.size > MAX_SIGNATURE_BYTES:
        log.info("%s: names no signature", shown)
        return None
    return found.signature


def signature_bytes(
    session: PullSession, remote: RemoteFile, *, mirrors_only: bool = False
) -> tuple[RemoteFile, bytes] | None:
    """The signature file fetched once (from the mirrors, then, unless ``mirrors_only``, its
    source), verified by its sha256 when known: the file with its size and sha256, and its bytes
    (bounded: one a source states is bigger than any signature is not fetched); None: no mirror
    had it (``mirrors_only``)."""
    if remote.size is not None and remote.size > MAX_SIGNATURE_BYTES:
        raise too_big_for_a_signature(f"{remote.model}/{remote.path}")
    with _once(session, remote) as job:
        if mirrors_only:
            result = _fetched(session, job, FileSources(session, job, remote).mirrors)
        else:
            result = _fetched(session, job, lambda: fetch_from_sources(session, job, remote))
        if result is None:
            return None
        data = read_signature(job.root or session.store.dest, job.final_path, what=job.label)
    return remote._replace(size=result.size, sha256=result.sha256), data


def hashed_once(session: PullSession, remote: RemoteFile) -> RemoteFile:
    """The file fetched once (from the mirrors first, as a pull would) into a temp file that is
    hashed and removed: the file with its size and sha256."""
    with _once(session, remote) as job:
        result = _fetched(session, job, lambda: fetch_from_sources(session, job, remote))
    assert result is not None
    return remote._replace(size=result.size, sha256=result.sha256)


@contextlib.contextmanager
def _once(session: PullSession, remote: RemoteFile) -> Iterator[TransferJob]:
    """The job of a fetch into a temp file beside the partial downloads, under the file's lock;
    the temp file removed after."""
    store = session.store
    store.ensure_dirs()
    part, _ = store.part_paths(remote.model, remote.path)
    # Ends in .tmp: should a crash leave it, `mdl clean` removes it like any stray temp file.
    target = part.with_name(part.name.removesuffix(".part") + ".hash.tmp")
    with file_lock(session, remote, store):
        try:
            yield transfer_job(session, remote, store, target, verify=True)
        finally:
            with contextlib.suppress(OSError):
                unlink(store.dest, target)


def _fetched(
    session: PullSession, job: TransferJob, fetch: Callable[[], TransferResult | None]
) -> TransferResult | None:
    """``fetch``'s result, its progress finished."""
    label = job.label
    log.info("%s: downloading it once to learn its sha256", label)
    try:
        result = fetch()
    except MdlError as exc:
        session.progress.finish(label, ok=False, message=exc.message.removeprefix(f"{label}: "))
        raise
    session.progress.finish(label, ok=result is not None, message="hashed" if result else "")
    return result


def checked_signatures(
    settings: Settings, specs: Iterable[ModelSpec], lock: Lock, progress: Progress
) -> list[FileOutcome]:
    """``lock --check`` of the signed ones of ``specs`` that ``lock`` pins as the catalog says:
    each one's pinned signature fetched by its sha256 (mirrors, then source), verified, and
    covering the files the lock pins; the failures (a model each)."""
    pinned = [
        (spec, locked)
        for spec in specs
        if spec.signature is not None and (locked := lock.fresh(spec)) is not None
    ]
    if not pinned:
        return []
    require_library()
    failures: list[FileOutcome] = []
    with contextlib.closing(PullSession(settings, progress=progress)) as session:
        for spec, locked in pinned:
            try:
                _check_one(session, spec, locked)
            except InterruptedByUserError:
                raise
            except MdlError as exc:
                failures.append(failed(spec.name, None, exc))
                log.error("%s", failures[-1].error)
    return failures


def _check_one(session: PullSession, spec: ModelSpec, locked: LockedModel) -> None:
    trust = spec.signature
    assert trust is not None
    model = from_lock(session.settings, spec, locked)
    sig = next((f for f in model.files if f.path == trust.installed_as), None)
    if sig is None:
        raise IntegrityError(
            f"{spec.name}: the lock pins no {trust.installed_as}, and the catalog asks for a"
            " signature",
            hint="run mdl lock",
        )
    if (sig.size or 0) > MAX_SIGNATURE_BYTES:
        raise IntegrityError(
            f"{label_of(sig)}: the lock pins {sig.size} bytes, too big for a model signature"
        )
    data = signature_here(session, sig)
    if data is None:
        fetching_said(session, sig)
        got = signature_bytes(session, sig)
        if got is None:  # (from the source: its bytes, or an error)
            raise IntegrityError(f"{label_of(sig)}: not found")
        data = got[1]
    held_to_signature(
        spec, trust, data, locked.files, signature=sig.path, settings=session.settings
    )
