"""Writing an edit where the entry is written: a new model after the last one, new files after the
entry's, a description, tags or signer set in place, a model taken out with the comments written on
it; every other line of the file as it was. None where the layout has no such place (the caller
falls back to tomlkit's own placing)."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

import tomlkit
from tomlkit.items import AoT, InlineTable, Table, Whitespace

from mdl.catalog._entry import META_KEYS, Action, Toml, with_meta
from mdl.catalog._tomllines import (
    Body,
    Line,
    attached,
    attached_end,
    models_tables,
    read_lines,
    region,
    runs_of,
)


def placed(text: str, name: str, entry: Toml, old: Any, action: Action) -> str | None:
    """The edit made where the entry is (a new one after the last model), or None when this layout
    has no such place (``models = { … }`` inline, an entry split around other tables).
    """

    document = tomlkit.parse(text)
    lines = read_lines(document.body)
    nl = newline_of(text)
    if any(line.kind == "value" and line.path == ("models",) for line in lines):
        return None
    if action == "added":
        _add_model(document, lines, name, _table(entry, nl), text)
        return tomlkit.dumps(document)
    new = entry["files"][len(old["files"]) :] if action == "extended" else []
    if new and _add_files(document, lines, name, new, text):
        return tomlkit.dumps(document)
    runs = runs_of(lines, name)
    # an inline or dotted entry: the new table goes after the last model
    if lines[runs[0][0]].kind == "value":
        rest = removed(text, name)
        return None if rest is None else placed(rest, name, entry, None, "added")
    if len(runs) > 1:
        return None
    _write_anew(document, lines[attached(lines, runs[0][1]) + 1 :], name, entry, nl)
    return tomlkit.dumps(document)


def newline_of(text: str) -> str:
    """The line break the file is written with."""
    return "\r\n" if "\r\n" in text else "\n"


def _add_model(document: Any, lines: list[Line], name: str, table: Any, text: str) -> None:
    """``table`` as the model ``name``'s, after the last model."""

    tables = models_tables(document)
    _make_room(lines, ("models",), [table], text)
    if not tables:
        document.append("models", tomlkit.table(is_super_table=True))
        tables = [document["models"]]
        tables[0].trivia.indent = ""  # it has no header to set apart
    tables[-1].append(name, table)


def _add_files(document: Any, lines: list[Line], name: str, new: list[Toml], text: str) -> bool:
    """The ``new`` files after the entry's own, in the entry's style; False when it has no such
    place (an inline or dotted entry)."""

    models = next(t for t in models_tables(document) if name in t)
    files = models[name].get("files")
    # [[models.NAME.files]] tables: one more table each, every comment kept
    if isinstance(files, AoT):
        added = [_table(f, newline_of(text)) for f in new]
        _make_room(lines, ("models", name, "files"), added, text)
        files.extend(added)
        return True
    if any(line.kind == "header" and line.path == ("models", name) for line in lines):
        # files = [ … ] under [models.NAME]: the array keeps its own style
        files.extend(_inline(f) for f in new)
        return True
    return False


def _write_anew(document: Any, after: list[Line], name: str, entry: Toml, nl: str) -> None:
    """The entry's table written anew in its place, under the old header's indent, and the lines
    ``after`` it that are still its own (past the entry and its comments: those above it stay)."""
    models = next(t for t in models_tables(document) if name in t)
    table = _table(entry, nl)
    models[name] = table
    del table.value.body[len(entry) :]  # no blank line of tomlkit's own
    table.trivia.comment_ws = table.trivia.comment = ""
    for line in after:
        if not line.under(("models", name)):
            break
        table.add(line.item)


def meta_placed(text: str, name: str, meta: Toml) -> str | None:
    """``meta`` (description, tags, signature) set in the entry as written, every other line kept: a
    value that is there is replaced where it is (its comment kept; a ``[models.NAME.signature]``
    table keeps its header, comments and ``file``), a new description or tags go after the entry's
    other such keys, else first, a new signature after its last value; None for a layout with no
    such place (an entry split around other tables)."""

    document = tomlkit.parse(text)
    holders = [table for table in models_tables(document) if name in table]
    if len(holders) != 1:
        return None
    holder = holders[0]
    table = holder[name]
    if isinstance(table, InlineTable):  # one line, no comments inside: written anew, new keys first
        holder[name] = _inline(with_meta(table.unwrap(), meta))
        return tomlkit.dumps(document)
    if not isinstance(table, Table):
        return None
    nl = newline_of(text)
    missing = {key: value for key, value in meta.items() if key not in table}
    _set_in_place(table, meta, nl)
    # [models.x.files] tables alone: tomlkit gives [models.x] its header
    if not missing or table.is_super_table():
        for key, value in missing.items():
            table[key] = _inline(value)
    else:
        _rewritten(holder, name, _meta_inserts(table.value.body, missing), (), nl)
    return tomlkit.dumps(document)


def _set_in_place(table: Any, meta: Toml, nl: str) -> None:
    """The values of ``meta`` the table has, set where they are."""

    for key, value in meta.items():
        # [models.NAME.signature]: its keys replaced, its other lines kept
        if isinstance(table.get(key), Table):
            _merged(table, key, value, nl)
        elif key in table:
            table[key] = _inline(value)


def _meta_inserts(body: Body, missing: Toml) -> dict[int, Toml]:
    """Where the new keys go in the table's ``body``: a description or tags after the entry's other
    such keys, else first; a signature after its last value (and the comments under it)."""

    keyed = [i for i, (key, _) in enumerate(body) if key is not None and key.key in META_KEYS]
    values = [
        i
        for i, (key, item) in enumerate(body)
        if key is not None and not isinstance(item, Table | AoT)
    ]
    last = attached_end(body, values[-1] + 1) if values else 0
    after_meta = keyed[-1] + 1 if keyed else 0
    inserts: dict[int, Toml] = {}
    for key, value in missing.items():
        inserts.setdefault(after_meta if key in META_KEYS else last, {})[key] = value
    return inserts


def _merged(holder: Any, name: str, values: Toml, nl: str) -> None:
    """The sub-table ``holder[name]`` made to hold exactly ``values``: a key it has is set where it
    is (its comment kept), one it has not takes the place of the first key dropped (else goes after
    its last value)."""
    table = holder[name]
    for key, value in values.items():
        if table.get(key, value) != value:  # there, and another value
            table[key] = _inline(value)
    body = table.value.body
    dropped = [i for i, (key, _) in enumerate(body) if key is not None and key.key not in values]
    new = {key: value for key, value in values.items() if key not in table}
    if new or dropped:
        at = dropped[0] if dropped else _past_keys(body)
        _rewritten(holder, name, {at: new}, {body[i][0].key for i in dropped}, nl)


def _past_keys(body: Body) -> int:
    """Right after the last value of a table's ``body`` (0: it has none)."""
    keyed = [i for i, (key, _) in enumerate(body) if key is not None]
    return keyed[-1] + 1 if keyed else 0


def _rewritten(
    holder: Any, name: str, inserts: Mapping[int, Toml], dropped: Collection[str], nl: str
) -> None:
    """The table ``holder[name]`` written anew: its lines as written but the values keyed in
    ``dropped``, with ``inserts[i]``'s keys one line each before its line ``i`` (indented as its
    first value), its header kept."""

    table = holder[name]
    body = table.value.body
    indent = next((item.trivia.indent for key, item in body if key is not None), "")
    indent = indent[len(indent.rstrip(" \t")) :]
    new = tomlkit.table()
    # as tomlkit read them: no blank line of its own before a sub-table, headers as written
    new.value.parsing(True)
    for index, (written, item) in enumerate([*body, (None, None)]):
        if index and inserts.get(index):
            _end_line(body[index - 1][1], nl)
        _append_lines(new, inserts.get(index, {}), indent, nl)
        if item is not None and (written is None or written.key not in dropped):
            new.append(written, item)
    new.value.parsing(False)
    # the header as written (set after the lines: an indented header would indent each line
    # appended)
    new.trivia.indent, new.trivia.comment_ws = table.trivia.indent, table.trivia.comment_ws
    new.trivia.comment, new.trivia.trail = table.trivia.comment, table.trivia.trail
    holder[name] = new
    # tomlkit sets a replaced table apart with a blank line of its own: not where the old one had
    # none
    had_blank = bool(body) and isinstance(body[-1][1], Whitespace)
    if not had_blank and isinstance(new.value.body[-1][1], Whitespace):
        del new.value.body[-1]


def _append_lines(table: Any, values: Toml, indent: str, nl: str) -> None:
    """``values`` appended to ``table``, one line each."""

    for key, value in values.items():
        line = tomlkit.item(_inline(value))
        line.trivia.indent, line.trivia.trail = indent, nl
        table.append(key, line)


def _end_line(item: Any, nl: str) -> None:
    """The file's last line, without its line break, given one."""
    trivia = getattr(item, "trivia", None)
    if trivia is not None and "\n" not in trivia.trail:
        trivia.trail += nl


def _make_room(lines: list[Line], prefix: tuple[str, ...], tables: list[Any], text: str) -> None:
    """Make ``tables`` follow the last lines under ``prefix`` (and the comments right under them, up
    to a blank line): the comments and blank lines after those move under the last table; one blank
    line on each side."""
    nl = newline_of(text)
    keyed = [
        i for i, line in enumerate(lines) if line.kind in ("header", "value") and line.under(prefix)
    ]
    at = attached(lines, keyed[-1]) + 1 if keyed else len(lines)
    if at == len(lines) and at and not text.endswith("\n"):
        lines[-1].item.trivia.trail += nl  # the last line gets its line break
    # comments under root-level ``models.x.y = …`` keys are outside the models table: they go
    # above the new ones
    tables[0].trivia.indent = _lifted(lines, keyed[-1] + 1 if keyed else at, at, prefix, nl)
    for table in tables[1:]:
        table.trivia.indent = nl
    _move_under(lines[at:], prefix, tables[-1], nl)


def _lifted(lines: list[Line], start: int, at: int, prefix: tuple[str, ...], nl: str) -> str:
    """The lines from ``start`` to ``at`` outside ``prefix`` taken out, as the text that goes above
    the new tables (and a blank line, unless one ends them)."""
    above = [line for line in lines[start:at] if not line.under(prefix)]
    for line in above:
        line.drop()
    blank = nl if at and lines[at - 1].kind != "blank" else ""
    return "".join(line.item.as_string() for line in above) + blank


def _move_under(after: list[Line], prefix: tuple[str, ...], table: Any, nl: str) -> None:
    """The comments and blank lines ``after`` the new tables that are under ``prefix`` move under
    ``table`` (the last new one), a blank line before them."""

    if after and after[0].kind != "blank":
        table.add(Whitespace(nl))
    for line in after:
        if not line.under(prefix):
            break
        line.drop()
        table.add(line.item)


def removed(text: str, name: str) -> str | None:
    """``text`` without model ``name``, the comments written on it and one blank line around it;
    None when a comment that stays has no place to go."""

    document = tomlkit.parse(text)
    lines = read_lines(document.body)
    gone = {i for first, last in runs_of(lines, name) for i in region(lines, first, last)}
    inside = [line.under(("models", name)) for line in lines]
    for i in gone:
        if not inside[i]:
            lines[i].drop()
    for table in models_tables(document):
        if name in table:
            table.remove(name)
    tail = _tail_moved(lines, gone, inside)
    if tail is None:
        return None
    for item in tail:
        document.add(item)
    return tomlkit.dumps(document)


def _tail_moved(lines: list[Line], gone: set[int], inside: list[bool]) -> list[Any] | None:
    """What stays of the entry's tail goes before the next header (moved there), or at the end (the
    items returned); None when a comment that stays has no header to go before."""
    kept: list[Any] = []
    for i, line in enumerate(lines):
        if inside[i] and i not in gone:
            kept.append(line.item)
        elif kept and not inside[i]:
            if line.kind != "header" or i in gone:
                return None
            moved = "".join(item.as_string() for item in kept)
            line.item.trivia.indent = moved + line.item.trivia.indent
            kept = []
    return kept


def _table(entry: Toml, nl: str) -> Any:
    """A new ``[models.NAME]`` table: values on one line each, files one per line in ``files = [
    … ]``.
    """

    table = tomlkit.table()
    table.trivia.trail = nl
    for key, value in entry.items():
        item = tomlkit.item(_inline(value)) if key != "files" else tomlkit.array()
        if key == "files":
            for f in value:
                item.add_line(_inline(f), indent=nl + "  ", newline=False)
            item.add_line(indent=nl, newline=False)
        item.trivia.trail = nl
        table.add(key, item)
    return table


def _inline(value: Any) -> Any:
    """``value`` with its tables inline, spaced as the docs: ``{ repo = "…", path = "…" }``."""

    if isinstance(value, dict):
        items = [tomlkit.item(_inline(item)) for item in value.values()]
        if items:
            items[0].trivia.indent = items[-1].trivia.trail = " "
        table = tomlkit.inline_table()
        for key, item in zip(value, items, strict=True):
            table.append(key, item)
        return table
    # a scalar, or an array of them (tags, include, exclude): tomlkit writes those as the docs do
    return value
