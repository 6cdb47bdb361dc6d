"""Text splicing for catalog edits: a new ``[models.NAME]`` table after the last model, new files at the end of
an entry's ``files = [ … ]`` in the array's own style, and an entry cut out with the comments written on it (those
right above it and right under its last line) but not the comment above the next entry."""

from __future__ import annotations

from typing import Any

from mdl.catalog.keys import format_key
from mdl.catalog.tomltext import Statement, string_end


def owns(statement: Statement, name: str) -> bool:
    return statement.kind in ("header", "array", "value") and statement.path[:2] == ("models", name)


def insert_entry(text: str, statements: list[Statement], block: str, newline: str) -> str:
    """``block`` after the last model's own lines (its trailing comments stay after it), else at the end."""
    last = max((i for i, s in enumerate(statements) if s.kind != "blank" and s.path[:1] == ("models",)), default=None)
    if last is None:
        at = len(text)
    else:
        at = statements[last].end
        following = statements[last + 1 :]
        attached = 0
        for s in following:  # comments right under the last line, up to a blank line, belong to that model
            if s.kind != "comment":
                break
            attached += 1
        if attached and (len(following) == attached or following[attached].kind == "blank"):
            at = following[attached - 1].end
    head, tail = text[:at], text[at:]
    if head and not head.endswith("\n"):
        head += newline
    if head.strip() and not head.endswith(("\n\n", "\n\r\n")):
        head += newline  # one blank line between entries
    if tail.strip() and not tail.startswith(("\n", "\r\n")):
        block += newline
    return head + block + tail


def entry_text(name: str, entry: dict[str, Any], newline: str) -> str:
    lines = [f"[models.{format_key(name)}]"]
    for key, value in entry.items():
        if key == "files":
            lines.append("files = [")
            lines.extend(f"  {inline(f)}," for f in value)
            lines.append("]")
        else:
            lines.append(f"{format_key(key)} = {inline(value)}")
    return newline.join(lines) + newline


def inline(value: Any) -> str:
    """A TOML value on one line: inline tables spaced as in the docs (``{ repo = "…", path = "…" }``)."""
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{format_key(k)} = {inline(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list):
        return "[" + ", ".join(inline(v) for v in value) + "]"
    import tomlkit

    return str(tomlkit.item(value).as_string())


def append_files(text: str, statement: Statement, new: list[dict[str, Any]], newline: str) -> str | None:
    """The new files put at the end of the entry's ``files = [ … ]``, in the array's own style."""
    value = text[statement.start : statement.end]
    close, last = _array_close(value)
    if close is None or last is None:
        return None
    between = value[last + 1 : close]
    comma = between.lstrip(" \t").startswith(",")
    anchor = last + 1 + (between.index(",") + 1 if comma else 0)
    prefix = "" if comma else ","
    line_start = value.rfind("\n", 0, last) + 1
    line = value[line_start:]
    indent = "  " if line.lstrip(" \t").startswith("files") else line[: len(line) - len(line.lstrip(" \t"))]
    items = [inline(f) for f in new]
    if "\n" in between:  # ']' on a line of its own: one line per new file above it
        at = value.rfind("\n", 0, close) + 1
        body = value[:at] + "".join(f"{indent}{item},{newline}" for item in items) + value[at:]
        body = body[: last + 1] + prefix + body[last + 1 :]
    elif "\n" not in value[:close]:  # all on one line: it stays on one line
        body = value[:anchor] + prefix + ",".join(f" {item}" for item in items) + value[anchor:]
    else:
        body = value[:anchor] + prefix + ",".join(f"{newline}{indent}{item}" for item in items) + value[anchor:]
    return text[: statement.start] + body + text[statement.end :]


def append_file_tables(
    text: str, statements: list[Statement], name: str, new: list[dict[str, Any]], newline: str
) -> str | None:
    """New ``[[models.NAME.files]]`` tables after the entry's last one (its comments stay where they are); None when
    the entry's files are not written as tables of an array."""
    path = ("models", name, "files")
    arrays = [i for i, s in enumerate(statements) if s.kind == "array" and s.path == path]
    if not arrays:
        return None
    last = arrays[-1]
    for j in range(last + 1, len(statements)):
        s = statements[j]
        if s.kind in ("header", "array") and not (s.kind == "header" and s.path[:3] == path):
            break  # the next table; a [models.NAME.files.headers] sub-table still belongs to the last file
        if s.kind != "comment" and s.kind != "blank":
            last = j
    tables = []
    for table in new:
        lines = [f"[[models.{format_key(name)}.files]]"]
        lines.extend(f"{format_key(key)} = {inline(value)}" for key, value in table.items())
        tables.append(newline.join(lines) + newline)
    return insert_entry(text, statements[: last + 1] + _comments_after(statements, last), newline.join(tables), newline)


def _comments_after(statements: list[Statement], last: int) -> list[Statement]:
    """The comment lines right under statement ``last`` when a blank line (or the end) follows them: its own."""
    following = statements[last + 1 :]
    attached = 0
    while attached < len(following) and following[attached].kind == "comment":
        attached += 1
    return [] if attached < len(following) and following[attached].kind != "blank" else following[:attached]


def _array_close(value: str) -> tuple[int | None, int | None]:
    """In ``files = [ … ]``: the index of the closing ``]`` and of the last element's closing ``}``."""
    depth, last = 0, None
    pos = value.index("=") + 1
    while pos < len(value):
        char = value[pos]
        if char in "\"'":
            pos = string_end(value, pos)
            continue
        if char == "#":
            pos = value.find("\n", pos)
            if pos < 0:
                return None, last
            continue
        if char in "[{":
            depth += 1
        elif char in "]}":
            depth -= 1
            if char == "}" and depth == 1:
                last = pos
            if depth == 0:
                return pos, last
        pos += 1
    return None, last


def cut(text: str, statements: list[Statement], name: str, *, tidy: bool = True) -> str:
    """``text`` without the statements of model ``name`` and the comments written on it; ``tidy`` also takes
    the comment lines right above it and one blank line around it (for a removal, not a replacement)."""
    out = text
    for first, last in reversed(_runs(statements, name)):
        start, end = _region(text, statements, first, last, tidy=tidy)
        out = out[:start] + out[end:]
    return out


def _runs(statements: list[Statement], name: str) -> list[tuple[int, int]]:
    """Index ranges of the model's statements, with the comments and blank lines between them."""
    runs: list[tuple[int, int]] = []
    index = 0
    while index < len(statements):
        if not owns(statements[index], name):
            index += 1
            continue
        first = last = index
        for j in range(index + 1, len(statements)):
            if owns(statements[j], name):
                last = j
            elif statements[j].kind not in ("comment", "blank"):
                break
        runs.append((first, last))
        index = last + 1
    return runs


def _leading_comments(statements: list[Statement], first: int) -> int:
    """The index of the first comment line right above statement ``first`` (no blank line between)."""
    j = first
    while j > 0 and statements[j - 1].kind == "comment":
        j -= 1
    return j


def _region(text: str, statements: list[Statement], first: int, last: int, *, tidy: bool) -> tuple[int, int]:
    """The characters a run of the entry covers: with the comments under its last line up to a blank line
    (they are the entry's; a comment right above the next header is the next entry's)."""
    start = statements[_leading_comments(statements, first) if tidy else first].start
    after = last + 1
    trailing = after
    while trailing < len(statements) and statements[trailing].kind == "comment":
        trailing += 1
    if trailing == len(statements) or statements[trailing].kind == "blank":
        after = trailing
    end = statements[after - 1].end
    if not tidy:
        return start, end
    blanks = after
    while blanks < len(statements) and statements[blanks].kind == "blank":
        blanks += 1
    before_blank = start == 0 or text[:start].endswith(("\n\n", "\n\r\n"))
    if blanks > after and (before_blank or blanks == len(statements)):
        end = statements[blanks - 1].end  # one blank line, not two, where the entry was
    elif blanks == len(statements) and before_blank and start > 0:
        start = len(text[:start].rstrip("\r\n")) + 1  # the file ends with the line before it
        start += 1 if text[start - 1 : start + 1] == "\r\n" else 0
    return start, end
