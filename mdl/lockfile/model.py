"""What a lock holds, validated as it is built (strict types, hex digests, safe paths and names, Hub
sources pinned to a commit); a catalog entry's fingerprint; a locked model to and from the
``ResolvedModel`` the download fetches."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import AfterValidator, ConfigDict, Field, Strict, ValidationError
from pydantic.dataclasses import dataclass

from mdl.catalog.load import expand_headers
from mdl.catalog.specs import MAX_MODEL_NAME, ModelSpec, is_model_name
from mdl.errors import UsageError
from mdl.lockfile.parts import PartHashes, trust_for
from mdl.paths import GIT_OID_HEX, path_clash, path_problem, repo_id_problem
from mdl.redact import Secrets, printable, redact_url
from mdl.store.layout import HubFileRef, hub_source, parse_hub_source

if TYPE_CHECKING:  # the HTTP side is loaded only by what fetches (a plain `mdl list` stays light)
    from mdl.sources.resolve import RemoteFile, ResolvedModel

LOCK_VERSION = 1

# (repo, path in repo, repo_type, revision) → the Hub resolve URL (the Hub client's file_url).
FileUrl = Callable[[str, str, str, str], str]
# (repo, repo_type, commit) → where the Hub gives a Xet read token for the repo at that commit.
TokenUrl = Callable[[str, str, str], str]

# Scalars are strict (a size of "12" or true is refused, not converted); a lock's arrays may be
# lists or tuples.
_STRICT = ConfigDict(extra="forbid")
_Hex40 = Annotated[str, Strict(), Field(pattern=r"^[0-9a-f]{40}$")]
_Revision = Annotated[str, Strict(), Field(min_length=1, max_length=256)]


# A lock names each path twice (its save path and, in its source, its path in the repo, mostly the
# same) and one repo for many files: each is checked once (the last few remembered), so a big lock
# costs one check per file.
_path_problem = functools.lru_cache(maxsize=8)(path_problem)


def _safe_path(value: str) -> str:
    if (problem := _path_problem(value)) is not None:
        raise ValueError(f"unsafe save path {printable(value, limit=120)!r}: {problem}")
    return value


def _pinned_source(value: str) -> str:
    if value.startswith("hf://"):
        ref = parse_hub_source(value)
        if ref is None or ref.commit is None or len(ref.commit) != 40:
            raise ValueError("a Hub source must be hf://owner/name@<40-hex commit>/path")
        if not GIT_OID_HEX.fullmatch(ref.commit):
            raise ValueError("a Hub source must be pinned to a 40-hex commit")
        if repo_id_problem(ref.repo) is not None:  # the rule hf_hub_url applies
            raise ValueError(f"not a Hub repo id: {printable(ref.repo, limit=120)!r}")
        if (problem := _path_problem(ref.path)) is not None:
            raise ValueError(
                f"unsafe path in the repo {printable(ref.path, limit=120)!r}: {problem}"
            )
    elif not value.startswith(("http://", "https://")):
        raise ValueError("a source is hf://… or an http(s) URL")
    return value


def _safe_name(value: str) -> str:
    # with --frozen the names come from the lock alone: "../x" here would write outside dest
    if not is_model_name(value):
        raise ValueError(
            "model names use letters, digits, '.', '_' and '-', do not start with '.' and are at"
            f" most {MAX_MODEL_NAME} characters, got {printable(value, limit=120)!r}"
        )
    return value


def _distinct_paths(files: tuple[LockedFile, ...]) -> tuple[LockedFile, ...]:
    paths = [f.path for f in files]
    if path_clash(paths) is not None or len(set(paths)) != len(paths):
        raise ValueError("two files share a save path")
    return files


@dataclass(frozen=True, config=_STRICT, slots=True)
class LockedFile:
    """One file pinned: its save path in the model folder, its source, and exactly what it is."""

    path: Annotated[str, Strict(), AfterValidator(_safe_path)]  # save path inside the model folder
    size: Annotated[int, Strict(), Field(ge=0, le=2**63 - 1)]
    sha256: Annotated[str, Strict(), Field(pattern=r"^[0-9a-f]{64}$")]
    # hf://…@commit/path, or a URL sans secrets
    source: Annotated[
        str, Strict(), Field(min_length=1, max_length=8192), AfterValidator(_pinned_source)
    ]
    git_oid: _Hex40 | None = None  # git blob id of small (non-LFS) Hub files
    # the branch or tag a Hub file of a multi-file model was asked at
    revision: _Revision | None = None
    # its Xet hash (Hub files in Xet)
    xet: Annotated[str, Strict(), Field(pattern=r"^[0-9a-f]{64}$")] | None = None

    @property
    def hub(self) -> HubFileRef | None:  # None for a direct URL
        return parse_hub_source(self.source)


# a model's files, no two saved to one path
_Files = Annotated[tuple[LockedFile, ...], AfterValidator(_distinct_paths)]


@dataclass(frozen=True, config=_STRICT, slots=True)
class LockedModel:
    """One model pinned: its catalog entry's fingerprint (a changed entry makes it stale) and its
    files.
    """

    name: Annotated[str, Strict(), AfterValidator(_safe_name)]
    fingerprint: Annotated[str, Strict(), Field(pattern=r"^sha256:[0-9a-f]{64}$")]
    revision: _Revision | None = None
    commit: _Hex40 | None = None
    # Required (Field() sets no default) after two optional fields: a lock omits a None revision and
    # commit.
    files: _Files = Field(min_length=1)  # type: ignore[misc]


@dataclasses.dataclass(frozen=True)
class Lock:
    models: Mapping[str, LockedModel] = dataclasses.field(default_factory=dict)

    def fresh(self, spec: ModelSpec) -> LockedModel | None:
        """The model's locked entry when it exists and matches the catalog entry as it is now;
        else None.
        """
        locked = self.models.get(spec.name)
        return locked if locked is not None and locked.fingerprint == fingerprint(spec) else None

    def with_models(
        self, models: Mapping[str, LockedModel], *, keep: Callable[[str], bool]
    ) -> Lock:
        """This lock with ``models`` put in, keeping only the old entries ``keep`` accepts."""
        merged = {**{name: m for name, m in self.models.items() if keep(name)}, **models}
        return Lock(models=dict(sorted(merged.items())))


def fingerprint(spec: ModelSpec) -> str:
    """A hash of what in a catalog entry decides which bytes it means: not its description, tags or
    headers (how to ask, not what to get); a presigned URL's new signature does change it (the entry
    is re-resolved)."""
    doc: dict[str, Any] = {
        k: getattr(spec, k) for k in ("repo", "repo_type", "revision", "include", "exclude")
    }
    file_keys = ("repo", "path", "url", "revision", "repo_type", "sha256", "size")
    doc["files"] = [{"as": f.save_as, **{k: getattr(f, k) for k in file_keys}} for f in spec.files]
    # its model.sig is one of the model's files (whom it trusts is not: no bytes)
    if spec.signature is not None:
        doc["signature"] = spec.signature.file
    canonical = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def locked_from_resolved(
    spec: ModelSpec, resolved: ResolvedModel, sha256: Mapping[str, str]
) -> LockedModel:
    """The lock entry for a resolved model (``sha256``: digests the Hub did not give); UsageError
    if unlockable.
    """
    files: list[LockedFile] = []
    try:
        for remote in sorted(resolved.files, key=lambda r: r.path):
            digest = remote.sha256 or sha256.get(remote.path)
            if digest is None or remote.size is None:
                raise UsageError(
                    f"{spec.name}/{remote.path}: size and sha256 must be known to lock it"
                )
            if remote.hub:
                ref = parse_hub_source(remote.source)
                if ref is None or ref.commit is None:
                    raise UsageError(f"{spec.name}/{remote.path}: no commit to pin it to")
                revision = remote.revision if resolved.revision is None else None
                source = hub_source(ref.repo, ref.repo_type, ref.commit, ref.path)
                xet = remote.xet.hash if remote.xet is not None else None
                files.append(
                    LockedFile(
                        remote.path, remote.size, digest, source, remote.git_oid, revision, xet
                    )
                )
            else:
                files.append(LockedFile(remote.path, remote.size, digest, redact_url(remote.url)))
        return LockedModel(
            spec.name, fingerprint(spec), resolved.revision, resolved.commit, tuple(files)
        )
    except ValidationError as exc:
        raise UsageError(f"{spec.name}: cannot be locked: {validation_message(exc)}") from None


def validation_message(exc: ValidationError, *, at: str = "") -> str:
    """Pydantic's first error as the lock's key path (under ``at``) and message:
    ``model[2].files[3].sha256: …``.
    """
    first = exc.errors()[0]
    where = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in first["loc"])
    where = f"{at}{where}".removeprefix(".")
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] == "unexpected_keyword_argument":  # a dataclass's word for an unknown key
        message = "Extra inputs are not permitted"
    return f"{where}: {message}" if where else message


def resolved_from_locked(
    locked: LockedModel,
    *,
    file_url: FileUrl,
    token_url: TokenUrl,
    spec: ModelSpec | None,
    environ: Mapping[str, str],
    secrets: Secrets,
    parts: Mapping[str, PartHashes] | None = None,
) -> ResolvedModel:
    """The files to fetch for a locked model, with no Hub listing. Direct URLs come from the catalog
    entry (``spec``: a signed query and headers the lock never holds), else (``--frozen``) from the
    lock as written; a Hub file's Xet hash from the lock, its token asked for at the pinned commit;
    a file's range trust from the part hashes beside the lock (``parts``) held for its very bytes.
    """
    catalog_files = {f.save_path: f for f in spec.files} if spec is not None else {}
    from mdl.sources.resolve import RemoteFile, ResolvedModel, XetRef

    files: list[RemoteFile] = []
    for f in locked.files:
        ref = f.hub
        extra: dict[str, Any]
        if ref is not None and ref.commit is not None:
            url = file_url(ref.repo, ref.path, ref.repo_type, ref.commit)
            extra = {
                "git_oid": f.git_oid,
                "commit": ref.commit,
                "source": f.source,
                "hub": True,
                "repo": ref.repo,
            }
            extra["revision"] = f.revision or locked.revision
            extra["xet"] = (
                XetRef(f.xet, token_url(ref.repo, ref.repo_type, ref.commit)) if f.xet else None
            )
        else:
            entry = catalog_files.get(f.path)
            url = entry.url if entry is not None and entry.url else f.source
            secrets.add_url(url)  # a lock written by hand may hold a signed URL
            extra = {
                "source": redact_url(url),
                "headers": expand_headers(entry, environ) if entry is not None else (),
            }
            extra["typed"] = True  # the catalog's URL, or the lock's as written from it
        extra["trust"] = trust_for(parts, f.sha256, f.size) if parts else None
        files.append(
            RemoteFile(
                model=locked.name, path=f.path, url=url, size=f.size, sha256=f.sha256, **extra
            )
        )
    return ResolvedModel(locked.name, locked.revision, locked.commit, tuple(files))
