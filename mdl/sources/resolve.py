"""Catalog entries to concrete remote files (Hub, direct URLs, the record offline), and their
mirror URLs.
"""

# (annotations here are evaluated, not postponed: typing compiles each string annotation of a
# NamedTuple's fields at every start)
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple
from urllib.parse import quote

from mdl.buckets.registry import store_for
from mdl.catalog.load import expand_headers
from mdl.catalog.settings import MIRROR_FIELDS, Placeholder, fill_template, parse_template
from mdl.errors import HubReplyError, IntegrityError, NetworkError, NotFoundError, UsageError
from mdl.paths import GIT_OID_HEX, OciRef, parse_oci_ref, path_clash, path_problem
from mdl.redact import printable, redact_url, unshown
from mdl.store.layout import hub_source, ref_revision, selected
from mdl.store.records import FileRecord, ModelRecord
from mdl.transfer.job import Opening, RangeTrust

if TYPE_CHECKING:
    from mdl.catalog.specs import FileSpec, ModelSpec
    from mdl.signing.statement import SignedFile, Trust
    from mdl.sources._hubreplies import FileMetadata, TreeEntry
    from mdl.sources.hub import Hub
    from mdl.store.expected import ExpectedFile

log = logging.getLogger("mdl.mirrors")
# fields quoted in http(s) mirror URLs
SAFE_IN_URL = {"model": "", "path": "/", "repo": "/", "revision": ""}


class XetRef(NamedTuple):
    """A Hub file stored in Xet: its Xet file hash (64 lowercase hex) and where its read token is
    asked for.
    """

    hash: str
    # {endpoint}/api/{type}s/{repo}/xet-read-token/{commit}: the Hub token may go there
    token_url: str


class RemoteFile(NamedTuple):
    """One concrete file to fetch: where from, what it must be, and where it goes in the model
    folder. (A NamedTuple: a frozen dataclass's generated methods were compiled at every start,
    issue 90.)
    """

    model: str
    path: str  # save path inside the model folder (validated)
    url: str  # Hub resolve URL pinned to a commit, or the direct URL
    size: int | None = None
    sha256: str | None = None
    git_oid: str | None = None  # git blob sha1 of small (non-LFS) Hub files
    etag: str | None = None
    commit: str | None = None
    source: str = ""  # redacted, for records and output
    hub: bool = False  # the Hub token may go to the Hub origin for this file
    # direct-URL headers, expanded (secrets: never output)
    headers: tuple[tuple[str, str], ...] = ()
    # The user typed this direct URL (a SOURCE, the catalog, its lock): only such a URL gets their
    # headers and a netrc login (mdl.download.session.credentials); one a document, a listing or a
    # mirror named never does.
    typed: bool = False
    size_pinned: bool = True  # False when the size is only what a probe of a direct URL saw
    revision: str | None = None  # the branch/tag asked for (Hub files), for refs/ in the HF cache
    repo: str | None = None  # owner/name (Hub files), for mirror URL templates
    # where a probe found it answering ranges (the download need not ask again)
    located: str | None = None
    # that probe's answer, its first bytes unread
    opening: Opening | None = None
    # The model's model.sig: its bytes are proved by their own signature, so a mirror may serve it
    # with no hash.
    signature: bool = False
    # what the model's verified signature says of the file (checked as it arrives)
    signed: "SignedFile | None" = None
    # its verified bytes, already here (the signature)
    staged: Path | None = None
    # what fetching them had to retry, or warned
    staged_retries: tuple[str, ...] = ()
    # a Hub file stored in Xet (its listing, its HEAD or the lock said so)
    xet: XetRef | None = None
    # a trusted hash for each range of exactly these bytes (``sha256``): the part hashes beside
    # the lock that pins it, or its signature's shards; None: only the whole file is checked
    trust: RangeTrust | None = None

    def __repr__(self) -> str:  # (as a dataclass with repr=False: no secret in a traceback)
        return unshown(self)


class ResolvedModel(NamedTuple):
    """A model's files as they are upstream (or as last recorded, offline)."""

    name: str
    revision: str | None
    commit: str | None
    files: tuple[RemoteFile, ...]


def resolve_model(
    spec: "ModelSpec",
    *,
    hub: "Hub | None",
    environ: Mapping[str, str],
    offline: bool = False,
    record: ModelRecord | None = None,
) -> ResolvedModel:
    """The concrete files of one catalog model, from the Hub (or from its record when offline)."""
    if offline:
        return marked_signature(spec, resolve_offline(spec, record))
    if spec.is_snapshot:
        assert hub is not None, "a snapshot needs the Hub"
        return marked_signature(spec, _resolve_snapshot(spec, hub))
    return marked_signature(spec, _resolve_files(spec, hub=hub, environ=environ))


def _resolve_files(
    spec: "ModelSpec", *, hub: "Hub | None", environ: Mapping[str, str]
) -> ResolvedModel:
    """A model of listed files: each resolved, its signature file too; the commit all share."""
    files = [resolve_file(spec.name, file, hub=hub, environ=environ) for file in spec.files]
    trust = spec.signature
    if trust is not None and trust.installed_as not in {f.path for f in files}:
        files.append(
            RemoteFile(spec.name, trust.installed_as, "", signature=True)
            if kept_in_bucket(spec, trust)
            else resolve_file(spec.name, signature_spec(spec, trust), hub=hub, environ=environ)
        )
    commits = {remote.commit for remote in files if remote.commit}
    commit = commits.pop() if len(commits) == 1 else None
    return ResolvedModel(spec.name, None, commit, tuple(files))


def marked_signature(spec: "ModelSpec", model: ResolvedModel) -> ResolvedModel:
    """The model with its signature file marked (its own signature proves its bytes: a mirror may
    serve it).
    """
    if spec.signature is None:
        return model
    path = spec.signature.installed_as
    return model._replace(
        files=tuple(f._replace(signature=True) if f.path == path else f for f in model.files)
    )


def kept_in_bucket(spec: "ModelSpec", trust: "Trust") -> bool:
    """Whether the model's signature has no place at its source: a model of files not all in one
    Hub repo (direct URLs: a training box, a CDN) whose signer names no signature URL keeps it in
    the team's bucket, stored by content and named by its version's manifest (``publish
    --sign``). Its file then has no URL: a lock finds it through that manifest and pins the
    object's URI; a pull fetches it from the mirrors only (docs/releases.md)."""
    if spec.is_snapshot or trust.file_is_url:
        return False
    repos = {(f.repo, f.revision or "main", f.repo_type or "model") for f in spec.files}
    return len(repos) != 1 or None in {f.repo for f in spec.files}


def signature_spec(spec: "ModelSpec", trust: "Trust") -> "FileSpec":
    """The model's model.sig as a file entry: its URL, or its path in the repo its (one) Hub repo
    files are in.
    """
    from mdl.catalog.specs import FileSpec

    where = f"models.{spec.name}.signature.file"
    if trust.file_is_url:
        return FileSpec(where, url=trust.file, save_as=trust.installed_as)
    if spec.repo is not None:  # a whole repo
        return FileSpec(
            where, repo=spec.repo, path=trust.file, revision=spec.revision, repo_type=spec.repo_type
        )
    # the catalog's reader made sure every file is in this repo at this revision
    first = spec.files[0]
    return FileSpec(
        where, repo=first.repo, path=trust.file, revision=first.revision, repo_type=first.repo_type
    )


def _resolve_snapshot(spec: "ModelSpec", hub: "Hub") -> ResolvedModel:
    """A whole-repo model: its listing at one commit, selected and checked, as files."""
    from mdl.sources.huburls import xet_token_url

    assert spec.repo is not None
    # a commit already (git reads 40 hex digits as one): its listing says whether it exists
    commit = (
        spec.revision
        if GIT_OID_HEX.fullmatch(spec.revision)
        else hub.commit_of(
            spec.repo, repo_type=spec.repo_type, revision=spec.revision, what=spec.name
        )
    )
    items = _snapshot_items(spec, hub, commit)
    _check_listing(spec, items)
    listed = _Listed(
        spec,
        spec.repo,
        commit,
        hub.file_urls(spec.repo, repo_type=spec.repo_type, revision=commit),
        # one for the listing's Xet files
        xet_token_url(hub.endpoint, spec.repo, spec.repo_type, commit),
    )
    files: list[RemoteFile] = []
    items.reverse()
    while items:
        # each entry let go as its file is made: memory holds the files, not both
        files.append(listed.file(items.pop()))
    if not files:
        patterns = ", ".join(spec.include) or "*"
        raise NotFoundError(
            f"{spec.name}: no files in {spec.repo}@{spec.revision} match include = [{patterns}]"
        )
    trust = spec.signature
    if trust is not None and trust.installed_as not in {f.path for f in files}:
        # not in the listing (a mirror may have it: publish --sign), or a URL
        files.append(listed.signature(trust))
    return ResolvedModel(spec.name, spec.revision, commit, tuple(files))


def _snapshot_items(spec: "ModelSpec", hub: "Hub", commit: str) -> "list[TreeEntry]":
    """The listing's entries the model takes (by path), its signature file fetched, selected or
    not."""
    assert spec.repo is not None
    listing = hub.list_files(spec.repo, repo_type=spec.repo_type, commit=commit, what=spec.name)
    items = sorted(selected(spec, listing, key=lambda item: item.path), key=lambda item: item.path)
    trust = spec.signature
    signature = trust.file if trust is not None and not trust.file_is_url else None
    if signature is not None and signature not in {item.path for item in items}:
        items.extend(item for item in listing if item.path == signature)
        items.sort(key=lambda item: item.path)
    return items  # the chosen entries are all that is kept


def _check_listing(spec: "ModelSpec", items: "Sequence[TreeEntry]") -> None:
    """Listing paths are server bytes (a mirror could send '../x'): the one name rule, before any
    byte is fetched; a name that fails it, or two that clash, refuse the whole model as a bad
    reply (exit 5), like any other."""
    for item in items:
        problem = path_problem(item.path)
        if problem is not None:
            raise HubReplyError(
                f"{spec.name}: the listing of {spec.repo} names a file mdl cannot save,"
                f" '{printable(item.path, limit=120)}': {problem}; the model was refused before"
                " anything was fetched"
            )
    clash = listing_clash([item.path for item in items])
    if clash is not None:
        raise HubReplyError(
            f"{spec.name}: the listing of {spec.repo} {clash}; the model was refused before"
            " anything was fetched",
            hint=(
                "an exclude pattern (the catalog's exclude, get's --exclude) leaves one of them out"
            ),
        )


class _Listed(NamedTuple):
    """A whole-repo model at one commit: how its listed files become RemoteFiles."""

    spec: "ModelSpec"
    repo: str
    commit: str
    file_url: Callable[[str], str]  # a path's resolve URL at the commit
    token_url: str  # where the Xet read token of the listing's Xet files is asked for

    def file(self, item: "TreeEntry") -> RemoteFile:
        """One listed file: its sha256 (LFS) or git blob id, its Xet hash if it has one."""
        spec, lfs = self.spec, item.lfs
        xet = XetRef(item.xet_hash, self.token_url) if item.xet_hash and lfs is not None else None
        return RemoteFile(
            model=spec.name,
            path=item.path,
            url=self.file_url(item.path),
            size=item.size,
            sha256=lfs.oid if lfs is not None else None,
            git_oid=item.oid if lfs is None else None,
            commit=self.commit,
            source=hub_source(self.repo, spec.repo_type, self.commit, item.path),
            hub=True,
            revision=spec.revision,
            repo=self.repo,
            xet=xet,
        )

    def signature(self, trust: "Trust") -> RemoteFile:
        """The model's signature file the listing did not name: its URL, or its path at the
        commit."""
        spec = self.spec
        if trust.file_is_url:
            return resolve_file(spec.name, signature_spec(spec, trust), hub=None, environ={})
        source = hub_source(self.repo, spec.repo_type, self.commit, trust.file)
        url = self.file_url(trust.file)
        return RemoteFile(
            spec.name,
            trust.file,
            url,
            commit=self.commit,
            source=source,
            hub=True,
            revision=spec.revision,
            repo=self.repo,
        )


def listing_clash(paths: Sequence[str]) -> str | None:
    """The one rule for the files of one listing (every consumer: pull, get, lock, resolve): why
    they cannot all be saved as files of one model, or None: a path named twice, or a file that is
    also another's folder. Names that differ only in case or Unicode form are two files, as on the
    Hub and on Linux (``get`` refuses them for its own folders, which a user may share with macOS or
    Windows)."""
    seen: set[str] = set()
    for path in paths:
        if path in seen:
            return f"names {printable(path, limit=120)!r} twice"
        seen.add(path)
    clash = path_clash(seen)
    if clash is None:
        return None
    return (
        f"has {printable(clash[0], limit=120)!r} as a file and as the folder of"
        f" {printable(clash[1], limit=120)!r}"
    )


def resolve_file(
    model: str, file: "FileSpec", *, hub: "Hub | None", environ: Mapping[str, str]
) -> RemoteFile:
    """One explicit file: a direct URL as given, or a Hub file pinned to the commit its metadata
    names.
    """
    if file.url is not None:
        return RemoteFile(
            model=model,
            path=file.save_path,
            url=file.url,
            size=file.size,
            sha256=file.sha256,
            source=redact_url(file.url),
            headers=expand_headers(file, environ),
            typed=True,
        )
    assert hub is not None
    return _hub_file(model, file, hub)


def _hub_file(model: str, file: "FileSpec", hub: "Hub") -> RemoteFile:
    """A Hub file pinned to the commit its metadata names, checked against its catalog entry."""
    assert file.repo is not None and file.path is not None and hub is not None
    # A one-off `get hf://owner/name/path` has no model: it is named by its repo and path.
    what = f"{model}/{file.save_path}" if model else f"{file.repo}/{file.path}"
    repo_type = file.repo_type or "model"
    revision = file.revision or "main"
    meta = hub.file_metadata(
        file.repo, file.path, repo_type=repo_type, revision=revision, what=what
    )
    _check_against_catalog(file, sha256=meta.sha256, size=meta.size, what=what)
    pinned = GIT_OID_HEX.fullmatch(revision) is not None
    if pinned and meta.commit is not None and meta.commit != revision:
        # its URL (and the CDN's it redirects to) may be another commit's file: the pin decides
        raise HubReplyError(
            f"{what}: the Hub answered for commit {meta.commit} of {file.repo}, not {revision}"
            " that is pinned; refused",
            hint="check HF_ENDPOINT (a mirror or a proxy that rewrites revisions)",
        )
    commit = meta.commit or revision
    return RemoteFile(
        model=model,
        path=file.save_path,
        url=hub.file_url(file.repo, file.path, repo_type=repo_type, revision=commit),
        size=meta.size if meta.size is not None else file.size,
        sha256=file.sha256 or meta.sha256,
        git_oid=meta.git_oid,
        commit=meta.commit,
        source=hub_source(file.repo, repo_type, meta.commit, file.path),
        hub=True,
        revision=revision,
        repo=file.repo,
        xet=_xet_of(meta),
        # the CDN URL its metadata came with: the ranges go there, the Hub is not asked again
        located=meta.location,
    )


def _xet_of(meta: "FileMetadata") -> XetRef | None:
    """Where a Hub file is in Xet, when its HEAD says (its hash, and where to ask for a token)."""
    if meta.xet_hash and meta.xet_auth:
        return XetRef(meta.xet_hash, meta.xet_auth)
    return None


def _check_against_catalog(
    file: "FileSpec", *, sha256: str | None, size: int | None, what: str
) -> None:
    """The Hub's sha256 and size of a file must be those its catalog entry pins (exit 6)."""
    if file.sha256 and sha256 and file.sha256 != sha256:
        raise IntegrityError(
            f"{what}: the catalog expects sha256 {file.sha256} but {file.repo} has {sha256}",
            hint=f"update {file.key_path}.sha256 or pin {file.key_path}.revision",
        )
    if file.size is not None and size is not None and file.size != size:
        raise IntegrityError(
            f"{what}: the catalog expects {file.size} bytes but {file.repo} has {size}"
        )


def resolve_offline(spec: "ModelSpec", record: ModelRecord | None) -> ResolvedModel:
    """HF_HUB_OFFLINE: the files the model should have as ``list`` and ``verify`` know them
    (mdl.store.inventory.model_files), each as last recorded when it is that version; one the
    record does not have (a catalog file never fetched, or pinned anew) will fail offline."""
    from mdl.store.inventory import known_files, model_files  # (offline only: not every get's)

    recorded = record.files if record is not None else {}
    # a file as recorded where it was, else as the last pull expected it (an unfinished one)
    known = {
        path: _expected(recorded[path]) if path in recorded else want
        for path, want in known_files(spec, record).items()
    }
    files = [_offline_file(spec, record, one, known) for one in model_files(spec, known)]
    if not files or (spec.is_snapshot and not recorded):  # a snapshot is its record's files
        never = "this model has not been pulled before"
        if spec.is_snapshot and record is not None:  # (one of another revision proves nothing)
            never = f"revision {spec.revision} is not on this disk"
        raise NetworkError(
            f"{spec.name}: HF_HUB_OFFLINE is set and {never}", hint="unset HF_HUB_OFFLINE"
        )
    revision, commit = (record.revision, record.commit) if record else (None, None)
    return ResolvedModel(spec.name, revision, commit, tuple(files))


def _expected(entry: FileRecord) -> "ExpectedFile":
    from mdl.store.expected import ExpectedFile

    # (a git file found in the cache is known by its blob id: its sha256 is not known yet)
    return ExpectedFile(entry.path, entry.size, entry.sha256 or None, entry.git_oid, entry.source)


def _offline_file(
    spec: "ModelSpec",
    record: ModelRecord | None,
    one: "ExpectedFile",
    known: Mapping[str, "ExpectedFile"],
) -> RemoteFile:
    """One file offline: as its record has it (its validator, commit, and the ref it keeps), else
    as the catalog says of it, with nowhere to get it."""
    ours = known.get(one.path) == one
    rec = record.files.get(one.path) if record is not None and ours else None
    return RemoteFile(
        model=spec.name,
        path=one.path,
        url="",
        size=one.size,
        sha256=one.sha256,
        git_oid=one.git_oid,
        etag=rec.etag if rec is not None else None,
        commit=rec.commit if rec is not None else None,
        source=one.source,
        # a verified file keeps its ref offline too (one to fetch: named by it)
        revision=ref_revision(spec, record, one.path),
    )


def with_probe(
    remote: RemoteFile,
    *,
    size: int | None,
    etag: str | None,
    located: str | None = None,
    opening: Opening | None = None,
    sha256: str | None = None,
) -> RemoteFile:
    """The file with what a probe learned (size, validator, where it answered a range, its unread
    answer, the sha256 the server says it has: what a file of the same bytes at another URL, a
    week's new folder, is known by; the download is held to it)."""
    served = remote.sha256 or sha256
    if remote.size is not None:
        return remote._replace(
            etag=remote.etag or etag, located=located, opening=opening, sha256=served
        )
    return remote._replace(
        size=size,
        etag=remote.etag or etag,
        size_pinned=False,
        located=located,
        opening=opening,
        sha256=served,
    )


def mirror_targets(templates: Sequence[str], remote: RemoteFile) -> list[tuple[str, str]]:
    """(template, URL) of the file on each mirror whose template it can fill (values URL-quoted, but
    not in a store's keys that it quotes when signed); none without a sha256 or git blob id, as a
    mirror's bytes must be checked."""
    if not templates or not (remote.sha256 or remote.git_oid or remote.signature):
        return []
    raw, quoted = _mirror_values(remote)
    urls: list[tuple[str, str]] = []
    for template in templates:
        if template.startswith("oci://"):
            ref = registry_mirror(template, remote)
            if ref is not None:
                urls.append((template, ref.blob_url(f"sha256:{remote.sha256}")))
            continue
        store = store_for(template)
        values = raw if store is not None and not store.quotes_values else quoted
        url = _filled(template, values, remote)
        if url is not None:
            urls.append((template, url))
    return urls


def registry_mirror(template: str, remote: RemoteFile) -> OciRef | None:
    """The repository a registry mirror (``oci://REGISTRY/NAMESPACE/{model}``) keeps the file in,
    as the blob of its sha256; None: the file has no sha256, or its model's name is no
    repository's (upper case: a registry's names are lower case)."""
    filled = _filled(template, _mirror_values(remote)[0], remote) if remote.sha256 else None
    try:
        return parse_oci_ref(filled, where=template) if filled is not None else None
    except UsageError:
        log.debug(
            "%s/%s: mirror %s has no repository %s", remote.model, remote.path, template, filled
        )
        return None


def _mirror_values(remote: RemoteFile) -> tuple[dict[str, str], dict[str, str]]:
    """The file's values for mirror placeholders: as they are, and URL-quoted."""
    # each a RemoteFile attribute of that name
    raw = {name: getattr(remote, name) or "" for name in MIRROR_FIELDS}
    quoted = {**raw, **{key: quote(raw[key], safe=safe) for key, safe in SAFE_IN_URL.items()}}
    return raw, quoted


def _filled(template: str, values: Mapping[str, str], remote: RemoteFile) -> str | None:
    """The template filled with the file's values, or None when it needs one the file lacks."""
    # checked when the settings were read: parsing again only splits it (a template is never
    # str.format-ed)
    parts = parse_template(template, fields=MIRROR_FIELDS, where="mirror")
    needed = {p.name for p in parts if isinstance(p, Placeholder)}
    missing = sorted(name for name in needed if not values.get(name))
    if missing:
        log.debug(
            "%s/%s: mirror %s needs %s, which this file lacks",
            remote.model,
            remote.path,
            template,
            missing,
        )
        return None
    return fill_template(parts, values)
