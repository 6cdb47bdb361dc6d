"""The catalog is untrusted input: whatever its text, loading ends in a Catalog or a one-line
exit-2 error.
"""

from __future__ import annotations

import json
import tempfile
import warnings
from datetime import date, datetime, time
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from profiles import examples

from mdl.catalog._schema import MAX_PROBLEMS, CatalogDocument, FileEntry, ModelEntry, SettingsTable
from mdl.catalog.load import parse_catalog
from mdl.catalog.specs import Catalog
from mdl.errors import CatalogError, UsageError
from mdl.lockfile.remembered import load_catalog

SHIPPED = Path(__file__).resolve().parents[2] / "catalog.toml"
HEX = "ab" * 32

# Keys the schema knows, the aliases people bring, and a few near misses, so documents get past the
# first table.
KEYS = sorted(
    {*CatalogDocument.keys(), *SettingsTable.keys(), *ModelEntry.keys(), *FileEntry.keys()}
    | {"repo_id", "rev", "save_as", "sha265", "includes", ""}
)
STRINGS = st.one_of(
    st.text(max_size=12),
    st.sampled_from(
        [
            "a/b",
            "owner/name",
            "a/b/c",
            "../x",
            "/abs",
            "./x.bin",
            "x.bin",
            "vae/ae.bin",
            "vae",
            "https://h/x.bin",
            "https://h/dir/",
            "https://h:99999/x",
            "ftp://h/x",
            "http://[::1/x",
            HEX,
            f"sha256:{HEX.upper()}",
            "Bearer ${TOKEN}",
            "${1X}",
            "50M",
            "9" * 400,
            "https://m/{repo}/{path}",
            "https://m/{nope",
            "dataset",
            "model",
            "plain",
            "hf-cache",
            "",
            " ",
        ]
    ),
)
SCALARS = st.one_of(
    STRINGS,
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.sampled_from([0, 1, 64, 65, -1, 100, 101]),
    st.floats(),
    st.booleans(),
    st.dates(),
    st.datetimes(),
    st.times(),
)
TABLE_KEYS = st.one_of(st.sampled_from(KEYS), st.text(max_size=6))
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TABLE_KEYS, inner, max_size=5),
    max_leaves=12,
)
# Mostly plausible values (strings, lists of strings, small numbers), sometimes anything at all.
PLAUSIBLE = st.one_of(STRINGS, STRINGS, st.lists(STRINGS, max_size=3), st.integers(-2, 200), VALUES)
HEADERS = st.dictionaries(
    st.sampled_from(["Authorization", "authorization", "X-A", "Bad Name"]), STRINGS, max_size=2
)
FILE_TABLES = st.dictionaries(
    st.sampled_from(FileEntry.keys()) | TABLE_KEYS, PLAUSIBLE | HEADERS, min_size=1, max_size=5
)
MODEL_TABLES = st.one_of(
    st.fixed_dictionaries({"files": st.lists(FILE_TABLES, min_size=1, max_size=4)}),
    st.fixed_dictionaries({"repo": STRINGS}),
    st.dictionaries(
        st.sampled_from(ModelEntry.keys()),
        PLAUSIBLE | st.lists(FILE_TABLES, max_size=3),
        max_size=5,
    ),
    st.dictionaries(TABLE_KEYS, VALUES, max_size=3),
)
GOOD_NAMES = st.sampled_from(["m", "tiny-bert", "sd-v1.5", "z"])
MODEL_NAMES = st.one_of(
    GOOD_NAMES, GOOD_NAMES, GOOD_NAMES, st.sampled_from([".hidden", "a/b", ""]), st.text(max_size=6)
)
SETTINGS = st.dictionaries(
    st.sampled_from(SettingsTable.keys()), PLAUSIBLE | st.floats(), max_size=4
)
# Most documents get past the top level, so that model and file rules are reached; some are chaos
# throughout.
DOCUMENTS = st.one_of(
    st.fixed_dictionaries(
        {
            "version": st.just(1),
            "models": st.dictionaries(MODEL_NAMES, MODEL_TABLES, min_size=1, max_size=3),
        },
        optional={"settings": SETTINGS},
    ),
    st.fixed_dictionaries({"settings": SETTINGS}),
    st.dictionaries(st.sampled_from(CatalogDocument.keys()) | TABLE_KEYS, VALUES, max_size=3),
)


def toml_value(value: Any) -> str:
    """``value`` as a TOML inline value (the test writes its own TOML: the project reads it,
    never writes it).
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return {"nan": "nan", "inf": "inf", "-inf": "-inf"}.get(repr(value), repr(value))
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    pairs = ", ".join(f"{toml_value(key)} = {toml_value(item)}" for key, item in value.items())
    return "{ " + pairs + " }"


def toml_document(document: dict[str, Any], *, headers: bool) -> str:
    """A whole document; with ``headers``, tables of tables become ``[top."name"]`` sections,
    files multi-line.
    """
    lines: list[str] = []
    sections: list[str] = []
    for key, value in document.items():
        if (
            headers
            and isinstance(value, dict)
            and value
            and all(isinstance(v, dict) for v in value.values())
        ):
            for name, table in value.items():
                sections.append(f"[{toml_value(key)}.{toml_value(name)}]")
                for inner, item in table.items():
                    written = toml_value(item)
                    if isinstance(item, list) and item:
                        written = "[\n  " + ",\n  ".join(toml_value(x) for x in item) + ",\n]"
                    sections.append(f"{toml_value(inner)} = {written}")
        else:
            lines.append(f"{toml_value(key)} = {toml_value(value)}")
    return "\n".join([*lines, *sections]) + "\n"


def check(text: str) -> None:
    """Loading ``text`` gives a Catalog or a UsageError (CatalogError is one) naming the source: one
    line, or a ``c.toml: N problems`` line and then one line per problem (at most MAX_PROBLEMS, then
    how many more); what it warns of (an unknown key, ignored) names the source too."""
    try:
        with warnings.catch_warnings(record=True) as said:
            warnings.simplefilter("always")
            catalog = parse_catalog(text, source="c.toml")
        assert all(str(w.message).startswith("c.toml") for w in said), [
            str(w.message) for w in said
        ]
    except UsageError as exc:
        message = str(exc)
        assert exc.exit_code == 2
        assert message.startswith("c.toml"), message
        problems = exc.problems if isinstance(exc, CatalogError) else (message,)
        assert problems and all(p.startswith("c.toml") and "\n" not in p for p in problems), (
            problems
        )
        if len(problems) == 1:
            assert message == problems[0]
            return
        head, *lines = message.split("\n")
        assert head == f"c.toml: {len(problems)} problems"
        more = len(problems) - MAX_PROBLEMS
        assert lines == [f"  {p}" for p in problems[:MAX_PROBLEMS]] + (
            [f"  and {more} more"] if more > 0 else []
        )
    else:
        assert isinstance(catalog, Catalog)
        for model in catalog.models:
            assert model.is_snapshot or [f.save_path for f in model.files]


@settings(max_examples=examples(300), deadline=None)
@given(DOCUMENTS, st.booleans())
def test_random_documents_load_or_fail_with_a_catalog_error(
    document: dict[str, Any], headers: bool
) -> None:
    check(toml_document(document, headers=headers))


@settings(max_examples=examples(300), deadline=None)
@given(st.data())
def test_mangled_catalogs_load_or_fail_with_a_catalog_error(data: st.DataObject) -> None:
    text = SHIPPED.read_text(encoding="utf-8")
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(text)))
        cut = data.draw(st.integers(0, 8))
        text = (
            text[:at]
            + data.draw(st.text(max_size=8) | st.sampled_from(list("[]{}=\"',.#\n")))
            + text[at + cut :]
        )
    check(text)


@settings(max_examples=examples(200), deadline=None)
@given(st.text())
def test_any_text_loads_or_fails_with_a_catalog_error(text: str) -> None:
    check(text)


@settings(max_examples=examples(100), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=200))
def test_any_bytes_on_disk_load_or_fail_with_a_catalog_error(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "c.toml"
        path.write_bytes(b'[models.m]\nrepo = "a/b"\n' + data)
        try:
            load_catalog(path)
        except UsageError as exc:
            assert str(exc).startswith(str(path))
            assert "\n" not in str(exc)
