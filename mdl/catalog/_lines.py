"""Key paths: as users read them (``models.x.files[1].as``, with "did you mean" hints), and the TOML
line each is written on, found by letting tomllib (which reports no positions) read one header or
``key = value`` at a time: no scanner of ours reads strings, comments or quoted keys. Lines are a
courtesy: anything unexpected stops the lookup."""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Collection, Iterator
from typing import Any

# A key path as tomllib's nesting gives it: table keys and array indexes, outermost first.
KeyPath = tuple[str | int, ...]

_BARE_KEY_RE = r"[A-Za-z0-9_-]+"
# Names people bring from huggingface_hub, pooch or other tools; difflib cannot guess these.
ALIASES = {
    **dict.fromkeys(("branch", "rev", "ref"), "revision"),
    **dict.fromkeys(("hash", "checksum", "sha"), "sha256"),
    **dict.fromkeys(("filename", "file"), "path"),
    **dict.fromkeys(("save_as", "dest_path"), "as"),
    "allow_patterns": "include",
    "ignore_patterns": "exclude",
    "repo_id": "repo",
    "type": "repo_type",
    "urls": "url",
}


def did_you_mean(word: str, choices: Collection[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest choice, or ``""``."""
    import difflib  # (only a wrong key needs it)

    alias = ALIASES.get(word)
    close = (
        [alias]
        if alias in choices
        else difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    )
    return f" (did you mean {close[0]!r}?)" if close else ""


def format_key(key: str) -> str:
    """A key as TOML writes it: bare when it can be, else quoted."""
    return key if re.fullmatch(_BARE_KEY_RE, key) else json.dumps(key)


def format_path(path: KeyPath) -> str:
    """``("models", "x", "files", 1, "as")`` → ``models.x.files[1].as``."""
    parts = (f"[{part}]" if isinstance(part, int) else f".{format_key(part)}" for part in path)
    return "".join(parts).removeprefix(".")


# A value that spans lines (array, multi-line string, TOML 1.1 inline table) ends on a line with one
# of these.
_CLOSERS = ("]", '"""', "'''", "}")
# Statements are reparsed while they grow; a hostile multi-line array must not make that quadratic
# for long.
_BUDGET_PER_CHAR = 20


class LineIndex:
    """The 1-based line where each key path is first written; computed on first use (only errors
    need it).
    """

    def __init__(self, text: str) -> None:
        self.text = text
        self._found: dict[KeyPath, int] | None = None

    def line_of(self, path: KeyPath) -> int | None:
        """The line of ``path``, else of its closest written ancestor (a missing key → its
        table).
        """
        if self._found is None:
            self._found = {}
            with contextlib.suppress(RecursionError):  # absurd nesting: keep what was found
                _index(self.text, self._found)
        while path:
            if path in self._found:
                return self._found[path]
            path = path[:-1]
        return None


def _index(text: str, found: dict[KeyPath, int]) -> None:
    """Fill ``found`` with the first line of every table, key and array element in ``text``."""
    lines = [line.removesuffix("\r") for line in text.split("\n")]
    table: KeyPath = ()
    array_tables: dict[KeyPath, int] = {}
    for first, last, parsed in _statements(lines, budget=_BUDGET_PER_CHAR * len(text) + 10_000):
        if lines[first].lstrip().startswith("["):
            table = _enter_table(parsed, first + 1, found, array_tables)
            continue
        path, value = _leaf(table, parsed)
        if last > first and isinstance(value, list):
            _record_elements(lines, first, last, path, value, found)
        _record(found, table, parsed, first + 1)


def _statements(lines: list[str], *, budget: int) -> Iterator[tuple[int, int, dict[str, Any]]]:
    """(first line, last line, what tomllib reads there) for each header and key/value, 0-based."""
    first = 0
    while first < len(lines):
        for last in range(first, len(lines)):
            if last == first or any(closer in lines[last] for closer in _CLOSERS):
                chunk = "\n".join(lines[first : last + 1])
                budget -= len(chunk)
                if budget < 0:
                    return
                parsed = _parse(chunk)
                if parsed is not None:
                    break
        else:
            return
        if parsed:  # blank lines and comments read as {}
            yield first, last, parsed
        first = last + 1


def _enter_table(
    parsed: dict[str, Any], line: int, found: dict[KeyPath, int], arrays: dict[KeyPath, int]
) -> KeyPath:
    """Record a ``[a.b]`` or ``[[a.b]]`` header and return the table it opens, counting
    array-of-tables entries.
    """
    keys, node = _leaf((), parsed)
    resolved: KeyPath = ()
    for depth, key in enumerate(keys):
        resolved = (*resolved, key)
        # [models.x] is also where "models" is first written, as far as a reader is concerned.
        found.setdefault(resolved, line)
        # An earlier [[x]] makes "x" inside later headers mean its latest element (TOML's [[fruits]]
        # example).
        if depth < len(keys) - 1 and resolved in arrays:
            resolved = (*resolved, arrays[resolved] - 1)
    if isinstance(node, list):  # one more [[x]] element: the header opens it
        arrays[resolved] = arrays.get(resolved, 0) + 1
        resolved = (*resolved, arrays[resolved] - 1)
    found.setdefault(resolved, line)
    return resolved


def _record_elements(
    lines: list[str],
    first: int,
    last: int,
    path: KeyPath,
    items: list[Any],
    found: dict[KeyPath, int],
) -> None:
    """Give each element of a multi-line array the line it starts on, by reading that line alone
    as an array.
    """
    index = 0
    for row in range(first, last + 1):
        text = lines[row]
        # The first line holds "key = [", the last one the closing "]"; a comment may end any line.
        snippet = (
            f"{text}\n]"
            if row == first
            else f"x = [\n{text}"
            if row == last
            else f"x = [\n{text}\n]"
        )
        if (parsed := _parse(snippet)) is None:
            # an element spans lines (a nested array or a multi-line string): the rest keep the
            # key's line
            return
        _, on_line = _leaf((), parsed)
        if not isinstance(on_line, list):
            return
        for at, item in enumerate(items[index : index + len(on_line)], start=index):
            _record(found, (*path, at), item, row + 1)
        index += len(on_line)


def _leaf(base: KeyPath, parsed: dict[str, Any]) -> tuple[KeyPath, Any]:
    """The key path and value of a one-statement document (``a.b = v`` reads as ``{"a": {"b":
    v}}``).
    """
    path, node = base, parsed
    while isinstance(node, dict) and len(node) == 1:
        key, node = next(iter(node.items()))
        path = (*path, key)
    return path, node


def _record(found: dict[KeyPath, int], path: KeyPath, value: Any, line: int) -> None:
    """``path`` and everything inside ``value`` were written on ``line``, unless written earlier."""
    if path:
        found.setdefault(path, line)
    inside = (
        value.items()
        if isinstance(value, dict)
        else enumerate(value)
        if isinstance(value, list)
        else ()
    )
    for key, item in inside:
        _record(found, (*path, key), item, line)


def _parse(chunk: str) -> dict[str, Any] | None:
    """``chunk`` as tomllib reads it, or None when it is not (yet) a complete statement."""
    import tomllib  # (only an error's line is looked for)

    try:
        return tomllib.loads(chunk)
    except (tomllib.TOMLDecodeError, RecursionError):
        return None
