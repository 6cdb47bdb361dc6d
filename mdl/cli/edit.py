"""``mdl init``, ``mdl add`` and ``mdl remove``: write a starter (or an empty project) catalog.toml,
edit one (comments and layout kept) and catalog.lock with it."""

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Unpack

import typer

from mdl import api
from mdl.cli.download import render_prune, say_pruned
from mdl.cli.options import DryRunOpt, NameArg, command, complete_model_names
from mdl.cli.run import Run
from mdl.setting import SETTING, Adding, InCatalog, Places

if TYPE_CHECKING:
    from mdl.catalog import edit as catalog_edit

_SAID = {
    "added": "added {name} to {catalog}",
    "extended": "added {files} to {name} in {catalog}",
    "replaced": "replaced {name} in {catalog}",
    "updated": "updated {name} in {catalog}",
    "unchanged": "{name} is already in {catalog} as asked; nothing changed",
    "removed": (
        "removed {name} from {catalog} (files already downloaded stay: `mdl prune` removes them)"
    ),
}


CATALOG = SETTING["catalog"]


@command()
def init_cmd(
    run: Run,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing catalog.")] = False,
    project: Annotated[
        bool,
        typer.Option(
            "--project",
            help=(
                "Write an empty catalog.toml in this folder (or at --catalog): a project's own, "
                "which `mdl add` fills and every mdl command run here reads."
            ),
        ),
    ] = False,
    **where: Unpack[InCatalog],
) -> None:
    """Write a commented starter catalog (tiny-bert and more) where mdl finds it: --catalog PATH,
    else $MDL_CATALOG, else the user config folder, read from any folder without a catalog.toml of
    its own; with --project, an empty ./catalog.toml for this folder's project."""
    done = api.init(**where, force=force, project=project, environ=run.environ)
    if run.json:
        run.emit(done.to_json())
    else:
        run.line(str(done.catalog))
    what = "an empty catalog" if done.empty else "the starter catalog"
    run.console.info(f"{'replaced' if done.replaced else 'wrote'} {done.catalog} with {what}")
    then = (
        "add models: mdl add NAME hf://owner/name"
        if done.empty
        else "try: mdl list, mdl pull tiny-bert"
    )
    if done.found == done.catalog:
        place = "from any folder without a catalog.toml of its own" if done.fallback else "here"
        run.console.info(f"mdl reads it {place}; {then}")
    # ./catalog.toml (or $MDL_CATALOG's) comes first here: what the user just wrote is not used
    elif done.fallback:
        run.console.warn(
            f"in this folder mdl reads {done.found} first; other folders use the new one"
        )
    # ./catalog.toml, but $MDL_CATALOG comes first in every folder
    elif done.empty and where["catalog"] is None:
        named = run.environ.get(CATALOG.env, "")
        run.console.warn(
            f"{CATALOG.env}={named} comes first in every folder; unset it to use {done.catalog}"
        )
    else:
        run.console.info(
            f"use it with {CATALOG.flag} {done.catalog} (or {CATALOG.env}={done.catalog}); {then}"
        )


@command()
def add_cmd(
    run: Run,
    name: Annotated[
        str,
        typer.Argument(
            help="Model name (new, or one to add files to).", autocompletion=complete_model_names
        ),
    ],
    sources: Annotated[
        list[str] | None,
        typer.Argument(
            help=(
                "hf://[datasets/|spaces/]owner/name[@rev] (a whole repo), "
                "hf://owner/name[@rev]/path (a file; several build a multi-file model) or https:// "
                "URLs; none to change only --description, --tag and --signed-by."
            )
        ),
    ] = None,
    include: Annotated[
        list[str] | None,
        typer.Option("--include", help="Only repo files matching this glob (repeatable)."),
    ] = None,
    exclude: Annotated[
        list[str] | None,
        typer.Option("--exclude", help="Leave out repo files matching this glob (repeatable)."),
    ] = None,
    save_as: Annotated[
        str | None, typer.Option("--as", help="Save the (single) file under this path.")
    ] = None,
    sha256: Annotated[
        str | None, typer.Option("--sha256", help="Expected sha256 of the (single) file.")
    ] = None,
    description: Annotated[
        str | None,
        typer.Option("--description", help="The entry's description (`mdl list` shows it)."),
    ] = None,
    tag: Annotated[
        list[str] | None,
        typer.Option(
            "--tag",
            help="Add a tag, kept once (repeatable; with --force they replace the entry's tags).",
        ),
    ] = None,
    signed_by: Annotated[
        Path | None,
        typer.Option(
            "--signed-by",
            help=(
                "Pull it only if its model.sig verifies with this public key (PEM): the entry's"
                " signature key, "
                "written relative to the catalog's folder when the key is in it, else absolute."
            ),
        ),
    ] = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help=(
                "Replace what the entry says (another repo, a file at the same path, its tags, its"
                " signer)."
            ),
        ),
    ] = False,
    no_check: Annotated[
        bool,
        typer.Option(
            "--no-check", help="Do not ask the Hub or the server whether the source exists."
        ),
    ] = False,
    **where: Unpack[Adding],
) -> int:
    """Add a model to the catalog, or files to one, keeping the file's comments and layout (checked
    upstream); set its description, tags and signer."""
    with run.reporter() as progress:
        change = api.add(
            name,
            *(sources or ()),
            include=include or (),
            exclude=exclude or (),
            save_as=save_as,
            sha256=sha256,
            description=description,
            tags=tag or (),
            signed_by=signed_by,
            force=force,
            check=not no_check,
            **where,
            environ=run.environ,
            progress=progress,
            secrets=run.secrets,
        )
    return _render(run, change)


@command()
def remove_cmd(
    run: Run,
    name: NameArg,
    prune: Annotated[
        bool,
        typer.Option(
            "--prune",
            help="Then remove its downloaded files and records (`mdl prune` for this model).",
        ),
    ] = False,
    dry_run: DryRunOpt = False,
    **where: Unpack[Places],
) -> int:
    """Take a model out of the catalog (and catalog.lock); every other line stays as written. Its
    downloaded files stay unless --prune is given. --dry-run shows what would go (with --prune, the
    files as `mdl prune --dry-run` lists them) and changes nothing. A path (./DIR) removes what
    `mdl get` saved in that folder instead."""
    if _a_folder(name):  # what get saved there (a model name has no '/' and no leading '.')
        if where["dest"] is not None or where["layout"] is not None:
            raise typer.BadParameter(f"{name} is a folder: --dest and --layout name models' places")
        return render_prune(run, api.remove_fetched(name, dry_run=dry_run), say_pruned)
    if not prune and (where["dest"] is not None or where["layout"] is not None):
        raise typer.BadParameter("--dest and --layout say where --prune removes files; add --prune")
    change = api.remove(name, catalog=where["catalog"], dry_run=dry_run, environ=run.environ)
    would = {"dry_run": True} if dry_run else {}
    if not prune:
        return _render(
            run, change, more=would, said="would remove {name} from {catalog}" if dry_run else None
        )
    report = api.prune(
        only=change.model, as_removed=True, dry_run=dry_run, **where, environ=run.environ
    )
    said = "would remove {name} from {catalog}" if dry_run else "removed {name} from {catalog}"
    code = _render(run, change, more={**would, "pruned": report.to_json()}, said=said)
    return render_prune(run, report, say_pruned, emit=False) or code


def _a_folder(name: str) -> bool:
    """``mdl remove ./DIR`` (or any path): a folder ``get`` saved into, not a catalog model."""
    return "/" in name or name.startswith(".")


def _render(
    run: Run,
    change: "catalog_edit.CatalogChange",
    *,
    more: dict[str, Any] | None = None,
    said: str | None = None,
) -> int:
    """The JSON document, or one line on stderr (stdout is for data; an edit has none to print);
    the exit code.
    """
    if run.json:
        run.emit({**change.to_json(), **(more or {})})
    if change.created:
        run.console.info(f"created {change.catalog}")
    if not run.json:
        say_change(run, change, said=said, dry_run=bool((more or {}).get("dry_run")))
    if change.warning is not None:
        run.console.warn(change.warning)
    if change.lock_error and change.exit_code:
        run.console.error(
            change.lock_error, hint=f"the catalog was updated; run 'mdl lock {change.model}'"
        )
    elif change.lock_error:
        run.console.warn(change.lock_error)
    return change.exit_code


def say_change(
    run: Run, change: "catalog_edit.CatalogChange", *, said: str | None, dry_run: bool
) -> None:
    """What the edit did (``said``, else its action's words), to which catalog, and its lock."""
    # not this folder's: say whose, and how a project gets its own
    if change.user_catalog:
        run.console.info(
            f"{change.catalog} is your user catalog, read in every folder without a catalog.toml of"
            " its own; `mdl init --project` starts one in this folder"
        )
    words = said or _SAID[change.action]
    files = ", ".join(change.added)
    run.console.info(words.format(name=change.model, catalog=change.catalog, files=files))
    if change.lock is not None:
        run.console.info(f"{'would update' if dry_run else 'updated'} {change.lock}")
