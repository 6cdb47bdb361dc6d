"""Best-effort map from key paths to the TOML line that writes them (tomllib reports no positions)."""

from __future__ import annotations

import bisect
import tomllib

from mdl.catalog.keys import KeyPath


class _ScanStopError(Exception):
    """The scanner met something it does not understand; the lines found so far are kept."""


class LineIndex:
    """Best-effort map from key paths to the 1-based line that writes them (tomllib reports none)."""

    def __init__(self, text: str) -> None:
        self.found: dict[KeyPath, int] = {}
        try:
            _Scanner(text, self.found).scan()
        except (_ScanStopError, RecursionError):
            # Line numbers are a courtesy: without them errors still name the file and key path.
            pass

    def line_of(self, path: KeyPath) -> int | None:
        """The line of ``path``, else of its closest written ancestor (a missing key → its table)."""
        while path:
            if path in self.found:
                return self.found[path]
            path = path[:-1]
        return None


class _Scanner:
    """A small TOML structure walker: headers, keys, arrays and inline tables, never values' meaning.

    It runs only on text tomllib has accepted, so it can be lenient; anything unexpected stops it.
    """

    def __init__(self, text: str, found: dict[KeyPath, int]) -> None:
        self.text = text
        self.pos = 0
        self.found = found
        self.newlines = [i for i, ch in enumerate(text) if ch == "\n"]
        self.table: KeyPath = ()
        self.array_tables: dict[KeyPath, int] = {}

    def line(self, pos: int) -> int:
        """1-based line number of offset ``pos``."""
        return bisect.bisect_left(self.newlines, pos) + 1

    def peek(self, offset: int = 0) -> str:
        """The character at the cursor (+offset), or "" past the end."""
        at = self.pos + offset
        return self.text[at] if at < len(self.text) else ""

    def record(self, path: KeyPath, pos: int) -> None:
        """Remember the first line that mentions ``path``."""
        self.found.setdefault(path, self.line(pos))

    def skip_blank(self, *, newlines: bool) -> None:
        """Skip spaces, tabs and comments (and newlines when ``newlines``)."""
        while True:
            ch = self.peek()
            if ch in (" ", "\t") or (newlines and ch in ("\r", "\n")):
                self.pos += 1
            elif ch == "#":
                end = self.text.find("\n", self.pos)
                self.pos = len(self.text) if end < 0 else end
            else:
                return

    def scan(self) -> None:
        """Walk the whole document."""
        while True:
            self.skip_blank(newlines=True)
            start = self.pos
            if not self.peek():
                return
            if self.peek() == "[":
                self.header()
            else:
                self.key_value(self.table)
            if self.pos == start:
                raise _ScanStopError

    def header(self) -> None:
        """``[a.b]`` or ``[[a.b]]``: set the current table, counting array-of-tables entries."""
        start = self.pos
        is_array = self.text.startswith("[[", self.pos)
        self.pos += 2 if is_array else 1
        self.skip_blank(newlines=False)
        keys = self.key()
        self.skip_blank(newlines=False)
        self.pos += 2 if is_array else 1
        resolved: KeyPath = ()
        for depth, key in enumerate(keys):
            resolved = (*resolved, key)
            # [models.x] is also where "models" is first written, as far as a reader is concerned.
            self.record(resolved, start)
            # An earlier [[x]] makes "x" inside later headers mean its latest element.
            if depth < len(keys) - 1 and resolved in self.array_tables:
                resolved = (*resolved, self.array_tables[resolved] - 1)
        if is_array:
            self.record(resolved, start)
            count = self.array_tables.get(resolved, 0)
            self.array_tables[resolved] = count + 1
            resolved = (*resolved, count)
        self.record(resolved, start)
        self.table = resolved

    def key_value(self, base: KeyPath) -> None:
        """``a.b = value`` relative to ``base``."""
        start = self.pos
        keys = self.key()
        for depth in range(1, len(keys) + 1):
            self.record((*base, *keys[:depth]), start)
        self.skip_blank(newlines=False)
        if self.peek() != "=":
            raise _ScanStopError
        self.pos += 1
        self.skip_blank(newlines=False)
        self.value((*base, *keys))

    def key(self) -> list[str]:
        """A dotted key of bare and quoted parts."""
        keys: list[str] = []
        while True:
            self.skip_blank(newlines=False)
            start = self.pos
            if self.peek() in ('"', "'"):
                self.string()
                keys.append(_unquote_key(self.text[start : self.pos]))
            else:
                while self.peek() and (self.peek().isalnum() or self.peek() in "_-"):
                    self.pos += 1
                if self.pos == start:
                    raise _ScanStopError
                keys.append(self.text[start : self.pos])
            self.skip_blank(newlines=False)
            if self.peek() != ".":
                return keys
            self.pos += 1

    def value(self, path: KeyPath) -> None:
        """Skip one value, recording the keys and elements inside arrays and inline tables."""
        ch = self.peek()
        if ch in ('"', "'"):
            self.string()
        elif ch == "[":
            self.array(path)
        elif ch == "{":
            self.inline_table(path)
        else:
            start = self.pos
            while self.peek() and self.peek() not in ",]}\r\n#":
                self.pos += 1
            if self.pos == start:
                raise _ScanStopError

    def array(self, path: KeyPath) -> None:
        """``[v, v, …]``, recording each element's line as ``path + (index,)``."""
        self.pos += 1
        index = 0
        while True:
            self.skip_blank(newlines=True)
            ch = self.peek()
            if ch == "]":
                self.pos += 1
                return
            if ch == ",":
                self.pos += 1
                continue
            if not ch:
                raise _ScanStopError
            self.record((*path, index), self.pos)
            self.value((*path, index))
            index += 1

    def inline_table(self, path: KeyPath) -> None:
        """``{ k = v, … }``, recording each key's line."""
        self.pos += 1
        while True:
            # Newlines are tolerated for TOML 1.1 style multi-line inline tables.
            self.skip_blank(newlines=True)
            ch = self.peek()
            if ch == "}":
                self.pos += 1
                return
            if ch == ",":
                self.pos += 1
                continue
            if not ch:
                raise _ScanStopError
            self.key_value(path)

    def string(self) -> None:
        """Skip a basic, literal, or multi-line string."""
        quote = self.peek()
        multi = self.text.startswith(quote * 3, self.pos)
        closing = quote * 3 if multi else quote
        self.pos += len(closing)
        while self.pos < len(self.text):
            ch = self.text[self.pos]
            if ch == "\\" and quote == '"':
                self.pos += 2
                continue
            if self.text.startswith(closing, self.pos):
                self.pos += len(closing)
                # A multi-line string may end with up to two quotes of content before its delimiter.
                extra = 0
                while multi and extra < 2 and self.peek() == quote:
                    self.pos += 1
                    extra += 1
                return
            self.pos += 1
        raise _ScanStopError


def _unquote_key(raw: str) -> str:
    """The text of a quoted key, decoded by tomllib itself so escapes match what the parser saw."""
    try:
        value = tomllib.loads(f"k = {raw}").get("k")
    except tomllib.TOMLDecodeError:
        return raw[1:-1]
    return value if isinstance(value, str) else raw[1:-1]
