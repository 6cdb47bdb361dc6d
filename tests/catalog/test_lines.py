"""Key path → TOML line: the lookup that lets tomllib read one statement at a time."""

from __future__ import annotations

import pytest

from mdl.catalog import _lines as lines_module
from mdl.catalog._lines import LineIndex


def lines(text: str) -> LineIndex:
    return LineIndex(text.removeprefix("\n"))


def test_headers_keys_and_missing_keys_fall_back_to_their_table() -> None:
    index = lines('\nversion = 1\n\n[models.m]\nrepo = "a/b"\n')
    assert index.line_of(("version",)) == 1
    assert index.line_of(("models",)) == 3
    assert index.line_of(("models", "m")) == 3
    assert index.line_of(("models", "m", "repo")) == 4
    assert index.line_of(("models", "m", "files", 0)) == 3
    assert index.line_of(("nowhere",)) is None
    assert index.line_of(()) is None


def test_nothing_is_computed_until_a_line_is_asked_for() -> None:
    index = LineIndex("a = 1\n")
    assert index._found is None
    assert index.line_of(("a",)) == 1


def test_crlf_line_endings() -> None:
    assert (
        LineIndex('[models.m]\r\nrepo = "a/b"\r\ntags = [\r\n  "x",\r\n  1,\r\n]\r\n').line_of(
            ("models", "m", "tags", 1)
        )
        == 5
    )


def test_array_of_tables_then_a_subtable_of_its_latest_element() -> None:
    index = lines("""
[[models.z.files]]
url = "https://h/a"
[[models.z.files]]
url = "https://h/b"
[models.z.files.headers]
Authorization = "x"
""")
    assert index.line_of(("models", "z", "files", 0, "url")) == 2
    assert index.line_of(("models", "z", "files", 1)) == 3
    assert index.line_of(("models", "z", "files", 1, "headers", "Authorization")) == 6


def test_quoted_and_escaped_keys_are_read_by_tomllib() -> None:
    index = lines('\n[models."sd-v1.5"]\n"a\\"b" = 1\n\'lit.key\' = 2\n')
    assert index.line_of(("models", "sd-v1.5")) == 1
    assert index.line_of(("models", "sd-v1.5", 'a"b')) == 2
    assert index.line_of(("models", "sd-v1.5", "lit.key")) == 3


def test_elements_of_multiline_arrays_several_per_line_and_on_the_closing_line() -> None:
    index = lines('\ntags = ["a",\n  "b", "c",  # comment ]\n  "d"]\nafter = 1\n')
    assert [index.line_of(("tags", i)) for i in range(4)] == [1, 2, 2, 3]
    assert index.line_of(("after",)) == 4


def test_an_element_spanning_lines_leaves_the_rest_on_the_key_line() -> None:
    index = lines('\nx = [\n  [1,\n   2],\n  "later",\n]\ny = 1\n')
    assert index.line_of(("x", 0)) == 1
    assert index.line_of(("x", 1)) == 1
    assert index.line_of(("y",)) == 6


def test_multiline_strings_hide_headers_and_keys() -> None:
    index = lines("\na = '''\n[b]\nc = 1\n'''\n[d]\nc = 2\n")
    assert index.line_of(("b",)) is None
    assert index.line_of(("d", "c")) == 6


def test_a_hostile_multiline_array_costs_work_linear_in_its_size(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Counted, not timed: reparsing the growing statement at each line would read ~4 * 10^7
    # characters here.
    text = "x = [\n" + "[1],\n" * 4_000 + "]\n"
    read: list[int] = []
    parse = lines_module._parse
    monkeypatch.setattr(
        lines_module, "_parse", lambda chunk: read.append(len(chunk)) or parse(chunk)
    )
    LineIndex(text).line_of(("x", 5))
    assert 0 < sum(read) <= 25 * len(text) + 10_000
