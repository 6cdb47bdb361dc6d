"""The catalog as the rest of mdl uses it: frozen FileSpec, ModelSpec, CatalogSettings and Catalog,
built by the validating reader (mdl.catalog._schema), which other parts never import: ``mdl get
URL`` stays free of pydantic."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field, make_dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mdl.catalog._lines import did_you_mean
from mdl.errors import CatalogWarning as CatalogWarning
from mdl.errors import UsageError
from mdl.paths import url_basename
from mdl.setting import SETTINGS

if TYPE_CHECKING:
    from mdl.signing.statement import Trust  # (a model's signature: loaded by what checks one)

NAME_RE = re.compile(r"[A-Za-z0-9._-]+")  # a model name, and each part of a repo id
# A model name is a folder under dest and part of mdl's file names under <dest>/.mdl/: no leading
# '.', bounded.
MAX_MODEL_NAME = 200


def is_model_name(name: str) -> bool:
    return (
        bool(NAME_RE.fullmatch(name)) and not name.startswith(".") and len(name) <= MAX_MODEL_NAME
    )


@dataclass(frozen=True)
class FileSpec:
    """One explicit file of a model: ``repo`` + ``path`` on the Hub, or a direct ``url``."""

    key_path: str
    repo: str | None = None
    path: str | None = None
    url: str | None = None
    revision: str | None = None
    repo_type: str | None = None
    sha256: str | None = None
    size: int | None = None
    save_as: str | None = None
    headers: tuple[tuple[str, str], ...] = ()

    @property
    def save_path(self) -> str:
        """Its path in the model folder: ``as``, else ``path``, else the URL's basename."""
        if self.save_as is not None:
            return self.save_as
        if self.path is not None:
            return self.path
        if self.url is not None:
            return url_basename(self.url, where=self.key_path)
        raise UsageError(f"{self.key_path}: a file needs 'repo' + 'path' or 'url'")


@dataclass(frozen=True)
class ModelSpec:
    """One catalog model: a whole-repo snapshot (``repo``), a list of explicit ``files``, or a
    model in an OCI registry (``oci``)."""

    name: str
    description: str = ""
    tags: tuple[str, ...] = ()
    repo: str | None = None
    repo_type: str = "model"
    revision: str = "main"
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    files: tuple[FileSpec, ...] = ()
    oci: str | None = None  # a model in an OCI registry: oci://REGISTRY/REPOSITORY[:TAG|@DIGEST]
    # whom its model.sig must be signed by (the catalog's, or [settings]'s)
    signature: Trust | None = None

    @property
    def is_snapshot(self) -> bool:
        return self.repo is not None


if TYPE_CHECKING:

    class CatalogSettings:  # what mypy sees of the class below: any [settings] key, by its name
        def __init__(self, **keys: Any) -> None: ...
        def __getattr__(self, name: str) -> Any: ...


# The optional [settings] table, as written (flags and environment override it elsewhere): the
# table's keys
else:
    # (None or (): not written), and the (template, endpoint) of its s3:// mirrors that name their
    # own endpoint.
    CatalogSettings = make_dataclass(
        "CatalogSettings",
        [
            (s.name, object, field(default=() if s.kind == "urls" else None))
            for s in SETTINGS
            if s.catalog
        ]
        + [("mirror_endpoints", object, field(default=()))],
        namespace={"__doc__": "The [settings] table as written."},  # (else one from its signature)
        frozen=True,
    )


@dataclass(frozen=True)
class Catalog:
    """A validated catalog; ``Catalog()`` is the empty catalog used when none is found."""

    path: Path | None = None
    settings: CatalogSettings = field(default_factory=CatalogSettings)
    models: tuple[ModelSpec, ...] = ()

    def get(self, name: str) -> ModelSpec:
        """The model called ``name``; UsageError with a did-you-mean hint."""
        for model in self.models:
            if model.name == name:
                return model
        where = f"in {self.path}" if self.path is not None else "(no catalog found)"
        suggestion = did_you_mean(name, [m.name for m in self.models])
        raise UsageError(
            f"unknown model {name!r} {where}{suggestion}",
            hint="run 'mdl list' to see the catalog's models",
        )

    def select(self, names: Sequence[str], *, all_models: bool) -> list[ModelSpec]:
        """The named models in the order given, without duplicates; every model when
        ``all_models``.
        """
        # Validate even with --all so that a typo is reported rather than silently ignored.
        chosen = {name: self.get(name) for name in names}
        if all_models:
            return list(self.models)
        if not chosen:
            raise UsageError("name at least one model, or pass --all")
        return list(chosen.values())
