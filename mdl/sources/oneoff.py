"""``mdl get``'s SOURCE arguments (and ``-i`` lists) → the one-off files they stand for (https URLs,
``hf://`` files and whole repos listed at one commit, object-store (``s3://``) objects, serverless
job-output JSON), where each is saved, checked."""

# (annotations here are evaluated, not postponed: typing compiles each string annotation of a
# NamedTuple's fields at every start)
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from mdl.buckets.registry import store_for
from mdl.errors import LocalFSError, MdlError, UnsafePathError, UsageError
from mdl.paths import (
    RESERVED_WHY,
    HfUri,
    OciRef,
    parse_hf_uri,
    parse_oci_ref,
    path_problem,
    reserved_by_mdl,
    safe_file_name,
    shown,
    shown_path,
    url_basename,
)
from mdl.progress import Progress
from mdl.redact import Secrets, printable, redact_url, unshown
from mdl.sources.hubpages import REPO_ID, hub_words, read_hub_pages
from mdl.sources.joboutput import (
    InlineCheck,
    InlineFile,
    UrlFile,
    check_expected_sha256,
    check_inline,
    check_url,
    decoded_size,
    name_key,
    parse_job_output,
    read_job_output,
)
from mdl.sources.resolve import resolve_model
from mdl.store.filesystem import REPLACEABLE, creatable_problem, not_a_file, not_a_file_error
from mdl.store.layout import hub_source

if TYPE_CHECKING:
    from mdl.sources.hub import Hub
    from mdl.sources.oci import Registry

log = logging.getLogger("mdl.get")
Source = InlineFile | UrlFile
# what a SOURCE argument stands for: files, a whole Hub repo, or a model in an OCI registry
Parsed = Source | HfUri | OciRef
# longer than any URL a server takes (8-64 KiB): a list line past it is not a source
MAX_SOURCE_LINE = 64 * 1024


class GetRequest(NamedTuple):
    """What ``mdl get`` is asked: its SOURCE arguments and the flags that shape what they become."""

    sources: Sequence[str]
    output: Path | None = None  # -o: the one file's path
    sha256: str | None = None  # --sha256: the one file's
    include: Sequence[str] = ()  # a whole repo's files: only these globs
    exclude: Sequence[str] = ()
    headers: tuple[tuple[str, str], ...] = ()  # -H: for the http(s) URLs given
    input_file: str | None = None  # -i: a list of more sources
    read_text: Callable[[str], str] = read_job_output  # a job output's text (``-``: stdin)
    revision: str | None = None  # hf download's --revision, for the Hub sources
    repo_type: str | None = None  # ... and its --repo-type

    def __repr__(self) -> str:  # (no -H header, signed URL or proxy login in a traceback)
        return unshown(self)


class OneOffs(NamedTuple):
    """A get's request with its sources read (read_request), held to its flags: what the get's
    workflow, or the pull into the Hugging Face cache, works from."""

    items: tuple[Parsed, ...]
    output: Path | None = None  # -o: the one file's path
    sha256: str | None = None  # --sha256, checked (lower case)
    include: tuple[str, ...] = ()  # a whole repo's files: only these globs
    exclude: tuple[str, ...] = ()
    unused_headers: bool = False  # -H given, and no http(s) URL among the sources to send it to


def _offline_note(progress: Progress) -> Callable[[str], None]:
    """HF_HUB_OFFLINE: a bare repo id's note (hub_words') says the files are read from this disk,
    nothing of fetching them: nothing is fetched."""

    def note(text: str) -> None:
        offline = " from this disk (HF_HUB_OFFLINE is set)"
        progress.note(text.replace("; fetching ", "; reading ").replace(" from the Hub", offline))

    return note


def read_request(
    request: GetRequest,
    *,
    endpoint: str,
    progress: Progress,
    secrets: Secrets | None = None,
    offline: bool = False,
) -> OneOffs:
    """The SOURCE arguments and the ``-i`` list's, Hub page URLs read as their hf://, each parsed
    (parse_sources); the flags that do not fit them are usage errors before the Hub is asked
    (``offline``: HF_HUB_OFFLINE, a bare repo id's note says nothing of fetching)."""
    expected = check_expected_sha256(request.sha256)
    read_text = request.read_text
    combined = combined_sources(request.sources, input_file=request.input_file, read_text=read_text)
    note = _offline_note(progress) if offline else progress.note
    combined = hub_words(
        combined, revision=request.revision, repo_type=request.repo_type, note=note
    )
    combined = read_hub_pages(combined, endpoint=endpoint, progress=progress)
    given = parse_sources(
        combined,
        read_text=read_text,
        named=request.output is not None,  # -o gives the file its name
        headers=request.headers,
        secrets=secrets,
    )
    _refuse_misuse(given, request, expected=expected)
    return OneOffs(
        tuple(given),
        request.output,
        expected,
        tuple(request.include),
        tuple(request.exclude),
        unused_headers=bool(request.headers)
        and not any(isinstance(item, UrlFile) and item.headers for item in given),
    )


def _refuse_misuse(given: Sequence[Parsed], request: GetRequest, *, expected: str | None) -> None:
    """The flags that do not fit the sources: usage errors before the Hub is asked."""
    repo = next((item.given for item in given if isinstance(item, HfUri)), None)
    if repo is None:
        for flag, filters in (("--include", request.include), ("--exclude", request.exclude)):
            if filters:
                raise UsageError(
                    f"{flag} filters a whole Hub repo (hf://owner/name), and no SOURCE is one"
                )
    elif request.output is not None:
        raise UsageError(
            f"-o names one file, but {repo} is a whole repo",
            hint="use -d DIR to save its files there",
        )
    elif expected is not None:
        raise UsageError(f"--sha256 applies to a single file, but {repo} is a whole repo")


def parse_sources(
    sources: Sequence[str],
    *,
    read_text: Callable[[str], str],
    named: bool = False,
    headers: tuple[tuple[str, str], ...] = (),
    secrets: Secrets | None = None,
) -> list[Parsed]:
    """Every SOURCE argument → the files it stands for, or a whole Hub repo; ``named``: -o gives the
    file its name; ``headers`` (-H) go with the http(s) URLs given, as a catalog's ``headers`` go
    with its ``url`` files; every URL read (given, in a job output, presigned for an object store)
    registered in ``secrets``."""
    found: list[Parsed] = []
    for source in sources:
        if source.lower().startswith(("https://", "http://")):
            found.append(_url_source(source, named=named, headers=headers))
        elif source.startswith("hf://"):
            found.append(_hub_source(source))
        elif source.startswith("oci://"):
            found.append(parse_oci_ref(source))
        elif (store := store_for(source)) is not None:
            stored = store.one_off(source, secrets=secrets)
            name = "" if named else stored.name
            found.append(UrlFile(name, stored.url, stored.size, stored.sha256, where=stored.where))
        else:
            found.extend(_job_output(source, read_text=read_text))
    if secrets is not None:  # the URLs read: their signatures and tokens are the run's secrets
        for url in (item.url for item in found if isinstance(item, UrlFile) and item.url):
            secrets.add_url(url)
    return found


def _job_output(source: str, *, read_text: Callable[[str], str]) -> list[Source]:
    """A local job output's files; a file that is none with a Hub file's name (``owner/name/path``,
    as ``--local-dir owner/name`` saved it) says the hf:// that fetches that file."""
    try:
        return parse_job_output(read_text(source), where="stdin" if source == "-" else source)
    except UsageError as exc:
        if REPO_ID.fullmatch(source):  # (a repo id, or a Hub file's path)
            exc.hint = (
                "read as a job output: a local file has that name; to fetch it from the Hub, give"
                f" hf://{printable(source)}"
            )
        raise


def _url_source(source: str, *, named: bool, headers: tuple[tuple[str, str], ...]) -> UrlFile:
    """An http(s) URL given: its file name from the URL unless -o names it."""
    shown = redact_url(source)
    check_url(source, where=shown)
    name = "" if named else url_basename(source, where=shown)
    return UrlFile(name, source, None, None, where=shown, headers=headers, typed=True)


def _hub_source(source: str) -> Parsed:
    """An hf:// URI: a whole repo, or one Hub file saved under -d with the folders of its path (as
    hf download does)."""
    uri = parse_hf_uri(source)
    if uri.path is None:
        return uri
    hub = (uri.repo_type, uri.repo, uri.revision or "main", uri.path)
    return UrlFile(uri.path, None, None, None, where=uri.given, hub=hub)


def read_source_list(source: str, *, read_text: Callable[[str], str]) -> list[str]:
    """``-i FILE`` (``-`` = stdin), as aria2c -i and wget -i read one: a SOURCE a line, surrounding
    blanks dropped, blank lines and ``#`` comment lines skipped."""
    if source != "-" and not os.path.lexists(source):
        raise UsageError(
            f"-i {source}: no such file", hint="-i FILE names a list of sources, one a line"
        )
    try:
        text = read_text(source)
    except MdlError as exc:  # unreadable, not UTF-8, too big: said of the list
        exc.message, exc.hint = f"-i {exc.message}", "-i FILE names a list of sources, one a line"
        raise
    listed: list[str] = []
    # a BOM: lists saved by Notepad
    for number, line in enumerate(text.removeprefix("\ufeff").splitlines(), 1):
        if len(line := line.strip()) > MAX_SOURCE_LINE:
            shown = "stdin" if source == "-" else source
            raise UsageError(
                f"-i {shown}:{number}: a line of {len(line):,} characters is not a source"
            )
        if line and not line.startswith("#"):
            listed.append(line)
    return listed


def combined_sources(
    sources: Sequence[str], *, input_file: str | None, read_text: Callable[[str], str]
) -> list[str]:
    """The SOURCE arguments, then the ``-i`` list's; stdin is read at most once, for one of them."""
    listed = read_source_list(input_file, read_text=read_text) if input_file is not None else []
    if input_file == "-" and "-" in (*sources, *listed):
        raise UsageError(
            "-i - reads the list of sources from stdin, so '-' (a job output on stdin) cannot"
            " be one"
        )
    combined = [*sources, *listed]
    if not combined:
        where = (
            f" ({input_file if input_file != '-' else 'stdin'} lists none)"
            if input_file is not None
            else ""
        )
        raise UsageError(
            f"get: no source given{where}",
            hint="name a URL, an hf:// file or repo, or a job output",
        )
    if combined.count("-") > 1:
        raise UsageError("'-' (stdin) can be given only once")
    return combined


def list_repos(
    items: Sequence[Parsed], hub: "Hub", *, include: Sequence[str], exclude: Sequence[str]
) -> list[Source]:
    """Every whole repo among ``items`` → its (filtered) files at one commit; a name get cannot
    save is exit 2.
    """
    from mdl.catalog.specs import ModelSpec

    found: list[Source] = []
    for item in items:
        if not isinstance(item, HfUri):
            assert not isinstance(item, OciRef), "a registry's model is listed first"
            found.append(item)
            continue
        revision = item.revision or "main"
        spec = ModelSpec(item.given, repo=item.repo, repo_type=item.repo_type, revision=revision)
        spec = replace(spec, include=tuple(include), exclude=tuple(exclude))
        for file in resolve_model(spec, hub=hub, environ={}).files:
            ref = (item.repo_type, item.repo, file.commit or spec.revision, file.path)
            where = hub_source(item.repo, item.repo_type, item.revision, file.path)
            one = UrlFile(
                file.path, None, file.size, file.sha256, where, ref, file._replace(model="")
            )
            try:
                save_parts(one)
            except UnsafePathError as exc:
                exc.hint = f"--exclude '{file.path}' leaves it out"
                raise
            found.append(one)
    return found


def list_registry_files(items: Sequence[Parsed], registry: "Registry") -> list[Parsed]:
    """Every ``oci://`` model among ``items`` → its layers' files at one manifest digest (each
    blob's sha256 and size pinned by the manifest: nothing is probed)."""
    found: list[Parsed] = []
    for item in items:
        if not isinstance(item, OciRef):
            found.append(item)
            continue
        model = registry.resolve(item)
        found.extend(
            UrlFile(file.path, file.url, file.size, file.sha256, file.source, listed=file)
            for file in model.files
        )
    return found


def save_parts(item: Source) -> list[str]:
    """Where a file goes under ``-d``, as path components (a Hub file and a job's file keep their
    folders), each held to the rule for one file name: names from URLs and the Hub are as
    untrusted as a job's."""
    names = item.filename.split("/")
    return [safe_file_name(name, where=f"{item.where}: its file name") for name in names]


def save_targets(
    items: Sequence[Source], *, output: Path | None, directory: Path, force: bool
) -> list[Path]:
    """Where each file goes; refuses unsafe names, two files at one place, and what is not a file in
    the way: a folder or a device always, a FIFO or a socket unless ``force`` (it is replaced, never
    opened)."""
    places = _Places()
    targets: list[Path] = []
    for item in items:
        if output is not None:
            target = _output_target(output)
            parts = [target.name]
        else:
            parts = save_parts(item)
            target = directory.joinpath(*parts)
        _check_room(item, target, force=force)
        places.take(item.where, parts, target)
        targets.append(target)
    return targets


def _output_target(output: Path) -> Path:
    """``-o FILE``: a file name as the one rule for names from servers has it, not a folder."""
    # os.path.isdir: a name the filesystem refuses (too long, ...) is no folder;
    # creatable_problem names it
    if os.path.isdir(output):  # noqa: PTH112
        raise UsageError(f"-o {output}: is a folder; use -d {output} to save into it")
    problem = path_problem(output.name)  # the same rule as for names from servers
    # get keeps its state in the folder's .mdl/
    if problem is None and reserved_by_mdl(output.name):
        problem = RESERVED_WHY
    if problem is not None:
        raise UnsafePathError(f"-o {output}: cannot be used as a file name: {problem}")
    return output


def _check_room(item: Source, target: Path, *, force: bool) -> None:
    """Nothing in the way a file cannot replace, and a place it can be created, before any byte is
    fetched or written."""
    kind = not_a_file(target)
    if kind is not None and not (force and kind in REPLACEABLE):
        hint = (
            "--force to replace it"
            if kind in REPLACEABLE
            else f"mdl never replaces {kind} with a file"
        )
        raise not_a_file_error(target, kind, where=f"{item.where}: ", hint=hint)
    problem = creatable_problem(target)
    if problem is not None:
        raise LocalFSError(
            f"{shown_path(item.where)}: cannot be saved at {shown_path(target)}: {problem}"
        )


class _Places:
    """The places the files of one get take, by name key (case and Unicode form ignored, as on
    macOS and Windows): two sources at one place, or a file where another's folder must be, are
    refused."""

    def __init__(self) -> None:
        self.files: dict[str, tuple[str, str]] = {}  # name key → (its spelling, source)
        self.folders: dict[str, tuple[str, str]] = {}  # name key → (its first spelling, source)

    def take(self, where: str, parts: Sequence[str], target: Path) -> None:
        """The file of ``where`` at ``parts`` (under -d), or UsageError naming what it clashes
        with."""
        name = "/".join(parts)
        key = name_key(name)
        if key in self.files:
            first, other = self.files[key]
            why = (
                ""
                if first == name
                else ": they differ only in case or Unicode form (one file on macOS and Windows)"
            )
            raise UsageError(f"{where} and {other} would both be saved as {target}{why}")
        if key in self.folders:
            raise UsageError(
                f"{where} would be saved as {target}, where {self.folders[key][1]} needs a folder"
            )
        for depth in range(1, len(parts)):
            spelled = "/".join(parts[:depth])
            folder = name_key(spelled)
            if folder in self.files:
                raise UsageError(
                    f"{where} needs a folder where {self.files[folder][1]} would be saved"
                )
            first, other = self.folders.setdefault(folder, (spelled, where))
            if first != spelled:  # 'Samples/a' and 'samples/b': one folder on macOS and Windows
                raise UsageError(
                    f"{where} needs the folder {shown(spelled)}, which {other} spells"
                    f" {shown(first)}: they differ only in case or Unicode form"
                )
        self.files[key] = (name, where)


def check_payloads(
    items: Sequence[Source], *, sha256: str | None, progress: Progress
) -> dict[int, InlineCheck]:
    """Decode every inline payload once without keeping it; refuse the whole job if any is wrong
    (lowest code wins).
    """
    checks: dict[int, InlineCheck] = {}
    errors: list[MdlError] = []
    inline = {index: item for index, item in enumerate(items) if isinstance(item, InlineFile)}
    progress.begin(
        total_bytes=sum(decoded_size(item) for item in inline.values()), files=len(inline)
    )
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
