"""The CAS replies mdl reads (hub-docs docs/xet/download-protocol.md, api.md, auth.md):
reconstructions (v1 and v2), read tokens and the Hub's X-Xet-* token headers, each read strictly:
what mdl cannot use is a ReplyError."""

from __future__ import annotations

import itertools
import re
from bisect import bisect_left
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from urllib.parse import urlsplit

from mdl.errors import OutsideJSONError
from mdl.outsidejson import EXACT_INTS, read_json
from mdl.xet._hashing import is_hash
from mdl.xet._xorb import HEADER_BYTES, MAX_CHUNK

# JSON numbers beyond this are not exact in every reader; no real offset or count comes near
_TEXT_LIMIT = 64_000  # auth.md: accessToken and casUrl are at most 64000 characters
# visible ASCII: a token goes into an Authorization header as it is
_TOKEN_CHARS = re.compile(r"[!-~]+")
_DIGITS = re.compile(r"[0-9]{1,16}")
# a reply's JSON has at most one value (a ``,``, ``{`` or ``[``) per this many bytes: a real one has
# one per 12-20 bytes; padding of tiny values (``[],`` or ``0,``) would cost 10-20x its size once
# parsed
_DENSITY = 8


class ReplyError(ValueError):
    """A reply mdl cannot use: not JSON, the wrong shape, or ranges that cannot be right."""


@dataclass(frozen=True, slots=True)
class Term:
    """Chunks [start, end) of a xorb, which decode to ``length`` bytes of the file."""

    xorb: str
    start: int
    end: int
    length: int


@dataclass(frozen=True, slots=True)
class Fetch:
    """Chunks [start, end) of ``xorb`` are bytes first..last (inclusive) of ``url``: send exactly
    that Range.
    """

    xorb: str
    url: str
    start: int
    end: int
    first: int
    last: int


@dataclass(frozen=True)
class Reconstruction:
    """A file as terms in order; ``fetches`` holds the fetches some term uses, in the order terms
    first need them, and ``fetch_of[i]`` is the index of term i's fetch (the reply's first fetch of
    its xorb that contains it)."""

    offset: int
    terms: tuple[Term, ...]
    fetches: tuple[Fetch, ...]
    fetch_of: tuple[int, ...]

    @property
    def size(self) -> int:
        """The file's length: the sum of its terms' lengths."""
        return sum(term.length for term in self.terms)

    @cached_property
    def offsets(self) -> tuple[int, ...]:
        """Where each term starts in the file."""
        return tuple(itertools.accumulate((term.length for term in self.terms), initial=0))[:-1]


@dataclass(frozen=True)
class XetToken:
    """A CAS read token, when it expires (unix seconds) and the CAS it is for (no trailing
    slash).
    """

    access_token: str
    expires: float
    cas_url: str


def _load(body: bytes | bytearray) -> object:
    """The JSON, refused before it is parsed when it is mostly tiny values (what parsing would
    multiply).
    """
    if (body.count(b",") + body.count(b"{") + body.count(b"[")) * _DENSITY > len(body) + 64:
        raise ReplyError("more values than a reply of its size holds")
    try:  # bounded where it is read
        return read_json(body, source="the reply", limit=len(body), pairs=_pairs)
    except OutsideJSONError as exc:
        raise ReplyError(exc.message) from None


def _pairs(pairs: list[tuple[str, object]]) -> object:
    """A JSON object as parsed: ``{"start": a, "end": b}`` (two per xorb range, one per term: most
    of a reply) as the tuple ``(a, b)`` (JSON has no tuples: nothing else parses to one), a third of
    a dict's memory; others a dict."""
    if len(pairs) == 2 and pairs[0][0] == "start" and pairs[1][0] == "end":
        return (pairs[0][1], pairs[1][1])
    return dict(pairs)


def _object(value: object, where: str) -> Mapping[str, object]:
    if not isinstance(value, dict):
        raise ReplyError(f"{where} is not an object")
    return value


def _list(value: object, where: str) -> list[object]:
    if not isinstance(value, list):
        raise ReplyError(f"{where} is not a list")
    return value


def _field(obj: Mapping[str, object], key: str, where: str) -> object:
    if key not in obj:
        raise ReplyError(f"{where} has no {key!r}")
    return obj[key]


def _int(obj: Mapping[str, object], key: str, where: str) -> int:
    return _whole(_field(obj, key, where), f"{where}.{key}")


def _whole(value: object, where: str) -> int:
    if type(value) is not int or not 0 <= value < EXACT_INTS:
        raise ReplyError(f"{where} is not a whole number from 0 to 2**53")
    return value


def _hash(value: object, where: str) -> str:
    if not is_hash(value):
        raise ReplyError(f"{where} is not a 64-character lowercase hex hash")
    return value


def _url(value: object, where: str) -> str:
    """An absolute http(s) URL with a host and nothing a request line cannot carry; never echoed (it
    may be presigned)."""
    if (
        not isinstance(value, str)
        or not 0 < len(value) <= _TEXT_LIMIT
        or not _TOKEN_CHARS.fullmatch(value)
    ):
        raise ReplyError(f"{where} is not a URL")
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 -- urlsplit checks the port only when asked
    except ValueError:
        raise ReplyError(f"{where} is not a URL") from None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ReplyError(f"{where} is not an http(s) URL")
    return value


def _span(obj: Mapping[str, object], key: str, where: str, *, inclusive: bool) -> tuple[int, int]:
    """A {start, end} range: end-exclusive (chunks: start < end) or end-inclusive (bytes: start
    <= end).
    """
    found = _field(obj, key, where)
    if isinstance(found, tuple):  # {"start": a, "end": b} as parsed (``_pairs``)
        start, end = (
            _whole(found[0], f"{where}.{key}.start"),
            _whole(found[1], f"{where}.{key}.end"),
        )
    else:
        inner = _object(found, f"{where}.{key}")
        start, end = _int(inner, "start", f"{where}.{key}"), _int(inner, "end", f"{where}.{key}")
    if end < start or (end == start and not inclusive):
        raise ReplyError(f"{where}.{key} ends before it starts")
    return start, end


def _fetch(
    xorb: str, url: str, chunks: tuple[int, int], byte_span: tuple[int, int], where: str
) -> Fetch:
    (start, end), (first, last) = chunks, byte_span
    if last - first + 1 < (end - start) * HEADER_BYTES:
        raise ReplyError(f"{where}: {last - first + 1} bytes cannot hold {end - start} chunks")
    return Fetch(xorb=xorb, url=url, start=start, end=end, first=first, last=last)


def _fetches_v1(reply: Mapping[str, object]) -> dict[str, list[Fetch]]:
    found: dict[str, list[Fetch]] = {}
    for key, entries in _object(_field(reply, "fetch_info", "the reply"), "fetch_info").items():
        xorb = _hash(key, "a fetch_info key")
        for i, entry in enumerate(_list(entries, f"fetch_info[{xorb[:8]}…]")):
            where = f"fetch_info[{xorb[:8]}…][{i}]"
            item = _object(entry, where)
            chunks = _span(item, "range", where, inclusive=False)
            byte_span = _span(item, "url_range", where, inclusive=True)
            url = _url(_field(item, "url", where), f"{where}.url")
            found.setdefault(xorb, []).append(_fetch(xorb, url, chunks, byte_span, where))
    return found


def _fetches_v2(reply: Mapping[str, object]) -> dict[str, list[Fetch]]:
    found: dict[str, list[Fetch]] = {}
    for key, entries in _object(_field(reply, "xorbs", "the reply"), "xorbs").items():
        xorb = _hash(key, "a xorbs key")
        for i, entry in enumerate(_list(entries, f"xorbs[{xorb[:8]}…]")):
            where = f"xorbs[{xorb[:8]}…][{i}]"
            item = _object(entry, where)
            url = _url(_field(item, "url", where), f"{where}.url")
            for j, piece in enumerate(_list(_field(item, "ranges", where), f"{where}.ranges")):
                at = f"{where}.ranges[{j}]"
                part = _object(piece, at)
                chunks = _span(part, "chunks", at, inclusive=False)
                byte_span = _span(part, "bytes", at, inclusive=True)
                found.setdefault(xorb, []).append(_fetch(xorb, url, chunks, byte_span, at))
    return found


def _term(value: object, where: str) -> Term:
    item = _object(value, where)
    xorb = _hash(_field(item, "hash", where), f"{where}.hash")
    start, end = _span(item, "range", where, inclusive=False)
    length = _int(item, "unpacked_length", where)
    if not 0 < length <= (end - start) * MAX_CHUNK:
        raise ReplyError(f"{where}: {end - start} chunks cannot decode to {length} bytes")
    return Term(xorb=xorb, start=start, end=end, length=length)


def _first_holders(
    terms: tuple[Term, ...], available: Mapping[str, list[Fetch]]
) -> list[Fetch | None]:
    """For each term, the first fetch of its xorb (in reply order) holding its chunks, or None; in
    O(n log n), not terms x fetches (a reply of many terms and many ranges of one xorb must not cost
    minutes of CPU). Per xorb, terms by start: the fetches starting at or before a term's start are
    added to a Fenwick tree over their ends (largest first) keeping the least reply index; the first
    holder is the least index among those ending at or after it."""
    found: list[Fetch | None] = [None] * len(terms)
    asked: dict[str, list[int]] = {}
    for i, term in enumerate(terms):
        asked.setdefault(term.xorb, []).append(i)
    for xorb, wanted in asked.items():
        candidates = available.get(xorb, [])
        ends = sorted({f.end for f in candidates})
        tree = [len(candidates)] * (len(ends) + 1)  # 1-based; rank 1 is the largest end
        by_start = sorted(range(len(candidates)), key=lambda j: candidates[j].start)
        added = 0
        for i in sorted(wanted, key=lambda i: terms[i].start):
            term = terms[i]
            while added < len(by_start) and candidates[by_start[added]].start <= term.start:
                j = by_start[added]
                rank = len(ends) - bisect_left(ends, candidates[j].end)
                while rank <= len(ends):
                    tree[rank] = min(tree[rank], j)
                    rank += rank & -rank
                added += 1
            # ranks of ends >= term.end
            best, rank = len(candidates), len(ends) - bisect_left(ends, term.end)
            while rank > 0:
                best = min(best, tree[rank])
                rank -= rank & -rank
            found[i] = candidates[best] if best < len(candidates) else None
    return found


def parse_reconstruction(
    body: bytes | bytearray, *, version: int, ranged: bool = False
) -> Reconstruction:
    """A /v1 or /v2 reconstruction reply for a whole file (``ranged``: for a byte range of it, which
    may start inside its first term), checked: every term has a fetch of its xorb that holds its
    chunks. Unknown keys are ignored; a known key that is wrong is a ReplyError."""
    if version not in (1, 2):
        raise ValueError(f"no reconstruction version {version}")
    reply = _object(_load(body), "the reply")
    if (offset := _int(reply, "offset_into_first_range", "the reply")) != 0 and not ranged:
        raise ReplyError(f"offset_into_first_range is {offset}, not 0, for a whole file")
    listed = _list(_field(reply, "terms", "the reply"), "terms")
    terms = tuple(_term(value, f"terms[{i}]") for i, value in enumerate(listed))
    # the parsed JSON of the terms goes before their fetches are read: not both at the peak
    listed.clear()
    holders = _first_holders(terms, _fetches_v1(reply) if version == 1 else _fetches_v2(reply))
    fetches: list[Fetch] = []
    index: dict[int, int] = {}  # id of an available Fetch -> its place in `fetches`
    fetch_of: list[int] = []
    for i, (term, fetch) in enumerate(zip(terms, holders, strict=True)):
        if fetch is None:
            raise ReplyError(
                f"terms[{i}]: no fetch holds chunks {term.start}-{term.end} of xorb"
                f" {term.xorb[:8]}…"
            )
        if id(fetch) not in index:
            index[id(fetch)] = len(fetches)
            fetches.append(fetch)
        fetch_of.append(index[id(fetch)])
    return Reconstruction(
        offset=offset, terms=terms, fetches=tuple(fetches), fetch_of=tuple(fetch_of)
    )


def _token(access_token: object, expires: object, cas_url: object) -> XetToken:
    if (
        not isinstance(access_token, str)
        or len(access_token) > _TEXT_LIMIT
        or not _TOKEN_CHARS.fullmatch(access_token)
    ):
        raise ReplyError("accessToken is not a token")
    if (
        isinstance(expires, bool)
        or not isinstance(expires, int | float)
        or not 0 <= expires < EXACT_INTS
    ):
        raise ReplyError("exp is not a time")
    return XetToken(
        access_token=access_token,
        expires=float(expires),
        cas_url=_url(cas_url, "casUrl").rstrip("/"),
    )


def parse_token(body: bytes | bytearray) -> XetToken:
    """The Hub's xet-read-token reply: {"accessToken", "exp" (unix seconds), "casUrl"}."""
    reply = _object(_load(body), "the reply")
    return _token(*(_field(reply, key, "the reply") for key in ("accessToken", "exp", "casUrl")))


def token_from_headers(headers: Mapping[str, str]) -> XetToken | None:
    """The token a Hub reply carries in X-Xet-Access-Token, X-Xet-Token-Expiration and
    X-Xet-Cas-Url; None unless all three are there and usable (the token endpoint is asked instead).
    Header names compare without case, whatever mapping holds them.
    """
    found = {name.lower(): value.strip() for name, value in headers.items()}
    access_token, expires, cas_url = (
        found.get(f"x-xet-{name}") for name in ("access-token", "token-expiration", "cas-url")
    )
    if access_token is None or cas_url is None or expires is None or not _DIGITS.fullmatch(expires):
        return None
    try:
        return _token(access_token, int(expires), cas_url)
    except ReplyError:
        return None
