"""Strict parsing of HTTP range headers (RFC 9110 §14.4)."""

from __future__ import annotations

import re

_CONTENT_RANGE = re.compile(r"^\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$")


class ContentRangeError(ValueError):
    """A Content-Range header we cannot trust."""


def parse_content_range(value: str) -> tuple[int, int, int | None]:
    """``bytes a-b/total`` → (a, b, total or None for ``*``); anything else is an error."""
    match = _CONTENT_RANGE.match(value or "")
    if not match:
        raise ContentRangeError(f"unparseable Content-Range {value!r}")
    start, end = int(match.group(1)), int(match.group(2))
    total = None if match.group(3) == "*" else int(match.group(3))
    if end < start or (total is not None and end >= total):
        raise ContentRangeError(f"inconsistent Content-Range {value!r}")
    return start, end, total
