"""``mdl list``, ``mdl show`` and ``mdl resolve``: what the catalog holds, what is on disk, what
is upstream.
"""

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Annotated, Any, Unpack

import typer

from mdl import api
from mdl.cli.options import AllOpt, NameArg, NamesArg, StatusChoice, command
from mdl.cli.render.console import fit_path, table_width
from mdl.cli.run import Run
from mdl.cli.stdout import unread_if_failing
from mdl.setting import Asking, Pinned
from mdl.units import human_size, plural

if TYPE_CHECKING:
    from mdl.store.inventory import ModelInfo, ModelList


@command(output_only=True)
def list_cmd(
    run: Run,
    status: Annotated[
        StatusChoice | None, typer.Option("--status", help="Only models in this state.")
    ] = None,
    tag: Annotated[str | None, typer.Option("--tag", help="Only models with this tag.")] = None,
    **where: Unpack[Pinned],
) -> None:
    """The catalog with each model's local status (offline)."""
    listing = api.list_models(status=status, tag=tag, **where, environ=run.environ)
    if run.json:
        run.emit(listing.to_json())
        return
    earlier = listing.earlier
    rows = [
        {
            **m.list_json(),
            "status": (
                _status_text(m.status, m.unverified)
                + _signed_text(m.signature, short=True)
                + (", update available" if m.update_available else "")
                + (
                    f", older revisions {human_size(older)}"
                    if (older := earlier[m.spec.name])
                    else ""
                )
            ),
            "size": human_size(m.size) if m.size is not None else "-",
        }
        for m in listing.models
    ]
    run.table(
        rows,
        [
            ("name", "NAME"),
            ("status", "STATUS"),
            ("files", "FILES"),
            ("size", "SIZE"),
            ("description", "DESCRIPTION"),
        ],
    )
    _one_offs(run, listing)


def _one_offs(run: Run, listing: "ModelList") -> None:
    """What get fetched (stdout, after the catalog's models: data), and the total (stderr)."""
    if listing.one_offs:
        run.line("", "fetched by mdl get:")
        rows = [
            {
                "path": str(o.path),
                "status": o.status,
                "files": str(o.files),
                "size": human_size(o.size),
                "earlier": human_size(o.earlier) if o.earlier else "",
            }
            for o in listing.one_offs
        ]
        columns = [("path", "PATH"), ("status", "STATUS"), ("files", "FILES"), ("size", "SIZE")]
        run.table(rows, [*columns, ("earlier", "OLDER REVISIONS")])
    total = listing.to_json()["total"]
    older = total["earlier"]
    freed = (
        f"; older revisions hold {human_size(older)} more (mdl prune --layout hf-cache frees them)"
    )
    # (the models with something on disk: a catalog's starter models never pulled hold nothing)
    held = sum(1 for m in listing.models if m.status != "missing")
    run.console.info(
        f"total: {human_size(total['size'])} on disk in {plural(held, 'model')}"
        f" and {plural(len(listing.one_offs), 'one-off')}" + (freed if older else "")
    )


@command(output_only=True)
def show_cmd(run: Run, name: NameArg, **where: Unpack[Pinned]) -> None:
    """One model: its files, sources, sizes, hashes and local state (offline)."""
    info = api.show(name, **where, environ=run.environ)
    if info.warning is not None:
        run.console.warn(info.warning)
    if run.json:
        run.emit(info.to_json())
        return
    doc = info.to_json()["models"][0]
    run.line(*about_lines(info, doc, width=table_width(run.stdout, run.environ)))
    if not doc["files"]:
        run.line("files:       (not pulled yet: run `mdl resolve " + name + "` to list them)")
        return
    run.line("")
    files_table(run, info, doc["files"])
    # on disk from an earlier version, no longer part of the model: not counted
    if info.status.extra:
        said = [(path, info.status.why_extra(path)) for path in info.status.extra]
        width = max(len(path) for path, _ in said)
        run.line(
            "",
            "no longer part of the model, not counted:",
            *(f"  {p:{width}}  ({why})" for p, why in said),
        )


def about_lines(
    info: "ModelInfo", doc: Mapping[str, Any], *, width: int | None = None
) -> list[str]:
    """``show``'s lines above its table: what the catalog says, the local state, where it is (a
    folder wider than a terminal's ``width`` cut with ``…``, never wrapped mid-name)."""
    keys = ("name", "description", "repo", "revision", "commit")
    lines = [f"{key + ':':13}{doc[key]}" for key in keys if doc.get(key)]
    lines.append(f"{'status:':13}{status_words(info)}")
    if info.status.signature is not None:
        signed = _signed_text(info.status.signature, short=False).removeprefix(", ")
        lines.append(f"{'signature:':13}{signed}")
    room = None if width is None else max(width - 13, 8)
    folder = fit_path(str(info.folder), room) if info.folder else "(several folders: see each file)"
    lines.append(f"{'dest:':13}{folder}")
    return lines


def status_words(info: "ModelInfo") -> str:
    """The model's state, with what to run about files touched since they were verified, and about
    another version upstream."""
    name = info.status.spec.name
    status = _status_text(info.status.status, info.status.unverified)
    if info.status.unverified:
        status += f"; `mdl verify {name}` re-hashes them"
    # the signed version a pull installed whole; its last pull aimed at another
    if info.status.update_available:
        status += f"; upstream has another version, not installed here (`mdl pull {name}`)"
    return status


def files_table(run: Run, info: "ModelInfo", files: Sequence[Mapping[str, Any]]) -> None:
    """The model's files: path, state, size, sha256 and source (and each one's folder when they
    are in several)."""
    rows = [
        {
            **f,
            "size": human_size(f["size"]),
            "sha256": (f["sha256"] or "-")[:16],
            "state": f"{f['state']} (unverified)" if f["verified"] is False else f["state"],
        }
        for f in files
    ]
    columns = [
        ("path", "PATH"),
        ("state", "STATE"),
        ("size", "SIZE"),
        ("sha256", "SHA256"),
        ("url", "SOURCE"),
    ]
    # files in several folders (Hub files in the cache, direct URLs in the plain folder)
    if info.folder is None:
        columns.insert(1, ("dest", "DEST"))
    run.table(rows, columns)


def _signed_text(signature: dict[str, Any] | None, *, short: bool) -> str:
    """``, signed by key 47a6f4b3b07a0765`` when the signature was verified; what is wrong
    otherwise.
    """
    if signature is None:
        return ""
    if signature["verified"]:
        return f", signed by {signature['by']}"
    if signature["by"] is None:
        return (
            ", signature not verified"
            if short
            else f", {signature['file']} not verified yet (run `mdl pull`)"
        )
    return (
        ", signature not verified"
        if short
        else f", not as signed by {signature['by']} (run `mdl verify`)"
    )


def _status_text(status: str, unverified: int) -> str:
    """``installed``, or ``installed (2 modified?)`` when files were touched since they were
    verified.
    """
    return f"{status} ({unverified} modified?)" if unverified else status


@command(output_only=True)
def resolve_cmd(
    run: Run,
    names: NamesArg = None,
    all_models: AllOpt = False,
    follow: Annotated[
        bool, typer.Option("--follow", help="Show the CDN URL the Hub redirects to.")
    ] = False,
    **where: Unpack[Asking],
) -> int:
    """The concrete files and direct URLs, sizes, sha256 and commit of models (network, except what
    catalog.lock pins)."""
    with run.reporter() as progress:
        resolution = api.resolve(
            *(names or ()),
            all=all_models,
            follow=follow,
            **where,
            environ=run.environ,
            progress=progress,
            secrets=run.secrets,
        )
    for model in resolution.models:
        if model.get("warning"):
            run.console.warn(model["warning"])
    with unread_if_failing(failing=bool(resolution.exit_code)):
        if run.json:
            run.emit(resolution.to_json())
        else:
            for model in resolution.models:
                run.line(
                    f"{model['name']}  revision={model['revision'] or '-'} "
                    f" commit={model['commit'] or '-'}"
                )
                rows = [
                    {**f, "size": human_size(f["size"]), "sha256": f["sha256"] or "-"}
                    for f in model["files"]
                ]
                run.table(
                    rows, [("path", "PATH"), ("size", "SIZE"), ("sha256", "SHA256"), ("url", "URL")]
                )
    for failure in resolution.failures:
        run.file_error(failure)
    return resolution.exit_code
