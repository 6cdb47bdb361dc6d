"""``mdl get --layout hf-cache``: Hub sources into the Hugging Face cache, where huggingface_hub's
own lookups (``hf_hub_download(..., local_files_only=True)``, transformers) find them: a pull of one
transient model per repo (no catalog written or read), its record in the cache naming
``ONE_OFF_CATALOG`` as the catalog that pulled it, so a catalog's ``prune`` keeps it."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from mdl.catalog.settings import Settings
from mdl.catalog.specs import FileSpec, ModelSpec
from mdl.errors import UsageError
from mdl.paths import HfUri, OciRef
from mdl.progress import Progress
from mdl.report import FileOutcome, RunReport, folder
from mdl.sources.joboutput import UrlFile
from mdl.sources.oneoff import OneOffs
from mdl.store.layout import repo_folder
from mdl.store.records import ONE_OFF_CATALOG


def get_into_cache(request: OneOffs, settings: Settings, *, progress: Progress) -> RunReport:
    """Pull the ``hf://`` repos and files given into ``settings.hf_cache`` (one model per repo,
    named as its cache folder: ``models--owner--name``); a whole repo's files say its snapshot
    folder (``within``)."""
    from mdl.download.puller import pull_models

    specs = _specs(request)
    run = settings._replace(catalog_path=Path(ONE_OFF_CATALOG), lock_path=None, lock_mode="auto")
    report = pull_models(specs, run, progress=progress)
    whole = {spec.name for spec in specs if spec.is_snapshot}
    # a whole repo's snapshot folder, said by its files (one of them failed: each of them, so
    # stdout names no folder that is not all there)
    folders = {f.model: str(folder(f)) for f in report.files if f.model in whole and folder(f)}
    return replace(report, files=tuple(_said(f, folders.get(f.model)) for f in report.files))


def _specs(request: OneOffs) -> list[ModelSpec]:
    """One model per repo: its snapshot (filtered), or the files of it given."""
    whole: dict[str, ModelSpec] = {}
    files: dict[str, list[FileSpec]] = {}
    for item in request.items:
        if isinstance(item, HfUri):
            name = repo_folder(item.repo, item.repo_type)
            whole[name] = ModelSpec(
                name,
                repo=item.repo,
                repo_type=item.repo_type,
                revision=item.revision or "main",
                include=tuple(request.include),
                exclude=tuple(request.exclude),
            )
        elif isinstance(item, UrlFile) and item.hub is not None:
            repo_type, repo, revision, path = item.hub
            one = FileSpec(item.where, repo, path, revision=revision, repo_type=repo_type)
            files.setdefault(repo_folder(repo, repo_type), []).append(
                replace(one, sha256=request.sha256)
            )
        else:
            shown = item.given if isinstance(item, OciRef) else item.where
            raise UsageError(
                f"{shown}: --layout hf-cache puts Hub files (hf://…) in the Hugging Face"
                " cache, and this is not one",
                hint="get it into a folder (-d DIR) in a command of its own",
            )
    both = sorted(set(whole) & set(files))
    if both:
        raise UsageError(
            f"{both[0]}: a whole repo and files of it in one get --layout hf-cache",
            hint="the whole repo (with --include) has them",
        )
    return [*whole.values(), *(ModelSpec(n, files=tuple(f)) for n, f in files.items())]


def _said(outcome: FileOutcome, within: str | None) -> FileOutcome:
    """A one-off file, as every get's (no model), a whole repo's in its snapshot folder (stdout's
    line, as ``hf download`` prints it)."""
    return outcome._replace(model="", within=within)
