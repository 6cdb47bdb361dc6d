"""Running ``mdl get`` again is a no-op, as ``wget -N``, ``curl -z`` and ``aria2c
--conditional-get`` are.

A get records what it wrote (``D/.mdl/get.json``: size, mtime, sha256, the server's validator, the
source redacted). A second get of a file it wrote asks the server for one byte: the same version
(strong ETag, else Last-Modified, and length) is ``skipped`` with no body sent; another version
replaces the file (wget -N); a server that names no version gets the file fetched again. A file mdl
did not write (or one changed since) is still refused without ``--force``. A wrong sha256 fails
after one download.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
from runfixtures import mdl
from servers import HubServer, make_data
from typer.testing import Result

from mdl.errors import ExitCode

DATA = make_data(2_000_003, seed=71)
NEW = make_data(2_000_003, seed=72)  # another version of the same length
LONGER = make_data(2_100_000, seed=73)
UNCHANGED = "already there, unchanged upstream"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def files_of(result: Result) -> list[dict[str, Any]]:
    files: list[dict[str, Any]] = json.loads(result.stdout)["files"]
    return files


def record(folder: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((folder / ".mdl" / "get.json").read_text())
    return doc


@pytest.fixture
def env(hub: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> HubServer:
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setenv("MDL_LOG_FILE", str(tmp_path / "mdl.log"))
    monkeypatch.chdir(tmp_path)
    return hub


# Each way a server names a version: a strong ETag, a Last-Modified date alone, both.
VALIDATORS = {
    "etag": {"etag": '"v1"', "dated": False},
    "last-modified": {"etag": "", "last_modified": time.time() - 86_400},
    "both": {"etag": '"v1"', "last_modified": time.time() - 86_400},
}


@pytest.mark.parametrize("validator", sorted(VALIDATORS))
def test_a_second_get_of_an_unchanged_file_is_skipped_without_its_body(
    env: HubServer, tmp_path: Path, validator: str
) -> None:
    url = env.cdn.add_file("/files/data.bin", DATA, **VALIDATORS[validator])
    first = mdl("get", url, "-d", "D", "--json")
    assert first.exit_code == 0, first.stderr
    assert [f["action"] for f in files_of(first)] == ["downloaded"]
    target = tmp_path / "D" / "data.bin"
    before = target.stat()

    env.cdn.log.clear()
    again = mdl("get", url, "-d", "D", "--json")
    assert again.exit_code == 0, again.stderr
    [done] = files_of(again)
    assert (done["action"], done["reason"], done["sha256"], done["size"]) == (
        "skipped",
        UNCHANGED,
        sha(DATA),
        len(DATA),
    )
    assert done["dest"] == str(target.absolute())
    # One request, a one-byte probe: the body of the file was not sent a second time.
    assert len(env.cdn.log) == 1
    assert env.cdn.log.body_bytes() <= 1
    assert target.read_bytes() == DATA
    assert target.stat().st_mtime_ns == before.st_mtime_ns and target.stat().st_ino == before.st_ino

    plain = mdl("get", url, "-d", "D")  # people: exit 0, the path on stdout, "skipped" on stderr
    assert plain.exit_code == 0, plain.stderr
    assert plain.stdout.splitlines() == [str(target.absolute())]
    assert "1 skipped" in plain.stderr


def test_a_touched_file_with_its_bytes_is_still_skipped(env: HubServer, tmp_path: Path) -> None:
    url = env.cdn.add_file("/files/data.bin", DATA, etag='"v1"')
    assert mdl("get", url, "-o", "out.bin").exit_code == 0
    # a copy tool or backup restore changed its mtime only
    os.utime(tmp_path / "out.bin", ns=(1, 1))
    env.cdn.log.clear()
    again = mdl("get", url, "-o", "out.bin", "--json")
    assert again.exit_code == 0, again.stderr
    assert [(f["action"], f["reason"]) for f in files_of(again)] == [("skipped", UNCHANGED)]
    assert env.cdn.log.body_bytes() <= 1
    assert (
        record(tmp_path)["files"]["out.bin"]["mtime_ns"]
        == (tmp_path / "out.bin").stat().st_mtime_ns
    )


# The same URL, another version: a new ETag (same length), a new date (no ETag), a new length (same
# ETag).
CHANGES = {
    "etag": ({"etag": '"v1"'}, NEW, {"etag": '"v2"'}),
    "last-modified": (
        {"etag": "", "last_modified": time.time() - 86_400},
        NEW,
        {"etag": "", "last_modified": time.time() - 3_600},
    ),
    "length": ({"etag": '"v1"'}, LONGER, {"etag": '"v1"'}),
}


@pytest.mark.parametrize("change", sorted(CHANGES))
def test_a_new_version_upstream_replaces_the_file(
    env: HubServer, tmp_path: Path, change: str
) -> None:
    old, data, new = CHANGES[change]
    url = env.cdn.add_file("/files/data.bin", DATA, **old)
    assert mdl("get", url).exit_code == 0
    env.cdn.add_file("/files/data.bin", data, **new)
    env.cdn.log.clear()
    again = mdl("get", url, "--json")
    assert again.exit_code == 0, again.stderr
    [done] = files_of(again)
    assert (done["action"], done["reason"], done["sha256"]) == (
        "downloaded",
        "changed upstream",
        sha(data),
    )
    assert (tmp_path / "data.bin").read_bytes() == data
    assert record(tmp_path)["files"]["data.bin"]["sha256"] == sha(data)
    assert env.cdn.log.body_bytes() <= 1.1 * len(data), "the new version, fetched once"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".mdl", "data.bin", "mdl.log"]

    env.cdn.add_file("/files/data.bin", DATA, **old)
    people = mdl("get", url)
    assert people.exit_code == 0, people.stderr
    assert "1 replaced" in people.stderr
    assert (tmp_path / "data.bin").read_bytes() == DATA


def test_a_server_that_names_no_version_gets_the_file_fetched_again(
    env: HubServer, tmp_path: Path
) -> None:
    url = env.cdn.add_file("/files/data.bin", DATA, etag="", dated=False)
    assert mdl("get", url).exit_code == 0
    # same length: only the bytes tell
    env.cdn.add_file("/files/data.bin", NEW, etag="", dated=False)
    again = mdl("get", url, "--json")
    assert again.exit_code == 0, again.stderr
    [done] = files_of(again)
    assert done["action"] == "downloaded"
    assert "names no version" in done["reason"]
    assert (tmp_path / "data.bin").read_bytes() == NEW


# -- files mdl did not write, --force, sha256
# ---------------------------------------------------------------


def test_a_file_mdl_did_not_write_is_still_refused(env: HubServer, tmp_path: Path) -> None:
    url = env.cdn.add_file("/files/data.bin", DATA, etag='"v1"')
    (tmp_path / "data.bin").write_bytes(b"mine")
    refused = mdl("get", url)
    assert refused.exit_code == ExitCode.USAGE == 2
    assert "cannot tell whether it is the same file" in refused.stderr
    assert len(env.cdn.log) == 0
    assert (tmp_path / "data.bin").read_bytes() == b"mine"


def test_a_file_changed_since_mdl_wrote_it_is_refused(env: HubServer, tmp_path: Path) -> None:
    url = env.cdn.add_file("/files/data.bin", DATA, etag='"v1"')
    assert mdl("get", url).exit_code == 0
    edited = bytearray(DATA)
    edited[10] ^= 1  # same size, another mtime, other bytes: the user's now
    (tmp_path / "data.bin").write_bytes(bytes(edited))
    env.cdn.log.clear()
    refused = mdl("get", url)
    assert refused.exit_code == 2, refused.stderr
    assert "--force" in refused.stderr
    assert len(env.cdn.log) == 0
    assert (tmp_path / "data.bin").read_bytes() == bytes(edited)

    forced = mdl("get", url, "--force", "--json")
    assert forced.exit_code == 0, forced.stderr
    assert [(f["action"], f["reason"]) for f in files_of(forced)] == [("downloaded", "--force")]
    assert (tmp_path / "data.bin").read_bytes() == DATA


def test_force_replaces_an_unchanged_file(env: HubServer, tmp_path: Path) -> None:
    url = env.cdn.add_file("/files/data.bin", DATA, etag='"v1"')
    assert mdl("get", url).exit_code == 0
    env.cdn.log.clear()
    forced = mdl("get", url, "--force")
    assert forced.exit_code == 0, forced.stderr
    assert "1 replaced" in forced.stderr
    assert env.cdn.log.body_bytes() >= len(DATA)


def test_a_wrong_sha256_fails_after_one_download(env: HubServer, tmp_path: Path) -> None:
    url = env.cdn.add_file("/files/data.bin", DATA, etag='"v1"')
    result = mdl("get", url, "--sha256", "ab" * 32, "-d", "D")
    assert result.exit_code == ExitCode.INTEGRITY == 6, result.stderr
    assert "sha256 mismatch" in result.stderr
    assert "or the hash it was held to is wrong (--sha256" in result.stderr  # the likelier culprit
    assert env.cdn.log.body_bytes() <= 1.1 * len(DATA)
    assert not (tmp_path / "D" / "data.bin").exists()
    assert not [p for p in (tmp_path / "D").rglob("*") if p.is_file()], (
        "no partial, no record: nothing half-written"
    )


def test_a_wrong_sha256_over_a_file_mdl_wrote_keeps_it(env: HubServer, tmp_path: Path) -> None:
    url = env.cdn.add_file("/files/data.bin", DATA, etag='"v1"')
    assert mdl("get", url).exit_code == 0
    env.cdn.add_file("/files/data.bin", NEW, etag='"v2"')
    env.cdn.log.clear()
    job = {"files": [{"type": "redirect", "filename": "data.bin", "url": url, "sha256": "cd" * 32}]}
    (tmp_path / "job.json").write_text(json.dumps(job))
    result = mdl("get", "job.json")
    assert result.exit_code == 6, result.stderr
    assert env.cdn.log.body_bytes() <= 1.1 * len(NEW)
    assert (tmp_path / "data.bin").read_bytes() == DATA, (
        "the file mdl wrote stays until a verified one replaces it"
    )
    assert record(tmp_path)["files"]["data.bin"]["sha256"] == sha(DATA)
    assert not list((tmp_path / ".mdl").rglob("*.part"))


# -- what the record holds
# -----------------------------------------------------------------------------------


def test_the_record_holds_no_secret_and_a_fresh_signature_is_the_same_file(
    env: HubServer, tmp_path: Path
) -> None:
    url = env.cdn.add_file("/out/model.bin", DATA, signed=True, etag='"v1"')
    assert "X-Amz-Signature=" in url
    assert mdl("get", url, "-d", "out").exit_code == 0
    text = (tmp_path / "out" / ".mdl" / "get.json").read_text()
    signature = url.split("X-Amz-Signature=")[1].split("&")[0]
    assert signature not in text and "X-Amz-Signature" not in text
    entry = json.loads(text)["files"]["model.bin"]
    assert entry["source"].endswith("/out/model.bin?REDACTED")
    assert (entry["size"], entry["sha256"], entry["etag"]) == (len(DATA), sha(DATA), '"v1"')

    env.cdn.expire_signed_urls()  # a job API hands out a freshly signed link to the same object
    fresh = env.cdn.signed_url("/out/model.bin")
    env.cdn.log.clear()
    again = mdl("get", fresh, "-d", "out", "--json")
    assert again.exit_code == 0, again.stderr
    assert [(f["action"], f["reason"]) for f in files_of(again)] == [("skipped", UNCHANGED)]
    assert env.cdn.log.body_bytes() <= 1
    assert (
        fresh.split("X-Amz-Signature=")[1].split("&")[0]
        not in (tmp_path / "out" / ".mdl" / "get.json").read_text()
    )


def test_two_files_in_one_folder_share_its_record(env: HubServer, tmp_path: Path) -> None:
    one = env.cdn.add_file("/files/one.bin", DATA, etag='"1"')
    two = env.cdn.add_file("/files/two.bin", NEW, etag='"2"')
    assert mdl("get", one, two, "-d", "D").exit_code == 0
    assert sorted(record(tmp_path / "D")["files"]) == ["one.bin", "two.bin"]
    env.cdn.add_file("/files/two.bin", LONGER, etag='"3"')
    env.cdn.log.clear()
    again = mdl("get", one, two, "-d", "D", "--json")
    assert again.exit_code == 0, again.stderr
    assert [(f["path"], f["action"]) for f in files_of(again)] == [
        ("one.bin", "skipped"),
        ("two.bin", "downloaded"),
    ]
    assert env.cdn.log.body_bytes(path_prefix="/files/one.bin") <= 1
    assert record(tmp_path / "D")["files"]["two.bin"]["sha256"] == sha(LONGER)
