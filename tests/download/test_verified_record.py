"""Issue 37 (engine rule 15): only a file checked against a known hash, or fetched whole in one
answer, is recorded and shown as verified; a file put together from several answers that only the
server's validator ties together is recorded (``get.json``, the model record) and shown (``--json``,
the summary line, ``show``) as unverified."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hostile import NginxCdn
from runfixtures import mdl
from servers import make_data

from mdl.store.records import FileRecord, parse_record

SMALL = make_data(20_000, seed=3701)
# past the split threshold: the probe's answer plus other ranges
BIG = make_data(34 << 20, seed=3702)
# the probe's answer cannot read on through every piece
PACED = ("--connections", "4", "--limit-rate", "64M")


@pytest.fixture
def cdn(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[NginxCdn]:
    server = NginxCdn().start()
    monkeypatch.setenv("MDL_LOG_FILE", str(tmp_path / "mdl.log"))
    monkeypatch.chdir(tmp_path)
    server.add_file("/small.bin", SMALL)
    server.add_file("/big.bin", BIG)
    try:
        yield server
    finally:
        server.stop()


def get_json(*args: str) -> tuple[dict[str, Any], str]:
    result = mdl("get", *args, "--json")
    assert result.exit_code == 0, result.stdout + result.stderr
    [one] = json.loads(result.stdout)["files"]
    return one, result.stderr


def recorded(folder: Path, name: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((folder / ".mdl" / "get.json").read_bytes())
    return dict(doc["files"][name])


def test_a_file_whole_in_one_answer_is_verified(cdn: NginxCdn, tmp_path: Path) -> None:
    one, _ = get_json(f"{cdn.url}/small.bin", "-d", "D")
    assert one["verified"] is True
    assert recorded(tmp_path / "D", "small.bin")["verified"] is True


@pytest.mark.slow
def test_a_file_from_several_answers_without_a_hash_is_unverified(
    cdn: NginxCdn, tmp_path: Path
) -> None:
    one, _ = get_json(f"{cdn.url}/big.bin", "-d", "D", *PACED)
    assert (tmp_path / "D" / "big.bin").read_bytes() == BIG
    assert one["verified"] is False and one["action"] == "downloaded"
    assert recorded(tmp_path / "D", "big.bin")["verified"] is False
    plain = mdl("get", f"{cdn.url}/big.bin", "-d", "E", "--no-progress", *PACED)
    assert plain.exit_code == 0, plain.stderr
    assert "1 downloaded (unverified)" in plain.stderr


def test_the_same_file_checked_against_a_hash_is_verified(cdn: NginxCdn, tmp_path: Path) -> None:
    one, _ = get_json(f"{cdn.url}/big.bin", "-d", "D", "--sha256", hashlib.sha256(BIG).hexdigest())
    assert one["verified"] is True
    assert recorded(tmp_path / "D", "big.bin")["verified"] is True


@pytest.mark.slow
def test_a_skip_keeps_what_the_record_says(cdn: NginxCdn, tmp_path: Path) -> None:
    get_json(f"{cdn.url}/big.bin", "-d", "D", *PACED)
    again, _ = get_json(f"{cdn.url}/big.bin", "-d", "D")
    assert again["action"] == "skipped" and again["verified"] is False


def test_records_from_before_the_field_read_as_verified_and_a_wrong_type_is_unreadable(
    tmp_path: Path,
) -> None:
    entry = {"size": 1, "sha256": "0" * 64, "mtime_ns": 1, "source": "https://example.invalid/a"}
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"version": 1, "files": {"a": entry}}))
    record = parse_record("m", path)
    assert record is not None and record.files["a"].verified is True
    path.write_text(json.dumps({"version": 1, "files": {"a": {**entry, "verified": "no"}}}))
    assert parse_record("m", path) is None
    path.write_text(json.dumps({"version": 1, "files": {"a": {**entry, "verified": False}}}))
    record = parse_record("m", path)
    assert record is not None and record.files["a"] == FileRecord(
        "a", 1, "0" * 64, 1, entry["source"], verified=False
    )
