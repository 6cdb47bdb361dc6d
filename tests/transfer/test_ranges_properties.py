"""Range and length headers are untrusted input: whatever a server sends, parsing ends in numbers
that make sense or the parser's own error (turned into a remote error, exit 5, by its callers) —
never another exception, and never a number read from non-ASCII digits or an unbounded digit string.
"""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st
from profiles import examples
from runfixtures import bypasses

from mdl.transfer._headers import (
    MAX_DIGITS,
    ContentRangeError,
    content_range_total,
    parse_content_range,
    parse_decimal,
)
from mdl.transfer.http import retry_after_seconds

# Header values are Latin-1 text; add the digits Python's int() would take ('²' is Latin-1, so on
# the wire).
ODD_DIGITS = [
    "²",
    "³",
    "¹",
    "٣",
    "０",
    "𝟗",
    "\u0e53",
    "1_0",
    "+1",
    "-0",
    " 1",
    "1\n",
    "\t7\t",
    "9" * 5000,
]
PIECES = st.sampled_from(
    ["bytes", "BYTES", " ", "\t", "-", "/", "*", "0", "1", "99", "9" * 25, *ODD_DIGITS]
)
HEADERS = st.one_of(
    st.text(max_size=60),
    st.text(alphabet=st.characters(max_codepoint=0xFF), max_size=60),
    st.lists(PIECES, max_size=10).map("".join),
    st.builds(
        lambda a, b, t: f"bytes {a}-{b}/{t}",
        st.one_of(st.integers(min_value=-5, max_value=10**21), st.sampled_from(ODD_DIGITS)),
        st.one_of(st.integers(min_value=-5, max_value=10**21), st.sampled_from(ODD_DIGITS)),
        st.one_of(st.integers(min_value=-5, max_value=10**21), st.sampled_from([*ODD_DIGITS, "*"])),
    ),
)
FUZZ = settings(max_examples=examples(400), deadline=None)


def _ascii_number(text: str) -> bool:
    return text.isascii() and text.isdigit() and len(text) <= MAX_DIGITS


@FUZZ
@given(HEADERS)
def test_content_range_is_a_sound_range_or_its_own_error(value: str) -> None:
    try:
        start, end, total = parse_content_range(value)
    except ContentRangeError:
        return
    assert 0 <= start <= end < (total if total is not None else 10**MAX_DIGITS)
    numbers = value.strip(" \t")[len("bytes") :].strip(" \t").replace("-", "/").split("/")
    assert all(_ascii_number(n) for n in numbers if n != "*"), value  # only ASCII digits were read


@FUZZ
@given(st.one_of(HEADERS, st.sampled_from(ODD_DIGITS), st.none()))
def test_decimal_headers_are_ascii_and_bounded(value: str | None) -> None:
    number = parse_decimal(value)
    if number is not None:
        assert value is not None and _ascii_number(value.strip(" \t"))
        assert number == int(value.strip(" \t"))


@FUZZ
@given(
    st.one_of(
        HEADERS,
        st.builds(lambda t: f"bytes */{t}", st.one_of(st.integers(), st.sampled_from(ODD_DIGITS))),
    )
)
def test_content_range_total_is_ascii_and_bounded(value: str) -> None:
    total = content_range_total(value)
    if total is not None:
        assert _ascii_number(value.strip(" \t").rsplit("/", 1)[1])
        assert total == int(value.strip(" \t").rsplit("/", 1)[1])


@FUZZ
@given(st.one_of(HEADERS, st.sampled_from(ODD_DIGITS), st.none()))
def test_retry_after_is_a_finite_delay_or_none(value: str | None) -> None:
    delay = retry_after_seconds(value, now=0.0)
    assert delay is None or (math.isfinite(delay) and delay >= 0)


def test_the_cases_that_used_to_crash_or_pass() -> None:
    for value in (
        "bytes ²-5/10",
        "bytes 0-٣/10",
        "bytes 0-9/１０",
        "bytes 0-1/" + "9" * 5000,
        "bytes 0-1/2\n",
    ):
        try:
            parse_content_range(value)
        except ContentRangeError:
            continue
        raise AssertionError(f"accepted {value!r}")
    assert (
        parse_decimal("²") is None
        and parse_decimal("9" * 5000) is None
        and parse_decimal(" 42 ") == 42
    )
    assert retry_after_seconds("²") is None
    assert (
        content_range_total("bytes */²") is None
        and content_range_total("bytes */" + "9" * 5000) is None
    )
    assert content_range_total("bytes */100") == 100 and content_range_total("bytes 0-9/100") == 100


@FUZZ
@given(
    st.lists(
        st.one_of(st.text(max_size=12), st.sampled_from(["h:²", "[::1]:٣", "h:" + "9" * 5000])),
        max_size=4,
    )
)
def test_no_proxy_entries_never_crash(entries: list[str]) -> None:
    # NO_PROXY comes from the environment; a port there is read with the same ASCII, bounded rule.
    assert bypasses("example.com", 443, ",".join(entries)) in (True, False)
