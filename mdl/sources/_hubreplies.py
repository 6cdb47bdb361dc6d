"""The one validating layer for Hub replies (strict checks, by hand: pydantic's models cost a Hub
pull ~80 ms of start-up): anything unexpected is a HubReplyError, named by where it is in the
reply (``0.lfs.oid``) and what it should be, in pydantic's words.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, NamedTuple, TypeVar, cast
from urllib.parse import unquote, urljoin, urlsplit

from mdl.errors import HubReplyError, OutsideJSONError
from mdl.outsidejson import read_json
from mdl.paths import GIT_OID_HEX, SHA256_HEX
from mdl.redact import Secrets, printable, redact_text, redact_url
from mdl.transfer.connection import origin

if TYPE_CHECKING:
    import httpx2

log = logging.getLogger("mdl.hub")
_Reply = TypeVar("_Reply")
EXCERPT_CHARS = 200
# a commit or git blob id, an LFS file's sha256 (matched whole; written as the messages say them)
_GIT_OID = re.compile(r"^[0-9a-f]{40}$")
_LFS_OID = re.compile(r"^[0-9a-f]{64}$")
# Characters no file name from a listing may hold: controls (C0, DEL, C1), line and paragraph
# separators, lone surrogates, and the bidi overrides/isolates that make "x\u202etxt.exe" show as
# "xexe.txt".
_BIDI = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f")
_REFUSED_CATEGORIES = frozenset({"Cc", "Zl", "Zp", "Cs"})


def xet_hash(value: object, *, where: str) -> str | None:
    """``value`` when it is a Xet hash (64 lowercase hex digits), else None with a debug line: a Hub
    field mdl does not need to fetch the file (it is then fetched whole, as before), never a reason
    to refuse a reply."""
    if isinstance(value, str) and SHA256_HEX.fullmatch(value):
        return value
    if value is not None:
        log.debug(
            "%s: ignoring a Xet hash that is not 64 lowercase hex digits: %s",
            where,
            printable(repr(value)[:80]),
        )
    return None


def name_problem(path: str) -> str | None:
    """Why a listing path cannot be a file name here (a control or invisible character), or None."""
    for ch in path:
        if unicodedata.category(ch) in _REFUSED_CATEGORIES or ch in _BIDI:
            return f"it contains the control character U+{ord(ch):04X}"
    return None


class RevisionInfo(NamedTuple):  # GET /api/{type}s/{repo}/revision/{rev}: only the commit id
    sha: str


class LfsInfo(NamedTuple):  # a tree entry's LFS pointer: the file's sha256 and real size
    oid: str
    size: int


class TreeEntry(NamedTuple):  # GET /api/{type}s/{repo}/tree/{commit}?recursive=true
    type: Literal["file", "directory"]
    path: str
    size: int
    oid: str  # git blob (or tree) id
    lfs: LfsInfo | None = None
    xet_hash: str | None = None  # the file's Xet hash; not one: as if absent


class _Refused(Exception):
    """Where in a reply (its keys and indexes, dotted) and what it should be."""

    def __init__(self, where: str, why: str) -> None:
        super().__init__(f"{where}: {why}" if where else why)


def _object(value: object, where: str, kind: str) -> Mapping[str, object]:
    # unknown keys are the Hub's to add (lastCommit, securityFileStatus...); known ones: right
    if not isinstance(value, dict):
        raise _Refused(where, f"Input should be a valid dictionary or instance of {kind}")
    return cast("Mapping[str, object]", value)


def _field(found: Mapping[str, object], key: str, where: str) -> tuple[str, object]:
    at = f"{where}.{key}" if where else key
    if key not in found:
        raise _Refused(at, "Field required")
    return at, found[key]


def _text(
    found: Mapping[str, object], key: str, where: str, pattern: re.Pattern[str] | None = None
) -> str:
    at, value = _field(found, key, where)
    if not isinstance(value, str):
        raise _Refused(at, "Input should be a valid string")
    if pattern is not None:
        _unicode(at, value)  # (pydantic's patterns and literals read the text as UTF-8)
    if pattern is not None and not pattern.fullmatch(value):
        raise _Refused(at, f"String should match pattern '{pattern.pattern}'")
    return value


def _unicode(at: str, value: str) -> None:
    """A JSON string whose escapes make no text (a lone surrogate, ``"\\ud800"``) is refused."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise _Refused(
            at, "Input should be a valid string, unable to parse raw data as a unicode string"
        ) from None


def _size_of(found: Mapping[str, object], key: str, where: str) -> int:
    at, value = _field(found, key, where)
    if not isinstance(value, int) or isinstance(value, bool):  # (strict: no true, no 1.0)
        raise _Refused(at, "Input should be a valid integer")
    if value < 0:
        raise _Refused(at, "Input should be greater than or equal to 0")
    return value


def _revision(document: object) -> RevisionInfo:
    return RevisionInfo(_text(_object(document, "", "RevisionInfo"), "sha", "", _GIT_OID))


def _tree_page(document: object) -> list[TreeEntry]:
    if not isinstance(document, list):
        raise _Refused("", "Input should be a valid list")
    return [_entry(item, str(index)) for index, item in enumerate(document)]


def _entry(item: object, where: str) -> TreeEntry:
    found = _object(item, where, "TreeEntry")
    at, kind = _field(found, "type", where)
    if isinstance(kind, str):
        _unicode(at, kind)
    if kind not in ("file", "directory"):
        raise _Refused(at, "Input should be 'file' or 'directory'")
    path = _text(found, "path", where)
    if (problem := name_problem(path)) is not None:
        raise _Refused(
            f"{where}.path", f"hostile listing: path {printable(path, limit=120)!r}: {problem}"
        )
    size, oid = _size_of(found, "size", where), _text(found, "oid", where, _GIT_OID)
    lfs = found.get("lfs")
    if lfs is not None:
        pointer = _object(lfs, f"{where}.lfs", "LfsInfo")
        lfs = LfsInfo(
            _text(pointer, "oid", f"{where}.lfs", _LFS_OID),
            _size_of(pointer, "size", f"{where}.lfs"),
        )
    xet = xet_hash(
        found.get("xetHash"), where=f"{printable(path, limit=120)}: the listing's xetHash"
    )
    return TreeEntry(kind, path, size, oid, lfs, xet)


@dataclass(frozen=True)
class FileMetadata:
    """What the HEAD of a resolve URL says: the commit, the ETag (sha256 for LFS, git blob id
    otherwise), the size.
    """

    commit: str | None
    etag: str | None
    size: int | None
    xet_hash: str | None = None  # X-Xet-Hash: the file is stored in Xet
    # where its read token is (``Link: <…>; rel="xet-auth"``), on the Hub's origin
    xet_auth: str | None = None
    # where the Hub redirected it (off its origin: the CDN), the URL its ranges are asked at
    location: str | None = None

    @property
    def sha256(self) -> str | None:
        """The ETag when it is a sha256 (an LFS file's), else None."""
        return self.etag if SHA256_HEX.fullmatch(self.etag or "") else None

    @property
    def git_oid(self) -> str | None:
        """The ETag when it is a git blob id (a file in git), else None."""
        return self.etag if GIT_OID_HEX.fullmatch(self.etag or "") else None


def parse_xet_head(
    response: httpx2.Response, *, endpoint: str, what: str
) -> tuple[str, str] | None:
    """A resolve HEAD's Xet hash and token URL (huggingface_hub's reading of ``X-Xet-Hash`` and the
    ``xet-auth`` link), or None: none, not a hash, or a token URL off the Hub's origin (the Hub
    token goes nowhere else)."""
    from huggingface_hub.utils import parse_xet_file_data_from_response  # type: ignore[attr-defined]

    found = parse_xet_file_data_from_response(response, endpoint=endpoint)
    if found is None:
        return None
    file_hash = xet_hash(found.file_hash, where=f"{what}: X-Xet-Hash")
    try:
        same = origin(found.refresh_route) == origin(endpoint)
    except ValueError:
        same = False
    if not same:
        log.debug(
            "%s: ignoring a Xet token URL off the Hub: %s",
            what,
            printable(redact_url(found.refresh_route)),
        )
    return (file_hash, found.refresh_route) if file_hash is not None and same else None


def reply_error(
    what: str, url: str, body: bytes | str, problem: str, *, secrets: Secrets | None = None
) -> HubReplyError:
    """The one error for a reply mdl cannot use: model, redacted URL, what is wrong, start of the
    body (without the run's ``secrets``: a page may quote the token sent)."""
    text = body.decode("utf-8", errors="replace") if isinstance(body, bytes) else body
    excerpt = text[: EXCERPT_CHARS * 4]
    excerpt = (
        printable(redact_text(excerpt, secrets=secrets), limit=EXCERPT_CHARS)
        if text.strip()
        else ""
    )
    starts = f"; the reply starts: {excerpt}" if excerpt else "; the reply was empty"
    return HubReplyError(
        f"{what}: unexpected reply from {redact_url(url)}: {printable(problem, limit=300)}{starts}",
        hint="check HF_ENDPOINT, a proxy or captive portal in the way, or try again later",
    )


def parse_revision(
    body: bytes, *, what: str, url: str, secrets: Secrets | None = None
) -> RevisionInfo:
    return _parse(_revision, body, what=what, url=url, secrets=secrets)


def parse_tree_page(
    body: bytes, *, what: str, url: str, secrets: Secrets | None = None
) -> list[TreeEntry]:
    return _parse(_tree_page, body, what=what, url=url, secrets=secrets)


def _parse(
    check: Callable[[object], _Reply], body: bytes, *, what: str, url: str, secrets: Secrets | None
) -> _Reply:
    try:  # bounded where it is read (the Hub's MAX_REPLY_BYTES)
        return check(read_json(body, source="the reply", limit=len(body)))
    except OutsideJSONError as exc:
        problem = exc.message.removeprefix("the reply: ")
        raise reply_error(what, url, body, problem, secrets=secrets) from None
    except _Refused as exc:
        raise reply_error(what, url, body, str(exc), secrets=secrets) from None


def _size(value: str | None, *, header: str, what: str, url: str) -> int | None:
    if value is None:
        return None
    text = value.strip()
    if not text.isascii() or not text.isdigit() or len(text) > 20:
        raise reply_error(
            what, url, "", f"header {header} is not a size: {printable(value, limit=60)!r}"
        )
    return int(text)


def parse_file_metadata(
    headers: Mapping[str, str], *, total: int | None, what: str, url: str
) -> FileMetadata:
    """X-Repo-Commit, X-Linked-Etag (else ETag), X-Linked-Size (else ``total``: the size the answer
    itself states, None for a redirect) of a resolve answer; missing: None.
    """
    commit = headers.get("X-Repo-Commit")
    if commit is not None and not GIT_OID_HEX.fullmatch(commit):
        raise reply_error(
            what, url, "", f"X-Repo-Commit is not a commit id: {printable(commit, limit=60)!r}"
        )
    etag = headers.get("X-Linked-Etag") or headers.get("ETag")
    # 'W/"x"' and '"x"' both mean x
    etag = (etag.removeprefix("W/").strip('"') or None) if etag else None
    if etag is not None and name_problem(etag) is not None:
        raise reply_error(
            what, url, "", f"the ETag holds control characters: {printable(etag, limit=80)!r}"
        )
    size = _size(headers.get("X-Linked-Size"), header="X-Linked-Size", what=what, url=url)
    return FileMetadata(commit=commit, etag=etag, size=total if size is None else size)


def next_page_url(link: str | None, *, current: str, first: str, what: str) -> str | None:
    """The ``Link: rel="next"`` target of a listing page (None on the last). It must be the same
    listing as ``first`` (the page asked for first): the same origin and the same path, so the same
    repo at the same commit; another is hostile (a next page that merged another repo's files into
    the model, or sent the token elsewhere)."""
    if not link:
        return None
    try:
        target = urljoin(current, link)
        target_origin: tuple[str, str, int] | None = origin(target)
    except ValueError:  # '[' without ']', a port that is not a number or out of range
        target_origin = None
    if target_origin != origin(first):
        shown = (
            f"{target_origin[0]}://{target_origin[1]}:{target_origin[2]}"
            if target_origin
            else "a malformed URL"
        )
        raise HubReplyError(
            f"{what}: hostile listing from {redact_url(current)}: its next page is on another"
            f" origin ({printable(shown, limit=120)}); refused, nothing was sent there",
            hint="the Hub (or what answers at HF_ENDPOINT) must page within its own origin",
        )
    if unquote(urlsplit(target).path) != unquote(urlsplit(first).path):
        raise HubReplyError(
            f"{what}: hostile listing from {redact_url(current)}: its next page is another listing"
            f" ({printable(redact_url(target), limit=200)}), not {urlsplit(first).path}; refused,"
            " its files are not the model's",
            hint="a listing's pages must stay in one repo at one commit",
        )
    return target
