"""``mdl get``'s SOURCE arguments (and ``-i`` lists) → the one-off files they stand for: https URLs, ``hf://`` files
and whole repos (listed at one commit), ``s3://`` objects and serverless job-output JSON."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import replace

from mdl.catalog import ModelSpec
from mdl.errors import MdlError, UnsafePathError, UsageError
from mdl.paths import HfUri, parse_hf_uri, safe_file_name, url_basename
from mdl.progress import Progress
from mdl.redact import redact_url
from mdl.sources.hub import Hub
from mdl.sources.hubpages import read_hub_pages
from mdl.sources.joboutput import InlineFile, UrlFile, check_url, parse_job_output
from mdl.sources.resolve import resolve_model
from mdl.sources.s3 import s3_source
from mdl.store import hub_source

Source = InlineFile | UrlFile
Parsed = Source | HfUri  # what a SOURCE argument stands for: files, or a whole Hub repo
MAX_SOURCE_LINE = 64 * 1024  # longer than any URL a server takes (8-64 KiB): a list line past it is not a source


def read_sources(
    sources: Sequence[str],
    *,
    input_file: str | None,
    read_text: Callable[[str], str],
    named: bool,
    headers: tuple[tuple[str, str], ...],
    endpoint: str,
    progress: Progress,
) -> list[Parsed]:
    """The SOURCE arguments and the ``-i`` list's, Hub page URLs read as their hf://, each parsed (parse_sources)."""
    combined = combined_sources(sources, input_file=input_file, read_text=read_text)
    combined = read_hub_pages(combined, endpoint=endpoint, progress=progress)
    return parse_sources(combined, read_text=read_text, named=named, headers=headers)


def parse_sources(
    sources: Sequence[str],
    *,
    read_text: Callable[[str], str],
    named: bool = False,
    headers: tuple[tuple[str, str], ...] = (),
) -> list[Parsed]:
    """Every SOURCE argument → the files it stands for, or a whole Hub repo; ``named``: -o gives the file its name;
    ``headers`` (-H) go with the http(s) URLs given, as a catalog's ``headers`` go with its ``url`` files."""
    found: list[Parsed] = []
    for source in sources:
        if source.lower().startswith(("https://", "http://")):
            shown = redact_url(source)
            check_url(source, where=shown)
            name = "" if named else url_basename(source, where=shown)
            found.append(UrlFile(name, source, None, None, where=shown, headers=headers))
        elif source.startswith("hf://"):
            uri = parse_hf_uri(source)
            if uri.path is None:
                found.append(uri)
            else:  # one Hub file, saved under -d with the folders of its path (as hf download does)
                hub = (uri.repo_type, uri.repo, uri.revision or "main", uri.path)
                found.append(UrlFile(uri.path, None, None, None, where=uri.given, hub=hub))
        elif source.startswith("s3://"):
            found.append(s3_source(source, named=named))
        else:
            where = "stdin" if source == "-" else source
            found.extend(parse_job_output(read_text(source), where=where))
    return found


def read_source_list(source: str, *, read_text: Callable[[str], str]) -> list[str]:
    """``-i FILE`` (``-`` = stdin), as aria2c -i and wget -i read one: a SOURCE a line, surrounding blanks dropped,
    blank lines and ``#`` comment lines skipped."""
    if source != "-" and not os.path.lexists(source):
        raise UsageError(f"-i {source}: no such file", hint="-i FILE names a list of sources, one a line")
    try:
        text = read_text(source)
    except MdlError as exc:  # unreadable, not UTF-8, too big: said of the list
        exc.message, exc.hint = f"-i {exc.message}", "-i FILE names a list of sources, one a line"
        raise
    listed: list[str] = []
    for number, line in enumerate(text.removeprefix("\ufeff").splitlines(), 1):  # a BOM: lists saved by Notepad
        if len(line := line.strip()) > MAX_SOURCE_LINE:
            shown = "stdin" if source == "-" else source
            raise UsageError(f"-i {shown}:{number}: a line of {len(line):,} characters is not a source")
        if line and not line.startswith("#"):
            listed.append(line)
    return listed


def combined_sources(sources: Sequence[str], *, input_file: str | None, read_text: Callable[[str], str]) -> list[str]:
    """The SOURCE arguments, then the ``-i`` list's; stdin is read at most once, for one of them."""
    listed = read_source_list(input_file, read_text=read_text) if input_file is not None else []
    if input_file == "-" and "-" in (*sources, *listed):
        raise UsageError("-i - reads the list of sources from stdin, so '-' (a job output on stdin) cannot be one")
    combined = [*sources, *listed]
    if not combined:
        where = f" ({input_file if input_file != '-' else 'stdin'} lists none)" if input_file is not None else ""
        raise UsageError(f"get: no source given{where}", hint="name a URL, an hf:// file or repo, or a job output")
    if combined.count("-") > 1:
        raise UsageError("'-' (stdin) can be given only once")
    return combined


def list_repos(items: Sequence[Parsed], hub: Hub, *, include: Sequence[str], exclude: Sequence[str]) -> list[Source]:
    """Every whole repo among ``items`` → its (filtered) files at one commit; a name get cannot save is exit 2."""
    found: list[Source] = []
    for item in items:
        if not isinstance(item, HfUri):
            found.append(item)
            continue
        revision = item.revision or "main"
        spec = ModelSpec(item.given, repo=item.repo, repo_type=item.repo_type, revision=revision)
        spec = replace(spec, include=tuple(include), exclude=tuple(exclude))
        for file in resolve_model(spec, hub=hub, environ={}).files:
            ref = (item.repo_type, item.repo, file.commit or spec.revision, file.path)
            where = hub_source(item.repo, item.repo_type, item.revision, file.path)
            one = UrlFile(file.path, None, file.size, file.sha256, where, ref, replace(file, model=""))
            try:
                save_parts(one)
            except UnsafePathError as exc:
                exc.hint = f"--exclude '{file.path}' leaves it out"
                raise
            found.append(one)
    return found


def save_parts(item: Source) -> list[str]:
    """Where a file goes under ``-d``, as path components (a Hub file keeps its folders), each held to the rule for
    one file name: names from URLs and the Hub are as untrusted as a job's."""
    keeps_folders = isinstance(item, UrlFile) and item.hub is not None
    names = item.filename.split("/") if keeps_folders else [item.filename]
    return [safe_file_name(name, where=f"{item.where}: its file name") for name in names]
