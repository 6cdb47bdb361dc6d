"""The catalog document's layout as written: tomlkit's body read as lines (headers, values,
comments, runs of blank lines), and the runs and regions of lines a model's entry covers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from tomlkit.items import AoT, Comment, Null, Table, Whitespace

Body = list[tuple[Any, Any]]  # a tomlkit container's body: (key or None, item) in written order


@dataclass(frozen=True)
class Line:
    """One header, value, comment or run of blank lines of the document tomlkit read, in written
    order.
    """

    kind: Literal["header", "value", "comment", "blank"]
    # the key path a header opens or a value sets; a comment's or blank's table
    path: tuple[str, ...]
    body: Body  # the tomlkit container body that holds it (its item for a header)
    index: int
    item: Any

    def under(self, prefix: tuple[str, ...]) -> bool:
        """Whether it is in the table ``prefix`` names (or below)."""
        return self.path[: len(prefix)] == prefix

    def drop(self) -> None:
        """Take it out of the document (its item moves elsewhere, or goes)."""

        self.body[self.index] = (None, Null())


def read_lines(body: Body, path: tuple[str, ...] = ()) -> list[Line]:
    """The lines of a tomlkit container body, its tables' lines in place."""

    out: list[Line] = []
    for index, (key, item) in enumerate(body):
        here = path if key is None else (*path, key.key)
        if isinstance(item, Table | AoT):
            for table in item.body if isinstance(item, AoT) else [item]:
                if isinstance(item, AoT) or not table.is_super_table():
                    out.append(Line("header", here, body, index, table))
                out.extend(read_lines(table.value.body, here))
        elif isinstance(item, Comment):
            out.append(Line("comment", path, body, index, item))
        elif isinstance(item, Whitespace):
            if "\n" in item.s:
                out.append(Line("blank", path, body, index, item))
        elif not isinstance(item, Null):
            out.append(Line("value", here, body, index, item))
    return out


def models_tables(document: Any) -> list[Any]:
    """Each top-level ``models`` table in written order (other tables may split them), not
    tomlkit's merged view.
    """
    return [item for key, item in document.body if key is not None and key.key == "models"]


def runs_of(lines: list[Line], name: str) -> list[tuple[int, int]]:
    """Index ranges of the model's headers and values, with the comments and blank lines between
    them.
    """
    runs: list[tuple[int, int]] = []
    for i, line in enumerate(lines):
        if line.kind not in ("header", "value") or not line.under(("models", name)):
            continue
        between = range(runs[-1][1] + 1, i) if runs else range(0)
        if runs and all(lines[j].kind in ("comment", "blank") for j in between):
            runs[-1] = (runs[-1][0], i)
        else:
            runs.append((i, i))
    return runs


def attached(lines: list[Line], last: int) -> int:
    """The last comment line right under line ``last`` when a blank line (or the end) follows
    them, else ``last``.
    """
    end = _forward(lines, last + 1, "comment")
    return end - 1 if end == len(lines) or lines[end].kind == "blank" else last


def attached_end(body: Body, at: int) -> int:
    """Past the comment lines at ``body[at]`` when a blank line (or the table's end) follows them,
    else ``at`` (as :func:`attached` reads a comment under a line as that line's)."""

    end = at
    while end < len(body) and isinstance(body[end][1], Comment):
        end += 1
    if end == len(body) or (isinstance(body[end][1], Whitespace) and "\n" in body[end][1].s):
        return end
    return at


def region(lines: list[Line], first: int, last: int) -> range:
    """The lines a run of the entry covers, with the comments right above it, those under it up to a
    blank line (a comment right above the next header is the next entry's) and one blank line."""
    start = _back(lines, first, "comment")
    after = attached(lines, last) + 1
    blanks = _forward(lines, after, "blank")
    before_blank = start == 0 or lines[start - 1].kind == "blank"
    if blanks > after and (before_blank or blanks == len(lines)):
        return range(start, blanks)  # one blank line, not two, where the entry was
    if blanks == len(lines) and before_blank:
        start = _back(lines, start, "blank")  # the file ends with the line before it
    return range(start, after)


def _forward(lines: list[Line], at: int, kind: str) -> int:
    """Past the lines of ``kind`` from ``at`` on."""
    while at < len(lines) and lines[at].kind == kind:
        at += 1
    return at


def _back(lines: list[Line], at: int, kind: str) -> int:
    """Back over the lines of ``kind`` right above ``at``."""
    while at > 0 and lines[at - 1].kind == kind:
        at -= 1
    return at
