"""The one reader of outside JSON (issue 86, C): for any bytes it returns a value or raises its one
error naming the source, never anything else (a RecursionError at ``[`` x 100,000 stopped publish
and prune); and no other module of mdl parses JSON itself."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mdl.errors import ExitCode, OutsideJSONError
from mdl.outsidejson import MAX_DEPTH, read_json

PACKAGE = Path(__file__).resolve().parent.parent / "mdl"
LIMIT = 1 << 20

# bytes that look like JSON's structure: brackets, quotes and escapes in any order and number
_STRUCTURE = st.lists(
    st.sampled_from([b"[", b"]", b"{", b"}", b'"', b"\\", b",", b":", b"1", b"a", b"\\\\", b" "]),
    max_size=400,
).map(b"".join)


def _read(data: bytes) -> object:
    try:
        return read_json(data, source="the thing", limit=LIMIT)
    except OutsideJSONError as exc:
        assert exc.message.startswith("the thing: ")
        assert exc.exit_code == ExitCode.USAGE
        return exc


@given(st.one_of(st.binary(max_size=2000), _STRUCTURE))
def test_any_bytes_are_a_value_or_the_one_error(data: bytes) -> None:
    found = _read(data)
    if not isinstance(found, OutsideJSONError):
        # what it takes is what the standard parser takes (a document it reads is that one)
        assert json.dumps(json.loads(data)) == json.dumps(found)  # (NaN is no NaN's equal)


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=8),
        lambda inner: (
            st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
        ),
        max_leaves=30,
    )
)
def test_every_document_within_the_bounds_is_read_as_written(doc: object) -> None:
    assert read_json(json.dumps(doc).encode(), source="x", limit=LIMIT) == doc


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"[" * 100_000, "nested too deeply"),
        (b'{"a":' * 100_000, "nested too deeply"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1), "nested too deeply"),
        (b'{"a": 1, "a": 2}', "a key given twice"),
        (b"1e400", "out of range"),
        (b"1" + b"0" * 400, "out of range"),
        (b"-" + b"9" * 100_000, "out of range"),  # (Python's own words for 4,300 digits: never)
        (b'{"size": ' + b"7" * 5_000 + b"}", "out of range"),
        (b"\xff", "not usable JSON"),
        (b"{nope", "not valid JSON (line 1, column 2"),
        (b"[1]" + b" " * LIMIT, f"more than {LIMIT} bytes"),
    ],
)
def test_what_it_refuses_is_said_naming_the_source(data: bytes, words: str) -> None:
    with pytest.raises(OutsideJSONError) as refused:
        read_json(data, source="s3://b/.mdl/versions/m/1.json", limit=LIMIT)
    assert refused.value.message.startswith("s3://b/.mdl/versions/m/1.json: ")
    assert words in refused.value.message
    assert "sys." not in refused.value.message


def test_brackets_inside_strings_are_no_nesting() -> None:
    text = json.dumps(["[" * 1000, '\\"[[[', {"k": "{" * 1000}])
    assert read_json(text, source="x", limit=LIMIT) == json.loads(text)
    deepest = "[" * MAX_DEPTH + "]" * MAX_DEPTH
    assert read_json(deepest, source="x", limit=LIMIT) == json.loads(deepest)


def test_no_module_but_the_reader_parses_json() -> None:
    """``json.loads``/``json.load`` and pydantic's ``validate_json`` appear in mdl.outsidejson
    alone: every reader of outside JSON goes through its bounds."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "outsidejson.py" and path.parent == PACKAGE:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute) and node.attr in (
                "loads",
                "load",
                "validate_json",
                "model_validate_json",
                "raw_decode",
            ):
                if isinstance(node.value, ast.Name) and node.value.id in ("tomllib", "pickle"):
                    continue  # TOML is the catalog's and the lock's own reader
                found.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} .{node.attr}")
            if isinstance(node, ast.ImportFrom) and node.module == "json":
                found.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} from json import")
    assert found == []
