"""Where finished files go: plain model folders under dest, or the Hugging Face cache (``--layout
hf-cache``): a blob named by its ETag in ``blobs/``, a relative symlink
``snapshots/<commit>/<path>``, ``refs/<revision>``, as ``hf_hub_download`` writes them; mdl's state
under ``<cache>/.locks/mdl/`` (skipped by ``scan_cache_dir``, on the blobs' filesystem); a blob's
lock is huggingface_hub's own. Direct URLs keep the plain layout."""

# (annotations here are evaluated, not postponed: typing compiles each string annotation of a
# NamedTuple's fields at every start)
import os
import re
import stat as st
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple, TypeVar

from mdl.catalog.settings import Settings
from mdl.errors import HubReplyError, LocalFSError, MdlError, UnsafePathError, UsageError
from mdl.folderwalk import refuse_planted, refuse_planted_above
from mdl.paths import GIT_OID_HEX, SHA256_HEX, repo_id_problem, safe_relative_path, shown_path
from mdl.store import confined
from mdl.store.filesystem import (
    creatable_problem,
    kind_of,
    nearest_existing,
    not_a_file,
    not_a_file_error,
    stat_file,
)
from mdl.store.records import FileRecord, ModelRecord
from mdl.store.store import Store

if TYPE_CHECKING:
    from mdl.catalog.specs import ModelSpec
    from mdl.store.expected import ExpectedFile

_HUB_SOURCE = (
    r"^hf://(?:(?P<type>datasets|spaces)/)?(?P<repo>[^@/]+(?:/[^@/]+)?)"
    r"(?:@(?P<commit>[^/]+))?/(?P<path>.+)$"
)

# a cache blob's name: git blob id or sha256
BLOB_NAME = f"{GIT_OID_HEX.pattern}|{SHA256_HEX.pattern}"
_TYPES = {None: "model", "datasets": "dataset", "spaces": "space"}
# huggingface_hub's shared store of Xet-fetched files (huggingface_hub/utils/_shared_blobs.py,
# layout version 1)
SHARED_STORE, SHARED_STORE_MARKER = "blobs", ".huggingface-shared-blobs"
# the Hub's repo types and their hf:// prefixes (what hf download's --repo-type takes)
REPO_TYPES = {"model": "", "dataset": "datasets/", "space": "spaces/"}
_Item = TypeVar("_Item")


class HubFileRef(NamedTuple):
    """A Hub file as its record's source names it."""

    repo_type: str
    repo: str
    commit: str | None
    path: str


def hub_source(repo: str, repo_type: str, commit: str | None, path: str) -> str:
    at = f"@{commit}" if commit else ""
    return f"hf://{REPO_TYPES.get(repo_type, '')}{repo}{at}/{path}"


def parse_hub_source(source: str) -> HubFileRef | None:
    """``hf://[datasets/|spaces/]owner/name@commit/path`` parsed; None for anything else (direct
    URLs).
    """
    if (match := re.match(_HUB_SOURCE, source)) is None:
        return None
    return HubFileRef(
        _TYPES[match.group("type")], match.group("repo"), match.group("commit"), match.group("path")
    )


def signed_name(path: str, source: str) -> str:
    """The name a model's signature gives one of its files: a Hub file's path in its repo (what its
    publisher signed, whatever ``as`` saves it as), else its path in the model folder."""
    hub = parse_hub_source(source)
    return hub.path if hub is not None else path


class Placement(NamedTuple):
    """Where one file's verified bytes go, and what else must point at them."""

    # where its bytes are: the atomic-rename target (a blob, in the Hugging Face cache), or the
    # shared entry huggingface_hub's link there leads to (read only: a fetch writes ``blob``)
    final: Path
    shown: Path  # the path programs open (the snapshot entry, in the Hugging Face cache)
    store: Store  # partials and locks for this file (same filesystem as ``final``)
    # a lock shared with huggingface_hub; None: the store's own per-file lock
    lock: Path | None = None
    link: Path | None = None  # the snapshot symlink to point at ``final``
    ref: tuple[Path, str] | None = None  # refs/<revision> and the commit it must name
    # huggingface_hub's link ``blobs/<etag>`` when ``final`` is the entry of its shared Xet store it
    # leads to, named by the file's Xet hash
    shared_via: Path | None = None

    @property
    def blob(self) -> Path:
        """The repo's ``blobs/<etag>`` entry, which the snapshot entry names (the file itself,
        when plain): where a fetch puts the file, replacing huggingface_hub's link to its shared
        entry, never written through (the entry is another repo's file too).
        """
        return self.shared_via or self.final

    @property
    def xet(self) -> str | None:
        """The Xet hash naming huggingface_hub's shared entry the file is read from (None: not
        read from one)."""
        return self.final.name if self.shared_via is not None else None

    def check_writable(self, *, label: str, fine: set[Path]) -> None:
        """Refuse (exit 7), before any byte is fetched, a file that cannot be created where it
        goes (``fine``: ``creatable_problem``'s, shared by the files of a plan).
        """
        partial, _ = self.store.part_paths("", label)
        for target in dict.fromkeys((self.blob, self.shown, partial)):
            if (problem := creatable_problem(target, fine)) is not None:
                raise LocalFSError(
                    f"{shown_path(label)}: cannot be saved at {shown_path(target)}: {problem}"
                )

    def linked(self) -> bool:
        """Whether the snapshot entry (if any) reaches ``final``."""
        if self.link is None:
            return True
        try:
            return self.link.samefile(self.final)
        except OSError:
            return False


class OnDisk(NamedTuple):
    """What one file has on disk, looked at once (``Layout.look``): its record's entry, an
    ``lstat`` of where it goes and of where programs open it, its partial and resume record."""

    entry: FileRecord | None  # for the content asked when the record has it (``entry_for``)
    final: os.stat_result | None  # None: nothing where it goes
    # a FIFO, socket or device where it goes (or where programs open it): the path and its kind
    odd: tuple[Path, str] | None
    # the resume record of a partial mdl made; None: no partial, or not mdl's (a hard link,
    # another user's file: never resumed, set aside)
    state: Path | None
    partial: bool = False  # a partial is there (mdl's or not)
    # the record's own entry of the path (``entry`` may be an earlier commit's with the content)
    current: FileRecord | None = None
    # disk the partial mdl made already takes (its blocks, bytes its record may not count yet:
    # written, not yet made durable); a resume writes over them and needs no more space for them
    held: int = 0


NOTHING = OnDisk(None, None, None, None)  # no record, nothing where the file goes, no partial


class Layout:
    """The plain layout, or the Hugging Face cache for Hub files (plain for the rest)."""

    def __init__(self, settings: Settings) -> None:
        self.plain = Store(settings.dest)
        self.cache_root = settings.hf_cache if settings.layout == "hf-cache" else None
        check_folder(settings.dest, what="the destination")
        if self.cache_root is not None:
            check_folder(self.cache_root, what="the Hugging Face cache")
        self.cache = (
            Store(
                self.cache_root, state_dir=self.cache_root / ".locks" / "mdl", keeps_revisions=True
            )
            if self.cache_root
            else None
        )
        self.records = self.cache or self.plain  # the store whose records describe the models
        # folders found no link (``refuse_links``), looked at once a run: a write refuses one
        # planted later
        self._unlinked: set[Path] = set()
        # where partials may be
        self.stores = [self.plain] if self.cache is None else [self.cache, self.plain]

    def place(
        self,
        model: str,
        path: str,
        *,
        source: str,
        sha256: str | None,
        git_oid: str | None,
        revision: str | None = None,
        xet: str | None = None,
    ) -> Placement:
        """Where the file goes (``xet``: its Xet hash as the Hub's listing or the lock names it,
        else as its record has it); UnsafePathError (exit 2) naming a link on the way below the
        root, for every command alike (the writes' own walk refuses one planted later)."""
        if self.cache is None or (hub := parse_hub_source(source)) is None:
            final = self.plain.final_path(model, path)
            refuse_links(self.plain.dest, final.parent, self._unlinked)
            return Placement(final=final, shown=final, store=self.plain)
        label = f"{model}/{path}"
        # what the Hub said of the file, not the user's input (exit 5)
        hint = "check HF_ENDPOINT: a mirror or a proxy that rewrites the Hub's headers"
        if hub.commit is None or not GIT_OID_HEX.fullmatch(hub.commit):
            raise HubReplyError(
                f"{label}: the Hub did not name the commit of {hub.repo} (X-Repo-Commit); cannot"
                " place it in the Hugging Face cache",
                hint=hint,
            )
        root = self.cache.dest
        repo_dir = root / repo_folder(hub.repo, hub.repo_type)
        in_repo = safe_relative_path(hub.path, where=f"{label}: path in {hub.repo}")
        link = repo_dir.joinpath("snapshots", hub.commit, *in_repo.split("/"))
        refuse_links(root, repo_dir / "blobs", self._unlinked)
        refuse_links(root, link.parent, self._unlinked)
        if (etag := git_oid or sha256) is None or not re.fullmatch(BLOB_NAME, etag):
            raise HubReplyError(
                f"{label}: the Hub named no sha256 or git blob id for {source} (X-Linked-Etag,"
                " else ETag) to name its blob by in the Hugging Face cache",
                hint=hint,
            )
        blob = repo_dir / "blobs" / etag
        lock = root / ".locks" / repo_dir.name / f"{etag}.lock"
        ref = self.ref_for(source, revision, label=label)
        shared = shared_blob(root, blob)
        # huggingface_hub's entry is this file's only when named by the file's Xet hash: another
        # file's (a link a co-tenant planted) is never read, and never written: the link is
        # replaced
        if shared is not None and shared.name != (xet or self._recorded_xet(model, path, etag)):
            shared = None
        via = blob if shared is not None else None
        return Placement(
            shared or blob, link, self.cache, lock=lock, link=link, ref=ref, shared_via=via
        )

    def _recorded_xet(self, model: str, path: str, etag: str) -> str | None:
        """The Xet hash the record keeps for the file of content ``etag`` (sha256 or git blob
        id)."""
        sha256, git_oid = (etag, None) if len(etag) == 64 else (None, etag)
        entry = self.records.entry(model, path, sha256=sha256, git_oid=git_oid)
        return entry.xet if entry is not None else None

    def store_for(self, source: str) -> Store:
        """The store a file from ``source`` goes into (its partials and locks): the cache for Hub
        files there.
        """
        if self.cache is not None and parse_hub_source(source) is not None:
            return self.cache
        return self.plain

    def ref_for(self, source: str, revision: str | None, *, label: str) -> tuple[Path, str] | None:
        """``refs/<revision>`` in the Hugging Face cache and the commit it must name, if there is
        one to write.
        """
        if self.cache_root is None:
            return None
        hub = parse_hub_source(source)
        if hub is None or hub.commit is None or not GIT_OID_HEX.fullmatch(hub.commit):
            return None
        if not revision or revision == hub.commit:
            return None
        ref_name = safe_relative_path(revision, where=f"{label}: revision")
        return (
            self.cache_root.joinpath(
                repo_folder(hub.repo, hub.repo_type), "refs", *ref_name.split("/")
            ),
            hub.commit,
        )

    def look(
        self,
        placement: Placement,
        model: str,
        path: str,
        *,
        sha256: str | None,
        git_oid: str | None,
    ) -> OnDisk:
        """The file on disk, in one look: its record's entries (its own, and the one for the
        content ``sha256`` or ``git_oid`` names when the record has it), ``lstat`` of its place and
        its partial."""
        part, state = placement.store.part_paths(model, path)
        record = self.records.read_record(model)
        entry = record.entry_for(path, sha256=sha256, git_oid=git_oid) if record else None
        found = stat_file(part)
        final = stat_file(placement.final)
        shown = final if placement.shown == placement.final else stat_file(placement.shown)
        odd = next(
            (
                (where, kind)
                for where, there in ((placement.final, final), (placement.shown, shown))
                if there is not None and (kind := kind_of(there)) not in (None, "a folder")
            ),
            None,
        )
        own = found is not None and confined.not_own(found) is None
        return OnDisk(
            entry,
            final,
            odd,
            state=state if own else None,
            partial=found is not None,
            current=record.files.get(path) if record else None,
            held=found.st_blocks * 512 if own and found is not None else 0,
        )

    def link(self, placement: Placement) -> None:
        """Point the snapshot entry at the blob and the ref at the commit, atomically (no-op when
        plain).
        """
        root = placement.store.dest
        if placement.link is not None and not placement.linked():
            try:
                confined.symlink(
                    root, os.path.relpath(placement.blob, placement.link.parent), placement.link
                )
            except OSError as exc:
                # a folder where the snapshot entry goes
                if (kind := not_a_file(placement.link)) is not None:
                    raise not_a_file_error(
                        placement.link, kind, hint="remove it and pull again"
                    ) from exc
                raise LocalFSError(
                    f"cannot link {placement.link} in the Hugging Face cache: {exc.strerror or exc}"
                ) from exc
        if placement.ref is not None:
            write_ref(root, *placement.ref)


def shared_blob(cache_root: Path, blob: Path) -> Path | None:
    """The entry of huggingface_hub's shared Xet store (``<cache>/blobs/<2 hex>/<xet hash>``,
    huggingface_hub >= 2.4) that the repo blob ``blob`` is huggingface_hub's link to, or None. Such
    a link is read through, a planted one never: it must be relative, lead (as written, never
    resolved through another link) into the marked store of the same cache, to a regular file
    reached without a link on the way; anything else is no blob to read, as before. (Whose file
    it is, its name says: ``Layout.place``.)"""
    try:
        # (the common case, in one call: a blob file, or none yet)
        if not st.S_ISLNK(os.lstat(blob).st_mode):
            return None
        with confined.folder(cache_root, blob.parent, create=False) as dir_fd:
            if not st.S_ISLNK(os.stat(blob.name, dir_fd=dir_fd, follow_symlinks=False).st_mode):
                return None
            target = os.readlink(blob.name, dir_fd=dir_fd)
    except (OSError, MdlError):
        return None
    store = cache_root / SHARED_STORE
    xet_hash = Path(target).name
    entry = store / xet_hash[:2] / xet_hash
    if Path(target).is_absolute() or not SHA256_HEX.fullmatch(xet_hash):
        return None
    # as written: never through another link
    if os.path.normpath(blob.parent / target) != os.path.normpath(entry):
        return None
    try:
        marker = confined.read_bytes(cache_root, store / SHARED_STORE_MARKER, limit=16)
        with confined.folder(cache_root, entry.parent, create=False) as dir_fd:
            found = os.stat(xet_hash, dir_fd=dir_fd, follow_symlinks=False)
    except (OSError, MdlError):
        return None
    return entry if marker == b"1\n" and st.S_ISREG(found.st_mode) else None


def refuse_links(root: Path, folder: Path, unlinked: set[Path]) -> None:
    """UnsafePathError (exit 2) naming the first symbolic link among the folders from below
    ``root`` down to ``folder``: nothing below a root mdl manages is followed, whichever command
    looks (a folder not there yet, or a name the filesystem refuses, is for what follows to say).
    ``unlinked``: the folders found none already (a plan's files share them), added to. A folder
    another user made where anyone may write, the root too, is refused (``refuse_planted``: the
    writes' walk refuses it, and what is in it is vouched for by no command)."""
    above: os.stat_result | None = None  # the step before's, when this call looked at it
    for end in range(len(root.parts), len(folder.parts) + 1):
        step = Path(*folder.parts[:end])
        if step in unlinked:
            above = None
            continue
        try:  # (the root as the user named it: through a link, to where it leads)
            found = step.stat() if step == root else os.lstat(step)
            if above is None and step != root:
                above = step.parent.stat()
        except OSError:
            return
        if st.S_ISLNK(found.st_mode):
            raise UnsafePathError(
                f"{step} is a symbolic link; mdl never follows links inside {root}",
                hint="move the folder back in place of the link",
            )
        if step == root:
            refuse_planted_above(root, found)
        elif st.S_ISDIR(found.st_mode) and above is not None:
            refuse_planted(step, above, found)
        unlinked.add(step)
        above = found


def check_folder(path: Path, *, what: str) -> None:
    """Refuse (exit 2) a root every command would fail on: a file (or anything but a folder) at
    ``path`` or at the first of its parents that exists. Links are followed: the root is the user's
    choice."""
    try:
        if (existing := nearest_existing(path)) is None:
            return
    except OSError:
        # what the commands then say about it (permissions, a name too long) is theirs to say
        return
    probe, found = existing
    if not st.S_ISDIR(found.st_mode):
        kind = kind_of(found) or "a file"
        where = "" if probe == path else f"cannot be created: {shown_path(probe)} "
        raise UsageError(
            f"{what} {shown_path(path)} {where}is {kind}, not a folder",
            hint=(
                "pass --dest DIR naming a folder"
                if what == "the destination"
                else "point HF_HUB_CACHE at a folder"
            ),
        )


def ref_revision(spec: "ModelSpec", record: ModelRecord | None, path: str) -> str | None:
    """The revision whose ref names a file's commit: a snapshot's only while the catalog still asks
    for the revision it was pulled at, else the one the file's catalog entry asks for."""
    if spec.is_snapshot:
        return spec.revision if record is not None and record.revision == spec.revision else None
    return next(
        (f.revision or "main" for f in spec.files if f.repo is not None and f.save_path == path),
        None,
    )


def write_ref(root: Path, ref: Path, commit: str) -> None:
    """Make ``refs/<revision>`` name ``commit`` (huggingface_hub's offline reads go through it); a
    ref that is not a regular file is exit 7, never replaced."""
    current = None
    try:
        found = os.lstat(ref)
        if (kind := kind_of(found)) is not None:
            hint = "remove it and pull again: huggingface_hub reads refs as files"
            raise not_a_file_error(ref, kind, where="the ref ", hint=hint)
        # A link where a ref goes is replaced as the entry it is, never read through. Compared
        # verbatim: huggingface_hub joins what it reads to snapshots/, so "<commit>\n" is no commit
        # to it.
        if not st.S_ISLNK(found.st_mode):
            current = confined.read_bytes(root, ref, limit=256, head=True).decode(
                "utf-8", "replace"
            )
    # a hard link or another user's: replaced, never read
    except (FileNotFoundError, confined.ForeignEntryError):
        pass
    except OSError as exc:
        raise LocalFSError(
            f"cannot read the ref {ref} in the Hugging Face cache: {exc.strerror or exc}"
        ) from exc
    if current == commit:
        return
    try:
        # no newline: huggingface_hub reads it verbatim
        confined.write_atomic(root, ref, commit.encode())
    except OSError as exc:
        raise LocalFSError(
            f"cannot write the ref {ref} in the Hugging Face cache: {exc.strerror or exc}"
        ) from exc


def cached_snapshot(cache_root: Path, repo: str, repo_type: str, revision: str) -> list[FileRecord]:
    """The files of ``revision`` already in the Hugging Face cache (offline: refs/ names the
    commit), by repo path.
    """
    repo_dir = cache_root / repo_folder(repo, repo_type)
    commit = revision
    if not GIT_OID_HEX.fullmatch(revision):
        try:
            ref_name = safe_relative_path(revision, where="revision")
            # never blocks (a FIFO) nor follows a link; undecodable bytes are no commit
            raw = confined.read_bytes(
                cache_root, repo_dir.joinpath("refs", *ref_name.split("/")), limit=256, head=True
            )
            commit = raw.decode("utf-8", "replace").strip()
        except (OSError, MdlError):
            return []
    if not GIT_OID_HEX.fullmatch(commit):
        return []
    snapshot = repo_dir / "snapshots" / commit
    found: list[FileRecord] = []
    for entry in sorted(snapshot.rglob("*")):
        # the blob's name: sha256 (LFS) or git blob id
        etag = entry.readlink().name if entry.is_symlink() else ""
        if not re.fullmatch(BLOB_NAME, etag) or not entry.is_file():
            continue  # not a link into blobs/ (or a dangling one): not something we can verify
        path = entry.relative_to(snapshot).as_posix()
        # A git file's sha256 is unknown until hashed; mtime -1 never matches: it is re-hashed
        # before it is trusted.
        sha256, git_oid = (etag, None) if len(etag) == 64 else ("", etag)
        source = hub_source(repo, repo_type, commit, path)
        found.append(
            FileRecord(path, entry.stat().st_size, sha256, -1, source, git_oid, commit=commit)
        )
    return found


def adopt_cached(
    spec: "ModelSpec", record: ModelRecord | None, cache_root: Path
) -> ModelRecord | None:
    """Offline, in the hf-cache layout: the files already cached added to what the record knows
    (re-hashed against their blob names before they are trusted). A file the record has of another
    commit than the cache's ref names for the revision asked (a whole repo pulled at another
    revision, a get of another revision of the file) is not that revision's: the ref answers, as
    huggingface_hub's ``local_files_only`` reads it, and a revision no ref names is not here."""
    base = _of_revision(spec, record)
    known, expected = _known_here(spec, base, _cached_files(spec, cache_root))
    if not known:
        return base if record is not None else None
    adopted = (base or ModelRecord(spec.name))._replace(files=known, expected=expected)
    if spec.is_snapshot and adopted.commit is None:  # the commit the ref names, its files' own
        adopted = adopted._replace(
            commit=next((e.commit for e in known.values() if e.commit), None)
        )
    return adopted


def _of_revision(spec: "ModelSpec", record: ModelRecord | None) -> ModelRecord | None:
    """The record as far as it proves the revision asked for: a whole repo's of another revision
    is none of it, nor its files of another commit than its own (a get of another revision put
    them since); its entries of every commit only vouch for cached files of the same content."""
    if not spec.is_snapshot:
        return record
    if record is None or not record.holds(spec.revision):
        earlier = _every_entry(record) if record is not None else {}
        return ModelRecord(spec.name, revision=spec.revision, earlier=earlier)
    files = {p: e for p, e in record.files.items() if e.commit in (None, record.commit)}
    return record._replace(files=files, earlier=_every_entry(record))


def _known_here(
    spec: "ModelSpec", record: ModelRecord | None, cached: dict[str, FileRecord | None]
) -> tuple[dict[str, FileRecord], "dict[str, ExpectedFile] | None"]:
    """The files known (recorded, else cached) and expected (the last pull's, and what is cached
    of its commit: refs/ may name a later one since, whose files are no part of that version)."""
    from mdl.store.expected import ExpectedFile  # (offline, in the cache layout: not every get's)

    known = dict(record.files) if record is not None else {}
    expected = None if record is None or record.expected is None else dict(record.expected)
    if not spec.is_snapshot:
        _drop_stale(cached, known, expected)
    for path, entry in cached.items():
        if entry is None:
            continue
        known.setdefault(path, _as_recorded(record, entry))
        # (a model of files: each file its own ref's; a whole repo: its record's commit's)
        ours = not spec.is_snapshot or (
            record is not None and entry.commit in (None, record.commit)
        )
        if expected is not None and ours:
            expected.setdefault(
                path,
                ExpectedFile(path, entry.size, entry.sha256 or None, entry.git_oid, entry.source),
            )
    return known, expected


def _drop_stale(
    cached: dict[str, FileRecord | None],
    known: dict[str, FileRecord],
    expected: "dict[str, ExpectedFile] | None",
) -> None:
    """A model of files: each not cached at the revision asked, or recorded of another commit than
    its ref names, is not the file asked for (taken out of ``known`` and ``expected``)."""
    for path, entry in cached.items():
        if entry is None or known.get(path, entry).commit != entry.commit:
            known.pop(path, None)
            if expected is not None:
                expected.pop(path, None)


def _every_entry(record: ModelRecord) -> dict[str, FileRecord]:
    """The record's entries of every commit, by ``<commit>/<path>`` (as ``earlier`` keys them)."""
    return {**record.earlier, **{f"{e.commit}/{path}": e for path, e in record.files.items()}}


def _as_recorded(record: ModelRecord | None, entry: FileRecord) -> FileRecord:
    """A cached file as the record has its content (vouched for by its size and mtime, not read
    back), at the cache's commit; else as found (to be re-hashed)."""
    sha256, oid = entry.sha256 or None, entry.git_oid
    ours = record.entry_for(entry.path, sha256=sha256, git_oid=oid) if record else None
    if ours is None or (ours.sha256 != sha256 if sha256 else ours.git_oid != oid):
        return entry
    return ours._replace(commit=entry.commit, source=entry.source)


def _cached_files(spec: "ModelSpec", cache_root: Path) -> dict[str, FileRecord | None]:
    """The model's files in the Hugging Face cache at the revision asked, by save path (a file
    of a model of files that is not cached: None)."""
    if spec.is_snapshot and spec.repo is not None:
        found = cached_snapshot(cache_root, spec.repo, spec.repo_type, spec.revision)
        return {e.path: e for e in selected(spec, found, key=lambda item: item.path)}
    cached: dict[str, FileRecord | None] = {}
    for file in spec.files:
        if file.repo is None or file.path is None:
            continue
        found = cached_snapshot(
            cache_root, file.repo, file.repo_type or "model", file.revision or "main"
        )
        ours = (c._replace(path=file.save_path) for c in found if c.path == file.path)
        cached[file.save_path] = next(ours, None)
    return cached


def selected(
    spec: "ModelSpec", items: Iterable[_Item], *, key: Callable[[_Item], str] | None = None
) -> list[_Item]:
    """The ``items`` a whole-repo entry takes by its include and exclude patterns, as
    huggingface_hub applies them.
    """
    include, exclude = list(spec.include) or None, list(spec.exclude) or None
    if include is None and exclude is None:
        return list(items)  # (all of them, as the library keeps them: its module not loaded)
    from huggingface_hub.utils import filter_repo_objects  # type: ignore[attr-defined]

    return list(
        filter_repo_objects(items, allow_patterns=include, ignore_patterns=exclude, key=key)
    )


def repo_folder(repo: str, repo_type: str) -> str:
    """The repo's folder in the hf cache (``models--org--name``), named as huggingface_hub's
    ``repo_folder_name`` names it (written out: its module costs ~0.2 s to import;
    tests/store/test_repo_folder.py holds the two equal); a repo id it refuses is UsageError."""
    if (problem := repo_id_problem(repo)) is not None:
        raise UsageError(f"{repo}: not a valid Hub repo id ({problem})")
    return "--".join([f"{repo_type}s", *repo.split("/")])
