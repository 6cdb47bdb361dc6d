"""Hub web URLs (``.../blob/{rev}/{path}``, ``.../resolve/...``, a repo page) read as the
``hf://`` they stand for: every ``get`` reads its SOURCEs through here, so it asks nothing of the
Hub client. And ``hf download``'s words: a bare repo id (``owner/name[/path]``, or ``owner/name
FILE...``) where no such local file is, ``--revision`` and ``--repo-type`` put into the hf://
sources, and a catalog command's repo id answered with the line that gets it."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from urllib.parse import unquote, urlsplit

from mdl.errors import MdlError, UsageError
from mdl.paths import HF_URI_TYPES, check_revision, is_http_url, parse_hf_uri
from mdl.progress import Progress
from mdl.redact import printable, redact_url
from mdl.store.layout import REPO_TYPES
from mdl.transfer.connection import origin

# the Hub's own web origin: its page URLs are Hub files, whatever HF_ENDPOINT says
HUB_WEB = "https://huggingface.co"
log = logging.getLogger("mdl.hub")
# The segments the Hub's own pages start with: never an owner (a repo page URL is /{owner}/{name}).
_NOT_OWNERS = frozenset(
    {"api", "docs", "blog", "papers", "collections", "organizations", "settings", "models"}
)
_PREFIXES = {"datasets": "datasets/", "spaces": "spaces/"}
_REPO_PART = r"[\w.-]+"
_OWNER = r"[A-Za-z0-9][\w.-]*"
# refs/pr/N and refs/convert/X: the revisions with slashes hf:// can name
_REF_KINDS = ("pr", "convert")
_REF = r"refs/(?:pr|convert)/[\w.-]+"  # as mdl.paths's hf:// pattern takes them


def hub_page_as_hf(url: str, *, endpoint: str) -> str | None:
    """The ``hf://`` text a URL on the Hub at ``endpoint`` — or on huggingface.co, whatever the
    endpoint: a URL pasted from the browser names a Hub file wherever it is served from, as ``hf
    download`` with HF_ENDPOINT fetches it from the mirror — stands for:
    ``.../blob|resolve/{rev}/{path}`` a file, ``/{owner}/{name}`` and ``.../tree/{rev}`` the whole
    repo; None for any other URL (another origin, another shape, a revision with a '/' that hf://
    cannot name); UsageError for a folder's page or a revision a URL path folds away ('..'). The
    query and fragment (``?download=true``) are dropped; segments are URL-decoded
    (``refs%2Fpr%2F1``)."""
    segs = _hub_path_segments(url, endpoint=endpoint)
    if segs is None:
        return None
    named = _repo_named(segs)
    if named is None:
        return None
    repo, rest = named
    if not rest:
        return f"hf://{repo}"
    return _page_in_repo(url, repo, rest)


def _hub_path_segments(url: str, *, endpoint: str) -> list[str] | None:
    """The URL-decoded path segments of a URL on the Hub (at ``endpoint`` or huggingface.co) after
    the endpoint's own path; None for a URL elsewhere."""
    if not is_http_url(url) or not is_http_url(endpoint):
        return None
    if origin(url) == origin(endpoint):
        base = urlsplit(endpoint).path.rstrip("/")
    elif origin(url) == origin(HUB_WEB):
        base = ""
    else:
        return None
    path = urlsplit(url).path
    if base and not path.startswith(base + "/"):
        return None
    segs = [unquote(seg) for seg in path[len(base) :].split("/")[1:]]
    if segs and segs[-1] == "":
        segs.pop()  # a trailing '/'
    return segs


def _repo_named(segs: list[str]) -> tuple[str, list[str]] | None:
    """The repo id a page path starts with (``datasets/``, ``spaces/`` kept as hf:// says them)
    and the segments after it; None when the path names no repo."""
    prefix = _PREFIXES.get(segs[0], "") if segs else ""
    if prefix:
        segs = segs[1:]
    if len(segs) < 2 or segs[0] in _NOT_OWNERS:
        return None
    if not re.fullmatch(_OWNER, segs[0]) or not re.fullmatch(_REPO_PART, segs[1]):
        return None
    return f"{prefix}{segs[0]}/{segs[1]}", segs[2:]


def _page_in_repo(url: str, repo: str, rest: list[str]) -> str | None:
    """The hf:// of a ``blob|resolve|tree/{rev}[/{path}]`` page of ``repo``: a file, or the whole
    repo at a revision; UsageError for a folder's page or a revision a URL path folds away."""
    kind = rest[0]
    if kind not in ("blob", "resolve", "tree") or len(rest) < 2:
        return None
    revision, parts = _revision(rest[1:])
    # '..' or '%2E%2E' would ask for the default branch
    check_revision(revision, where=redact_url(url))
    if "/" in revision and not re.fullmatch(_REF, revision):
        return None
    file = "/".join(parts)
    if kind == "tree" and file:  # a folder's page: no hf:// names a folder alone
        raise UsageError(
            f"{redact_url(url)}: is the Hub page of a folder of {repo}",
            hint=f"to fetch that folder, give hf://{repo}@{revision} --include '{file}/*'",
        )
    if kind == "tree":
        return f"hf://{repo}@{revision}"
    return f"hf://{repo}@{revision}/{file}" if file else None


def _revision(segs: list[str]) -> tuple[str, list[str]]:
    """The revision at the front of ``segs`` (one segment, or ``refs/pr/N`` written with its
    slashes) and the rest.
    """
    if len(segs) >= 3 and segs[0] == "refs" and segs[1] in _REF_KINDS:
        return "/".join(segs[:3]), segs[3:]
    return segs[0], segs[1:]


def read_hub_pages(sources: Sequence[str], *, endpoint: str, progress: Progress) -> list[str]:
    """``sources`` with each URL on the Hub that names a file or a repo replaced by its ``hf://`` (a
    note says which): the token, the listing's checks and the catalog entry are then those of hf://,
    as a user of the Hub expects."""
    read: list[str] = []
    for source in sources:
        uri = hub_page_as_hf(source, endpoint=endpoint)
        if uri is not None:
            served = (
                ""
                if origin(source) == origin(endpoint)
                else f" (from the Hub at {redact_url(endpoint)})"
            )
            log.info("reading %s as %s%s", redact_url(source), uri, served)
            progress.note(f"mdl: reading {redact_url(source)} as {uri}{served}")
        read.append(source if uri is None else uri)
    return read


# -- hf download's words

# what ``hf download`` takes as a repo id, then the path of one file in it
REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+(?:/[^\s]+)?")
_HF = r"hf://(?:(?P<type>datasets|spaces|models)/)?(?P<repo>[^/@]+/[^/@]+)(?P<rest>.*)"


def is_repo_id(source: str) -> bool:
    """Whether a source is an ``hf download`` repo id (``owner/name[/path]``) and no local file
    (a file that exists stays a job output; a folder is none: ``--local-dir owner/name``; nor is
    the very file a get saved there from that repo, the same line run again)."""
    if REPO_ID.fullmatch(source) is None:
        return False
    return not os.path.lexists(source) or Path(source).is_dir() or _saved_from_the_hub(source)


def _saved_from_the_hub(source: str) -> bool:
    """Whether ``owner/name/path`` is the file a get saved into the folder ``owner/name`` from that
    repo's ``path`` (its record, ``owner/name/.mdl/get.json``, says so)."""
    from mdl.store.layout import parse_hub_source
    from mdl.store.store import Store

    owner, name, path = source.split("/", 2) if source.count("/") > 1 else (source, "", "")
    if not path:
        return False
    try:  # (a get's record: model ""; a folder on the way no command uses is no get's)
        record = Store(Path(owner, name)).read_record("")
    except MdlError:
        return False
    entry = None if record is None else record.files.get(path)
    hub = None if entry is None else parse_hub_source(entry.source)
    return hub is not None and (hub.repo, hub.path) == (f"{owner}/{name}", path)


def _is_file_name(source: str) -> bool:
    """A relative path with no scheme (``config.json``, ``onnx/model.onnx``): after a repo (a bare
    id, or an hf:// with no path), as ``hf download REPO FILE...`` names them, a file of that repo,
    whatever local file has its name (the last run's ``config.json``, saved here). ``./x``, ``/x``,
    ``~/x`` and ``..`` stay local (a job output)."""
    return (
        ":" not in source
        and not source.startswith(("/", "./", "~"))
        and not {"", ".", ".."} & set(source.split("/"))
        and source != "-"
    )


def hub_words(
    sources: Sequence[str],
    *,
    revision: str | None,
    repo_type: str | None,
    note: Callable[[str], None],
) -> list[str]:
    """The sources with each bare repo id read as its hf:// URI (said once each through ``note``:
    a user who meant a local file sees what was read), then ``revision`` and ``repo_type`` put into
    each hf:// source; UsageError when they contradict one (exit 2) or no source is the Hub's."""
    if repo_type is not None and repo_type not in REPO_TYPES:
        raise UsageError(
            f"--repo-type {printable(repo_type, limit=40)}: expected model, dataset or space"
        )
    read: list[str] = []
    # the repo before (a bare id, an hf:// with no path): hf download REPO FILE... names its files
    repo: str | None = None
    whole: int | None = None  # where that repo is in ``read``, while it still means all of it
    for source in sources:
        if repo is not None and _is_file_name(source):
            if whole is not None:  # its files, not the whole repo
                del read[whole]
                whole = None
            uri = _with(_file_of(repo, source), revision=revision, repo_type=repo_type)
            note(f"{source}: a file of {repo}; fetching {uri} from the Hub")
            read.append(uri)
            continue
        bare = is_repo_id(source)
        uri = _with(f"hf://{source}" if bare else source, revision=revision, repo_type=repo_type)
        if bare:
            local = Path(source).is_file()  # (one a get saved from that repo: is_repo_id)
            said = "the file a get saved from the Hub" if local else "no such local file"
            note(f"{source}: {said}; fetching {uri} from the Hub")
        read.append(uri)
        repo = _whole_repo(source, bare=bare)
        whole = len(read) - 1 if repo is not None else None
    _check_used(read, revision=revision, repo_type=repo_type)
    return read


def _file_of(repo: str, source: str) -> str:
    """The hf:// of the file ``source`` names in ``repo`` (as given: ``owner/name`` or hf://)."""
    if "*" in source or "?" in source:  # hf's `--include A B`: B is no file
        raise UsageError(
            f"{printable(source, limit=100)}: a pattern, not a file of {repo}",
            hint="one pattern each: --include '*.json' --include '*.txt'",
        )
    return f"{repo if repo.startswith('hf://') else f'hf://{repo}'}/{source}"


def _whole_repo(source: str, *, bare: bool) -> str | None:
    """The repo a source names whole (names after it are its files): a bare repo id ``owner/name``,
    or an hf:// with no path (without its trailing '/'); None for any other source."""
    if bare:
        return source if source.count("/") == 1 else None
    if source.startswith("hf://") and parse_hf_uri(source).path is None:
        return source.rstrip("/")
    return None


def _check_used(read: Sequence[str], *, revision: str | None, repo_type: str | None) -> None:
    """--revision and --repo-type name a Hub source's: with none, exit 2."""
    if (revision or repo_type) and not any(s.startswith("hf://") for s in read):
        flag = "--revision" if revision else "--repo-type"
        raise UsageError(
            f"{flag} is for Hub sources (hf://owner/name or owner/name); none was given",
            hint="a URL names its version itself",
        )


def _with(uri: str, *, revision: str | None, repo_type: str | None) -> str:
    """``uri`` with ``revision`` (as ``@rev`` after the repo) and ``repo_type`` (as its
    ``datasets/``, ``spaces/`` prefix), unless it says another (exit 2, naming both)."""
    match = re.fullmatch(_HF, uri)
    if match is None or (revision is None and repo_type is None):
        return uri  # (a malformed one is parse_hf_uri's to refuse, in its words)
    kind, repo, rest = match.group("type"), match.group("repo"), match.group("rest")
    said = printable(uri, limit=300)
    if repo_type is not None:
        if kind is not None and HF_URI_TYPES[kind] != repo_type:
            raise UsageError(f"{said} is a {HF_URI_TYPES[kind]}, and --repo-type says {repo_type}")
        kind = REPO_TYPES[repo_type].rstrip("/") or None
    if revision is not None and not rest.startswith("@"):
        rest = f"@{revision}{rest}"
    elif revision is not None and parse_hf_uri(uri).revision != revision:  # both: they agree
        raise UsageError(
            f"{said} names its revision, and --revision says {printable(revision, limit=80)}"
        )
    return f"hf://{kind + '/' if kind else ''}{repo}{rest}"


def as_hub_repo(error: UsageError, names: Sequence[str]) -> UsageError:
    """A catalog command's error (no catalog, an unknown name) for a name that is a Hub repo id
    (``mdl pull owner/name``, as ``hf download`` takes it): said with the lines that get it."""
    said = error.message
    repo = next(
        (
            n
            for n in names
            if REPO_ID.fullmatch(n)
            and n.count("/") == 1
            and said.startswith(("no catalog", f"unknown model {n!r}"))
        ),
        None,
    )
    if repo is None:
        return error
    name = repo.rsplit("/", 1)[1]
    why = "no catalog found" if said.startswith("no catalog") else "no such catalog name"
    return UsageError(
        f"{printable(repo, limit=200)}: {why}; a Hub repo is fetched by: mdl get hf://{repo}",
        hint=f"or keep it in the catalog: mdl add {name} hf://{repo} && mdl pull {name}",
    )
