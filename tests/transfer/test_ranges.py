"""parse_content_range: what it accepts and what it refuses (RFC 9110 §14.4)."""

from __future__ import annotations

import pytest

from mdl.transfer._headers import ContentRangeError, parse_content_range


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("bytes 0-99/100", (0, 99, 100)),
        ("bytes 0-0/1", (0, 0, 1)),
        ("bytes 50-99/100", (50, 99, 100)),
        ("bytes 99-99/100", (99, 99, 100)),
        ("bytes 0-9/*", (0, 9, None)),
        ("bytes 1000000-1999999/1000000003", (1_000_000, 1_999_999, 1_000_000_003)),
        ("  bytes 1-2/3  ", (1, 2, 3)),
        ("bytes  1-2/3", (1, 2, 3)),
        ("bytes 0-536870911/1099511627776", (0, 536_870_911, 1 << 40)),
    ],
)
def test_accepts(value: str, expected: tuple[int, int, int | None]) -> None:
    assert parse_content_range(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        "",
        "bytes",
        "bytes */100",  # the unsatisfied-range form carries no range to accept data for
        "bytes 5-3/10",  # end before start
        "bytes 0-100/100",  # end past the total
        "bytes 10-20/5",
        "bytes -1-5/10",
        "bytes 0-/10",
        "bytes -5/10",
        "bytes 0-9",
        "bytes=0-9/10",
        "items 0-9/10",
        "bytes 0-9/10, 20-29/10",
        "bytes 0x0-9/10",
        "bytes 0-9/ten",
        "bytes 1.5-9/10",
    ],
)
def test_rejects(value: str) -> None:
    with pytest.raises(ContentRangeError):
        parse_content_range(value)


def test_error_is_a_value_error_naming_the_header() -> None:
    with pytest.raises(ValueError, match="bytes 5-3/10"):
        parse_content_range("bytes 5-3/10")
