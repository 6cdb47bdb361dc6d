"""What a run says it did is what it did (issue 50, F): the bytes a summary counts are the bytes
that crossed the network, those of a file that then failed its check (or a mirror's refused copy)
included; a file whose sha256 was checked is ``"verified": true``, written from a job's inline data
or kept in place as well as downloaded."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import pytest
from runfixtures import mdl, use_catalog
from servers import CdnServer, make_data

from mdl.units import human_size

GOOD = make_data(300_000, seed=51)
# what the server sends for a file the catalog pins to other bytes
BAD = make_data(2_000_000, seed=52)
WRONG = "0" * 64


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def end_event(stderr: str) -> dict[str, object]:
    events = [json.loads(line) for line in stderr.splitlines()]
    assert events[-1]["event"] == "end", events
    return events[-1]


def test_the_bytes_of_a_file_that_failed_its_check_are_counted(
    cdn: CdnServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    good, bad = cdn.add_file("/good.bin", GOOD), cdn.add_file("/bad.bin", BAD)
    text = f'[models.m]\nfiles = [{{ url = "{good}" }}, {{ url = "{bad}", sha256 = "{WRONG}" }}]\n'
    use_catalog(tmp_path, monkeypatch, text)
    pulled = mdl("pull", "m", "--no-progress")
    assert pulled.exit_code == 6, pulled.stderr
    assert "sha256 mismatch" in pulled.stderr
    summary = pulled.stderr.strip().splitlines()[-1]
    assert f"; {human_size(len(GOOD) + len(BAD))} in " in summary, summary
    (tmp_path / "models" / "m" / "good.bin").unlink()
    events = mdl("pull", "m", "--progress", "json")
    assert events.exit_code == 6
    assert end_event(events.stderr)["summary"]["bytes"] == len(GOOD) + len(BAD)  # type: ignore[index]
    logged = (tmp_path / "mdl.log").read_text()
    assert "path=bad.bin action=failed" in logged and f"fetched={len(BAD)} " in logged


def test_a_mirror_copy_refused_then_the_origin_s_bytes_are_both_counted(
    cdn: CdnServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The mirror's wrong copy crossed the network as the origin's right one did: the run fetched
    both.
    """
    url = cdn.add_file("/origin/w.bin", GOOD)
    cdn.add_file("/mirror/m/w.bin", BAD)  # the mirror holds other bytes under the file's name
    mirror = url.replace("/origin/w.bin", "/mirror/{model}/{path}")
    text = (
        f'[settings]\nmirrors = ["{mirror}"]\n[models.m]\nfiles = [{{ url = "{url}", sha256 ='
        f' "{sha(GOOD)}" }}]\n'
    )
    use_catalog(tmp_path, monkeypatch, text)
    pulled = mdl("pull", "m", "--progress", "json")
    assert pulled.exit_code == 0, pulled.stderr
    assert (tmp_path / "models" / "m" / "w.bin").read_bytes() == GOOD
    assert end_event(pulled.stderr)["summary"]["bytes"] == len(GOOD) + len(BAD)  # type: ignore[index]


def test_inline_job_output_files_are_verified(tmp_path: Path) -> None:
    doc = [
        {
            "type": "file_data",
            "filename": "a.bin",
            "data": base64.b64encode(GOOD).decode(),
            "sha256": sha(GOOD),
        },
        {"type": "file_data", "filename": "b.bin", "data": base64.b64encode(b"xyz").decode()},
    ]
    got = mdl("get", "-", "-d", str(tmp_path / "out"), "--json", stdin=json.dumps(doc))
    assert got.exit_code == 0, got.stderr
    files = json.loads(got.stdout)["files"]
    assert [(f["path"], f["action"], f["verified"]) for f in files] == [
        ("a.bin", "downloaded", True),
        # whole in the document, the bytes written hashed against their decoding
        ("b.bin", "downloaded", True),
    ]
    again = json.loads(
        mdl("get", "-", "-d", str(tmp_path / "out"), "--json", stdin=json.dumps(doc)).stdout
    )
    assert [(f["action"], f["verified"]) for f in again["files"]] == [
        ("skipped", True),
        ("skipped", True),
    ]


def test_a_file_kept_in_place_by_its_sha256_is_verified(cdn: CdnServer, tmp_path: Path) -> None:
    url = cdn.add_file("/x.bin", GOOD)
    # put there by another tool: kept because its hash is the one asked for
    (tmp_path / "x.bin").write_bytes(GOOD)
    got = mdl("get", url, "-d", str(tmp_path), "--sha256", sha(GOOD), "--json")
    assert got.exit_code == 0, got.stderr
    (file,) = json.loads(got.stdout)["files"]
    assert (file["action"], file["verified"]) == ("skipped", True)
