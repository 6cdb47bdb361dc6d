"""Issue 37: a file's identity in a record includes its source. nginx names a static file by
``"<mtime>-<size>"``, so two builds of one size copied with their mtime carry one ETag (and one
Last-Modified) under two URLs: without a hash, only the URL tells them apart. Another source for the
same path is another file: fetched and swapped in (as wget does), never "skipped, unchanged
upstream" with the old bytes kept. A record that names no source (from before sources counted) is of
no known source: the file is fetched again, never kept on its validator alone.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hostile import NginxCdn
from runfixtures import mdl, use_catalog
from servers import make_data
from typer.testing import Result

from mdl.download._plan import NEW_SOURCE

RELEASE_1 = make_data(300_001, seed=371)
# another build, the same size and (copied with `cp -p`) the same mtime
RELEASE_2 = make_data(300_001, seed=372)
UNCHANGED = "already there, unchanged upstream"


@pytest.fixture
def nginx(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[NginxCdn]:
    server = NginxCdn().start()
    monkeypatch.setenv("MDL_LOG_FILE", str(tmp_path / "mdl.log"))
    monkeypatch.chdir(tmp_path)
    server.add_file("/release-1/model.bin", RELEASE_1)
    server.add_file("/release-2/model.bin", RELEASE_2)
    try:
        yield server
    finally:
        server.stop()
    assert not server.errors, server.errors


def files_of(result: Result) -> list[dict[str, Any]]:
    assert result.exit_code == 0, result.stdout + result.stderr
    files: list[dict[str, Any]] = json.loads(result.stdout)["files"]
    return files


def test_both_releases_look_the_same_to_a_validator(nginx: NginxCdn) -> None:
    """The premise: one ETag, one Last-Modified, one length for two different files."""
    import httpx2

    one, two = (httpx2.head(f"{nginx.url}/release-{n}/model.bin") for n in (1, 2))
    for name in ("etag", "last-modified", "content-length"):
        assert one.headers[name] == two.headers[name], name


@pytest.mark.parametrize("where", [("-o", "F"), ("-d", "D")])
def test_get_of_another_source_for_the_same_file_fetches_it(
    nginx: NginxCdn, tmp_path: Path, where: tuple[str, str]
) -> None:
    target = tmp_path / "F" if where[0] == "-o" else tmp_path / "D" / "model.bin"
    first = files_of(mdl("get", f"{nginx.url}/release-1/model.bin", *where, "--json"))
    assert [f["action"] for f in first] == ["downloaded"]
    assert target.read_bytes() == RELEASE_1

    [second] = files_of(mdl("get", f"{nginx.url}/release-2/model.bin", *where, "--json"))
    assert (second["action"], second["reason"]) == ("downloaded", NEW_SOURCE), second
    assert target.read_bytes() == RELEASE_2, "the file kept release 1"
    recorded = json.loads((target.parent / ".mdl" / "get.json").read_text())["files"][target.name]
    assert recorded["source"] == f"{nginx.url}/release-2/model.bin"

    # the same source: kept
    [third] = files_of(mdl("get", f"{nginx.url}/release-2/model.bin", *where, "--json"))
    assert (third["action"], third["reason"]) == ("skipped", UNCHANGED), third
    assert target.read_bytes() == RELEASE_2


def test_a_get_record_without_a_source_is_not_trusted_to_keep_a_file(
    nginx: NginxCdn, tmp_path: Path
) -> None:
    """A get.json written before sources counted still parses; with no source named, the file is
    fetched again.
    """
    url = f"{nginx.url}/release-1/model.bin"
    assert files_of(mdl("get", url, "-o", "F", "--json"))[0]["action"] == "downloaded"
    record_path = tmp_path / ".mdl" / "get.json"
    doc = json.loads(record_path.read_text())
    del doc["files"]["F"]["source"]
    record_path.write_text(json.dumps(doc))
    # rebuilt in place, same size and mtime: the same ETag
    nginx.add_file("/release-1/model.bin", RELEASE_2)

    [again] = files_of(mdl("get", url, "-o", "F", "--json"))
    assert (again["action"], again["reason"]) == ("downloaded", NEW_SOURCE), again
    assert (tmp_path / "F").read_bytes() == RELEASE_2
    assert json.loads(record_path.read_text())["files"]["F"]["source"] == url  # named from now on
    assert files_of(mdl("get", url, "-o", "F", "--json"))[0]["action"] == "skipped"


def test_pull_takes_a_changed_catalog_url_for_another_file(
    nginx: NginxCdn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    catalog = use_catalog(tmp_path, monkeypatch, None)
    for release, data in ((1, RELEASE_1), (2, RELEASE_2)):
        catalog.write_text(
            f'[models.m]\nfiles = [{{ url = "{nginx.url}/release-{release}/model.bin" }}]\n'
        )
        [done] = files_of(mdl("pull", "m", "--json"))
        assert done["action"] == "downloaded", done
        assert (tmp_path / "models" / "m" / "model.bin").read_bytes() == data, f"release {release}"
    assert done["reason"] == NEW_SOURCE
    [kept] = files_of(mdl("pull", "m", "--json"))  # the same URL, the same validator: up to date
    assert kept["action"] == "skipped"
    assert (tmp_path / "models" / "m" / "model.bin").read_bytes() == RELEASE_2
