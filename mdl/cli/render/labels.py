"""File labels that fit a column: cut in the middle, by display width, and never two rows alike."""

from __future__ import annotations

from collections.abc import Sequence
from unicodedata import combining, east_asian_width

ELLIPSIS = "…"
_SEPARATORS = "/-_."


def display_width(text: str) -> int:
    """Terminal columns ``text`` takes: wide East Asian characters count 2, combining marks 0."""
    return sum(_char_width(c) for c in text)


def _char_width(char: str) -> int:
    return 0 if combining(char) else 2 if east_asian_width(char) in "WF" else 1


def _head(text: str, width: int) -> str:
    """The longest start of ``text`` that fits ``width`` columns."""
    used = 0
    for i, char in enumerate(text):
        used += _char_width(char)
        if used > width:
            return text[:i]
    return text


def _tail(text: str, width: int) -> str:
    """The longest end of ``text`` that fits ``width`` columns."""
    return _head(text[::-1], width)[::-1]


def shorten(text: str, width: int, *, keep: int | None = None) -> str:
    """``text`` in at most ``width`` columns, cut in the middle (``big/model-0…02.safetensors``).

    ``keep`` is the index of a character that must stay visible (where this label differs from another);
    the cut moves so the tail starts at the word holding it, or, if that tail is too long, the head reaches it.
    """
    if display_width(text) <= width:
        return text
    if width <= 1:
        return ELLIPSIS[:width]
    room = width - 1
    head_room = room * 2 // 5  # the tail holds the file name and its shard number: give it more
    head, tail = _head(text, head_room), _tail(text, room - head_room)
    if keep is None or len(head) > keep >= 0 or keep >= len(text) - len(tail):
        return head + ELLIPSIS + tail
    start = keep
    while start > 0 and keep - start < 6 and text[start - 1] not in _SEPARATORS:
        start -= 1  # show the word the difference is in ("00001"), not half of it
    min_head = min(4, room // 3)
    if display_width(text[start:]) <= room - min_head:
        tail = text[start:]
        return _head(text, room - display_width(tail)) + ELLIPSIS + tail
    head = text[: keep + 1]
    if display_width(head) < room:
        return head + ELLIPSIS + _tail(text, room - display_width(head))
    # Neither end reaches the difference: a window around it between two ellipses.
    window = _tail(text[: keep + 1], max(room - 1, 1) // 2 + 1)
    window += _head(text[keep + 1 :], max(room - 1 - display_width(window), 0))
    return ELLIPSIS + window + ELLIPSIS


def _first_difference(text: str, other: str) -> int:
    """The first index where ``text`` and ``other`` differ (the last character if one starts the other)."""
    for i, (a, b) in enumerate(zip(text, other, strict=False)):
        if a != b:
            return i
    return min(len(text), len(other)) if len(text) > len(other) else len(text) - 1


def fit_labels(labels: Sequence[str], width: int) -> list[str]:
    """Each label in ``width`` columns, cut so that distinct labels stay distinct on screen where possible."""
    shown: list[str] = []
    for i, text in enumerate(labels):
        others = [o for j, o in enumerate(labels) if j != i and o != text]
        keep = max((_first_difference(text, o) for o in others), default=None)
        shown.append(shorten(text, width, keep=keep))
    seen: dict[str, int] = {}
    for i, text in enumerate(shown):
        if text in seen and labels[seen[text]] != labels[i]:
            shown[i] = ELLIPSIS + _tail(labels[i], width - 1)  # still alike: the plain tail, where shards differ
        seen.setdefault(shown[i], i)
    return shown
