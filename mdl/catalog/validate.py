"""Check a parsed catalog against the schema and build the frozen specs; errors name file, line and key path.

Pydantic reports every problem with a ``loc``; users get the first one in the file, as one line:
``catalog.toml:4: models.z.files[1].as: must be a relative path …``. The schema is walked along ``loc``
to find what a table allows (for "did you mean") and what a value must be (for "must be X, got Y").
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from mdl.catalog.keys import KeyPath, did_you_mean, format_key, format_path, toml_type
from mdl.catalog.lines import LineIndex
from mdl.catalog.schema import CatalogDocument, Expect, ModelEntry, Table
from mdl.catalog.specs import Catalog, FileSpec, ModelSpec
from mdl.errors import CatalogError

# "must be …" for pydantic's strict type errors where the schema has no Expect of its own.
_TYPE_PHRASES = {
    "string_type": "a string",
    "int_type": "an integer",
    "float_type": "a number",
    "bool_type": "a boolean",
    "list_type": "an array",
    "dict_type": "a table",
    "model_type": "a table",
}


def validate_catalog(document: dict[str, Any], *, source: str, text: str, path: Path | None) -> Catalog:
    """The catalog that tomllib's ``document`` describes; CatalogError for the first problem in ``text``."""
    where = _Where(source, text)
    try:
        valid = CatalogDocument.model_validate(document)
    except ValidationError as exc:
        raise CatalogError(where.first_problem(exc.errors())) from exc
    models = tuple(_model_spec(name, entry, where) for name, entry in valid.models.items())
    return Catalog(path=path, settings=valid.settings.to_spec(), models=models)


class _Where:
    """Turns key paths into ``file:line: key.path`` and pydantic's errors into our one-line messages."""

    def __init__(self, source: str, text: str) -> None:
        self.source = source
        self.lines = LineIndex(text)

    def __call__(self, path: KeyPath) -> str:
        """``file:line: key.path`` (line when it can be found, key path when there is one)."""
        line = self.lines.line_of(path)
        head = f"{self.source}:{line}" if line is not None else self.source
        return f"{head}: {format_path(path)}" if path else head

    def first_problem(self, errors: Sequence[ErrorDetails]) -> str:
        """The message for the error written first in the file (pydantic's order breaks ties)."""

        def rank(item: tuple[int, ErrorDetails]) -> tuple[bool, int, int]:
            line = self.lines.line_of(_key_path(item[1]))
            return line is None, line or 0, item[0]

        _, error = min(enumerate(errors), key=rank)
        path = _key_path(error)
        return f"{self(path)}: {_message(error, path)}"


def _key_path(error: ErrorDetails) -> KeyPath:
    """pydantic's ``loc`` as our key path: a bad dict key is the key itself; our errors may point deeper."""
    loc = tuple(error["loc"])
    if loc and loc[-1] == "[key]":
        loc = loc[:-1]
    if error["type"] == "mdl_catalog":
        loc = (*loc, *error.get("ctx", {}).get("at", ()))
    return loc


def _message(error: ErrorDetails, path: KeyPath) -> str:
    """What is wrong at ``path``, in the words users have always seen."""
    kind = error["type"]
    if kind == "mdl_catalog":
        return str(error.get("ctx", {}).get("message", error["msg"]))
    if kind == "extra_forbidden":
        owner, _ = _schema_at(path[:-1])
        allowed = owner.keys() if isinstance(owner, type) and issubclass(owner, Table) else []
        hint = did_you_mean(str(path[-1]), allowed) or (f" (allowed: {', '.join(allowed)})" if allowed else "")
        return f"unknown key{hint}"
    if kind in _TYPE_PHRASES:
        _, metadata = _schema_at(path)
        phrase = next((m.phrase for m in metadata if isinstance(m, Expect)), _TYPE_PHRASES[kind])
        name = format_key(path[-1]) if path and isinstance(path[-1], str) else ""
        return f"must be {phrase.replace('{name}', name)}, got {toml_type(error['input'])}"
    # Not expected from TOML input; still one line, never a traceback.
    return f"is not valid: {error['msg']}"


def _schema_at(path: KeyPath) -> tuple[Any, tuple[Any, ...]]:
    """The type the schema declares at ``path`` and its annotation metadata; (None, ()) where it has none."""
    hint: Any = CatalogDocument
    metadata: tuple[Any, ...] = ()
    for part in path:
        hint, _ = _bare(hint)
        if isinstance(hint, type) and issubclass(hint, Table) and isinstance(part, str):
            field = next((f for name, f in hint.model_fields.items() if (f.alias or name) == part), None)
            if field is None:
                return None, ()
            hint, metadata = field.annotation, tuple(field.metadata)
        elif get_origin(hint) is list and isinstance(part, int):
            hint, metadata = get_args(hint)[0], ()
        elif get_origin(hint) is dict:
            hint, metadata = get_args(hint)[1], ()
        else:
            return None, ()
    hint, inner = _bare(hint)
    return hint, metadata + inner


def _bare(hint: Any) -> tuple[Any, tuple[Any, ...]]:
    """``hint`` without ``| None`` and ``Annotated[…]``, and the metadata that Annotated carried."""
    metadata: tuple[Any, ...] = ()
    while True:
        if get_origin(hint) is Annotated:
            metadata += hint.__metadata__
            hint = get_args(hint)[0]
        elif get_origin(hint) in (Union, UnionType):
            rest = [arg for arg in get_args(hint) if arg is not type(None)]
            if len(rest) != 1:
                return hint, metadata
            hint = rest[0]
        else:
            return hint, metadata


def _model_spec(name: str, entry: ModelEntry, where: _Where) -> ModelSpec:
    """The frozen spec of one valid model table."""
    base: KeyPath = ("models", name)
    if entry.files is None:
        return ModelSpec(
            name=name,
            description=entry.description,
            tags=tuple(entry.tags),
            repo=entry.repo,
            repo_type=entry.repo_type,
            revision=entry.revision,
            include=tuple(entry.include),
            exclude=tuple(entry.exclude),
        )
    files = tuple(file.to_spec(format_path((*base, "files", i))) for i, file in enumerate(entry.files))
    _check_save_paths(files, base, where)
    return ModelSpec(name=name, description=entry.description, tags=tuple(entry.tags), files=files)


def _check_save_paths(files: Sequence[FileSpec], model_path: KeyPath, where: _Where) -> None:
    """Two files must not save to the same path, nor one to a folder that another needs as a file.

    Checked here rather than in the schema because the message names the other entry's key path.
    """
    owners: dict[str, int] = {}
    folders: dict[str, int] = {}
    for index, spec in enumerate(files):
        target = spec.save_path
        clash: str | None = None
        if target in owners:
            clash = f"saves to {target!r}, as {files[owners[target]].key_path} does; set 'as' on one of them"
        elif target in folders:
            clash = f"saves to {target!r}, which {files[folders[target]].key_path} needs as a folder"
        parents = target.split("/")[:-1]
        for depth in range(1, len(parents) + 1):
            folder = "/".join(parents[:depth])
            if clash is None and folder in owners:
                other = files[owners[folder]].key_path
                clash = f"saves to {target!r}, inside {folder!r}, which {other} saves as a file"
            folders.setdefault(folder, index)
        if clash is not None:
            raise CatalogError(f"{where((*model_path, 'files', index))}: {clash}")
        owners[target] = index
