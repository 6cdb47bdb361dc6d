"""The lock's rules (strict types, hex digests, safe paths and names, Hub sources pinned to a
commit, no two files at one save path), checked by pydantic as a lock is read or made (a resolved
model's entry: :func:`locked_from_resolved`); what they build is the plain
:class:`mdl.lockfile.model.LockedModel` the rest of mdl uses. Loaded only when a
lock is checked: a lock remembered by its bytes (mdl.lockfile.remembered) is read without pydantic.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import AfterValidator, ConfigDict, Field, Strict, TypeAdapter, ValidationError
from pydantic.dataclasses import dataclass

from mdl.catalog.specs import MAX_MODEL_NAME, ModelSpec, is_model_name
from mdl.errors import UsageError
from mdl.lockfile import model
from mdl.lockfile.model import fingerprint
from mdl.paths import GIT_OID_HEX, oci_source_problem, path_clash, path_problem, repo_id_problem
from mdl.redact import printable, redact_url
from mdl.store.layout import hub_source, parse_hub_source

if TYPE_CHECKING:
    from mdl.sources.resolve import ResolvedModel

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
    elif value.startswith("oci://"):
        if (problem := oci_source_problem(value)) is not None:
            raise ValueError(problem)
    elif not value.startswith(("http://", "https://", "s3://", "file:///")):
        # (s3://, file:///: a signature kept in the team's bucket, the object a lock found it at)
        raise ValueError(
            "a source is hf://…, oci://…, an http(s) URL, or a bucket's s3:// or file:/// URI"
        )
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


# Named as the plain types are: pydantic's messages name the class ("an instance of LockedFile").
@dataclass(frozen=True, config=_STRICT, slots=True)
class LockedFile:
    """The rules of :class:`mdl.lockfile.model.LockedFile`, field for field."""

    path: Annotated[str, Strict(), AfterValidator(_safe_path)]  # save path inside the model folder
    size: Annotated[int, Strict(), Field(ge=0, le=2**63 - 1)]
    sha256: Annotated[str, Strict(), Field(pattern=r"^[0-9a-f]{64}$")]
    source: Annotated[
        str, Strict(), Field(min_length=1, max_length=8192), AfterValidator(_pinned_source)
    ]
    git_oid: _Hex40 | None = None
    revision: _Revision | None = None
    xet: Annotated[str, Strict(), Field(pattern=r"^[0-9a-f]{64}$")] | None = None

    def plain(self) -> model.LockedFile:
        return model.LockedFile(
            self.path, self.size, self.sha256, self.source, self.git_oid, self.revision, self.xet
        )


# a model's files, no two saved to one path
_Files = Annotated[tuple[LockedFile, ...], AfterValidator(_distinct_paths)]


@dataclass(frozen=True, config=_STRICT, slots=True)
class LockedModel:
    """The rules of :class:`mdl.lockfile.model.LockedModel`, field for field."""

    name: Annotated[str, Strict(), AfterValidator(_safe_name)]
    fingerprint: Annotated[str, Strict(), Field(pattern=r"^sha256:[0-9a-f]{64}$")]
    revision: _Revision | None = None
    commit: _Hex40 | None = None
    # Required (Field() sets no default) after two optional fields: a lock omits a None revision and
    # commit.
    files: _Files = Field(min_length=1)  # type: ignore[misc]

    def plain(self) -> model.LockedModel:
        files = tuple(f.plain() for f in self.files)
        return model.LockedModel(self.name, self.fingerprint, self.revision, self.commit, files)


_FILE = TypeAdapter(LockedFile)
_MODEL = TypeAdapter(LockedModel)


def file_table(table: Any) -> LockedFile:
    """A lock's file table checked; ValidationError says what is wrong."""
    return _FILE.validate_python(table)


def model_table(table: Any) -> model.LockedModel:
    """A lock's model table (its files checked already, or tables) checked; ValidationError."""
    return _MODEL.validate_python(table).plain()


def checked_model(
    name: str,
    fingerprint: str,
    revision: str | None,
    commit: str | None,
    files: tuple[tuple[str, int, str, str, str | None, str | None, str | None], ...],
) -> model.LockedModel:
    """A model to lock, from its fields and each file's (path, size, sha256, source, git_oid,
    revision, xet); ValidationError when a rule is broken."""
    checked = tuple(LockedFile(*fields) for fields in files)
    return LockedModel(name, fingerprint, revision, commit, checked).plain()


def locked_from_resolved(
    spec: ModelSpec, resolved: ResolvedModel, sha256: Mapping[str, str]
) -> model.LockedModel:
    """The lock entry for a resolved model (``sha256``: digests the Hub did not give), checked by
    the lock's rules; UsageError if unlockable.
    """
    files: list[tuple[str, int, str, str, str | None, str | None, str | None]] = []
    for remote in sorted(resolved.files, key=lambda r: r.path):
        digest = remote.sha256 or sha256.get(remote.path)
        if digest is None or remote.size is None:
            raise UsageError(f"{spec.name}/{remote.path}: size and sha256 must be known to lock it")
        if not remote.hub:
            # a registry's file: its source pins the manifest (a blob URL is no version)
            oci = remote.source.startswith("oci://")
            source = remote.source if oci else redact_url(remote.url)
            files.append((remote.path, remote.size, digest, source, None, None, None))
            continue
        ref = parse_hub_source(remote.source)
        if ref is None or ref.commit is None:
            raise UsageError(f"{spec.name}/{remote.path}: no commit to pin it to")
        revision = remote.revision if resolved.revision is None else None
        source = hub_source(ref.repo, ref.repo_type, ref.commit, ref.path)
        xet = remote.xet.hash if remote.xet is not None else None
        files.append((remote.path, remote.size, digest, source, remote.git_oid, revision, xet))
    try:
        return checked_model(
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
