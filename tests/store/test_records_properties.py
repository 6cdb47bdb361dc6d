"""Records and resume records are untrusted input (any editor, disk error or other tool may have
changed them): whatever their bytes, reading them ends in a sound record or "unreadable" (files
re-checked, never trusted), and the commands that read them end in success or an MdlError with a
documented exit code — never a crash (issue 11 item 10: a record with ``"size": "2"`` was "internal
error: TypeError")."""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import re
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from profiles import examples

from mdl import api
from mdl.errors import ExitCode, MdlError
from mdl.paths import safe_relative_path
from mdl.store.records import ModelRecord, parse_record, record_json, record_of, unchanged
from mdl.transfer.job import Identity
from mdl.transfer.resume import parse_state, saved_progress

FUZZ = settings(
    max_examples=examples(150), deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
DOCUMENTED = {ExitCode.USAGE, ExitCode.INTEGRITY, ExitCode.LOCAL}
DATA = b"weights" * 100
SHA = hashlib.sha256(DATA).hexdigest()
VALID_RECORD: dict[str, Any] = {
    "version": 1,
    "name": "m",
    "revision": None,
    "commit": None,
    "updated_at": "2026-01-01T00:00:00Z",
    "files": {
        "a.bin": {
            "path": "a.bin",
            "size": len(DATA),
            "sha256": SHA,
            "mtime_ns": 1,
            "source": "https://example.invalid/a.bin",
            "git_oid": None,
            "etag": None,
            "commit": None,
            "fetched_at": "2026-01-01T00:00:00Z",
            "adopted": True,
        }
    },
    "catalog": "/home/u/catalog.toml",
    # The Hugging Face cache: the files of other commits mdl wrote (prune frees them), fuzzed like
    # the rest.
    "earlier": {
        f"{'c' * 40}/a.bin": {
            "path": f"{'c' * 40}/a.bin",
            "size": len(DATA),
            "sha256": SHA,
            "mtime_ns": 1,
            "source": f"hf://org/m@{'c' * 40}/a.bin",
            "commit": "c" * 40,
        }
    },
    # What the model should be (written before a pull's first byte): fuzzed like the rest.
    "expected": {
        "a.bin": {
            "size": len(DATA),
            "sha256": SHA,
            "git_oid": None,
            "source": "https://example.invalid/a.bin",
        }
    },
}
VALID_STATE: dict[str, Any] = {
    "version": 1,
    "source": "https://example.invalid/a.bin",
    "identity": {"size": 300, "sha256": SHA, "git_oid": None, "etag": '"e"'},
    "validator": '"e"',
    "pieces": [[0, 100, 100], [100, 200, 5], [200, 300, 0]],
}

JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(["2", "²", "-1", "a.bin", "../x", "/abs", "", SHA, SHA.upper(), "9" * 400]),
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


@st.composite
def mutated(draw: st.DrawFn, valid: dict[str, Any]) -> Any:
    """``valid`` with a few values replaced, keys dropped or added, at any depth."""
    doc = copy.deepcopy(valid)
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        node: Any = doc
        while isinstance(node, dict | list) and node and draw(st.booleans()):
            keys = list(node) if isinstance(node, dict) else list(range(len(node)))
            child = node[draw(st.sampled_from(keys))]
            if not isinstance(child, dict | list) or not child:
                break
            node = child
        if isinstance(node, dict):
            key = draw(st.one_of(st.sampled_from(sorted(node) or [""]), st.text(max_size=6)))
            if draw(st.booleans()) and key in node:
                del node[key]
            else:
                node[key] = draw(JSON_VALUES)
        elif isinstance(node, list) and node:
            node[draw(st.integers(min_value=0, max_value=len(node) - 1))] = draw(JSON_VALUES)
    return doc


DOCUMENTS = st.one_of(mutated(VALID_RECORD), JSON_VALUES)


def _dump(doc: Any) -> str:
    return json.dumps(doc, allow_nan=True)


def _assert_sound(record: ModelRecord) -> None:
    for path, entry in (*record.files.items(), *record.earlier.items()):
        assert entry.path == path and safe_relative_path(path, where="x") == path
        assert type(entry.size) is int and entry.size >= 0
        assert type(entry.mtime_ns) is int and entry.mtime_ns >= 0
        assert re.fullmatch(r"[0-9a-f]{64}", entry.sha256)
        assert all(isinstance(v, str) for v in (entry.source, entry.fetched_at))
        assert all(
            v is None or isinstance(v, str) for v in (entry.git_oid, entry.etag, entry.commit)
        )
        assert type(entry.verified) is bool and type(entry.adopted) is bool
    assert record.revision is None or isinstance(record.revision, str)
    assert record.catalog is None or isinstance(record.catalog, str)
    assert record.commit is None or isinstance(record.commit, str)
    record.entry_for("a.bin", sha256=SHA, git_oid=None)  # never raises, whatever the keys


@FUZZ
@given(st.one_of(DOCUMENTS.map(_dump), st.binary(max_size=200).map(lambda b: b.decode("latin-1"))))
def test_a_record_is_sound_or_unreadable(text: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "m.json"
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        record = parse_record("m", path)
    if record is not None:
        _assert_sound(record)


@FUZZ
@given(DOCUMENTS)
def test_a_record_is_written_as_the_standard_encoder_writes_it_and_read_back_as_it_was(
    doc: Any,
) -> None:
    """Each pull rewrites its record every second: its text is made entry by entry (``record_json``)
    and the record cached as read back (``record_of`` taking the entries it kept as they are). Both
    must be what ``json.dumps(indent=1)`` and a fresh read give."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "m.json"
        path.write_text(_dump(doc), encoding="utf-8", errors="surrogatepass")
        record = parse_record("m", path)
        if record is None:
            return
        written = record.to_json()
        text = record_json(record, written)
        assert text == json.dumps(written, indent=1)
        path.write_text(text + "\n", encoding="utf-8")
        assert record_of("m", written, known=unchanged(record, record)) == parse_record("m", path)


def test_adopted_and_the_catalog_read_back_and_default_for_older_records(tmp_path: Path) -> None:
    path = tmp_path / "m.json"
    path.write_text(json.dumps(VALID_RECORD))
    record = parse_record("m", path)
    assert (
        record is not None
        and record.catalog == "/home/u/catalog.toml"
        and record.files["a.bin"].adopted is True
    )
    assert parse_record("m", tmp_path / "m.json") == record
    path.write_text(json.dumps(record.to_json()))
    assert parse_record("m", path) == record, "written as read"
    older = copy.deepcopy(VALID_RECORD)
    del older["catalog"], older["files"]["a.bin"]["adopted"]
    path.write_text(json.dumps(older))
    record = parse_record("m", path)
    assert record is not None and record.catalog is None, "an older mdl's record names no catalog"
    assert record.files["a.bin"].adopted is False and record.files["a.bin"].verified is True, (
        "each field's default"
    )
    for field, bad in (("adopted", "yes"), ("adopted", 1)):
        older["files"]["a.bin"][field] = bad
        path.write_text(json.dumps(older))
        assert parse_record("m", path) is None, (
            "read strictly: one bad field, the whole record unreadable"
        )
    older["files"]["a.bin"]["adopted"], older["catalog"] = False, 3
    path.write_text(json.dumps(older))
    assert parse_record("m", path) is None


def test_deep_nesting_and_the_size_as_text_are_unreadable() -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "m.json"
        path.write_text("[" * 100_000 + "]" * 100_000)
        assert parse_record("m", path) is None
        doc = copy.deepcopy(VALID_RECORD)
        doc["files"]["a.bin"]["size"] = "2"
        path.write_text(json.dumps(doc))
        assert parse_record("m", path) is None
        path.write_text(json.dumps(VALID_RECORD))
        assert parse_record("m", path) is not None


@FUZZ
@given(DOCUMENTS)
def test_commands_reading_a_damaged_record_end_in_a_documented_way(doc: Any) -> None:
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        catalog = root / "catalog.toml"
        catalog.write_text(
            f'[models.m]\nfiles = [{{ url = "https://example.invalid/a.bin", sha256 = "{SHA}", size'
            f" = {len(DATA)} }}]\n"
        )
        dest = root / "dest"
        (dest / "m").mkdir(parents=True)
        (dest / "m" / "a.bin").write_bytes(DATA)
        (dest / ".mdl" / "records").mkdir(parents=True)
        (dest / ".mdl" / "records" / "m.json").write_text(_dump(doc))
        before = sorted(p.relative_to(root) for p in root.rglob("*"))
        env = {"HF_HUB_OFFLINE": "1"}
        for call in (
            lambda: api.list_models(catalog=catalog, dest=dest, environ=env),
            lambda: api.show("m", catalog=catalog, dest=dest, environ=env),
            lambda: api.verify("m", catalog=catalog, dest=dest, environ=env),
        ):
            try:
                call()
            except MdlError as exc:
                assert exc.exit_code in DOCUMENTED, exc
        after = {p.relative_to(root) for p in root.rglob("*")}
        # nothing outside
        assert after <= {*before, *(p for p in after if p.parts[:2] == ("dest", ".mdl"))}
        assert (dest / "m" / "a.bin").read_bytes() == DATA


STATES = st.one_of(mutated(VALID_STATE), JSON_VALUES)


@FUZZ
@given(STATES)
def test_a_resume_record_tiles_the_file_or_is_refused(doc: Any) -> None:
    try:
        saved, pieces, validator = parse_state(json.loads(_dump(doc)))
    except ValueError:
        return
    assert pieces and pieces[0].start == 0
    for before, after in itertools.pairwise(pieces):
        assert before.end is not None and before.end == after.start
    for piece in pieces:
        assert piece.done >= 0 and (piece.end is None or piece.start < piece.end)
        assert piece.end is None or piece.done <= piece.end - piece.start
    assert pieces[-1].end == saved.size
    assert validator is None or isinstance(validator, str)


@FUZZ
@given(st.one_of(STATES.map(_dump), st.binary(max_size=200).map(lambda b: b.decode("latin-1"))))
def test_saved_progress_is_a_byte_count(text: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "a.part.json"
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        done, same = saved_progress(path, Identity(300, SHA, None, '"e"'))
    assert type(done) is int and done >= 0 and (done <= 300 or not same)


def test_the_record_written_by_save_is_accepted() -> None:
    saved, pieces, validator = parse_state(copy.deepcopy(VALID_STATE))
    assert saved.size == 300 and [p.done for p in pieces] == [100, 5, 0] and validator == '"e"'
    assert parse_state(
        {
            **VALID_STATE,
            "identity": {**VALID_STATE["identity"], "size": None},
            "pieces": [[0, None, 7]],
        }
    )


def test_verify_names_a_damaged_record(tmp_path: Path) -> None:
    catalog = tmp_path / "catalog.toml"
    catalog.write_text(
        f'[models.m]\nfiles = [{{ url = "https://example.invalid/a.bin", sha256 = "{SHA}" }}]\n'
    )
    dest = tmp_path / "dest"
    (dest / "m").mkdir(parents=True)
    (dest / "m" / "a.bin").write_bytes(DATA)
    (dest / ".mdl" / "records").mkdir(parents=True)
    doc = copy.deepcopy(VALID_RECORD)
    doc["files"]["a.bin"]["size"] = "2"  # issue 11 item 10
    (dest / ".mdl" / "records" / "m.json").write_text(json.dumps(doc))
    report = api.verify("m", catalog=catalog, dest=dest, environ={"HF_HUB_OFFLINE": "1"})
    assert report.exit_code == ExitCode.INTEGRITY
    assert "record" in (report.files[0].error or "") and "damaged" in (report.files[0].error or "")
