"""``hf download``'s words in a one-off's sources: a bare repo id (``owner/name[/path]``) where no
such local file is, read as the Hub's ``hf://owner/name[/path]``; ``--revision`` and ``--repo-type``
applied to the hf:// sources that name neither."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence

from mdl.errors import UsageError
from mdl.redact import printable

# what ``hf download`` takes as a repo id, then the path of one file in it
REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+(?:/[^\s]+)?")
_HF = re.compile(r"hf://(?:(?P<type>datasets|spaces|models)/)?(?P<repo>[^/@]+/[^/@]+)(?P<rest>.*)")
REPO_TYPES = {"model": "", "dataset": "datasets/", "space": "spaces/"}
_TYPE_OF = {"datasets": "dataset", "spaces": "space", "models": "model", None: "model"}


def is_repo_id(source: str) -> bool:
    """Whether a source is an ``hf download`` repo id (``owner/name[/path]``) and no local file
    (a path that exists stays a job output; one that does not is said as read from the Hub)."""
    return REPO_ID.fullmatch(source) is not None and not os.path.lexists(source)


def _is_file_name(source: str) -> bool:
    """A plain file name (no folder, no scheme) that no local file has: after a bare repo id, as
    ``hf download REPO config.json`` names it, a file of that repo."""
    return (
        "/" not in source
        and ":" not in source
        and source not in ("-", ".", "..")
        and not os.path.lexists(source)
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
    repo: str | None = None  # the bare repo id before: hf download REPO FILE... names its files
    whole: int | None = None  # where that repo is in ``read``, while it still means all of it
    for source in sources:
        if repo is not None and _is_file_name(source):
            if whole is not None:  # its files, not the whole repo
                del read[whole]
                whole = None
            uri = _with(f"hf://{repo}/{source}", revision=revision, repo_type=repo_type)
            note(f"{source}: no such local file; fetching {uri} (a file of {repo}) from the Hub")
            read.append(uri)
        elif is_repo_id(source):
            uri = _with(f"hf://{source}", revision=revision, repo_type=repo_type)
            note(f"{source}: no such local file; fetching {uri} from the Hub")
            read.append(uri)
            repo = source if source.count("/") == 1 else None
            whole = len(read) - 1 if repo is not None else None
        elif source.startswith("hf://"):
            read.append(_with(source, revision=revision, repo_type=repo_type))
            repo = whole = None
        else:
            read.append(source)
            repo = whole = None
    _check_used(read, revision=revision, repo_type=repo_type)
    return read


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
    match = _HF.fullmatch(uri)
    if match is None or (revision is None and repo_type is None):
        return uri  # (a malformed one is parse_hf_uri's to refuse, in its words)
    kind, repo, rest = match.group("type"), match.group("repo"), match.group("rest")
    said = printable(uri, limit=300)
    if repo_type is not None:
        if kind is not None and _TYPE_OF[kind] != repo_type:
            raise UsageError(f"{said} is a {_TYPE_OF[kind]}, and --repo-type says {repo_type}")
        kind = REPO_TYPES[repo_type].rstrip("/") or None
    if revision is not None:
        if rest.startswith("@"):
            raise UsageError(
                f"{said} names its revision, and --revision says {printable(revision, limit=80)}"
            )
        rest = f"@{revision}{rest}"
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
