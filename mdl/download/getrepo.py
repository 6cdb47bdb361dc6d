"""``mdl get hf://owner/name[@rev]``: a whole Hub repo as ``hf download --local-dir`` fetches it, and where the
files of a get go when they keep their folders.

A whole repo is listed once (the listing and the include/exclude rules of catalog snapshot models, pinned to one
commit) and becomes one Hub file per listed path, fetched by the same engine as any ``hf://`` file. Every file from
the Hub keeps its folder inside the repo under ``-d``: ``DIR/data/train.parquet``, whether the repo or the one file
was asked for; ``-o FILE`` names a single file, wherever it was in the repo.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

from mdl.catalog import ModelSpec, Settings
from mdl.errors import UnsafePathError, UsageError
from mdl.hfuri import HfUri
from mdl.paths import safe_file_name
from mdl.progress import Progress
from mdl.sources import InlineFile, UrlFile, name_key

Source = InlineFile | UrlFile


def patterns(value: Sequence[str] | None, *, flag: str) -> tuple[str, ...]:
    """``--include``/``--exclude`` values as a tuple; one string is one pattern (never its characters)."""
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if not all(isinstance(item, str) for item in value):
        raise UsageError(f"{flag}: expected glob patterns (strings)")
    return tuple(value)


def check_repo_flags(
    items: Sequence[Source | HfUri],
    settings: Settings,
    *,
    include: Sequence[str],
    exclude: Sequence[str],
    output: Path | None,
    sha256: str | None,
) -> None:
    """Usage errors of whole-repo gets, before the Hub is asked anything."""
    repos = [item for item in items if isinstance(item, HfUri)]
    if not repos:
        for flag, given in (("--include", include), ("--exclude", exclude)):
            if given:
                raise UsageError(f"{flag} filters a whole Hub repo (hf://owner/name), and no SOURCE is one")
        return
    first = repos[0].given
    if output is not None:
        raise UsageError(f"-o names one file, but {first} is a whole repo", hint="use -d DIR to save its files there")
    if sha256 is not None:
        raise UsageError(f"--sha256 applies to a single file, but {first} is a whole repo")
    if settings.offline:
        raise UsageError(f"{first}: HF_HUB_OFFLINE is set, and a whole repo needs the Hub to list its files")


def expand_repos(
    items: Sequence[Source | HfUri],
    settings: Settings,
    *,
    include: Sequence[str],
    exclude: Sequence[str],
    progress: Progress,
) -> list[Source]:
    """Every whole repo among ``items`` → its (filtered) files at one commit, in listing order; others as given.

    A listing path that climbs out or is absolute refuses the get as a bad reply (exit 5), as for catalog
    snapshots; a name ``get`` cannot save (a Windows device name, ``.mdl``, ``:``) is exit 2 with a hint.
    """
    if not any(isinstance(item, HfUri) for item in items):
        return [item for item in items if not isinstance(item, HfUri)]
    from mdl.download.session import PullSession
    from mdl.sources import resolve_model

    # The run's client (timeouts, proxy, CA, token guard) for the listing; the files go through the get engine.
    session = PullSession(dataclasses.replace(settings, layout="plain", hf_cache=None), progress=progress)
    try:
        hub = session.hub()
        assert hub is not None, "offline was refused by check_repo_flags"
        found: list[Source] = []
        for item in items:
            if not isinstance(item, HfUri):
                found.append(item)
                continue
            spec = ModelSpec(
                name=item.given,
                repo=item.repo,
                repo_type=item.repo_type,
                revision=item.revision or "main",
                include=tuple(include),
                exclude=tuple(exclude),
            )
            resolved = resolve_model(spec, hub=hub, environ={})
            for file in resolved.files:
                one = UrlFile(
                    filename=file.path,
                    url=None,
                    size=file.size,
                    sha256=file.sha256,
                    where=item.of(file.path),
                    hub=(item.repo_type, item.repo, file.commit or spec.revision, file.path),
                    listed=dataclasses.replace(file, model=""),  # a get's files belong to no model
                )
                try:
                    save_parts(one)
                except UnsafePathError as exc:
                    exc.hint = f"--exclude '{file.path}' leaves it out"
                    raise
                found.append(one)
        return found
    finally:
        session.close()


def save_parts(item: Source) -> list[str]:
    """Where a file goes under ``-d``, as path components: a Hub file keeps the folders it has in its repo.

    Every component comes from a server (or a job's output) and is held to the rule for one file name.
    """
    keeps_folders = isinstance(item, UrlFile) and item.hub is not None
    names = item.filename.split("/") if keeps_folders else [item.filename]
    return [safe_file_name(name, where=f"{item.where}: its file name") for name in names]


class SaveNames:
    """The places a get saves files at: two sources at one place (case and Unicode form ignored, as on macOS
    and Windows), or a file where another one's folder must be, are refused before anything is fetched."""

    def __init__(self) -> None:
        self.files: dict[str, str] = {}
        self.folders: dict[str, str] = {}

    def add(self, parts: Sequence[str], *, where: str, target: Path) -> None:
        """Take ``target`` (``parts`` below the folder) for ``where``; UsageError if it is taken."""
        key = name_key("/".join(parts))
        if key in self.files:
            raise UsageError(f"{where} and {self.files[key]} would both be saved as {target}")
        if key in self.folders:
            raise UsageError(f"{where} would be saved as {target}, where {self.folders[key]} needs a folder")
        for depth in range(1, len(parts)):
            folder = name_key("/".join(parts[:depth]))
            if folder in self.files:
                raise UsageError(f"{where} needs a folder where {self.files[folder]} would be saved")
            self.folders.setdefault(folder, where)
        self.files[key] = where


def hub_file(uri: HfUri) -> UrlFile:
    """``hf://…/path``: one Hub file, saved under ``-d`` with the folders of its path (as ``hf download`` does)."""
    assert uri.path is not None
    return UrlFile(
        filename=uri.path,
        url=None,
        size=None,
        sha256=None,
        where=uri.given,
        hub=(uri.repo_type, uri.repo, uri.revision or "main", uri.path),
    )
