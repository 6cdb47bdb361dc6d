"""The CAS replies, read strictly: v1 and v2 reconstructions, read tokens, and the Hub's X-Xet-*
token headers. Whatever a server sends, the parsers give a usable object or a ReplyError (for
headers: None), nothing else."""

from __future__ import annotations

import copy
import json
from typing import Any

import httpx2
import pytest
from clocks import lines_run
from hypothesis import given, settings
from hypothesis import strategies as st
from profiles import examples

from mdl.xet import _protocol as protocol
from mdl.xet._hashing import to_hex
from mdl.xet._protocol import (
    Fetch,
    Reconstruction,
    ReplyError,
    Term,
    XetToken,
    parse_reconstruction,
    parse_token,
    token_from_headers,
)
from mdl.xet._xorb import MAX_CHUNK

H1 = "a1b2c3d4e5f6789012345678901234567890abcdef1234567890abcdef123456"
# 61 characters in the doc
H2_AS_DOCUMENTED = "fedcba0987654321098765432109876543210fedcba098765432109876543"
H2 = H2_AS_DOCUMENTED + "210"
SIGNED = "?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Expires=3600&X-Amz-Signature=d6796aa6097c82ba7e33b4725e8396f8"
URL1 = f"https://transfer.xethub.hf.co/xorb/default/{H1}{SIGNED}"


def _v1_example(second: str) -> dict[str, Any]:
    """download-protocol.md's "More complex QueryReconstruction Example"."""
    url2 = f"https://transfer.xethub.hf.co/xorb/default/{second}{SIGNED}"
    return {
        "offset_into_first_range": 0,
        "terms": [
            {"hash": H1, "unpacked_length": 263873, "range": {"start": 1, "end": 4}},
            {"hash": second, "unpacked_length": 143890, "range": {"start": 0, "end": 3}},
            {"hash": H1, "unpacked_length": 3063572, "range": {"start": 3, "end": 43}},
        ],
        "fetch_info": {
            H1: [
                {
                    "range": {"start": 1, "end": 43},
                    "url": URL1,
                    "url_range": {"start": 57980, "end": 1433008},
                }
            ],
            second: [
                {
                    "range": {"start": 0, "end": 3},
                    "url": url2,
                    "url_range": {"start": 0, "end": 65670},
                }
            ],
        },
    }


def body(reply: object) -> bytes:
    return json.dumps(reply).encode()


def test_the_documented_v1_example_reads_with_one_fetch_for_two_terms() -> None:
    parsed = parse_reconstruction(body(_v1_example(H2)), version=1)
    assert parsed.offset == 0
    assert parsed.terms == (
        Term(xorb=H1, start=1, end=4, length=263873),
        Term(xorb=H2, start=0, end=3, length=143890),
        Term(xorb=H1, start=3, end=43, length=3063572),
    )
    assert parsed.fetches[0] == Fetch(xorb=H1, url=URL1, start=1, end=43, first=57980, last=1433008)
    assert (parsed.fetches[1].xorb, parsed.fetches[1].first, parsed.fetches[1].last) == (
        H2,
        0,
        65670,
    )
    assert parsed.fetch_of == (0, 1, 0)  # chunk 3 of H1 serves terms 0 and 2: fetched once
    assert parsed.size == 263873 + 143890 + 3063572


def test_the_documented_example_as_printed_has_a_61_character_hash_and_is_refused() -> None:
    with pytest.raises(ReplyError, match=r"terms\[1\]\.hash is not a 64-character"):
        parse_reconstruction(body(_v1_example(H2_AS_DOCUMENTED)), version=1)


def test_the_first_v1_example_reads() -> None:
    reply = {
        "offset_into_first_range": 0,
        "terms": [{"hash": H1, "unpacked_length": 263873, "range": {"start": 0, "end": 4}}],
        "fetch_info": {
            H1: [
                {
                    "range": {"start": 0, "end": 4},
                    "url": f"https://transfer.xethub.hf.co/xorb/default/{H1}",
                    "url_range": {"start": 0, "end": 131071},
                }
            ]
        },
    }
    parsed = parse_reconstruction(body(reply), version=1)
    assert parsed.fetches == (
        Fetch(
            xorb=H1,
            url=f"https://transfer.xethub.hf.co/xorb/default/{H1}",
            start=0,
            end=4,
            first=0,
            last=131071,
        ),
    )


def _v2_example() -> dict[str, Any]:
    """api.md's QueryReconstructionResponseV2: one signed URL per xorb entry, each covering
    several ranges.
    """
    return {
        "offset_into_first_range": 0,
        "terms": [
            {"hash": H1, "unpacked_length": 200_000, "range": {"start": 0, "end": 2}},
            {"hash": H2, "unpacked_length": 100_000, "range": {"start": 5, "end": 7}},
            {"hash": H1, "unpacked_length": 300_000, "range": {"start": 10, "end": 13}},
        ],
        "xorbs": {
            H1: [
                {
                    "url": "https://cas.test/v2/xorb/a?sig=1",
                    "ranges": [
                        {"chunks": {"start": 0, "end": 2}, "bytes": {"start": 0, "end": 99_999}},
                        {
                            "chunks": {"start": 10, "end": 13},
                            "bytes": {"start": 500_000, "end": 650_000},
                        },
                    ],
                }
            ],
            H2: [
                {"url": "https://cas.test/v2/xorb/b?sig=2", "ranges": []},
                {
                    "url": "https://cas.test/v2/xorb/b?sig=3",
                    "ranges": [
                        {"chunks": {"start": 4, "end": 8}, "bytes": {"start": 10, "end": 90_000}}
                    ],
                },
            ],
        },
        "extra": {"ignored": True},
    }


def test_a_v2_reply_gives_one_fetch_per_range_entry_with_its_url() -> None:
    parsed = parse_reconstruction(body(_v2_example()), version=2)
    assert parsed.fetches == (
        Fetch(
            xorb=H1, url="https://cas.test/v2/xorb/a?sig=1", start=0, end=2, first=0, last=99_999
        ),
        Fetch(
            xorb=H2, url="https://cas.test/v2/xorb/b?sig=3", start=4, end=8, first=10, last=90_000
        ),
        Fetch(
            xorb=H1,
            url="https://cas.test/v2/xorb/a?sig=1",
            start=10,
            end=13,
            first=500_000,
            last=650_000,
        ),
    )
    assert parsed.fetch_of == (0, 1, 2)
    assert parsed.size == 600_000


def test_the_version_decides_which_key_holds_the_fetches() -> None:
    with pytest.raises(ReplyError, match="has no 'fetch_info'"):
        parse_reconstruction(body(_v2_example()), version=1)
    with pytest.raises(ReplyError, match="has no 'xorbs'"):
        parse_reconstruction(body(_v1_example(H2)), version=2)
    with pytest.raises(ValueError, match="no reconstruction version 3"):
        parse_reconstruction(body(_v1_example(H2)), version=3)


def test_a_term_takes_the_first_fetch_that_holds_it_and_unused_fetches_are_dropped() -> None:
    reply = _v1_example(H2)
    narrow = {
        "range": {"start": 1, "end": 5},
        "url": "https://a.test/narrow",
        "url_range": {"start": 0, "end": 999},
    }
    unused = {
        "range": {"start": 50, "end": 60},
        "url": "https://a.test/unused",
        "url_range": {"start": 0, "end": 999},
    }
    reply["fetch_info"][H1][:0] = [unused, narrow]
    parsed = parse_reconstruction(body(reply), version=1)
    assert [f.url for f in parsed.fetches] == ["https://a.test/narrow", parsed.fetches[1].url, URL1]
    # term 0 (1-4) fits the narrow fetch; term 2 (3-43) only the wide one
    assert parsed.fetch_of == (0, 1, 2)


@pytest.mark.parametrize(
    ("fetch_range", "message"),
    [
        ({"start": 2, "end": 43}, "no fetch holds chunks 1-4 of xorb a1b2c3d4"),
        ({"start": 1, "end": 3}, "no fetch holds chunks 1-4"),
    ],
)
def test_a_term_no_fetch_holds_is_refused(fetch_range: dict[str, int], message: str) -> None:
    reply = _v1_example(H2)
    reply["fetch_info"][H1][0]["range"] = fetch_range
    with pytest.raises(ReplyError, match=message):
        parse_reconstruction(body(reply), version=1)


def test_a_term_whose_xorb_has_no_fetch_is_refused() -> None:
    reply = _v1_example(H2)
    del reply["fetch_info"][H2]
    with pytest.raises(ReplyError, match=r"terms\[1\]: no fetch holds chunks 0-3 of xorb fedcba09"):
        parse_reconstruction(body(reply), version=1)


def test_an_empty_file_has_no_terms() -> None:
    parsed = parse_reconstruction(
        b'{"offset_into_first_range": 0, "terms": [], "fetch_info": {}}', version=1
    )
    assert parsed == Reconstruction(offset=0, terms=(), fetches=(), fetch_of=())
    assert parsed.size == 0


def _set(reply: dict[str, Any], path: str, value: object) -> dict[str, Any]:
    changed = copy.deepcopy(reply)
    *parents, last = path.split(".")
    node: Any = changed
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    if value is DELETE:
        del node[last]
    else:
        node[int(last) if isinstance(node, list) else last] = value
    return changed


DELETE = object()
F1 = f"fetch_info.{H1}.0"


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("offset_into_first_range", 5, "offset_into_first_range is 5, not 0"),
        ("offset_into_first_range", -1, "whole number"),
        ("offset_into_first_range", 1.0, "whole number"),
        ("offset_into_first_range", True, "whole number"),
        ("offset_into_first_range", DELETE, "has no 'offset_into_first_range'"),
        ("terms", {}, "terms is not a list"),
        ("terms.0", [], r"terms\[0\] is not an object"),
        ("terms.0.hash", H1.upper(), r"terms\[0\]\.hash is not a 64-character"),
        ("terms.0.unpacked_length", 0, "3 chunks cannot decode to 0 bytes"),
        (
            "terms.0.unpacked_length",
            3 * MAX_CHUNK + 1,
            f"3 chunks cannot decode to {3 * MAX_CHUNK + 1} bytes",
        ),
        ("terms.0.unpacked_length", 2**53, "whole number from 0 to 2\\*\\*53"),
        ("terms.0.range.start", 4, r"terms\[0\]\.range ends before it starts"),
        ("terms.0.range.end", DELETE, "has no 'end'"),
        ("terms.0.range", [1, 4], r"terms\[0\]\.range is not an object"),
        ("fetch_info", [], "fetch_info is not an object"),
        (f"fetch_info.{H1}", {}, "is not a list"),
        (f"{F1}.url_range.end", 57979, "url_range ends before it starts"),
        (f"{F1}.url_range.end", 57980 + 42 * 8 - 2, "cannot hold 42 chunks"),
        (f"{F1}.range.end", 1, r"range ends before it starts"),
        (f"{F1}.url", "ftp://transfer.xethub.hf.co/x", "url is not an http"),
        (f"{F1}.url", "https:///no-host", "url is not an http"),
        (f"{F1}.url", "https://h.test/a b", "url is not a URL"),
        (f"{F1}.url", "https://[::1/x", "url is not a URL"),
        (f"{F1}.url", "https://h.test:99999/x", "url is not a URL"),
        (f"{F1}.url", 7, "url is not a URL"),
    ],
)
def test_each_wrong_field_is_a_reply_error_naming_it(
    path: str, value: object, message: str
) -> None:
    with pytest.raises(ReplyError, match=message):
        parse_reconstruction(body(_set(_v1_example(H2), path, value)), version=1)


def test_a_fetch_info_key_that_is_not_a_hash_is_refused() -> None:
    reply = _v1_example(H2)
    reply["fetch_info"]["not-a-hash"] = []
    with pytest.raises(ReplyError, match="a fetch_info key is not"):
        parse_reconstruction(body(reply), version=1)


@pytest.mark.parametrize(
    "raw", [b"", b"{", b"\xff\xfe\x00", b"[]", b"null", b"1" * 5000, b"[" * 100_000]
)
def test_what_is_not_a_json_object_is_refused(raw: bytes) -> None:
    with pytest.raises(ReplyError):
        parse_reconstruction(raw, version=1)
    with pytest.raises(ReplyError):
        parse_token(raw)


def test_messages_never_carry_a_presigned_url() -> None:
    secret = "X-Amz-Signature=TOPSECRET"
    for url in (
        f"https://cas.test/x?{secret}",
        f"ftp://cas.test/x?{secret}",
        f"https://cas.test/x y?{secret}",
    ):
        reply = _set(_v1_example(H2), f"{F1}.url", url)
        reply["fetch_info"][H1][0]["url_range"]["end"] = 1
        with pytest.raises(ReplyError) as caught:
            parse_reconstruction(body(reply), version=1)
        assert "TOPSECRET" not in str(caught.value)


# -- properties
# --------------------------------------------------------------------------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=70),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=20,
)
HASHES = st.binary(min_size=32, max_size=32).map(to_hex)


def check_invariants(parsed: Reconstruction) -> None:
    """What the fetcher may rely on in every Reconstruction."""
    assert parsed.offset == 0
    assert len(parsed.fetch_of) == len(parsed.terms)
    assert sorted(set(parsed.fetch_of)) == list(range(len(parsed.fetches)))
    for term, index in zip(parsed.terms, parsed.fetch_of, strict=True):
        fetch = parsed.fetches[index]
        assert len(term.xorb) == 64 and term.xorb == term.xorb.lower()
        assert 0 <= term.start < term.end < 2**53
        assert 0 < term.length <= (term.end - term.start) * MAX_CHUNK
        assert fetch.xorb == term.xorb and fetch.start <= term.start and fetch.end >= term.end
    for fetch in parsed.fetches:
        assert fetch.url.lower().startswith(("http://", "https://"))
        assert 0 <= fetch.first <= fetch.last < 2**53 and 0 <= fetch.start < fetch.end < 2**53
        assert fetch.last - fetch.first + 1 >= 8 * (fetch.end - fetch.start)
    assert parsed.size == sum(term.length for term in parsed.terms)


def parse_or_refuse(raw: bytes, version: int) -> None:
    try:
        parsed = parse_reconstruction(raw, version=version)
    except ReplyError:
        return
    check_invariants(parsed)


@st.composite
def valid_replies(draw: st.DrawFn, version: int) -> dict[str, Any]:
    xorbs = draw(st.lists(HASHES, min_size=1, max_size=3, unique=True))
    terms = []
    for _ in range(draw(st.integers(0, 5))):
        start = draw(st.integers(0, 30))
        end = start + draw(st.integers(1, 4))
        length = draw(st.integers(1, (end - start) * MAX_CHUNK))
        terms.append(
            {
                "hash": draw(st.sampled_from(xorbs)),
                "unpacked_length": length,
                "range": {"start": start, "end": end},
            }
        )
    spans: dict[str, list[dict[str, Any]]] = {}
    for term in terms:
        start, end = term["range"]["start"], term["range"]["end"]
        first = draw(st.integers(0, 10**6))
        spans.setdefault(term["hash"], []).append(
            {
                "chunks": {"start": start, "end": end},
                "bytes": {"start": first, "end": first + 8 * (end - start) + 99},
            }
        )
    if version == 2:
        entries = {
            h: [{"url": f"https://cas.test/{h[:6]}?sig=s", "ranges": ranges}]
            for h, ranges in spans.items()
        }
        return {"offset_into_first_range": 0, "terms": terms, "xorbs": entries}
    info = {
        h: [
            {"range": r["chunks"], "url": f"http://cas.test/{h[:6]}", "url_range": r["bytes"]}
            for r in ranges
        ]
        for h, ranges in spans.items()
    }
    return {"offset_into_first_range": 0, "terms": terms, "fetch_info": info}


def _paths(node: object, prefix: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    found = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, value in node.items():
            found.extend(_paths(value, (*prefix, key)))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found.extend(_paths(value, (*prefix, i)))
    return found


@st.composite
def mutated_replies(draw: st.DrawFn, version: int) -> dict[str, Any]:
    reply = draw(valid_replies(version))
    for _ in range(draw(st.integers(1, 3))):
        paths = _paths(reply)
        if not paths:
            break
        *parents, last = draw(st.sampled_from(paths))
        node: Any = reply
        for key in parents:
            node = node[key]
        choice = draw(st.sampled_from(["replace", "delete", "number"]))
        if choice == "delete":
            del node[last]
        elif choice == "number":
            node[last] = draw(st.integers(-2, 2**54) | st.sampled_from([0, 1, 2**53 - 1, 2**53]))
        else:
            node[last] = draw(
                JSON | HASHES | st.sampled_from(["https://x.test/", "http://", "HTTPS://A.TEST/B"])
            )
    return reply


@pytest.mark.parametrize("version", [1, 2])
@given(data=st.data())
@settings(max_examples=examples(150))
def test_valid_replies_parse_with_every_invariant(version: int, data: st.DataObject) -> None:
    reply = data.draw(valid_replies(version))
    parsed = parse_reconstruction(body(reply), version=version)
    check_invariants(parsed)
    assert len(parsed.terms) == len(reply["terms"])


@pytest.mark.parametrize("version", [1, 2])
@given(data=st.data())
@settings(max_examples=examples(300))
def test_mutated_replies_parse_with_every_invariant_or_are_refused(
    version: int, data: st.DataObject
) -> None:
    parse_or_refuse(body(data.draw(mutated_replies(version))), version)


@pytest.mark.parametrize("version", [1, 2])
@given(
    value=JSON
    | st.dictionaries(
        st.sampled_from(["offset_into_first_range", "terms", "fetch_info", "xorbs", "other"]),
        JSON,
        max_size=4,
    )
)
def test_any_json_is_a_reconstruction_or_a_reply_error(version: int, value: object) -> None:
    parse_or_refuse(body(value), version)


@given(st.binary(max_size=100))
def test_any_bytes_are_a_reconstruction_or_a_reply_error(raw: bytes) -> None:
    parse_or_refuse(raw, 1)


# -- tokens
# ------------------------------------------------------------------------------------------------------


def test_the_auth_md_example_token_reads() -> None:
    raw = (
        b'{"accessToken": "xet_xxxxxxxxxxx", "exp": 1848535668, "casUrl":'
        b' "https://cas-server.xethub.hf.co"}'
    )
    assert parse_token(raw) == XetToken(
        access_token="xet_xxxxxxxxxxx",
        expires=1848535668.0,
        cas_url="https://cas-server.xethub.hf.co",
    )


def test_a_token_cas_url_loses_its_trailing_slash_and_exp_may_be_fractional() -> None:
    raw = b'{"accessToken": "t", "exp": 17.5, "casUrl": "http://127.0.0.1:8080/cas/", "more": 1}'
    assert parse_token(raw) == XetToken(
        access_token="t", expires=17.5, cas_url="http://127.0.0.1:8080/cas"
    )


GOOD_TOKEN = {"accessToken": "xet_t", "exp": 100, "casUrl": "https://cas.test"}


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("accessToken", DELETE, "has no 'accessToken'"),
        ("accessToken", "", "accessToken is not a token"),
        ("accessToken", "a b", "accessToken is not a token"),
        ("accessToken", "a\r\nX-Injected: 1", "accessToken is not a token"),
        ("accessToken", "x" * 64_001, "accessToken is not a token"),
        ("accessToken", 5, "accessToken is not a token"),
        ("exp", True, "exp is not a time"),
        ("exp", "100", "exp is not a time"),
        ("exp", -1, "exp is not a time"),
        ("exp", 1e300, "exp is not a time"),
        ("exp", DELETE, "has no 'exp'"),
        ("casUrl", "file:///etc/passwd", "casUrl is not an http"),
        ("casUrl", "cas.test", "casUrl is not an http"),
        ("casUrl", None, "casUrl is not a URL"),
    ],
)
def test_each_wrong_token_field_is_a_reply_error(key: str, value: object, message: str) -> None:
    reply = dict(GOOD_TOKEN)
    if value is DELETE:
        del reply[key]
    else:
        reply[key] = value
    with pytest.raises(ReplyError, match=message):
        parse_token(body(reply))


@given(JSON | st.fixed_dictionaries({"accessToken": JSON, "exp": JSON, "casUrl": JSON}))
def test_any_json_is_a_token_or_a_reply_error(value: object) -> None:
    try:
        token = parse_token(body(value))
    except ReplyError:
        return
    assert (
        token.access_token
        and token.expires >= 0
        and token.cas_url.startswith(("http://", "https://"))
    )


TOKEN_HEADERS = {
    "X-Xet-Access-Token": "xet_abc",
    "X-Xet-Token-Expiration": "1848535668",
    "X-Xet-Cas-Url": "https://cas-server.xethub.hf.co",
}


def test_a_token_comes_from_the_three_headers_whatever_their_case() -> None:
    expected = XetToken(
        access_token="xet_abc", expires=1848535668.0, cas_url="https://cas-server.xethub.hf.co"
    )
    assert token_from_headers(TOKEN_HEADERS) == expected
    assert (
        token_from_headers({name.lower(): value for name, value in TOKEN_HEADERS.items()})
        == expected
    )
    assert token_from_headers(httpx2.Headers(TOKEN_HEADERS)) == expected


@pytest.mark.parametrize("missing", list(TOKEN_HEADERS))
def test_a_token_needs_all_three_headers(missing: str) -> None:
    assert token_from_headers({k: v for k, v in TOKEN_HEADERS.items() if k != missing}) is None


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("X-Xet-Token-Expiration", "soon"),
        ("X-Xet-Token-Expiration", "-5"),
        ("X-Xet-Token-Expiration", "1.5e9"),
        ("X-Xet-Token-Expiration", "9" * 40),
        ("X-Xet-Cas-Url", "ftp://cas"),
        ("X-Xet-Access-Token", ""),
    ],
)
def test_unusable_token_headers_are_none(name: str, value: str) -> None:
    assert token_from_headers({**TOKEN_HEADERS, name: value}) is None


@given(st.dictionaries(st.sampled_from([*TOKEN_HEADERS, "Other"]), st.text(max_size=30)))
def test_any_token_headers_give_a_token_or_none(headers: dict[str, str]) -> None:
    token = token_from_headers(headers)
    assert token is None or isinstance(token, XetToken)


@pytest.mark.slow
def test_many_terms_and_ranges_of_one_xorb_read_in_near_linear_time() -> None:
    """A hostile (or merely unmerged) reply: 8,000 terms, each its own range of one xorb, listed
    last first. Read term by fetch it took terms x ranges steps (~15 s at 40,000); a 64 MiB reply
    would have cost many minutes of CPU. The steps are counted (lines of the parser run), never
    timed."""
    count, url = 8000, "https://cas.test/xorb"

    def reply(n: int) -> bytes:
        terms = [
            {"hash": H1, "range": {"start": 2 * i, "end": 2 * i + 1}, "unpacked_length": 100}
            for i in range(n)
        ]
        ranges = [
            {
                "range": {"start": 2 * i, "end": 2 * i + 1},
                "url": url,
                "url_range": {"start": 200 * i, "end": 200 * i + 199},
            }
            for i in reversed(range(n))
        ]
        return body({"offset_into_first_range": 0, "terms": terms, "fetch_info": {H1: ranges}})

    replies = {n: reply(n) for n in (count // 8, count)}
    # 8 times the terms: about 8 times the steps (and a log), not 8 * 8
    steps = {
        n: lines_run(lambda: parse_reconstruction(replies[n], version=1), protocol) for n in replies
    }
    assert steps[count] < 12 * steps[count // 8], steps
    parsed = parse_reconstruction(replies[count], version=1)
    assert [(f.start, f.first) for f in parsed.fetches[:2]] == [(0, 0), (2, 200)]
    assert parsed.fetch_of == tuple(range(count))


@settings(max_examples=examples(200), deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 12), st.integers(1, 6)), min_size=1, max_size=8),
    st.lists(st.tuples(st.integers(0, 12), st.integers(1, 12)), max_size=8),
)
def test_each_term_takes_the_first_fetch_in_reply_order_that_holds_it(
    spans: list[tuple[int, int]], holders: list[tuple[int, int]]
) -> None:
    terms = [
        {"hash": H1, "range": {"start": a, "end": a + n}, "unpacked_length": n} for a, n in spans
    ]
    ranges = [
        {
            "range": {"start": a, "end": a + n},
            "url": f"{URL1}&k={k}",
            "url_range": {"start": 0, "end": 8 * n},
        }
        for k, (a, n) in enumerate(holders)
    ]
    reply = body(
        {"offset_into_first_range": 0, "terms": terms, "fetch_info": {H1: ranges}} if ranges else {}
    )
    expected = []
    for a, n in spans:
        first = next((k for k, (b, m) in enumerate(holders) if b <= a and b + m >= a + n), None)
        expected.append(first)
    if not ranges or None in expected:
        with pytest.raises(ReplyError):
            parse_reconstruction(reply, version=1)
        return
    parsed = parse_reconstruction(reply, version=1)
    assert [parsed.fetches[f].url for f in parsed.fetch_of] == [f"{URL1}&k={k}" for k in expected]


def _respelled(value: object, order: list[bool], extra: list[bool]) -> object:
    """``value`` with each {"start", "end"} object's keys swapped (``order``) or joined by an
    unknown key (``extra``), taken in turn (cycled): a different spelling of the same reply."""
    if isinstance(value, list):
        return [_respelled(v, order, extra) for v in value]
    if not isinstance(value, dict):
        return value
    out = {k: _respelled(v, order, extra) for k, v in value.items()}
    if set(out) == {"start", "end"}:
        order.append(order.pop(0))
        extra.append(extra.pop(0))
        out = {"end": out["end"], "start": out["start"]} if order[-1] else out
        out = {**out, "note": 1} if extra[-1] else out
    return out


@given(
    terms=st.lists(st.tuples(st.integers(0, 50), st.integers(1, 5)), min_size=1, max_size=8),
    order=st.lists(st.booleans(), min_size=1, max_size=5),
    extra=st.lists(st.booleans(), min_size=1, max_size=5),
    version=st.sampled_from([1, 2]),
)
def test_a_span_reads_the_same_however_its_object_is_spelled(
    terms: list[tuple[int, int]], order: list[bool], extra: list[bool], version: int
) -> None:
    """Spans ({"start", "end"}) are kept compact as they are parsed; any key order or unknown key
    reads the same.
    """
    listed = [
        {"hash": H1, "range": {"start": s, "end": s + n}, "unpacked_length": 100 * n}
        for s, n in terms
    ]
    low, high = min(s for s, _ in terms), max(s + n for s, n in terms)
    span = {"start": 1000 * low, "end": 1000 * high}
    if version == 1:
        fetch: dict[str, Any] = {
            "fetch_info": {
                H1: [
                    {
                        "range": {"start": low, "end": high},
                        "url": "https://c.test/x",
                        "url_range": span,
                    }
                ]
            }
        }
    else:
        fetch = {
            "xorbs": {
                H1: [
                    {
                        "url": "https://c.test/x",
                        "ranges": [{"chunks": {"start": low, "end": high}, "bytes": span}],
                    }
                ]
            }
        }
    reply = {"offset_into_first_range": 0, "terms": listed, **fetch}
    plain = parse_reconstruction(body(reply), version=version)
    assert parse_reconstruction(body(_respelled(reply, order, extra)), version=version) == plain
    assert plain.terms == tuple(Term(xorb=H1, start=s, end=s + n, length=100 * n) for s, n in terms)
