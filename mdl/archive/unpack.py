"""``mdl unpack``: reject hostile archives before writing a byte, extract privately, verify, then
swap into place.

The checks read the archive's index, its manifest and its signature before a byte is written; the
private folder, the swap and the recovery of an interrupted one are in ``staging.py``."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import stat
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, BinaryIO, TypeGuard

from mdl.archive import zipread
from mdl.archive.staging import NEW_FILE, Staging, recover, stale_spools
from mdl.archive.zipread import DEFAULT_MAX_RATIO, MANIFEST_NAME, Entry
from mdl.errors import (
    ArchiveError,
    IntegrityError,
    LocalFSError,
    OutsideJSONError,
    UsageError,
    disk_error,
)
from mdl.folderwalk import PRIVATE
from mdl.outsidejson import read_json
from mdl.paths import SHA256_HEX, names_git, nearest_folder, quoted, shown, shown_name, temp_name
from mdl.progress import ArchiveProgress, Progress
from mdl.report import Done
from mdl.signing.library import MAX_SIGNATURE_BYTES, require_library, verify_signature
from mdl.signing.statement import SIGNATURE_FILE, SignedFile, SignedManifest, Trust
from mdl.store.filesystem import kind_of, not_a_file, refuse_no_room, stat_file

MAX_MANIFEST_BYTES = 64 << 20
CHUNK_SIZE = 1 << 20
STDIN, PIPE_HINT = "stdin", "mdl pack RUN -o - | mdl unpack - -d DIR"


@dataclass(frozen=True)
class UnpackedFile:
    """One extracted file, its path relative to the destination as named in the archive."""

    path: str
    size: int
    sha256: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class UnpackResult(Done):
    """What ``mdl unpack`` extracted, where, and whether a manifest vouched for it."""

    dest: str
    files: tuple[UnpackedFile, ...]
    folders: tuple[str, ...] = ()  # the archive's folder entries ("a/b/"), made even when empty
    manifest: bool = False
    checkpoint: str | None = None
    top_level: tuple[str, ...] = ()
    replaced: tuple[str, ...] = ()
    # with --signed-by: {"verified": true, "by": who, "file": its entry}
    signature: dict[str, Any] | None = None
    left_out: tuple[str, ...] = ()  # entries not extracted: those under a .git folder

    def to_json(self) -> dict[str, Any]:  # the fields in order, the tuples as lists
        doc = {"ok": True} | asdict(self)
        tuples = ("files", "folders", "top_level", "replaced", "left_out")
        return doc | {key: list(doc[key]) for key in tuples}


@dataclass(frozen=True)
class _Checked:
    """An archive once checked: the entries to extract, the manifest's sha256 by entry name, and
    the signed digests by entry name (``signed``: empty unless a signature was asked for)."""

    fh: BinaryIO
    entries: list[Entry]
    hashes: Mapping[str, str]
    signed: Mapping[str, SignedFile]


def _extract(staging: Staging, archive: _Checked, progress: Progress) -> list[UnpackedFile]:
    """Write every entry into the staging's tree, verifying size, CRC, the signed digests (a signed
    sha256 is the one computed here anyway) and the manifest's sha256."""
    done: list[UnpackedFile] = []
    for entry in archive.entries:
        if entry.is_dir:
            staging.folder(entry.name)
            continue
        got = _extract_file(staging, archive, entry, progress)
        if archive.hashes.get(entry.name) not in (None, got):
            raise IntegrityError(
                f"entry {shown(entry.name)} does not match the sha256 in the manifest"
            )
        done.append(UnpackedFile(entry.name, entry.file_size, got))
    return done


def _extract_file(staging: Staging, archive: _Checked, entry: Entry, progress: Progress) -> str:
    """Write one file entry, checked against its signature as it is read; its sha256."""
    progress.start(entry.name, label=entry.name, total=entry.file_size, path=entry.name)
    digest = hashlib.sha256()
    want = archive.signed.get(entry.name)
    check = want.check_apart() if want is not None else None  # shards, BLAKE: fed as read
    parent, _, base = entry.name.rpartition("/")
    with os.fdopen(os.open(base, NEW_FILE, 0o644, dir_fd=staging.folder(parent)), "wb") as dst:
        for chunk in zipread.read_data(archive.fh, entry, CHUNK_SIZE):
            digest.update(chunk)
            if check is not None:
                check.update(chunk)
            dst.write(chunk)
            progress.advance(entry.name, len(chunk))
        dst.flush()
        # the renames into place must not expose files a power cut would empty
        os.fsync(dst.fileno())
    progress.finish(entry.name, ok=True)
    got = digest.hexdigest()
    if want is not None:
        bad = check.mismatch() if check is not None else None
        if check is None and want.sha256 != got:
            bad = ("signed sha256", str(want.sha256), got)
        if bad is not None:
            raise IntegrityError(
                f"entry {shown(entry.name)} is not the file its signature signed: {bad[0]}"
                f" mismatch (the signature says {bad[1]}, the entry has {bad[2]})"
            )
    return got


def _read_manifest(fh: BinaryIO, entries: list[Entry]) -> tuple[dict[str, str], str | None] | None:
    """The mdl manifest of a single-folder archive, checked against the entries, or None when
    absent.
    """
    if (entry := _manifest_entry(entries)) is None:
        return None
    doc = _manifest_doc(fh, entry)
    # (what it lists under a .git folder is left out, as those entries are: _checked_entries)
    listed = {n: v for n, v in _listed_files(doc["files"], entry.name).items() if not names_git(n)}
    _refuse_unlisted_entries(listed, entries, entry)
    checkpoint = doc.get("checkpoint")
    hashes = {name: sha for name, (_, sha) in listed.items()}
    return hashes, checkpoint if isinstance(checkpoint, str) else None


def _manifest_entry(entries: list[Entry]) -> Entry | None:
    """The manifest's entry in the archive's one top-level folder, or None."""
    tops = {e.name.split("/", 1)[0] for e in entries}
    if len(tops) != 1:
        return None
    name = f"{next(iter(tops))}/{MANIFEST_NAME}"
    return next((e for e in entries if e.name == name and not e.is_dir), None)


def _manifest_doc(fh: BinaryIO, entry: Entry) -> dict[str, Any]:
    """The manifest's JSON, a document with a files list; ArchiveError otherwise."""
    if entry.file_size > MAX_MANIFEST_BYTES:
        raise ArchiveError(f"{shown(entry.name)} is too large to be a manifest")
    data = b"".join(zipread.read_data(fh, entry, CHUNK_SIZE))
    try:
        doc = read_json(data, source=shown(entry.name), limit=MAX_MANIFEST_BYTES)
    except OutsideJSONError as exc:
        raise ArchiveError(exc.message) from None
    if not isinstance(doc, dict) or not isinstance(doc.get("files"), list):
        raise ArchiveError(f"{shown(entry.name)} has no files list")
    return doc


def _listed_files(files: list[object], manifest: str) -> dict[str, tuple[int, str]]:
    """The manifest's files as (size, sha256) by entry name; a malformed or repeated one is
    ArchiveError."""
    top = manifest.split("/", 1)[0]
    listed: dict[str, tuple[int, str]] = {}
    for item in files:
        if not _good_record(item) or f"{top}/{item['path']}" in listed:
            raise ArchiveError(
                f"{shown(manifest)} has a malformed or duplicate file record: {repr(item)[:200]}"
            )
        listed[f"{top}/{item['path']}"] = (item["size"], item["sha256"])
    return listed


def _good_record(item: object) -> TypeGuard[dict[str, Any]]:
    """Whether a manifest's file record has a path, an int size and a sha256."""
    return (
        isinstance(item, dict)
        and isinstance(item.get("path"), str)
        and type(item.get("size")) is int
        and SHA256_HEX.fullmatch(str(item.get("sha256"))) is not None
    )


def _refuse_unlisted_entries(
    listed: dict[str, tuple[int, str]], entries: list[Entry], manifest: Entry
) -> None:
    """Every file entry is listed, every listed file is an entry, with the size it declares."""
    present = {e.name: e for e in entries if not e.is_dir and e is not manifest}
    for name in present:
        if name not in listed:
            raise ArchiveError(f"entry {shown(name)} is not listed in the manifest")
    for name, (size, _) in listed.items():
        if name not in present:
            raise IntegrityError(
                f"the manifest lists {shown(name)} but the archive has no such entry"
            )
        if present[name].file_size != size:
            raise IntegrityError(
                f"entry {shown(name)} declares {present[name].file_size} bytes, the manifest says"
                f" {size}"
            )


def _signer(trust: Trust) -> str:
    """Who a signature that verifies with ``trust`` comes from; exit 2 naming the extra or the key
    when either is missing or unusable, before the archive is read."""
    require_library()
    return trust.by()


def _check_signature(
    fh: BinaryIO, entries: list[Entry], trust: Trust
) -> tuple[dict[str, SignedFile], str, list[Entry]]:
    """The model.sig of the archive's model folder (its one top-level folder, else its root)
    verified with ``trust``, each entry's signed digests by entry name, and the entries to extract:
    the signed ones, model.sig and mdl's manifest, never what the signer left out (git's files, its
    ignore list: ``.git/config`` runs commands), as a pull installs none of it. IntegrityError (exit
    6) naming the signature or the entry when it is missing or bad, an entry is not signed (but
    model.sig itself and what the signer left out), or a signed file is not in the archive. Nothing
    is extracted yet."""
    files = {e.name: e for e in entries if not e.is_dir}
    tops = {e.name.split("/", 1)[0] for e in entries}
    prefix = f"{next(iter(tops))}/" if len(tops) == 1 and not tops & files.keys() else ""
    name = prefix + SIGNATURE_FILE
    statement = _verified_statement(fh, files.get(name), name, trust)
    signed = _signed_entries(statement, files, prefix, name)
    own = {name, prefix + MANIFEST_NAME}
    kept = [
        e
        for e in entries
        if e.name in signed or e.name in own or not statement.ignores(e.name.removeprefix(prefix))
    ]
    return signed, name, kept


def _verified_statement(
    fh: BinaryIO, entry: Entry | None, name: str, trust: Trust
) -> SignedManifest:
    """What the archive's model.sig (``entry``, None when there is none) signs, verified."""
    if entry is None:
        raise IntegrityError(
            f"the archive has no {shown(name)}: it is not signed",
            hint="ask for the archive its signer packed (mdl pack --sign KEY.pem)",
        )
    if entry.file_size > MAX_SIGNATURE_BYTES:
        raise IntegrityError(
            f"{shown(name)}: {entry.file_size} bytes is too big for a model signature"
        )
    data = b"".join(zipread.read_data(fh, entry, CHUNK_SIZE))
    return verify_signature(data, trust, what=shown(name))


def _signed_entries(
    statement: SignedManifest, files: dict[str, Entry], prefix: str, name: str
) -> dict[str, SignedFile]:
    """Each file entry's signed digests; an entry the signature neither signs nor leaves out, or a
    signed file the archive lacks, is IntegrityError."""
    signed: dict[str, SignedFile] = {}
    for path in files:
        relative = path.removeprefix(prefix)
        if (found := statement.files.get(relative)) is not None:
            signed[path] = found
        elif path != name and not statement.ignores(relative):
            raise IntegrityError(
                f"entry {shown(path)} is not signed: {shown(name)} does not cover it"
            )
    for relative in statement.files:
        if prefix + relative not in signed:
            raise IntegrityError(
                f"{shown(name)} signs {shown(prefix + relative)}, which the archive does not hold"
            )
    return signed


def unpack_archive(
    archive: Path,
    *,
    dest: Path | None,
    force: bool,
    progress: Progress,
    cwd: Path,
    max_ratio: float = DEFAULT_MAX_RATIO,
    trust: Trust | None = None,
    name: str | None = None,
) -> UnpackResult:
    """Validate every entry, extract into a private temp folder, verify (``trust``: its model.sig
    too, and every file against it), then swap into ``dest``. ``name``: what messages call the
    archive (default: its path)."""
    signer = None if trust is None else (trust, _signer(trust))
    dest_dir = cwd / dest if dest is not None else cwd
    # every entry's bar names the archive (model=) for programs
    if not isinstance(progress, ArchiveProgress):
        progress = ArchiveProgress(progress, archive.name)
    try:
        # a FIFO must not hang us
        fd = os.open(cwd / archive, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError as exc:
        raise UsageError(f"archive not found: {shown_name(archive)}") from exc
    except OSError as exc:
        raise LocalFSError(f"cannot read {shown_name(archive)}: {exc.strerror}") from exc
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise UsageError(f"{shown_name(archive)} is not a regular file")
    with os.fdopen(fd, "rb") as fh:
        try:
            return _unpack(
                fh,
                dest_dir,
                force=force,
                progress=progress,
                max_ratio=max_ratio,
                name=name or shown_name(archive),
                signer=signer,
            )
        except OSError as exc:  # reading the archive, or looking at the destination
            raise LocalFSError(
                f"{shown_name(str(exc.filename or archive))}: {exc.strerror}"
            ) from exc


def _unpack(
    fh: BinaryIO,
    dest_dir: Path,
    *,
    force: bool,
    progress: Progress,
    max_ratio: float,
    name: str,
    signer: tuple[Trust, str] | None = None,
) -> UnpackResult:
    """Check the destination and the archive (``name``: what messages call it), then extract and
    swap into place."""
    _recover_dest(dest_dir, progress)
    entries, total, left_out = _checked_entries(fh, dest_dir, max_ratio, name)
    if left_out:
        progress.note(
            f"left out {len(left_out)} {'entry' if len(left_out) == 1 else 'entries'} under .git/"
            " (version control's own data, not the model)"
        )
    manifest = _read_manifest(fh, entries)
    signed: dict[str, SignedFile] = {}
    signature = None
    if signer is not None:
        signed, signature, entries = _check_signature(fh, entries, signer[0])
    tops = list(dict.fromkeys(e.name.split("/", 1)[0] for e in entries))
    made = _make_folders(dest_dir)
    try:
        occupied = _occupied(dest_dir, tops, force=force)
        refuse_no_room(dest_dir, total, "the archive's files")
        progress.begin(total_bytes=total, files=sum(not e.is_dir for e in entries))
        checked = _Checked(fh, entries, manifest[0] if manifest else {}, signed)
        files = _extract_and_swap(checked, dest_dir, tops, progress, force=force)
    except BaseException:  # any failure leaves the destination as it was: not even its folders
        _remove_folders(made)
        raise
    return UnpackResult(
        dest=str(dest_dir),
        files=tuple(files),
        manifest=manifest is not None,
        checkpoint=manifest[1] if manifest else None,
        top_level=tuple(tops),
        replaced=tuple(occupied),
        folders=tuple(e.name + "/" for e in entries if e.is_dir),
        signature=(
            None if signer is None else {"verified": True, "by": signer[1], "file": signature}
        ),
        left_out=tuple(left_out),
    )


def _make_folders(dest_dir: Path) -> list[Path]:
    """Create ``dest_dir`` and the parents it lacks; the folders this run made (never one that
    was there, or that another process made meanwhile), innermost first."""
    missing, folder = [], dest_dir
    while not os.path.lexists(folder):
        missing.append(folder)
        folder = folder.parent
    made: list[Path] = []
    try:
        for folder in reversed(missing):
            with contextlib.suppress(FileExistsError):  # (``a/..``, or someone else's)
                folder.mkdir(PRIVATE)
                made.insert(0, folder)
    except OSError as exc:  # (a file where a folder must go: _recover_dest named DIR's own kind)
        _remove_folders(made)
        raise LocalFSError(f"cannot create {shown_name(dest_dir)}: {exc.strerror}") from exc
    return made


def _remove_folders(made: list[Path]) -> None:
    """Remove the folders :func:`_make_folders` made, innermost first, those still empty only."""
    for folder in made:
        with contextlib.suppress(OSError):
            folder.rmdir()


def _recover_dest(dest_dir: Path, progress: Progress) -> None:
    """Refuse a destination that is no folder; put back what an earlier unpack killed mid-swap
    moved aside."""
    if (kind := not_a_file(dest_dir)) not in (None, "a folder"):
        raise LocalFSError(f"{shown_name(dest_dir)} is {kind}, not a folder: cannot unpack into it")
    if dest_dir.is_dir():
        recover(dest_dir, progress)
    stale_spools(nearest_folder(dest_dir))  # (where `unpack -` spools: DEST, or its nearest folder)


def _checked_entries(
    fh: BinaryIO, dest_dir: Path, max_ratio: float, name: str
) -> tuple[list[Entry], int, list[str]]:
    """The archive's entries (none is refused, naming the archive ``name``), each checked (names,
    layout, limits, lengths at ``dest_dir``), and the bytes they unpack to; the entries under a
    ``.git`` folder, left out (a zip of a cloned repo holds one: git's own data, whose config runs
    commands at the next ``git status`` there; pack leaves it out too)."""
    entries, central_start = zipread.read_index(fh, max_entries=zipread.MAX_ENTRIES)
    git = [names_git(entry.name) for entry in entries]
    left_out = [entry.name for entry, its in zip(entries, git, strict=True) if its]
    entries = [entry for entry, its in zip(entries, git, strict=True) if not its]
    if not entries:  # (unzip: "zipfile is empty", exit 1)
        but = " but git's own data" if left_out else ""
        raise ArchiveError(f"{name} holds no files{but}: nothing to unpack")
    for entry in entries:
        zipread.check_entry(entry)
    zipread.check_names(entries)
    entries = zipread.check_layout(fh, entries, central_start)
    total = zipread.check_limits(entries, max_ratio)
    zipread.check_lengths(entries, dest_dir)
    return entries, total, left_out


def _occupied(dest_dir: Path, tops: list[str], *, force: bool) -> list[str]:
    """The top-level names already there, refused unless --force (an empty folder is fine)."""
    occupied: list[str] = []
    for top in tops:
        target = dest_dir / top
        st = stat_file(target)
        if st is None or (stat.S_ISDIR(st.st_mode) and not any(target.iterdir())):
            continue
        if not force:
            _refuse_replacing(target, st)
        occupied.append(top)
    return occupied


def _refuse_replacing(target: Path, st: os.stat_result) -> None:
    """What is at ``target`` is not replaced without --force: say what it is."""
    # from lstat: a FIFO or device is never opened; --force moves it aside like a file
    if (kind := kind_of(st)) not in (None, "a folder"):
        raise LocalFSError(
            f"{shown_name(target)} is {kind}, not a file or folder",
            hint="use --force to replace it",
        )
    what = "a file"
    if stat.S_ISLNK(st.st_mode):
        what = "a symlink"
    elif stat.S_ISDIR(st.st_mode):
        what = "not empty"
    raise UsageError(
        f"{quoted(target)} already exists and is {what}", hint="use --force to replace it"
    )


def _extract_and_swap(
    checked: _Checked, dest_dir: Path, tops: list[str], progress: Progress, *, force: bool
) -> list[UnpackedFile]:
    """Extract into a staging beside ``dest_dir``, swap ``tops`` into place (what is there looked
    at again first), remove the staging."""
    try:
        staging = Staging(dest_dir)
    except OSError as exc:
        raise LocalFSError(
            f"cannot create a temporary folder in {shown_name(dest_dir)}: {exc.strerror}"
        ) from exc
    try:
        try:
            files = _extract(staging, checked, progress)
        except OSError as exc:
            raise disk_error(
                exc,
                full=f"no space left in {shown_name(dest_dir)} while extracting",
                other=f"cannot extract into {shown_name(dest_dir)}: {exc.strerror}",
            ) from exc
        # looked at again as the swap begins (alone): another unpack may have put them there
        staging.swap(tops, check=lambda: _occupied(dest_dir, tops, force=force))
    finally:
        staging.close()
    return files


def unpack_stream(
    stream: BinaryIO,
    *,
    dest: Path | None,
    force: bool,
    progress: Progress,
    cwd: Path,
    max_ratio: float = DEFAULT_MAX_RATIO,
    trust: Trust | None = None,
) -> UnpackResult:
    """``mdl unpack -``: a zip's index is at its end, so the stream is spooled to a hidden file on
    the destination's filesystem (in DIR, else its nearest existing folder: none is created before
    the archive is known to be good), unpacked as :func:`unpack_archive` does a file, and removed
    whatever happens. A terminal is refused (exit 2)."""
    # a closed or odd stream: reading it says what is wrong
    with contextlib.suppress(AttributeError, ValueError):
        if stream.isatty():
            raise UsageError("reading an archive from stdin needs a pipe", hint=PIPE_HINT)
    if trust is not None:
        _signer(trust)  # a missing extra or key is said before stdin is read
    spool = nearest_folder(cwd / dest if dest is not None else cwd) / temp_name("stdin.zip")
    named = ArchiveProgress(progress, None)
    try:
        fd = os.open(spool, NEW_FILE, 0o600)
    except OSError as exc:
        raise LocalFSError(
            f"cannot spool stdin into {shown_name(spool.parent)}: {exc.strerror}"
        ) from exc
    held = os.dup(fd)  # locked until the spool goes: a running unpack's (staging.stale_spools)
    try:
        fcntl.flock(held, fcntl.LOCK_EX)
        _spool(stream, fd, spool, named)
        try:
            return unpack_archive(
                spool,
                dest=dest,
                force=force,
                progress=named,
                cwd=cwd,
                max_ratio=max_ratio,
                trust=trust,
                name="the archive",
            )
        except ArchiveError as exc:
            exc.message = f"{STDIN}: {exc.message}"
            exc.args = (exc.message,)
            raise
    finally:
        spool.unlink(missing_ok=True)
        os.close(held)


def _spool(stream: BinaryIO, fd: int, spool: Path, named: Progress) -> None:
    """Copy ``stream`` into ``fd`` (the spool file), showing it as one file; empty is exit 2."""
    named.begin(total_bytes=None, files=1)
    named.start(STDIN, label="reading stdin", total=None)
    try:
        with os.fdopen(fd, "wb") as out:
            while chunk := stream.read(CHUNK_SIZE):
                out.write(chunk)
                named.advance(STDIN, len(chunk))
            size = out.tell()
    except OSError as exc:
        named.finish(STDIN, ok=False, message=str(exc.strerror or exc))
        raise disk_error(
            exc,
            full=f"no space left in {shown_name(spool.parent)} while reading the archive from"
            " stdin",
            other=f"cannot spool stdin into {shown_name(spool.parent)}: {exc.strerror or exc}",
        ) from exc
    named.finish(STDIN, ok=True)
    if size == 0:
        raise UsageError("stdin is empty: expected a zip archive", hint=PIPE_HINT)
