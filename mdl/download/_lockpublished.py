"""``lock --check`` of the release flow's order (docs/releases.md): a lock pins a version nodes
pull from the team's bucket, so on every store mirror of the published layout the catalog names
that holds versions of the model, the manifest of the very version it pins must be there
(``publish`` writes it after every file and the signature it names). A lock upgraded before its
version was published (a plain ``pull`` that followed the old lock, then ``publish`` of that old
version) fails here by name, signed or not; a store that cannot be read fails as the outage it
is, never as a missing version."""

from __future__ import annotations

import logging
import shlex
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor

from mdl.buckets import versions
from mdl.buckets.protocol import Writer
from mdl.buckets.registry import store_for
from mdl.catalog.settings import Settings
from mdl.catalog.specs import ModelSpec
from mdl.errors import InterruptedByUserError, MdlError, NotFoundError
from mdl.lockfile.model import Lock, LockedModel
from mdl.redact import printable, redact_url
from mdl.report import FileOutcome, failed
from mdl.signing.statement import SIGNATURE_FILE

log = logging.getLogger("mdl.lock")
# a version's files looked at many at once (each look a round trip), within the connections an S3
# client keeps (botocore's 10)
HEAD_WORKERS = 8


def checked_published(
    settings: Settings, specs: Iterable[ModelSpec], lock: Lock
) -> list[FileOutcome]:
    """Each of ``specs`` that ``lock`` pins as the catalog says, checked published on each store
    mirror of the published layout: the failures (a model each)."""
    stores = [
        (template, prefix)
        for template in settings.mirrors
        if (prefix := versions.prefix_of(template)) is not None and store_for(template) is not None
    ]
    failures: list[FileOutcome] = []
    for spec in specs if stores else ():
        locked = lock.fresh(spec)
        if locked is None:
            continue
        for template, prefix in stores:
            try:
                _published(settings, spec, locked, template, prefix)
            except InterruptedByUserError:
                raise
            except MdlError as exc:
                failures.append(failed(spec.name, None, exc))
                log.error("%s", failures[-1].error)
                break
    return failures


def _published(
    settings: Settings, spec: ModelSpec, locked: LockedModel, template: str, prefix: str
) -> None:
    """NotFoundError (exit 4) when ``prefix`` holds versions of the model but no manifest of the
    one ``locked`` pins; the store's own error when it cannot be read."""
    signature = spec.signature.installed_as if spec.signature is not None else SIGNATURE_FILE
    rows = [(f.path, f.size, f.sha256) for f in locked.files]  # (a lock pins both: never None)
    ids = versions.version_ids(rows, signature=signature)
    store = store_for(template)
    assert store is not None
    writer = store.writer(
        endpoint=dict(settings.mirror_endpoints).get(template), secrets=settings.secrets
    )
    for vid in ids:
        uri = versions.manifest_uri(prefix, spec.name, vid)
        read = writer.read(uri, limit=versions.MAX_MANIFEST_BYTES, aged=False)
        found = versions.parse_manifest(read[0]) if read is not None else None
        if found is not None and found.model == spec.name and found.id == vid:
            _held(writer, spec, prefix, found)
            log.info("%s: the version the lock pins is published (%s)", spec.name, redact_url(uri))
            return
    folder = versions.manifest_uri(prefix, spec.name, ids[0]).rsplit("/", 1)[0] + "/"
    if next(iter(writer.listing(folder, most=1)), None) is None:
        # no version of it published there at all: the bucket is filled otherwise (--fill-mirror,
        # or by hand), not by this flow; nothing to hold the lock to
        log.info("%s: no version of it is published to %s", spec.name, redact_url(prefix))
        return
    raise _unpublished(spec, locked, prefix, versions.manifest_uri(prefix, spec.name, ids[0]))


def _held(writer: Writer, spec: ModelSpec, prefix: str, found: versions.Manifest) -> None:
    """NotFoundError (exit 4) naming the files of the version ``found`` that ``prefix`` does not
    hold at their size (a HEAD each, ``HEAD_WORKERS`` at once, at the names publish gives them:
    ``versions.template_of``): a manifest alone (planted: its id is public; or its objects removed)
    is not the version nodes would find."""
    files = [*{f.sha256: f for f in (*found.files, *filter(None, [found.signature]))}.values()]
    template = versions.template_of(prefix)
    pool = ThreadPoolExecutor(max_workers=HEAD_WORKERS)  # (a thread made per look, up to it)
    try:
        seen = list(
            pool.map(
                lambda f: writer.head(template.format(model=spec.name, sha256=f.sha256)), files
            )
        )
    finally:
        # Ctrl-C does not wait for hundreds of HEADs
        pool.shutdown(wait=False, cancel_futures=True)
    missing = [f.path for f, s in zip(files, seen, strict=True) if s is None or s.size != f.size]
    if missing:
        shown, name = redact_url(prefix), shlex.quote(spec.name)
        raise NotFoundError(
            f"{spec.name}: the version the lock pins has a manifest in {shown} but not its files"
            f" ({printable(', '.join(sorted(missing)), limit=300)}); nodes would not find its"
            " files in the bucket",
            hint=f"publish it again: mdl pull {name}; mdl publish {name} --to {shlex.quote(shown)}",
        )


def _unpublished(spec: ModelSpec, locked: LockedModel, prefix: str, uri: str) -> NotFoundError:
    """The failure of a lock whose version (its manifest: ``uri``) is not published to ``prefix``,
    with the order of the release flow that fixes it."""
    shown = redact_url(prefix)
    commit = f" (commit {locked.commit[:12]})" if locked.commit else ""
    name = shlex.quote(spec.name)
    sign = " --sign KEY.pem" if spec.signature is not None else ""
    return NotFoundError(
        f"{spec.name}: the version the lock pins{commit} is not published to {shown}: no manifest"
        f" of it there ({redact_url(uri)}); nodes would not find its files in the bucket",
        hint=(
            f"publish it, then lock: mdl pull {name} --unsigned; mdl publish {name} --to"
            f" {shlex.quote(shown)}{sign}; mdl lock --upgrade {name} (docs/releases.md)"
        ),
    )
