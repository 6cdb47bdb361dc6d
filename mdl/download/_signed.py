"""The stage between resolve and plan for models whose catalog entry names a signer: their model.sig
is fetched first (into ``.mdl/partial``, from mirrors or the source), verified against the trust
policy, and only then placed; every other file is then held to the digest it signs (pinned as the
sha256 the download computes anyway). A file the signature does not cover, or whose source lists
other bytes, fails before a byte of it moves."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from mdl.catalog.specs import ModelSpec
from mdl.download._fetch import fetch_from_sources, file_lock, transfer_job
from mdl.download._plan import Action, plan_file
from mdl.download.session import PullSession, label_of
from mdl.errors import IntegrityError, MdlError, NotFoundError, UsageError
from mdl.outsidejson import read_json
from mdl.report import FileOutcome, failed
from mdl.signing.library import MAX_SIGNATURE_BYTES, import_ahead, require_library, verify_signature
from mdl.signing.statement import ALGORITHMS, SignedFile, SignedManifest, Trust, git_path
from mdl.sources.resolve import RemoteFile, ResolvedModel
from mdl.store.confined import read_bytes, write_atomic
from mdl.store.expected import ExpectedFile
from mdl.store.layout import selected, signed_name
from mdl.store.records import SignatureRecord
from mdl.store.verify import read_signature
from mdl.transfer.job import RetryLog
from mdl.transfer.resume import discard_partial

if TYPE_CHECKING:
    from mdl.transfer.ranges import Digests

log = logging.getLogger("mdl.pull")


@dataclass(eq=False, repr=False)
class Signatures:
    """What the stage hands on: the models to plan (signed ones pinned), the failures (a bad
    signature fails its whole model; a file not as signed fails by name), each signed model's
    signature record, and the files held back (still part of the model: it is not ``installed``
    without them)."""

    models: list[ResolvedModel] = field(default_factory=list)
    failures: list[FileOutcome] = field(default_factory=list)
    records: dict[str, SignatureRecord] = field(default_factory=dict)
    withheld: dict[str, list[ExpectedFile]] = field(default_factory=dict)
    # of those, the ones it does not sign at all
    unsigned: dict[str, list[str]] = field(default_factory=dict)
    # by model: why it is fetched though no signature covers it (``--unsigned``)
    warnings: dict[str, str] = field(default_factory=dict)


def check_signatures(
    session: PullSession, specs: Sequence[ModelSpec], resolved: Sequence[ResolvedModel]
) -> Signatures:
    """Every signed model's signature fetched and verified, its files pinned (the others pass
    unchanged).
    """
    trusts = {spec.name: spec.signature for spec in specs if spec.signature is not None}
    fingerprints = _fingerprints(trusts, resolved)
    # nothing is fetched: the signature is checked when the files are (git's are not)
    if session.settings.dry_run:
        return Signatures(
            models=[_without_git_files(m) if m.name in trusts else m for m in resolved]
        )
    found = Signatures()
    by_name = {spec.name: spec for spec in specs}
    for model in resolved:
        if (trust := trusts.get(model.name)) is None:
            found.models.append(model)
            continue
        try:
            _signed(session, by_name[model.name], trust, fingerprints[model.name], model, found)
        except MdlError as exc:
            if isinstance(exc, Unsigned) and session.settings.unsigned:
                _held_unsigned(model, trust, found, exc)
            else:
                _refused(session, model, exc, found)
    return found


def _refused(session: PullSession, model: ResolvedModel, exc: MdlError, found: Signatures) -> None:
    """A signed model none of whose files is fetched: its failure, said."""
    outcome = failed(model.name, None, exc, dest=session.store.model_dir(model.name))
    log.error("%s", outcome.error)
    found.failures.append(outcome)


class Unsigned(IntegrityError):
    """No signature anywhere: a version not signed yet (its seeder fetches it with ``pull
    --unsigned`` and signs it with ``publish --sign``)."""


def _held_unsigned(model: ResolvedModel, trust: Trust, found: Signatures, exc: Unsigned) -> None:
    """A model no signature was found for, pulled ``--unsigned``: its files fetched and checked by
    their own hashes all the same, its signature still expected (withheld): never ``installed``
    unsigned, but on the seeding machine's disk for ``publish --sign`` to sign; said as a
    warning. Only when asked: bytes no signer vouches for never reach a node's model folder by
    default."""
    found.warnings[model.name] = (
        f"{exc.message}; fetched all the same (--unsigned): its files are held to their"
        " hashes, and the model stays partial until this version is signed"
    )
    log.warning("%s", found.warnings[model.name])
    files = _without_git_files(model).files
    sig = next(f for f in files if f.path == trust.installed_as)
    found.models.append(model._replace(files=tuple(f for f in files if f is not sig)))
    found.withheld[model.name] = [
        ExpectedFile(sig.path, sig.size, sig.sha256, sig.git_oid, sig.source)
    ]


def _fingerprints(trusts: Mapping[str, Trust], resolved: Sequence[ResolvedModel]) -> dict[str, str]:
    """Each signer's fingerprint, by model (none when no ``resolved`` model is signed): exit 2
    naming mdl[sign] when it is not installed, or naming a key or certificates that cannot be
    read, before anything is fetched."""
    if not any(m.name in trusts for m in resolved):
        return {}
    require_library()
    fingerprints: dict[str, str] = {}
    for name, signer in trusts.items():
        try:
            fingerprints[name] = signer.fingerprint()
        except OSError as exc:
            raise UsageError(
                f"models.{name}.signature: cannot read {exc.filename or 'its key'}:"
                f" {exc.strerror or exc}"
            ) from None
    return fingerprints


def _without_git_files(model: ResolvedModel) -> ResolvedModel:
    """The model without git's files, which no signature signs and a signed pull never installs."""
    return model._replace(
        files=tuple(f for f in model.files if not git_path(signed_name(f.path, f.source)))
    )


def _signed(
    session: PullSession,
    spec: ModelSpec,
    trust: Trust,
    fingerprint: str,
    model: ResolvedModel,
    found: Signatures,
) -> None:
    sig = next((f for f in model.files if f.path == trust.installed_as), None)
    if sig is None:  # a lock that pins none (made before the catalog named a signer)
        raise IntegrityError(
            f"{model.name}: the catalog asks for a signature and the lock pins no"
            f" {trust.installed_as}: nothing of it is installed unsigned",
            hint=f"lock the version with its signature: mdl lock --upgrade {model.name}",
        )
    what = label_of(sig)
    retries = RetryLog()
    # a key's signature is verified without model_signing (mdl.signing.keyed): nothing to load
    ahead = trust.key is None
    data, staged = _fetch_signature(session, sig, fingerprint, retries, ahead=ahead)
    manifest = _verified(session, data, trust, fingerprint, what=what)
    sha256, by = hashlib.sha256(data).hexdigest(), trust.by()
    session.progress.note(f"{what}: signature verified, signed by {by}")
    files, refused, withheld = _pinned(spec, model, manifest, sig.path)
    unsigned = [f.path for f in withheld if signed_name(f.path, f.source) not in manifest.files]
    files.append(
        sig._replace(
            sha256=sha256,
            size=len(data),
            signature=True,
            staged=staged,
            staged_retries=retries.causes,
        )
    )
    files.sort(key=lambda f: f.path)
    found.models.append(model._replace(files=tuple(files)))
    found.failures.extend(refused)
    found.records[model.name] = SignatureRecord(file=sig.path, sha256=sha256, by=by)
    if withheld:
        found.withheld[model.name] = withheld
    if unsigned:
        found.unsigned[model.name] = unsigned


def _fetch_signature(
    session: PullSession, sig: RemoteFile, fingerprint: str, retries: RetryLog, *, ahead: bool
) -> tuple[bytes, Path | None]:
    """The signature's bytes and where they wait to be placed (None: they are the installed file,
    up to date); ``ahead``: model_signing is loaded while they download when they are new here.
    """
    # a known version: the installed one may be it
    if sig.sha256 or sig.git_oid or session.settings.offline:
        plan = plan_file(
            session.layout, sig, force=session.settings.force, offline=session.settings.offline
        )
        if plan.decision.action is Action.SKIP or session.settings.offline:
            return (
                read_signature(plan.placement.store.dest, plan.placement.final, what=label_of(sig)),
                None,
            )
    if ahead and _new_to_verify(session, sig, fingerprint):
        import_ahead()  # while the signature downloads
    store = session.layout.store_for(sig.source)
    staged = store.staged_path(sig.model, sig.path)
    store.ensure_dirs()
    job = transfer_job(session, sig, store, staged, verify=True, retries=retries)
    # Its partial is the one the fetch stage would use: held as that stage holds it, against another
    # run's pull.
    held = file_lock(session, sig, store)
    try:
        fetch_from_sources(session, job, sig)
        session.progress.finish(job.label, ok=True)
        return read_signature(store.dest, staged, what=label_of(sig)), staged
    except NotFoundError as exc:
        raise Unsigned(
            f"{label_of(sig)}: the catalog asks for a signature and none was found ({exc.message})",
            hint=(
                f"the model is not installed unsigned; to sign this version, fetch it with `mdl"
                f" pull {sig.model} --unsigned`, then `mdl publish {sig.model} --to PREFIX --sign"
                " KEY.pem`, then `mdl lock --upgrade` (docs/releases.md)"
            ),
        ) from None
    except MdlError:
        discard_partial(job)
        raise
    finally:
        held.release()


def _new_to_verify(session: PullSession, sig: RemoteFile, fingerprint: str) -> bool:
    """Whether the signature about to be fetched is likely one not verified here with this trust
    (so model_signing will be needed): a listed version the installed copy is not, or, unlisted (a
    URL), one that is not the installed one's kept verification."""
    if sig.git_oid and not sig.sha256:
        return True  # fetched: the installed copy is not this version
    sha256 = sig.sha256
    if not sha256:
        record = session.store.read_record(sig.model)
        if record is None or record.signature is None or record.signature.file != sig.path:
            return True
        sha256 = record.signature.sha256
    # a guess: whatever it cannot tell, the verification itself finds out
    try:
        return not _kept_path(session, bytes.fromhex(sha256), fingerprint).is_file()
    except (OSError, ValueError):
        return True


def _kept_path(session: PullSession, sha256: bytes, fingerprint: str) -> Path:
    """Where the statement a signature (by its sha256) verified against a trust (its fingerprint)
    signs is kept."""
    name = hashlib.sha256(sha256 + fingerprint.encode()).hexdigest()
    return session.store.state_dir / "signatures" / f"{name}.json"


def _verified(
    session: PullSession, data: bytes, trust: Trust, fingerprint: str, *, what: str
) -> SignedManifest:
    """The statement ``data`` signs, verified against ``trust`` here once: its result is kept under
    ``.mdl/signatures`` by the signature's and the trust's digests, so a pull of an unchanged model
    (cron) neither verifies it again nor imports model_signing (~0.4 CPU-s); another key,
    certificate or signature is verified anew. ``mdl verify`` always verifies it afresh."""
    store = session.store
    kept = _kept_path(session, hashlib.sha256(data).digest(), fingerprint)
    try:
        data = read_bytes(store.dest, kept, limit=2 * MAX_SIGNATURE_BYTES)
        return SignedManifest.from_json(
            read_json(data, source=str(kept), limit=2 * MAX_SIGNATURE_BYTES)
        )
    except (OSError, ValueError, MdlError):
        pass  # not kept (or not as mdl keeps it): verified now
    manifest = verify_signature(data, trust, what=what)
    try:
        write_atomic(
            store.dest, kept, json.dumps(manifest.to_json(), separators=(",", ":")).encode()
        )
    except OSError as exc:  # only the next run's saving is lost
        log.warning(
            "%s: cannot keep the verified signature at %s: %s", what, kept, exc.strerror or exc
        )
    return manifest


# a signed model's files that fail by name, and what each was expected to be (held back)
_Held = tuple[list[FileOutcome], list[ExpectedFile]]


def _pinned(
    spec: ModelSpec, model: ResolvedModel, manifest: SignedManifest, sig_path: str
) -> tuple[list[RemoteFile], list[FileOutcome], list[ExpectedFile]]:
    """Each of the model's files held to its signed digest; a file not signed, listed with other
    bytes, or signed but absent upstream fails by name (exit 6). A file the signer left out on
    purpose (``.gitattributes``, its ignore list) is not installed: every byte installed from a
    signed model was signed."""
    files: list[RemoteFile] = []
    held: _Held = ([], [])
    for remote in model.files:
        if remote.path != sig_path and (pinned := _pin(remote, manifest, held)) is not None:
            files.append(pinned)
    present = {signed_name(f.path, f.source) for f in model.files}
    for path in sorted(set(manifest.files) - present):
        # a file the catalog entry would take if its source listed it (a signed file missing
        # upstream matters only then: a signature covers a whole repo, and pulling part of it is
        # fine); a list of files: the ones listed are the model
        if spec.is_snapshot and selected(spec, [path]):
            exc = IntegrityError(f"{model.name}/{path}: signed, but the source does not have it")
            one = manifest.files[path]
            _refuse(held, failed(model.name, path, exc), ExpectedFile(path, one.size, one.sha256))
    return files, *held


def _pin(remote: RemoteFile, manifest: SignedManifest, held: _Held) -> RemoteFile | None:
    """``remote`` held to the digest its signature signs; None: the signer left it out, or it is
    unlike what was signed (refused into ``held``)."""
    name = signed_name(remote.path, remote.source)
    one = manifest.file(name, remote.size)
    if one is None and manifest.ignores(name):
        log.info(
            "%s: left out: its signature does not sign it (the signer ignored it)", label_of(remote)
        )
        return None
    if (problem := _unlike_signed(remote, one)) is not None or one is None:
        exc = IntegrityError(f"{label_of(remote)}: {problem}", hint="nothing of it was installed")
        _refuse(
            held,
            failed(remote.model, remote.path, exc, source=remote.source),
            ExpectedFile(remote.path, remote.size, remote.sha256, remote.git_oid, remote.source),
        )
        return None
    # a sharded signature's shards are the file's range trust, before the lock's part hashes:
    # a range released before the whole file then is the signer's (finer parts or not)
    trust = signed_ranges(one, remote.size) or remote.trust
    return remote._replace(sha256=remote.sha256 or one.sha256, signed=one, trust=trust)


def _refuse(held: _Held, outcome: FileOutcome, expected: ExpectedFile) -> None:
    """A signed model's file that fails by name: said, and held back."""
    held[0].append(outcome)
    held[1].append(expected)
    log.error("%s", outcome.error)


def signed_ranges(one: SignedFile, size: int | None) -> Digests | None:
    """A sharded signature's shards as the range trust of the file (kind ``signature``), when they
    tile its ``size`` bytes end to end; None otherwise (one digest of the whole file: no ranges)."""
    if not one.sharded or not size or one.algorithm not in ALGORITHMS.values():
        return None
    from mdl.transfer.ranges import Digests

    spans: list[tuple[int, int]] = []
    digests: list[bytes] = []
    for start, end, hexdigest in one.pieces:
        if end is None or start != (spans[-1][1] if spans else 0) or end <= start:
            return None
        try:
            digests.append(bytes.fromhex(hexdigest))
        except ValueError:
            return None
        spans.append((start, end))
    if not spans or spans[-1][1] != size:
        return None
    return Digests("signature", tuple(spans), tuple(digests), one.algorithm)


def _unlike_signed(remote: RemoteFile, one: SignedFile | None) -> str | None:
    """How the file the source lists differs from the one its signature signs (``one``), or None:
    it does not."""
    if one is None:
        return "is not covered by the model's signature"
    if one.sha256 and remote.sha256 and one.sha256 != remote.sha256:
        return (
            f"differs from the signed file: the source lists sha256 {remote.sha256}, the"
            f" signature {one.sha256}"
        )
    if one.size is not None and remote.size is not None and one.size != remote.size:
        return (
            f"differs from the signed file: the source lists {remote.size} bytes, the signature"
            f" {one.size}"
        )
    return None
