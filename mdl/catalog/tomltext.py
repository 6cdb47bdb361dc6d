"""Where each statement of a valid TOML text starts and ends, and the key path it sets: what lets ``mdl add`` and
``mdl remove`` splice the text of one entry and leave every other byte (comments, blank lines, layout) alone.

Only valid TOML reaches here (``tomllib`` read it first), so the scanner tracks just what decides where a line
belongs: strings (four kinds), comments and bracket depth. Key text is handed back to ``tomllib`` to be read,
so quoted and dotted keys mean exactly what TOML says they mean.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from typing import Any, Literal

Kind = Literal["header", "array", "value", "comment", "blank"]


@dataclass(frozen=True)
class Statement:
    """One top-level line or statement: ``text[start:end]`` (``end`` is past its newline)."""

    kind: Kind
    start: int
    end: int
    path: tuple[str, ...] = ()  # the absolute key path a header opens or a value sets


def scan(text: str) -> list[Statement]:
    """Every statement of ``text`` in order; their spans cover the text exactly."""
    out: list[Statement] = []
    table: tuple[str, ...] = ()
    pos = 0
    while pos < len(text):
        lead = pos
        while lead < len(text) and text[lead] in " \t":
            lead += 1
        char = text[lead] if lead < len(text) else "\n"
        if char in "\r\n":
            out.append(Statement("blank", pos, _line_end(text, lead)))
        elif char == "#":
            out.append(Statement("comment", pos, _line_end(text, lead)))
        elif char == "[":
            array = text.startswith("[[", lead)
            close = _skip_key(text, lead + (2 if array else 1), "]")
            key = text[lead + (2 if array else 1) : close]
            table = _key_path(f"[[{key}]]" if array else f"[{key}]")
            end = _line_end(text, close + (2 if array else 1))
            out.append(Statement("array" if array else "header", pos, end, table))
        else:
            equals = _skip_key(text, lead, "=")
            key = text[lead:equals]
            end = _value_end(text, equals + 1)
            out.append(Statement("value", pos, end, table + _key_path(f"{key} = 0")))
        pos = out[-1].end
    return out


def _key_path(snippet: str) -> tuple[str, ...]:
    """The key path a header or ``key = 0`` snippet names, as ``tomllib`` reads it."""
    node: Any = tomllib.loads(snippet)
    path: list[str] = []
    while isinstance(node, dict | list) and node:
        if isinstance(node, list):
            node = node[-1]
            continue
        key, node = next(iter(node.items()))
        path.append(key)
    return tuple(path)


def _skip_key(text: str, pos: int, stop: str) -> int:
    """The index of ``stop`` after a (possibly quoted, dotted) key starting at ``pos``."""
    while text[pos] != stop:
        if text[pos] in "\"'":
            pos = string_end(text, pos)
        else:
            pos += 1
    return pos


def _line_end(text: str, pos: int) -> int:
    """Past the newline of the line ``pos`` is on (comments included), or the end of the text."""
    newline = text.find("\n", pos)
    return len(text) if newline < 0 else newline + 1


def _value_end(text: str, pos: int) -> int:
    """Past the newline that ends the value starting at ``pos`` (arrays and strings may span lines)."""
    depth = 0
    while pos < len(text):
        char = text[pos]
        if char in "\"'":
            pos = string_end(text, pos)
            continue
        if char == "#":
            pos = text.find("\n", pos)
            if pos < 0:
                return len(text)
            continue
        if char in "[{":
            depth += 1
        elif char in "]}":
            depth -= 1
        elif char == "\n" and depth == 0:
            return pos + 1
        pos += 1
    return pos


def string_end(text: str, pos: int) -> int:
    """Past the closing quote of the string opening at ``pos`` (basic, literal, multi-line or not)."""
    quote = text[pos]
    if text.startswith(quote * 3, pos):
        pos += 3
        while not text.startswith(quote * 3, pos):
            pos += 2 if quote == '"' and text[pos] == "\\" else 1
        pos += 3
        while pos < len(text) and text[pos] == quote:  # up to two quotes may end the content: """a"""""
            pos += 1
        return pos
    pos += 1
    while text[pos] != quote:
        pos += 2 if quote == '"' and text[pos] == "\\" else 1
    return pos + 1
