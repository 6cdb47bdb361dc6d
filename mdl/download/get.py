"""``mdl get``: one-off sources — https URLs, ``hf://`` and ``s3://`` URIs (a whole Hub repo, as ``hf download
--local-dir`` fetches it) and serverless job-output JSON — into a folder, through the pull's plan and fetch stages."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from contextlib import closing
from dataclasses import replace
from pathlib import Path

from mdl.catalog import FileSpec, ModelSpec, Settings
from mdl.download.fetch import fetch
from mdl.download.plan import FORCED, SAME_BYTES, PlannedFile, check_space, in_place, log_outcome, plan_file
from mdl.download.resolve import still_verified
from mdl.download.session import PullSession
from mdl.errors import IntegrityError, LocalFSError, MdlError, UnsafePathError, UsageError
from mdl.paths import (
    RESERVED_WHY,
    HfUri,
    parse_hf_uri,
    path_problem,
    reserved_by_mdl,
    safe_file_name,
    shown_path,
    url_basename,
)
from mdl.progress import Progress
from mdl.redact import redact_url
from mdl.report import FileOutcome, RunReport, failed
from mdl.sources import (
    InlineCheck,
    InlineFile,
    RemoteFile,
    UrlFile,
    check_expected_sha256,
    check_inline,
    check_url,
    decoded_size,
    name_key,
    parse_job_output,
    read_hub_pages,
    read_job_output,
    resolve_file,
    resolve_model,
    s3_source,
    write_inline,
)
from mdl.store import (
    REPLACEABLE,
    Store,
    creatable_problem,
    hub_source,
    not_a_file,
    not_a_file_error,
    rmdir_empty,
)
from mdl.transfer import Opening

log = logging.getLogger("mdl.get")

Source = InlineFile | UrlFile
Parsed = Source | HfUri  # what a SOURCE argument stands for: files, or a whole Hub repo
# A get's record is the folder's .mdl/get.json (the store's record of model "", keyed by file name): what it wrote
# and what the server said of it (length, validator), so a second get of an unchanged file is a no-op (wget -N).
ONE_OFF = ""


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


def read_source(source: str) -> str:
    """The text of a job-output JSON source: a file, or stdin for ``-`` (bounded: see ``read_job_output``)."""
    return read_job_output(source)


MAX_SOURCE_LINE = 64 * 1024  # longer than any URL a server takes (8-64 KiB): a list line past it is not a source


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


def get_sources(
    sources: Sequence[str],
    settings: Settings,
    *,
    output: Path | None,
    sha256: str | None,
    progress: Progress,
    read_text: Callable[[str], str],
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    headers: tuple[tuple[str, str], ...] = (),
    input_file: str | None = None,
) -> RunReport:
    """Fetch one-off sources (and ``input_file``'s) into ``settings.dest`` (or ``output``), verified and atomic; a file
    already there is kept with the expected bytes or as a get wrote it if upstream is unchanged (wget -N), else
    refused unless forced."""
    expected = check_expected_sha256(sha256)
    sources = combined_sources(sources, input_file=input_file, read_text=read_text)
    sources = read_hub_pages(sources, endpoint=settings.endpoint, progress=progress)  # Hub page URLs as their hf://
    given = parse_sources(sources, read_text=read_text, named=output is not None, headers=headers)
    unused = bool(headers) and not any(isinstance(item, UrlFile) and item.headers for item in given)
    repo = next((item.given for item in given if isinstance(item, HfUri)), None)  # usage errors before the Hub is asked
    if repo is None:
        for flag, filters in (("--include", include), ("--exclude", exclude)):
            if filters:
                raise UsageError(f"{flag} filters a whole Hub repo (hf://owner/name), and no SOURCE is one")
    elif output is not None:
        raise UsageError(f"-o names one file, but {repo} is a whole repo", hint="use -d DIR to save its files there")
    elif expected is not None:
        raise UsageError(f"--sha256 applies to a single file, but {repo} is a whole repo")
    elif settings.offline:
        raise UsageError(f"{repo}: HF_HUB_OFFLINE is set, and a whole repo needs the Hub to list its files")
    items = _expand_repos(given, settings, include=include, exclude=exclude, progress=progress)
    report = fetch_sources(items, settings, output=output, sha256=expected, progress=progress)
    repos = [isinstance(item, UrlFile) and item.listed is not None for item in items]  # a whole repo's files
    within = str(settings.dest)
    report = replace(
        report, files=tuple(replace(o, within=within) if r else o for o, r in zip(report.files, repos, strict=True))
    )
    if not unused:
        return report
    warning = (
        "--header goes to the http(s) URLs given as sources, and none was given: no header was sent "
        "(hf:// files use the Hub token; s3:// and job outputs' links are presigned)"
    )
    log.warning("%s", warning)
    return replace(
        report, files=tuple(replace(f, warning="; ".join(filter(None, (f.warning, warning)))) for f in report.files)
    )


def fetch_sources(
    items: Sequence[Source], settings: Settings, *, output: Path | None, sha256: str | None, progress: Progress
) -> RunReport:
    """What can be checked locally first (names, inline payloads, files in the way); then inline writes, downloads."""
    if output is not None and len(items) != 1:
        raise UsageError(f"-o names one file, but the sources stand for {len(items)} files; use -d DIR")
    if sha256 is not None and len(items) != 1:
        raise UsageError(f"--sha256 applies to a single file, but the sources stand for {len(items)} files")
    force, folder = settings.force, settings.dest if output is None else output.parent  # -o names one file
    targets = _targets(items, output=output, directory=settings.dest, force=force)
    checks = _check_payloads(items, sha256=sha256, progress=progress)
    outcomes = {} if force else _already_there(items, targets, checks, expected=sha256)
    writes = {index: check for index, check in checks.items() if index not in outcomes}
    progress.begin(total_bytes=sum(check.size for check in writes.values()), files=len(writes))
    for index, check in writes.items():
        item, target = items[index], targets[index]
        assert isinstance(item, InlineFile)
        replaced = force and os.path.lexists(target)
        try:
            write_inline(item, target, check=check, progress=progress)
        except MdlError as exc:
            outcomes[index] = failed("", item.filename, exc, dest=target, source=item.where)
        else:
            # fetched: counted in the total like downloaded bytes (written from the job's output)
            word, reason = ("replaced", FORCED) if replaced else (None, "")
            done = FileOutcome("", item.filename, str(target), check.size, check.sha256, "downloaded", reason=reason)
            outcomes[index] = replace(done, fetched=check.size, source=item.where, word=word)
        log_outcome(outcomes[index])
    remote = [(i, item, targets[i]) for i, item in enumerate(items) if isinstance(item, UrlFile) and i not in outcomes]
    if remote:
        outcomes.update(_fetch_remote(remote, settings, folder, sha256=sha256, progress=progress))
    return RunReport(tuple(outcomes[i] for i in sorted(outcomes)))


def _targets(items: Sequence[Source], *, output: Path | None, directory: Path, force: bool) -> list[Path]:
    """Where each file goes; refuses unsafe names, two files at one place, and what is not a file in the way: a
    folder or a device always, a FIFO or a socket unless ``force`` (it is replaced, never opened)."""
    targets: list[Path] = []
    files: dict[str, str] = {}  # name key → source: two sources at one place (case and Unicode form ignored, as
    folders: dict[str, str] = {}  # on macOS and Windows), or a file where another's folder must be, are refused
    for item in items:
        if output is not None:
            target = output
            # os.path.isdir: a name the filesystem refuses (too long, ...) is no folder; creatable_problem names it
            if os.path.isdir(target):  # noqa: PTH112
                raise UsageError(f"-o {output}: is a folder; use -d {output} to save into it")
            problem = path_problem(target.name)  # the same rule as for names from servers
            if problem is None and reserved_by_mdl(target.name):  # get keeps its state in the folder's .mdl/
                problem = RESERVED_WHY
            if problem is not None:
                raise UnsafePathError(f"-o {output}: cannot be used as a file name: {problem}")
            parts = [target.name]
        else:
            parts = _save_parts(item)
            target = directory.joinpath(*parts)
        kind = not_a_file(target)
        if kind is not None and not (force and kind in REPLACEABLE):
            hint = "--force to replace it" if kind in REPLACEABLE else f"mdl never replaces {kind} with a file"
            raise not_a_file_error(target, kind, where=f"{item.where}: ", hint=hint)
        problem = creatable_problem(target)  # before any byte is fetched or written
        if problem is not None:
            raise LocalFSError(f"{shown_path(item.where)}: cannot be saved at {shown_path(target)}: {problem}")
        key, where = name_key("/".join(parts)), item.where
        if key in files:
            raise UsageError(f"{where} and {files[key]} would both be saved as {target}")
        if key in folders:
            raise UsageError(f"{where} would be saved as {target}, where {folders[key]} needs a folder")
        for depth in range(1, len(parts)):
            folder = name_key("/".join(parts[:depth]))
            if folder in files:
                raise UsageError(f"{where} needs a folder where {files[folder]} would be saved")
            folders.setdefault(folder, where)
        files[key] = where
        targets.append(target)
    return targets


def _check_payloads(items: Sequence[Source], *, sha256: str | None, progress: Progress) -> dict[int, InlineCheck]:
    """Decode every inline payload once without keeping it; refuse the whole job if any is wrong (lowest code wins)."""
    checks: dict[int, InlineCheck] = {}
    errors: list[MdlError] = []
    inline = {index: item for index, item in enumerate(items) if isinstance(item, InlineFile)}
    progress.begin(total_bytes=sum(decoded_size(item) for item in inline.values()), files=len(inline))
    for index, item in inline.items():
        try:
            checks[index] = check_inline(item, expected_sha256=sha256, progress=progress)
        except MdlError as exc:
            log.error("%s", exc.message)
            errors.append(exc)
    if errors:
        worst = min(errors, key=lambda e: int(e.exit_code))
        more = f"{len(errors) - 1} more inline file(s) are wrong too; " if len(errors) > 1 else ""
        worst.hint = f"{more}nothing was written"
        raise worst
    return checks


def _kept(path: str, target: Path, *, sha256: str | None, where: str) -> FileOutcome:
    size = target.stat().st_size
    log_outcome(kept := FileOutcome("", path, str(target), size, sha256, "skipped", reason=SAME_BYTES, source=where))
    return kept


def _already_there(
    items: Sequence[Source], targets: Sequence[Path], checks: dict[int, InlineCheck], *, expected: str | None
) -> dict[int, FileOutcome]:
    """Files already at their targets with the expected bytes are kept (``skipped``); any other but those a get wrote
    refuses the whole get (``in_place``: Hub files are held to theirs once the Hub has said them)."""
    kept: dict[int, FileOutcome] = {}
    refused: list[UsageError] = []
    for index, (item, target) in enumerate(zip(items, targets, strict=True)):
        if not os.path.lexists(target) or (isinstance(item, UrlFile) and item.hub is not None):
            continue
        want = checks[index].sha256 if isinstance(item, InlineFile) else expected or item.sha256
        try:
            if in_place(target, sha256=want, where=item.where, ours=isinstance(item, UrlFile) and _ours(target)):
                path = item.filename if isinstance(item, InlineFile) else target.name
                kept[index] = _kept(path, target, sha256=want, where=item.where)
        except UsageError as exc:
            refused.append(exc)
    if refused:
        first = refused[0]
        more = f"; {len(refused) - 1} more file(s) are in the way too" if len(refused) > 1 else ""
        first.hint = f"{first.hint}{more}; nothing was written"
        raise first
    return kept


def _expand_repos(
    items: list[Parsed], settings: Settings, *, include: Sequence[str], exclude: Sequence[str], progress: Progress
) -> list[Source]:
    """Every whole repo among ``items`` → its (filtered) files at one commit; a name get cannot save is exit 2."""
    if not any(isinstance(item, HfUri) for item in items):
        return [item for item in items if not isinstance(item, HfUri)]
    # The run's client (timeouts, proxy, CA, token guard) for the listing; the files go through the get engine.
    with closing(PullSession(replace(settings, layout="plain", hf_cache=None), progress=progress)) as session:
        hub = session.hub
        assert hub is not None, "offline was refused above"
        found: list[Source] = []
        for item in items:
            if not isinstance(item, HfUri):
                found.append(item)
                continue
            revision = item.revision or "main"
            spec = ModelSpec(item.given, repo=item.repo, repo_type=item.repo_type, revision=revision)
            spec = replace(spec, include=tuple(include), exclude=tuple(exclude))
            resolved = resolve_model(spec, hub=hub, environ={})
            for file in resolved.files:
                ref = (item.repo_type, item.repo, file.commit or spec.revision, file.path)
                where = hub_source(item.repo, item.repo_type, item.revision, file.path)
                one = UrlFile(file.path, None, file.size, file.sha256, where, ref, replace(file, model=""))
                try:
                    _save_parts(one)
                except UnsafePathError as exc:
                    exc.hint = f"--exclude '{file.path}' leaves it out"
                    raise
                found.append(one)
        return found


def _save_parts(item: Source) -> list[str]:
    """Where a file goes under ``-d``, as path components (a Hub file keeps its folders), each held to the rule for
    one file name: names from URLs and the Hub are as untrusted as a job's."""
    keeps_folders = isinstance(item, UrlFile) and item.hub is not None
    names = item.filename.split("/") if keeps_folders else [item.filename]
    return [safe_file_name(name, where=f"{item.where}: its file name") for name in names]


def _fetch_remote(
    items: list[tuple[int, UrlFile, Path]], settings: Settings, folder: Path, *, sha256: str | None, progress: Progress
) -> dict[int, FileOutcome]:
    """Download the remote files into ``folder`` (``-d``: Hub files keep their folders under it; ``-o``: its folder)."""
    outcomes: dict[int, FileOutcome] = {}
    # Exactly where -o/-d say, never into the Hugging Face cache (whatever --layout says for pull).
    session = PullSession(replace(settings, dest=folder.absolute(), layout="plain", hf_cache=None), progress=progress)
    planned: list[tuple[int, PlannedFile]] = []
    present = {i for i, _, target in items if os.path.lexists(target)}  # ours (_already_there), or --force
    openings: list[Opening | None] = []  # probes' unread answers, closed however the get ends
    try:
        for index, item, target in items:
            name = target.relative_to(folder).as_posix()  # its path in the folder (Hub files: with theirs)
            try:
                if item.hub is not None:
                    repo_type, repo, revision, path = item.hub
                    hub = session.hub
                    if hub is None:
                        raise UsageError(f"{item.where}: HF_HUB_OFFLINE is set")
                    spec = FileSpec(item.where, repo, path, revision=revision, repo_type=repo_type)
                    spec = replace(spec, sha256=sha256, save_as=name)
                    remote = item.listed or resolve_file("", spec, hub=hub, environ={})
                    there = not settings.force and os.path.lexists(target)
                    if there and in_place(
                        target, sha256=remote.sha256, git_oid=remote.git_oid, where=item.where, ours=False
                    ):
                        outcomes[index] = _kept(name, target, sha256=remote.sha256, where=item.where)
                        continue
                else:
                    assert item.url is not None
                    source = item.where if item.where.startswith("s3://") else redact_url(item.url)
                    expected = sha256 or item.sha256
                    remote = RemoteFile("", name, item.url, item.size, expected, source=source, headers=item.headers)
                    if remote.size is None or not remote.sha256:  # a sha256 never turns ranges off
                        # One file, not resumed, not there (it may be unchanged): its probe carries its first bytes.
                        part, _ = session.store.part_paths(ONE_OFF, name)
                        carry = len(items) == 1 and not part.exists() and index not in present
                        remote = _probe(session, remote, item, carry=carry)
                        openings.append(remote.opening)
                planned.append((index, plan_file(session, remote)))
            except MdlError as exc:
                outcomes[index] = failed("", name, exc, dest=target, source=item.where)
                warning = session.netrc_warning(hub=item.hub is not None)
                if warning is not None:  # a 401 may be why: said here too (fetch says it with the others)
                    outcomes[index] = replace(outcomes[index], warning=warning)
                log_outcome(outcomes[index])
        if planned:
            plans = [plan for _, plan in planned]
            session.store.ensure_dirs()
            check_space(plans)
            outcomes.update(zip((index for index, _ in planned), fetch(session, plans), strict=True))
    finally:
        for opening in openings:
            if opening is not None:  # skipped, failed or never reached: its probe's answer is closed
                opening.close()
        session.close()
        # A finished get leaves no empty state folder under .mdl (deepest first; a partial or another run's stays).
        for sub in ("partial", "locks", "records", ""):
            rmdir_empty(session.store.dest, session.store.state_dir / sub)
    return outcomes


def _probe(session: PullSession, remote: RemoteFile, item: UrlFile, *, carry: bool) -> RemoteFile:
    """A direct URL's size and ETag; a size that contradicts the one given (the job output's, or the store's for an
    ``s3://`` object) is refused before any byte moves."""
    probed = session.probe(replace(remote, size=None), carry=carry)
    if item.size is None:
        return probed
    if probed.size is not None and probed.size != item.size:
        if probed.opening is not None:
            probed.opening.close()
        said = "the store lists" if item.where.startswith("s3://") else "the job output says"
        raise IntegrityError(
            f"{item.where}: {said} {item.size} bytes, but its download from the server is {probed.size} bytes"
        )
    return replace(probed, size=item.size, size_pinned=True)


def _ours(target: Path) -> bool:
    """Whether the file at ``target`` is the one a get wrote there (else it is the user's)."""
    record = Store(target.parent.absolute()).read_record(ONE_OFF)
    return record is not None and still_verified(target, record.files.get(target.name))
