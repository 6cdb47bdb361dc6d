"""``verify``: re-hash what the records vouch for, against the record and whoever pins the file (the
catalog, its lock, the listing a pull resolved, or the model's signature), and say so per file."""

from __future__ import annotations

import contextlib
import functools
import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from mdl.catalog.settings import Settings
from mdl.catalog.specs import ModelSpec
from mdl.errors import (
    IntegrityError,
    LocalFSError,
    MdlError,
    NotFoundError,
    NotReadyError,
    UsageError,
)
from mdl.folderwalk import named_user
from mdl.outsidejson import read_json
from mdl.progress import Progress
from mdl.report import FileOutcome, RunReport, failed
from mdl.store.confined import ForeignEntryError, read_bytes
from mdl.store.expected import ExpectedFile
from mdl.store.filesystem import hash_file, not_a_file, not_a_file_error
from mdl.store.inventory import LocalFile, ModelStatus, model_status, signature_beside
from mdl.store.layout import BLOB_NAME, Layout, ref_revision, signed_name, write_ref
from mdl.store.records import RECORD_MAX, FileRecord, ModelRecord, record_of
from mdl.store.states import (
    INSTALLED,
    MISSING,
    MODIFIED,
    MODIFIED_MAYBE,
    OUTDATED,
    PARTIAL,
    UNRECORDED,
    UNTRUSTED_MTIME,
)
from mdl.store.store import Store

if TYPE_CHECKING:  # (the signing library loads only for a signed model: a probe never needs it)
    from mdl.signing.statement import SignedFile, SignedManifest, Trust

# A sha256 (None: no one pins it) and who pins it ("catalog", "catalog.lock", ...).
Wanted = tuple[str | None, str]


class _Run(NamedTuple):
    """What every model's check shares: where to look, the bar, the lock's pins, the sink."""

    layout: Layout
    progress: Progress
    pins: Mapping[str, Sequence[ExpectedFile]]
    add: Callable[[FileOutcome], None]
    lock: str = "catalog.lock"  # the lock's name, as messages say who pins a file (--lock's)


def verify_models(
    models: Sequence[ModelSpec],
    settings: Settings,
    *,
    progress: Progress,
    on_file: Callable[[FileOutcome], None] | None = None,
    pinned: Mapping[str, Sequence[ExpectedFile]] | None = None,
    quick: bool = False,
) -> RunReport:
    """Re-hash every recorded file against its record and the catalog (or, for ``pinned`` models,
    the lock); ``on_file`` sees each outcome as soon as it is known (``verify --all | head -1``
    shows its first row at once). ``quick``: judge each file by its record and ``lstat`` alone
    (:func:`check_recorded`), reading no byte and writing nothing."""
    layout = Layout(settings)
    outcomes: list[FileOutcome] = []
    pins = pinned or {}
    statuses = [
        model_status(spec, layout, pinned=signature_beside(spec, layout, pins.get(spec.name)))
        for spec in models
    ]

    def add(outcome: FileOutcome) -> None:
        outcomes.append(outcome)
        if on_file is not None:
            on_file(outcome)

    lock = settings.lock_path.name if settings.lock_path is not None else "catalog.lock"
    run = _Run(layout, progress, pins, add, lock)
    if quick:
        return _quick(run, statuses, outcomes)
    _begin(progress, statuses)
    signatures: dict[str, dict[str, Any]] = {}
    for spec, status in zip(models, statuses, strict=True):
        if (word := _verify_model(run, spec, status, outcomes)) is not None:
            signatures[spec.name] = word
    return RunReport(tuple(outcomes), signatures=signatures)


def _verify_model(
    run: _Run, spec: ModelSpec, status: ModelStatus, outcomes: list[FileOutcome]
) -> dict[str, Any] | None:
    """One model's files re-hashed (its refs written once it is whole, in a cache layout); its
    signature's word, when it is signed."""
    signed, whole = None, False
    if status.record is None or not status.files:
        run.add(_never_pulled(spec, status, run.layout))
    else:
        signed = _verify_files(run, spec, status, status.record)
        whole = not any(o.failing for o in outcomes if o.model == spec.name)
        if run.layout.cache_root is not None and whole:
            _write_refs(run.layout, spec, status.files, status.record)
    return None if spec.signature is None else _signature_word(spec.signature, signed, whole=whole)


def _quick(run: _Run, statuses: Sequence[ModelStatus], outcomes: list[FileOutcome]) -> RunReport:
    """``verify --quick``: each model's files judged by their records and ``lstat`` (each outcome
    added to ``outcomes`` by ``run.add``)."""
    signatures: dict[str, dict[str, Any]] = {}
    for status in statuses:
        spec = status.spec
        if status.record is None or not status.files:
            run.add(_never_pulled(spec, status, run.layout))
        else:
            for f, want in _wants(run, spec, status.files):
                run.add(check_recorded(spec.name, f, want))
        if status.signature is not None:
            signatures[spec.name] = status.signature
    return RunReport(tuple(outcomes), signatures=signatures)


# Why a present file is not ready by its record (``verify --quick``): only a re-hash can say more.
_NOT_AS_RECORDED = {
    MODIFIED: "its size changed since mdl verified it",
    MODIFIED_MAYBE: "changed since mdl verified it (same size, another mtime)",
    UNRECORDED: "present but never verified by mdl",
}


def check_recorded(model: str, file: LocalFile, want: Wanted) -> FileOutcome:
    """One file judged by its record and ``lstat`` alone, no byte read: ready when it is at the
    size and mtime it had when mdl verified it, its recorded sha256 is the one ``want`` pins and
    this user may read it; else missing or outdated (exit 4: not ready yet, a pull fixes it),
    changed (exit 6, and ``mdl verify`` re-hashes it) or unreadable here (exit 7)."""
    if file.state in (MISSING, PARTIAL):
        return _absent(model, file)
    label, entry = f"{model}/{file.path}", file.recorded
    if file.state == INSTALLED and entry is not None:
        expected, pinned_by = want
        # pulled by another user (root, in an init container): ready only if this one may read it
        if not os.access(file.dest, os.R_OK, effective_ids=True):
            unreadable = LocalFSError(
                f"{label}: this user ({named_user(os.geteuid())}) may not read it",
                hint="pull with a umask that lets this user read (022), or run this as the puller",
            )
            return failed(model, file.path, unreadable, dest=file.dest)
        if expected is None or expected == entry.sha256:
            return FileOutcome(
                model,
                file.path,
                str(file.dest),
                entry.size,
                entry.sha256,
                "verified",
                verified=entry.verified,
                word="ready",
            )
        why = f"outdated: {pinned_by} pins sha256 {expected}, its record says {entry.sha256}"
    elif file.state == OUTDATED:
        why = f"outdated: another version than the {want[1]} pins"
    else:
        why = _NOT_AS_RECORDED.get(file.state, file.state)
        hint = f"`mdl verify {model}` re-hashes it; `mdl pull {model}` repairs it"
        return failed(
            model, file.path, IntegrityError(f"{label}: {why}", hint=hint), dest=file.dest
        )
    # another version than pinned (a routine new lock): not ready yet, never "changed"
    error = NotReadyError(f"{label}: {why}", hint=f"run `mdl pull {model}`")
    return failed(model, file.path, error, dest=file.dest)


def _signature_word(trust: Trust, signed: SignedManifest | None, *, whole: bool) -> dict[str, Any]:
    """What verify says of a model's signature, as list and show say it: verified when its files
    are, by whom the key just read names."""
    word: dict[str, Any] = {"verified": False, "by": None, "file": trust.installed_as}
    if signed is not None:
        with contextlib.suppress(MdlError):
            word |= {"verified": whole, "by": trust.by()}
    return word


def _begin(progress: Progress, statuses: Sequence[ModelStatus]) -> None:
    """A total bar and an ETA over the bytes verify will hash: the recorded files on disk."""
    hashed = [
        status.record.files[f.path].size
        for status in statuses
        if status.record is not None
        for f in status.files
        if f.path in status.record.files and f.state not in (MISSING, PARTIAL)
    ]
    progress.begin(total_bytes=sum(hashed), files=len(hashed))


def _never_pulled(spec: ModelSpec, status: ModelStatus, layout: Layout) -> FileOutcome:
    """The outcome of a model with no record (never pulled, or its record is not a file or
    damaged), or whose record names no file."""
    record_path = layout.records.record_path(spec.name)
    if status.record is not None:  # read, and it names no file: none of the model is here
        other = spec.is_snapshot and not status.record.holds(spec.revision)
        names = f"files of revision {status.record.revision}" if other else "no file"
        error: MdlError = NotFoundError(
            f"{spec.name}: not on this disk{f' at revision {spec.revision}' if other else ''}"
            f" (its record {record_path} names {names})",
            hint=f"run `mdl pull {spec.name}`",
        )
    # never opened: pull replaces it (a folder excepted)
    elif (kind := not_a_file(record_path)) is not None:
        error = _not_a_file(record_path, kind, spec.name, "its record ")
    elif os.path.lexists(record_path):
        error = _unread_record(layout.records, spec.name, record_path)
    else:
        where = status.folder or layout.plain.dest
        error = NotFoundError(
            f"{spec.name}: not on this disk (never pulled into {where})",
            hint=f"run `mdl pull {spec.name}`",
        )
    outcome = failed(spec.name, None, error, dest=status.folder)
    return outcome._replace(action="missing") if type(error) is NotFoundError else outcome


def _unread_record(store: Store, model: str, path: Path) -> MdlError:
    """Why the record at ``path`` was not read, said where it is seen (a read-only container writes
    no log): another user's is not ready (exit 4, naming its owner), one this user may not read
    exit 7, a damaged one exit 6."""
    fix = f"run `mdl pull {model}`"
    try:
        data = read_bytes(store.dest, path, limit=RECORD_MAX)
        record_of(model, read_json(data, source=str(path), limit=RECORD_MAX))
    except ForeignEntryError as exc:
        if not exc.why.startswith("another user"):
            return IntegrityError(f"{model}: its record {path} is {exc.why}, not mdl's", hint=fix)
        owner, me = named_user(os.lstat(path).st_uid), named_user(os.geteuid())
        return NotReadyError(
            f"{model}: its record {path} belongs to {owner}, not to this user ({me}): mdl trusts"
            " only its own user's files and root's",
            hint=f"run this as {owner}, or pull as this user (or as root: every user trusts root)",
        )
    except OSError as exc:
        return LocalFSError(f"{model}: cannot read its record {path}: {exc.strerror or exc}")
    except (ValueError, UsageError) as exc:  # OutsideJSONError is a UsageError
        return IntegrityError(
            f"{model}: its record {path} is damaged ({exc}): no file of it is trusted", hint=fix
        )
    return NotReadyError(f"{model}: its record {path} was being written: ask again", hint=fix)


def _verify_files(
    run: _Run, spec: ModelSpec, status: ModelStatus, record: ModelRecord
) -> SignedManifest | None:
    """Verify each of a recorded model's files; the statement its signature signs, when it
    verified."""
    signed = _signature_on_disk(spec, status, run.layout)
    if isinstance(signed, FileOutcome):
        run.add(signed)
        signed = None
    sig_file = spec.signature.installed_as if spec.signature is not None else None
    for file, want in _wants(run, spec, status.files):
        run.add(
            verify_file(run.layout.records, spec.name, file, record, want, run.progress)
            if signed is None
            else _verify_signed(run, spec.name, file, record, want, signed, sig_file)
        )
    return signed


def _wants(
    run: _Run, spec: ModelSpec, files: Sequence[LocalFile]
) -> Iterator[tuple[LocalFile, Wanted]]:
    """Each of the model's ``files`` with the sha256 it is held to and who pins it: the catalog's
    own, else the lock's (named ``run.lock``) or the listing's."""
    catalog_sha = {f.save_path: f.sha256 for f in spec.files if f.sha256}
    locked = run.pins.get(spec.name) is not None
    for file in files:
        if not locked and file.path in catalog_sha:
            yield file, (catalog_sha[file.path], "catalog")
        else:
            yield file, (file.expected_sha256, run.lock if locked else "listing the pull resolved")


def _verify_signed(
    run: _Run,
    model: str,
    file: LocalFile,
    record: ModelRecord,
    want: Wanted,
    signed: SignedManifest,
    sig_file: str | None,
) -> FileOutcome:
    """Verify a file of a signed model: held to what its signature signs."""
    one = signed.file(signed_name(file.path, file.source), file.size)
    if one is None and file.path != sig_file:
        error = IntegrityError(f"{model}/{file.path}: is not covered by the model's signature")
        return failed(model, file.path, error, dest=file.dest)
    if one is not None and one.sha256 is not None:
        want = (one.sha256, "signature")
    outcome = verify_file(run.layout.records, model, file, record, want, run.progress)
    if one is not None and one.sha256 is None and not outcome.failing:
        outcome = _as_signed(model, file, one, outcome)
    return outcome


def _write_refs(
    layout: Layout, spec: ModelSpec, files: Sequence[LocalFile], record: ModelRecord
) -> None:
    """Verified whole, in the Hugging Face cache: refs/<revision> names its commit."""
    for file in files:
        ref = layout.ref_for(
            file.source, ref_revision(spec, record, file.path), label=f"{spec.name}/{file.path}"
        )
        if ref is not None:
            write_ref(layout.records.dest, *ref)


def _signature_on_disk(
    spec: ModelSpec, status: ModelStatus, layout: Layout
) -> SignedManifest | FileOutcome | None:
    """The statement the model's installed model.sig signs, verified again against the catalog's
    signer (offline: the signature and its trust are local files; keyless sigstore excepted, see the
    README); a failure's outcome."""
    if spec.signature is None:
        return None
    from mdl.signing.library import require_library, verify_signature

    require_library()
    path = spec.signature.installed_as
    what = f"{spec.name}/{path}"
    sig = next((f for f in status.files if f.path == path), None)
    try:
        if sig is None or sig.state in (MISSING, PARTIAL):
            raise IntegrityError(
                f"{what}: the model's signature is not here", hint=f"run `mdl pull {spec.name}`"
            )
        return verify_signature(
            read_signature(layout.store_for(sig.source).dest, sig.final, what=what),
            spec.signature,
            what=what,
        )
    except MdlError as exc:
        return failed(spec.name, path, exc, dest=sig.dest if sig is not None else status.folder)


def read_signature(root: Path, path: Path, *, what: str) -> bytes:
    """A model.sig's bytes, read as mdl's own state (no link followed, no FIFO opened), bounded:
    IntegrityError (exit 6) naming ``what`` when it is missing, unreadable or bigger than any
    signature."""
    from mdl.signing.library import MAX_SIGNATURE_BYTES

    try:
        return read_bytes(root, path, limit=MAX_SIGNATURE_BYTES)
    except FileNotFoundError:
        raise IntegrityError(f"{what}: the model's signature is missing") from None
    except UsageError:
        raise too_big_for_a_signature(what) from None
    except OSError as exc:
        raise IntegrityError(f"{what}: cannot read {path}: {exc.strerror or exc}") from None


def too_big_for_a_signature(what: str) -> IntegrityError:
    """A model.sig bigger than any signature: said of one read, and of one a source states the
    size of, before a byte of it is fetched."""
    from mdl.signing.library import MAX_SIGNATURE_BYTES

    return IntegrityError(f"{what}: more than {MAX_SIGNATURE_BYTES} bytes is not a model signature")


def _as_signed(
    model: str, file: LocalFile, signed: SignedFile, outcome: FileOutcome
) -> FileOutcome:
    """A file its signature hashes otherwise than by sha256 (shards, BLAKE2/3): read once more,
    as it says.
    """
    try:
        signed.check_path(file.final)
    except IntegrityError as exc:
        return failed(model, file.path, IntegrityError(f"{model}/{exc.message}"), dest=file.dest)
    except OSError as exc:
        error = IntegrityError(f"{model}/{file.path}: cannot read it: {exc}")
        return failed(model, file.path, error, dest=file.dest)
    return outcome


def _not_a_file(path: Path, kind: str, model: str, where: str) -> LocalFSError:
    fix = (
        f"remove it, then run `mdl pull {model}`"
        if kind == "a folder"
        else f"`mdl pull {model}` replaces it"
    )
    return not_a_file_error(path, kind, where=where, hint=fix)


def verify_file(
    store: Store,
    model: str,
    file: LocalFile,
    record: ModelRecord,
    expected: Wanted,
    progress: Progress,
) -> FileOutcome:
    """Re-hash one file against its record and ``expected`` (sha256 or None, who pins it); record
    a new mtime.
    """
    # (hf-cache: maybe an earlier one)
    entry = record.entry_for(file.path, sha256=file.expected_sha256, git_oid=None)
    if file.state in (MISSING, PARTIAL):
        return _absent(model, file)
    label = f"{model}/{file.path}"
    try:
        if entry is None:
            raise IntegrityError(
                f"{label}: present but never verified by mdl", hint=f"run `mdl pull {model}`"
            )
        size, sha256 = _rehash(model, file, entry, expected, progress)
    except (MdlError, OSError) as exc:
        return _unverified(store, model, file, entry, exc, progress)
    progress.finish(label, ok=True)
    mtime_ns = file.final.stat().st_mtime_ns
    if entry.mtime_ns != mtime_ns:  # re-verified: trust the new mtime from now on
        store.update_record(
            model, revision=None, commit=None, put=entry._replace(mtime_ns=mtime_ns)
        )
    # against a pinned hash it is verified now; else as verified as the record says the download was
    verified = bool(expected[0]) or entry.verified
    # as recorded, but its download was never checked against a hash
    word = None if verified else "intact"
    return FileOutcome(
        model, file.path, str(file.dest), size, sha256, "verified", verified=verified, word=word
    )


def _absent(model: str, file: LocalFile) -> FileOutcome:
    """The outcome of a file that is not there (or not finished): its place holds no file, or
    something no one should open."""
    label = f"{model}/{file.path}"
    for path in dict.fromkeys((file.dest, file.final)) if file.placed else ():
        try:  # lstat: a FIFO or device there is never opened
            kind = not_a_file(path)
        # a name the filesystem cannot hold: no file can be there, it is missing
        except LocalFSError:
            kind = None
        if kind is not None:
            error = _not_a_file(path, kind, model, f"{label}: ")
            return failed(model, file.path, error, dest=file.dest)
    what = "missing"
    if file.state == PARTIAL and file.final != file.dest and file.final.is_file():
        what = "missing (its blob is there, the snapshot entry is not)"
    elif file.state == PARTIAL:
        what = "not finished"
    absent = NotFoundError(f"{label}: {what} ({file.dest})", hint=f"run `mdl pull {model}`")
    return failed(model, file.path, absent, dest=file.dest)._replace(action="missing")


def _rehash(
    model: str, file: LocalFile, entry: FileRecord, expected: Wanted, progress: Progress
) -> tuple[int, str]:
    """Hash the file's bytes and hold them to its blob's name, its record and ``expected``: its
    size and sha256, else IntegrityError."""
    label = f"{model}/{file.path}"
    progress.start(label, label=label, total=entry.size, model=model, path=file.path)
    blob_name = _blob_name(file)
    git = blob_name is not None and len(blob_name) == 40
    size, sha256, git_oid = hash_file(
        file.final, git=git, on_bytes=functools.partial(progress.advance, label)
    )
    if blob_name is not None and blob_name not in (sha256, git_oid):
        # A Hugging Face cache blob is named by its content: other bytes under that name are
        # corruption, whatever the record says (hf_hub_download would serve them as this file).
        actual = f"sha256 {sha256}" if len(blob_name) == 64 else f"git blob id {git_oid}"
        raise IntegrityError(f"{label}: corrupt: its blob {file.final} holds bytes with {actual}")
    _hold_to(model, file.path, entry, expected, size=size, sha256=sha256)
    if file.state != INSTALLED and file.final != file.dest:
        raise IntegrityError(f"{label}: {file.dest} does not lead to its blob")
    return size, sha256


def _blob_name(file: LocalFile) -> str | None:
    """The content name of a repo blob (not an entry of huggingface_hub's shared store, named by
    its Xet hash); None for any other file."""
    named = file.final != file.dest and file.final.parent.name == "blobs"
    return file.final.name if named and re.fullmatch(BLOB_NAME, file.final.name) else None


def _hold_to(
    model: str, path: str, entry: FileRecord, expected: Wanted, *, size: int, sha256: str
) -> None:
    """IntegrityError unless the hashed bytes are the recorded ones and the version pinned."""
    label = f"{model}/{path}"
    expected_sha, pinned_by = expected
    if size != entry.size:
        raise IntegrityError(f"{label}: size is {size} bytes, expected {entry.size}")
    want = expected_sha or entry.sha256
    # intact as pulled, but another version than pinned
    if sha256 == entry.sha256 and sha256 != want:
        raise NotReadyError(
            f"{label}: outdated: {pinned_by} pins sha256 {want}, this file is the version with"
            f" {sha256}",
            hint=f"run `mdl pull {model}`",
        )
    if sha256 != want:
        raise IntegrityError(f"{label}: sha256 mismatch: expected {want}, got {sha256}")
    if expected_sha and entry.sha256 != expected_sha:
        raise IntegrityError(
            f"{label}: sha256 {entry.sha256} differs from the {pinned_by}'s {expected_sha}"
        )


def _unverified(
    store: Store,
    model: str,
    file: LocalFile,
    entry: FileRecord | None,
    exc: MdlError | OSError,
    progress: Progress,
) -> FileOutcome:
    """A file that did not verify: its record no longer trusts other bytes than it recorded, and
    its outcome says why."""
    # other bytes than recorded (not an unreadable file): the next pull must look at them
    if isinstance(exc, IntegrityError) and entry is not None and exc.hint is None:
        exc.hint = f"`mdl pull {model}` repairs it; `mdl pull {model} --force` fetches it again"
        if entry.mtime_ns != UNTRUSTED_MTIME:
            store.update_record(
                model, revision=None, commit=None, put=entry._replace(mtime_ns=UNTRUSTED_MTIME)
            )
    if not isinstance(exc, MdlError):
        exc = IntegrityError(f"{model}/{file.path}: cannot read {file.dest}: {exc.strerror or exc}")
    progress.finish(f"{model}/{file.path}", ok=False, message=exc.message)
    return failed(model, file.path, exc, dest=file.dest)
