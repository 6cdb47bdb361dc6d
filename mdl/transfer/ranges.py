"""Strict parsing of HTTP range and length headers (RFC 9110 §14.4, §8.6): ASCII digits only, and bounded.

Python's ``int()`` and ``str.isdigit()`` accept any Unicode digit ('²', '٣'; header values are Latin-1, so
'²' can arrive on the wire) and refuse strings of more than 4,300 digits with a ValueError; a header is
neither. Numbers here are at most 19 ASCII digits (any byte count a file can have fits in 63 bits).
"""

from __future__ import annotations

import re

MAX_DIGITS = 19
_NUMBER = rf"[0-9]{{1,{MAX_DIGITS}}}"
_TOTAL = re.compile(rf"[ \t]*bytes[ \t]+(?:{_NUMBER}-{_NUMBER}|\*)/({_NUMBER})[ \t]*", re.ASCII | re.IGNORECASE)
_DECIMAL = re.compile(rf"[ \t]*({_NUMBER})[ \t]*", re.ASCII)
_CONTENT_RANGE = re.compile(rf"[ \t]*bytes[ \t]+({_NUMBER})-({_NUMBER})/({_NUMBER}|\*)[ \t]*", re.ASCII | re.IGNORECASE)


class ContentRangeError(ValueError):
    """A Content-Range header we cannot trust."""


def parse_content_range(value: str) -> tuple[int, int, int | None]:
    """``bytes a-b/total`` → (a, b, total or None for ``*``); anything else is an error."""
    match = _CONTENT_RANGE.fullmatch(value or "")
    if not match:
        raise ContentRangeError(f"unparseable Content-Range {value[:100]!r}")
    start, end = int(match.group(1)), int(match.group(2))
    total = None if match.group(3) == "*" else int(match.group(3))
    if end < start or (total is not None and end >= total):
        raise ContentRangeError(f"inconsistent Content-Range {value[:100]!r}")
    return start, end, total


def parse_decimal(value: str | None) -> int | None:
    """A header holding one non-negative number (``Content-Length``, delta-seconds ``Retry-After``): the
    number, or None when it is anything else."""
    match = _DECIMAL.fullmatch(value or "")
    return int(match.group(1)) if match else None


def content_range_total(value: str | None) -> int | None:
    """The complete length in a Content-Range (``bytes a-b/N``, or ``bytes */N`` of a 416), or None."""
    match = _TOTAL.fullmatch(value or "")
    return int(match.group(1)) if match else None
