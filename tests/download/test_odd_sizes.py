"""Files of odd sizes through pull and get: empty files from a direct URL, and servers that never
say a size.

Against real loopback servers: `CdnServer` (exact RFC 9110 ranges: a range of an empty file is 416)
and `hostile.UnsizedCdn` (no Content-Length, no ranges, the body ends with the connection).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from hostile import UnsizedCdn
from runfixtures import mdl, use_catalog
from servers import CdnServer, make_data
from typer.testing import Result

DATA = make_data(200_000, seed=7)


@pytest.fixture
def unsized() -> Iterator[UnsizedCdn]:
    server = UnsizedCdn().start()
    try:
        yield server
    finally:
        server.stop()
    assert not server.errors, server.errors


def write_catalog(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *urls: str) -> None:
    files = ", ".join(f'{{ url = "{url}" }}' for url in urls)
    use_catalog(tmp_path, monkeypatch, f"[models.m]\nfiles = [{files}]\n")


def events(result: Result) -> list[dict[str, object]]:
    return [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]


# -- empty files
# -------------------------------------------------------------------------------------------


def test_pull_of_an_empty_file_at_a_direct_url_succeeds(
    cdn: CdnServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The probe asks for bytes=0-0; an empty file has no byte 0, so a correct server answers 416
    # bytes */0.
    write_catalog(
        tmp_path,
        monkeypatch,
        cdn.add_file("/files/empty.txt", b""),
        cdn.add_file("/files/w.bin", DATA),
    )
    result = mdl("pull", "m", "--json")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert {f["path"]: f["action"] for f in doc["files"]} == {
        "empty.txt": "downloaded",
        "w.bin": "downloaded",
    }
    assert (tmp_path / "models" / "m" / "empty.txt").read_bytes() == b""
    again = mdl("pull", "m", "--json")
    assert again.exit_code == 0, again.stderr
    assert {f["action"] for f in json.loads(again.stdout)["files"]} == {"skipped"}


def test_get_of_an_empty_file_at_a_url_succeeds(cdn: CdnServer, tmp_path: Path) -> None:
    url = cdn.add_file("/files/empty.txt", b"")
    result = mdl("get", url, "-d", str(tmp_path / "out"), "--log-file", str(tmp_path / "mdl.log"))
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "out" / "empty.txt").read_bytes() == b""


# -- sizes nobody says
# -------------------------------------------------------------------------------------


def test_a_batch_with_a_file_of_unknown_size_has_an_unknown_total(
    unsized: UnsizedCdn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not "0 B" (plain), not `"total": 0` (json), not "2 MiB/0 B … 0:00" (rich): the total is
    not known.
    """
    write_catalog(
        tmp_path,
        monkeypatch,
        unsized.add_file("/files/w.bin", DATA),
        unsized.add_file("/files/e", b""),
    )
    result = mdl("pull", "m", "--progress", "json", "--json")
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "models" / "m" / "w.bin").read_bytes() == DATA
    begins = [e for e in events(result) if e["event"] == "begin"]
    assert begins and begins[0]["total"] is None, begins
    assert json.loads(result.stdout)["ok"] is True

    plain = mdl("pull", "m", "--force", "--progress", "plain")
    assert plain.exit_code == 0, plain.stderr
    begin = next(line for line in plain.stderr.splitlines() if " begin " in line)
    assert begin.endswith("begin 2 files"), begin


def test_get_with_a_file_of_unknown_size_has_an_unknown_total(
    unsized: UnsizedCdn, tmp_path: Path
) -> None:
    url = unsized.add_file("/files/w.bin", DATA)
    log = str(tmp_path / "mdl.log")
    result = mdl("get", url, "-d", str(tmp_path / "out"), "--progress", "json", "--log-file", log)
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "out" / "w.bin").read_bytes() == DATA
    begins = [e for e in events(result) if e["event"] == "begin" and e["files"]]
    assert begins and all(e["total"] is None for e in begins), begins
