"""A file record's ``xet``, ``xet_checked``, ``reused`` and ``fetched``: written as read, read
strictly, absent in older records (an older record's Xet hash: not checked here).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mdl.store.records import FileRecord, ModelRecord, parse_record

XET = "0123456789abcdef" * 4
SHA = "b" * 64


def _write(path: Path, entry: dict[str, Any]) -> ModelRecord | None:
    doc = {
        "version": 1,
        "name": "m",
        "files": {"a.bin": {"path": "a.bin", "size": 3, "sha256": SHA, "mtime_ns": 1}},
    }
    doc["files"]["a.bin"].update(entry)
    path.write_text(json.dumps(doc))
    return parse_record("m", path)


def test_xet_reused_and_fetched_round_trip(tmp_path: Path) -> None:
    one = FileRecord("a.bin", 3, SHA, 1, xet=XET, xet_checked=True, reused=2, fetched=1)
    path = tmp_path / "m.json"
    path.write_text(json.dumps(ModelRecord("m", files={"a.bin": one}).to_json()))
    record = parse_record("m", path)
    assert record is not None and record.files["a.bin"] == one


def test_a_record_written_before_the_fields_reads_with_nothing_known(tmp_path: Path) -> None:
    record = _write(tmp_path / "m.json", {})
    assert record is not None
    assert (
        record.files["a.bin"].xet,
        record.files["a.bin"].reused,
        record.files["a.bin"].fetched,
    ) == (None, 0, None)


def test_an_older_records_xet_hash_reads_as_not_checked_here(tmp_path: Path) -> None:
    """mdl <= 0.9 wrote the Hub's Xet hash into plain fetches' records too, with no mark."""
    record = _write(tmp_path / "m.json", {"xet": XET})
    assert record is not None
    assert (record.files["a.bin"].xet, record.files["a.bin"].xet_checked) == (XET, False)


@pytest.mark.parametrize(
    "entry",
    [
        {"xet": XET.upper()},
        {"xet": XET[:63]},
        {"xet": 5},
        {"xet_checked": 1},
        {"xet_checked": "true"},
        {"reused": -1},
        {"reused": "2"},
        {"reused": True},
        {"reused": None},
        {"reused": 2.0},
        {"fetched": -1},
        {"fetched": "1"},
        {"fetched": False},
    ],
    ids=repr,
)
def test_a_field_of_the_wrong_form_makes_the_record_unreadable(
    tmp_path: Path, entry: dict[str, Any]
) -> None:
    assert _write(tmp_path / "m.json", entry) is None


@given(value=st.none() | st.booleans() | st.integers() | st.text(max_size=70) | st.floats())
def test_any_value_is_read_as_itself_or_refused(value: Any) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        for key in ("xet", "reused", "fetched"):
            record = _write(Path(folder) / "m.json", {key: value})
            if record is None:
                continue
            got = getattr(record.files["a.bin"], key)
            if key == "xet":
                assert got is None if value is None else (got == value and len(value) == 64)
            else:
                assert (got is None and value is None and key == "fetched") or (
                    type(got) is int and got == value and got >= 0
                )
