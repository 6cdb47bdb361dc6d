"""The lock's schema in pydantic: strict types, hex digests, safe save paths, a known version."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from huggingface_hub.errors import HFValidationError
from huggingface_hub.utils import validate_repo_id  # type: ignore[attr-defined]
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from mdl.errors import CatalogError
from mdl.lockfile.model import LOCK_VERSION, Lock, LockedFile, LockedModel
from mdl.paths import path_clash, path_problem
from mdl.redact import printable
from mdl.store import parse_hub_source

_Hex64 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
_Hex40 = Annotated[str, Field(pattern=r"^[0-9a-f]{40}$")]
_Size = Annotated[int, Field(ge=0, le=2**63 - 1)]
# A model name is a folder under dest and part of mdl's file names under .mdl/, as in the catalog: with --frozen
# the names come from the lock alone, so "../x" here would write outside dest.
_MODEL_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,199}")


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, frozen=True, extra="forbid")


class _File(_Strict):
    path: str
    size: _Size
    sha256: _Hex64
    source: Annotated[str, Field(min_length=1, max_length=8192)]
    git_oid: _Hex40 | None = None
    revision: Annotated[str, Field(min_length=1, max_length=256)] | None = None

    @field_validator("path")
    @classmethod
    def _safe_path(cls, value: str) -> str:
        problem = path_problem(value)
        if problem is not None:
            raise ValueError(f"unsafe save path {printable(value, limit=120)!r}: {problem}")
        return value

    @field_validator("source")
    @classmethod
    def _pinned_source(cls, value: str) -> str:
        if value.startswith("hf://"):
            ref = parse_hub_source(value)
            if ref is None or ref.commit is None or len(ref.commit) != 40:
                raise ValueError("a Hub source must be hf://owner/name@<40-hex commit>/path")
            if any(c not in "0123456789abcdef" for c in ref.commit):
                raise ValueError("a Hub source must be pinned to a 40-hex commit")
            try:
                validate_repo_id(ref.repo)  # the rule hf_hub_url applies when the file's URL is built
            except HFValidationError:
                raise ValueError(f"not a Hub repo id: {printable(ref.repo, limit=120)!r}") from None
            problem = path_problem(ref.path)
            if problem is not None:
                raise ValueError(f"unsafe path in the repo {printable(ref.path, limit=120)!r}: {problem}")
        elif not value.startswith(("http://", "https://")):
            raise ValueError("a source is hf://… or an http(s) URL")
        return value


class _Model(_Strict):
    name: str
    fingerprint: Annotated[str, Field(pattern=r"^sha256:[0-9a-f]{64}$")]
    revision: Annotated[str, Field(min_length=1, max_length=256)] | None = None
    commit: _Hex40 | None = None
    files: Annotated[list[_File], Field(min_length=1)]

    @field_validator("name")
    @classmethod
    def _safe_name(cls, value: str) -> str:
        if not _MODEL_NAME.fullmatch(value):
            raise ValueError(
                "model names use letters, digits, '.', '_' and '-', do not start with '.' and are at most "
                f"200 characters, got {printable(value, limit=120)!r}"
            )
        return value


class _Lock(_Strict):
    version: Literal[1]
    model: list[_Model] = []


def validate_lock(document: dict[str, Any], *, source: str) -> Lock:
    """The lock in ``document``, or CatalogError naming ``source`` and the first bad key."""
    version = document.get("version")
    if isinstance(version, bool) or (isinstance(version, int) and version < LOCK_VERSION):
        raise CatalogError(
            f"{source}: version: must be {LOCK_VERSION}, got {version!r}", hint="run 'mdl lock' to write it again"
        )
    if isinstance(version, int) and version > LOCK_VERSION:
        raise CatalogError(
            f"{source}: lock version {version} is newer than this mdl understands ({LOCK_VERSION})",
            hint="upgrade mdl, or run 'mdl lock' to write a version 1 lock",
        )
    try:
        parsed = _Lock.model_validate(document)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = _where(first["loc"])
        message = first["msg"].removeprefix("Value error, ")
        raise CatalogError(
            f"{source}: {where}: {message}" if where else f"{source}: {message}",
            hint="run 'mdl lock' to write it again",
        ) from None
    models: dict[str, LockedModel] = {}
    for index, m in enumerate(parsed.model):
        if m.name in models:
            raise CatalogError(f"{source}: model[{index}].name: {m.name!r} appears twice")
        clash = path_clash(f.path for f in m.files)
        paths = [f.path for f in m.files]
        if clash is not None or len(set(paths)) != len(paths):
            raise CatalogError(f"{source}: model[{index}].files: two files share a save path")
        files = tuple(LockedFile(f.path, f.size, f.sha256, f.source, f.git_oid, f.revision) for f in m.files)
        models[m.name] = LockedModel(m.name, m.fingerprint, m.revision, m.commit, files)
    return Lock(models=dict(sorted(models.items())))


def _where(loc: tuple[int | str, ...]) -> str:
    """Pydantic's location as the lock's key path: ``model[2].files[3].sha256``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out
