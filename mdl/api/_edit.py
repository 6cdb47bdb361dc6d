"""``add``, ``init`` and ``remove``: the catalog file, edited with its comments kept."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from mdl.api._context import environ_now
from mdl.api._inputs import checked
from mdl.progress import NullProgress, Progress
from mdl.setting import StrPath

if TYPE_CHECKING:
    from mdl.catalog import edit as catalog_edit
    from mdl.redact import Secrets


@checked
def add(
    name: str,
    *sources: str,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    save_as: str | None = None,
    sha256: str | None = None,
    description: str | None = None,
    tags: Sequence[str] = (),
    signed_by: StrPath | None = None,
    force: bool = False,
    check: bool = True,
    catalog: StrPath | None = None,
    timeout: float | None = None,
    environ: Mapping[str, str] | None = None,
    progress: Progress | None = None,
    secrets: Secrets | None = None,
) -> catalog_edit.CatalogChange:
    """Add model ``name`` (a whole ``hf://`` repo, or files and URLs) to the catalog, keeping its
    comments; set its ``description``, add ``tags`` (``force``: replace them), trust signatures by
    the public key ``signed_by`` (``force``: instead of another signer), on an entry that is there
    without any source too."""
    from mdl.download.catalog_edits import add_model

    entry: catalog_edit.EntryFields = {
        "include": include,
        "exclude": exclude,
        "save_as": save_as,
        "sha256": sha256,
        "description": description,
        "tags": tags,
        "signed_by": None if signed_by is None else Path(signed_by),
        "force": force,
    }
    return add_model(
        name,
        sources,
        entry,
        check=check,
        catalog=catalog,
        timeout=timeout,
        environ=environ_now(environ),
        progress=progress or NullProgress(),
        secrets=secrets,
    )


@checked
def init(
    catalog: StrPath | None = None,
    *,
    force: bool = False,
    project: bool = False,
    environ: Mapping[str, str] | None = None,
) -> catalog_edit.CatalogInit:
    """Write the commented starter catalog where mdl looks for one: ``catalog``, else
    ``$MDL_CATALOG``, else the user config one (then found from any folder); ``project``: an empty
    catalog, ``catalog`` else ./catalog.toml (a project's own, as ``uv init`` writes). An existing
    file is refused (UsageError) unless ``force``."""
    from mdl.catalog import files as catalog_files

    return catalog_files.init_catalog(
        catalog=catalog, force=force, project=project, environ=environ_now(environ)
    )


@checked
def remove(
    name: str,
    *,
    catalog: StrPath | None = None,
    dry_run: bool = False,
    environ: Mapping[str, str] | None = None,
) -> catalog_edit.CatalogChange:
    """Take model ``name`` out of the catalog (every other byte kept) and catalog.lock (``dry_run``:
    check it could, write nothing); downloaded files stay (:func:`prune` with ``only=name`` removes
    them)."""
    from mdl.download.catalog_edits import remove_model

    return remove_model(name, catalog=catalog, environ=environ_now(environ), dry_run=dry_run)
