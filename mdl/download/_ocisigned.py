"""A signed catalog model in an OCI registry: its signature is a referrer of its manifest (``mdl
publish --to oci://… --sign``, or cosign's bundle), not a file of it. Before a byte of its files
moves, each signature referrer the registry lists (mdl.sources.ocisigs) is fetched by its digest
and held to the user's pin: verified with the catalog's signer and covering exactly the manifest's
files. The first that holds becomes the model's ``model.sig`` (pinned by its sha256, so a lock
pins it and a locked pull needs no listing); one that does not (planted by someone who may push:
another key, other files) is passed over with a warning; none holds: exit 6, nothing fetched
(none at all and ``pull --unsigned``: its files fetched, the model left partial, as for any
source)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from mdl.catalog.specs import ModelSpec
from mdl.download._lockedsig import each_model
from mdl.download._locksigned import held_to_signature, signature_bytes
from mdl.download.session import PullSession
from mdl.errors import IntegrityError, NotFoundError
from mdl.paths import OciRef, parse_oci_source
from mdl.report import FileOutcome
from mdl.signing.statement import SignedManifest, Trust
from mdl.sources.ocisigs import signature_layers
from mdl.sources.resolve import RemoteFile, ResolvedModel, marked_signature
from mdl.store.layout import signed_name
from mdl.units import first_few, plural

log = logging.getLogger("mdl.pull")


def referred_signatures(
    session: PullSession, specs: Sequence[ModelSpec], resolved: Sequence[ResolvedModel]
) -> tuple[list[ResolvedModel], list[FileOutcome], dict[str, str]]:
    """The stage after resolve (and a lock's pins): each signed registry model with its signature
    file (``with_referred_signature``; a lock that pins it is asked nothing); those refused, their
    failures (nothing of them fetched); by model, the referrers passed over, as its warning."""
    passed: dict[str, list[str]] = {}

    def referred(spec: ModelSpec, model: ResolvedModel) -> ResolvedModel:
        if spec.oci is None or spec.signature is None:
            return model
        return with_referred_signature(session, spec, model, passed.setdefault(spec.name, []))

    models, failures = each_model(session, specs, resolved, referred)
    return models, failures, {name: "; ".join(said) for name, said in passed.items() if said}


def with_referred_signature(
    session: PullSession, spec: ModelSpec, model: ResolvedModel, passed_over: list[str]
) -> ResolvedModel:
    """``model`` (resolved from its registry) with its signature file: a layer of that name (a
    signature pushed with the files), else the first signature referrer that holds, each passed
    over said in ``passed_over`` (anyone who may push can plant one: its operator hears of it); the
    model unchanged when the catalog names no signer, or on a dry run (the signature is checked
    when the files are)."""
    trust = spec.signature
    if trust is None or any(f.path == trust.installed_as for f in model.files):
        return marked_signature(spec, model)
    if session.settings.dry_run or session.settings.offline or not model.files:
        return model
    parsed = parse_oci_source(model.files[0].source)
    assert parsed is not None, "a registry's model names its manifest"
    ref, path = parsed[0], trust.installed_as
    refused: IntegrityError | None = None
    for layer in signature_layers(session.owned.registry, ref, what=spec.name):
        sig = RemoteFile(
            spec.name,
            path,
            ref.blob_url(layer.digest),
            size=layer.size,
            sha256=layer.sha256,
            source=ref.source(path),
            signature=True,
        )
        try:
            got = signature_bytes(session, sig)
            assert got is not None  # (from the source: its bytes, or an error)
            statement = held_to_signature(
                spec, trust, got[1], model.files, signature=path, settings=session.settings
            )
            _exactly(spec, statement, model, ref)
        except (IntegrityError, NotFoundError) as exc:
            passed_over.append(f"{exc.message} (the referrer bundle {layer.digest}); passed over")
            log.warning("%s", passed_over[-1])
            refused = refused or IntegrityError(exc.message, hint=exc.hint)
            continue
        log.info("%s: signed by %s (referrer bundle %s)", spec.name, trust.by(), layer.digest)
        return model._replace(files=tuple(sorted((*model.files, sig), key=lambda f: f.path)))
    return _none_held(session, spec, trust, model, ref, refused)


def _none_held(
    session: PullSession,
    spec: ModelSpec,
    trust: Trust,
    model: ResolvedModel,
    ref: OciRef,
    refused: IntegrityError | None,
) -> ResolvedModel:
    """A signed registry model none of whose referrers holds: the first refusal, else (no
    signature referrer at all) the model with its signature left unfetched under ``pull
    --unsigned``, else IntegrityError."""
    if refused is not None:
        raise refused
    if session.settings.unsigned:  # its files fetched, held to their digests, never installed
        unsigned = RemoteFile(spec.name, trust.installed_as, "", signature=True)
        return model._replace(files=(*model.files, unsigned))
    raise IntegrityError(
        f"{spec.name}: the catalog asks for a signature (by {trust.by()}) and {spec.oci}"
        f" ({ref.digest}) has none: no referrer of that manifest is a signature; nothing of it is"
        " installed unsigned",
        hint=f"sign it where it is published: mdl publish {spec.name} --to {spec.oci} --sign KEY",
    )


def _exactly(spec: ModelSpec, statement: SignedManifest, model: ResolvedModel, ref: OciRef) -> None:
    """A signature of a registry's model signs its manifest's files and no other: one that signs
    a file the manifest lacks is another version's (IntegrityError naming them)."""
    present = {signed_name(f.path, f.source) for f in model.files}
    extra = sorted(p for p in statement.files if p not in present and not statement.ignores(p))
    if not extra:
        return
    raise IntegrityError(
        f"{spec.name}: a signature referrer of {ref.given} signs {plural(len(extra), 'file')} its"
        f" manifest does not have: {first_few(extra)}"
    )
