"""``mdl add`` and ``mdl remove``: edit catalog.toml (comments and layout kept) and catalog.lock with it."""

from typing import TYPE_CHECKING, Annotated, Any

import typer

from mdl import api
from mdl.cli.download import render_prune
from mdl.cli.options import NameArg, TimeoutOpt, command, complete_model_names
from mdl.cli.run import Run

if TYPE_CHECKING:
    from mdl.catalog import edit as catalog_edit

_SAID = {
    "added": "added {name} to {catalog}",
    "extended": "added {files} to {name} in {catalog}",
    "replaced": "replaced {name} in {catalog}",
    "unchanged": "{name} is already in {catalog} as asked; nothing changed",
    "removed": "removed {name} from {catalog} (files already downloaded stay: `mdl prune` removes them)",
}


@command(where=("catalog",))
def add_cmd(
    run: Run,
    name: Annotated[
        str, typer.Argument(help="Model name (new, or one to add files to).", autocompletion=complete_model_names)
    ],
    sources: Annotated[
        list[str],
        typer.Argument(
            help="hf://[datasets/|spaces/]owner/name[@rev] (a whole repo), hf://owner/name[@rev]/path (a file; "
            "several build a multi-file model) or https:// URLs."
        ),
    ],
    include: Annotated[
        list[str] | None, typer.Option("--include", help="Only repo files matching this glob (repeatable).")
    ] = None,
    exclude: Annotated[
        list[str] | None, typer.Option("--exclude", help="Leave out repo files matching this glob (repeatable).")
    ] = None,
    save_as: Annotated[str | None, typer.Option("--as", help="Save the (single) file under this path.")] = None,
    sha256: Annotated[str | None, typer.Option("--sha256", help="Expected sha256 of the (single) file.")] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Replace what the entry says (another repo, a file at the same path).")
    ] = False,
    no_check: Annotated[
        bool, typer.Option("--no-check", help="Do not ask the Hub or the server whether the source exists.")
    ] = False,
    timeout: TimeoutOpt = None,
    **where: Any,
) -> int:
    """Add a model to the catalog, or files to one, keeping the file's comments and layout (checked upstream)."""
    change = run.call(
        api.add,
        name,
        *sources,
        include=include or (),
        exclude=exclude or (),
        save_as=save_as,
        sha256=sha256,
        force=force,
        check=not no_check,
        **where,
        timeout=timeout,
    )
    return _render(run, change)


@command(where=("dest", "layout", "catalog"), progress=False)
def remove_cmd(
    run: Run,
    name: NameArg,
    prune: Annotated[
        bool,
        typer.Option("--prune", help="Then remove its downloaded files and records (`mdl prune` for this model)."),
    ] = False,
    **where: Any,
) -> int:
    """Take a model out of the catalog (and catalog.lock); every other line stays as written. Its downloaded files
    stay unless --prune is given."""
    if not prune and (where["dest"] is not None or where["layout"] is not None):
        raise typer.BadParameter("--dest and --layout say where --prune removes files; add --prune")
    change = api.remove(name, catalog=where["catalog"], environ=run.environ)
    if not prune:
        return _render(run, change)
    report = api.prune(only=change.model, **where, environ=run.environ)
    code = _render(run, change, more={"pruned": report.to_json()}, said="removed {name} from {catalog}")
    return render_prune(run, report, emit=False) or code


def _render(
    run: Run, change: "catalog_edit.CatalogChange", *, more: dict[str, Any] | None = None, said: str | None = None
) -> int:
    """The JSON document, or one line on stderr (stdout is for data; an edit has none to print); the exit code."""
    if run.json:
        run.emit({**change.to_json(), **(more or {})})
    if change.created:
        run.console.info(f"created {change.catalog}")
    files = ", ".join(change.added)
    if not run.json:
        run.console.info((said or _SAID[change.action]).format(name=change.model, catalog=change.catalog, files=files))
        if change.lock is not None:
            run.console.info(f"updated {change.lock}")
    if change.lock_error and change.exit_code:
        run.console.error(change.lock_error, hint=f"the catalog was updated; run 'mdl lock {change.model}'")
    elif change.lock_error:
        run.console.warn(change.lock_error)
    return change.exit_code
