"""A lock made before the catalog named a model's signer pins no signature for it, though its
version may be signed: ``publish --sign`` names the version's signature in its manifest on the
bucket. A pull of that lock (a rollback to a kept release) takes the signature that manifest names,
as ``mdl lock`` would have pinned it: then fetched by its sha256 and held to the signer like any
(verified, covering every file the lock pins, or the model fails by name). A version no manifest
names a signature for is refused, exit 6, before a byte of it moves: nothing unsigned reaches a
model whose catalog names a signer."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import replace

from mdl.catalog.specs import ModelSpec
from mdl.download._locksigned import manifest_signatures
from mdl.download.resolve import from_lock
from mdl.download.session import PullSession
from mdl.errors import IntegrityError, InterruptedByUserError, MdlError, NetworkError
from mdl.lockfile.model import LockedFile, LockedModel
from mdl.lockfile.policy import LockUse
from mdl.report import FileOutcome, failed
from mdl.signing.statement import Trust
from mdl.sources.resolve import ResolvedModel
from mdl.store.layout import hub_source

log = logging.getLogger("mdl.pull")


def sign_locked(
    session: PullSession,
    specs: Sequence[ModelSpec],
    resolved: Sequence[ResolvedModel],
    lock: LockUse,
) -> tuple[list[ResolvedModel], list[FileOutcome]]:
    """The stage between resolve and the signatures': each model the lock pins without the
    signature its catalog asks for, with the one its version's manifest names (the rest pass as
    they are); those that have none, their failures (exit 6, nothing of them fetched)."""

    def pinned_signed(spec: ModelSpec, model: ResolvedModel) -> ResolvedModel:
        locked = lock.pinned(spec) if spec.signature is not None else None
        if locked is None:
            return model
        signed = with_version_signature(session, spec, locked, lock=lock.name)
        if signed is locked:
            return model
        return from_lock(session.settings, spec, signed, parts=lock.parts)

    return each_model(session, specs, resolved, pinned_signed, refused=IntegrityError)


def each_model(
    session: PullSession,
    specs: Sequence[ModelSpec],
    resolved: Sequence[ResolvedModel],
    stage: Callable[[ModelSpec, ResolvedModel], ResolvedModel],
    *,
    refused: type[MdlError] = MdlError,
) -> tuple[list[ResolvedModel], list[FileOutcome]]:
    """A stage between resolve and fetch: each model of ``specs`` as ``stage`` makes it (any other
    as it is); those ``stage`` refuses (``refused``), their failures (nothing of them fetched)."""
    by_name = {spec.name: spec for spec in specs}
    models: list[ResolvedModel] = []
    failures: list[FileOutcome] = []
    for model in resolved:
        spec = by_name.get(model.name)
        try:
            models.append(model if spec is None else stage(spec, model))
        except InterruptedByUserError:
            raise
        except refused as exc:
            failures.append(failed(model.name, None, exc, dest=session.store.model_dir(model.name)))
            log.error("%s", failures[-1].error)
    return models, failures


def with_version_signature(
    session: PullSession, spec: ModelSpec, locked: LockedModel, *, lock: str
) -> LockedModel:
    """``locked`` as the catalog's signer asks for it: unchanged when the catalog names no signer
    or the lock (``lock``, its name) pins the signature; else with the signature its version's
    manifest names, or IntegrityError."""
    trust = spec.signature
    if trust is None or any(f.path == trust.installed_as for f in locked.files):
        return locked
    unread: list[str] = []  # manifests a mirror could not be asked for (an outage, not "none")
    rows = [(f.path, f.size, f.sha256) for f in locked.files]
    pointers = manifest_signatures(session, spec.name, rows, trust.installed_as, unread)
    named = next((pointer for _, _, pointer in pointers), None)
    source = _source(locked, trust)
    if named is None and unread:
        raise NetworkError(
            f"{spec.name}: {lock} pins no {trust.installed_as} and the manifest of this version"
            f" could not be read ({unread[0]})",
            hint="retry once the mirror answers: the signature may be there",
        )
    if named is None or source is None:
        raise IntegrityError(
            f"{spec.name}: {lock} pins no {trust.installed_as} (it was locked before the catalog"
            f" named the signer) and no manifest of this version on the mirrors names one: the"
            f" catalog asks for its signature (by {trust.by()}), so nothing of it is installed"
            " unsigned",
            hint=(
                "roll back to a version locked since the catalog names the signer, or to one"
                ' published with --sign (docs/releases.md, "A version locked before its signer")'
            ),
        )
    log.info(
        "%s: %s pins no %s; the signature this version's manifest names (sha256 %s)",
        spec.name,
        lock,
        trust.installed_as,
        named.sha256,
    )
    sig = LockedFile(trust.installed_as, named.size, named.sha256, source)
    return replace(locked, files=tuple(sorted((*locked.files, sig), key=lambda f: f.path)))


def _source(locked: LockedModel, trust: Trust) -> str | None:
    """Where the signature's origin is, as a lock would pin it: its URL, or its path in the Hub
    repo (at the commit) the lock's first Hub file is of."""
    if trust.file_is_url:
        return trust.file
    ref = next((f.hub for f in locked.files if f.hub is not None and f.hub.commit), None)
    if ref is None:
        return None
    return hub_source(ref.repo, ref.repo_type, ref.commit, trust.file)
