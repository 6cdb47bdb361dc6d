"""A content-coded body (``Content-Encoding: gzip`` sent regardless of ``Accept-Encoding:
identity``) is decoded.

Against `hostile.GzipCdn` (nginx with ``gzip_static always``): the file on disk is always the
decoded bytes, size and sha256 are checked on them, a ranged answer with a coding is never spliced
(one decoded stream instead), and a coding mdl cannot decode is exit 5 naming the URL with nothing
written.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from hostile import GzipCdn
from runfixtures import mdl
from servers import CdnServer, Fault, make_data
from typer.testing import Result

from mdl.errors import ExitCode

MiB = 1024 * 1024
TOKENIZER = json.dumps({"vocab": {f"tok{i}": i for i in range(20_000)}}).encode()
# above the split threshold: pulled as parallel ranges unless refused
BIG = make_data(40 * MiB, seed=20)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def files_in(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


@pytest.fixture
def gzip_cdn(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[GzipCdn]:
    monkeypatch.setenv("MDL_LOG_FILE", str(tmp_path / "mdl.log"))
    monkeypatch.chdir(tmp_path)
    server = GzipCdn().start()
    try:
        yield server
    finally:
        server.stop()
    assert not server.errors, server.errors


def only_file(result: Result) -> dict[str, object]:
    assert result.exit_code == 0, result.output
    [file] = json.loads(result.stdout)["files"]
    return dict(file)


def test_get_decodes_a_gzip_body(gzip_cdn: GzipCdn, tmp_path: Path) -> None:
    url = gzip_cdn.add_file("/static/tokenizer.json", TOKENIZER)
    assert len(gzip.compress(TOKENIZER)) < len(TOKENIZER) // 2, (
        "the wire carries far fewer bytes than the file"
    )
    file = only_file(mdl("get", url, "-d", "out", "--json"))
    assert (tmp_path / "out" / "tokenizer.json").read_bytes() == TOKENIZER
    assert (file["size"], file["sha256"], file["action"]) == (
        len(TOKENIZER),
        sha(TOKENIZER),
        "downloaded",
    )
    assert files_in(tmp_path / "out") == [".mdl", ".mdl/get.json", "tokenizer.json"]


def test_get_checks_sha256_of_the_decoded_bytes(gzip_cdn: GzipCdn, tmp_path: Path) -> None:
    url = gzip_cdn.add_file("/static/tokenizer.json", TOKENIZER)
    assert mdl("get", url, "-o", "tok.json", "--sha256", sha(TOKENIZER)).exit_code == 0
    assert (tmp_path / "tok.json").read_bytes() == TOKENIZER
    wrong = mdl("get", url, "-o", "other.json", "--sha256", sha(gzip.compress(TOKENIZER, mtime=0)))
    assert wrong.exit_code == ExitCode.INTEGRITY, wrong.output
    assert not (tmp_path / "other.json").exists(), "the encoded bytes are never saved as the file"


def test_pull_decodes_and_checks_the_pinned_size(gzip_cdn: GzipCdn, tmp_path: Path) -> None:
    url = gzip_cdn.add_file("/static/tokenizer.json", TOKENIZER)
    (tmp_path / "catalog.toml").write_text(
        f'[models.tok]\nfiles = [{{ url = "{url}", sha256 = "{sha(TOKENIZER)}", size ='
        f" {len(TOKENIZER)} }}]\n"
    )
    file = only_file(mdl("pull", "tok", "--dest", "models", "--json"))
    assert file["action"] == "downloaded"
    assert (tmp_path / "models" / "tok" / "tokenizer.json").read_bytes() == TOKENIZER
    assert mdl("verify", "tok", "--dest", "models").exit_code == 0


@pytest.mark.slow
def test_pull_never_splices_coded_ranges(gzip_cdn: GzipCdn, tmp_path: Path) -> None:
    url = gzip_cdn.add_file("/big/model.safetensors", BIG)
    (tmp_path / "catalog.toml").write_text(
        f'[models.big]\nfiles = [{{ url = "{url}", sha256 = "{sha(BIG)}", size = {len(BIG)} }}]\n'
    )
    file = only_file(mdl("pull", "big", "--dest", "models", "--connections", "4", "--json"))
    assert file["sha256"] == sha(BIG)
    assert (tmp_path / "models" / "big" / "model.safetensors").read_bytes() == BIG
    gets = gzip_cdn.log.records(method="GET")
    assert gets[0].range is not None and gets[0].status == 206, "it asked for ranges first"
    whole = [r for r in gets if r.range is None]
    assert len(whole) == 1 and whole[0].status == 200 and whole[0].complete, (
        "then one whole decoded stream"
    )
    # No locate first (a sha256 checks the file): each stream asked its range at once, and the first
    # coded answer restarted the file as one decoded stream; nothing ranged was asked after it began
    # (and the file is BIG: no coded slice was kept).
    first = gets.index(whole[0])
    coded = gets[:first]
    assert 1 <= len(coded) <= 4 and all(
        r.range != "bytes=0-0" and r.status == 206 for r in coded
    ), coded
    assert gets[first:] == whole, "a coded slice was asked after the file restarted as one stream"


def test_a_resume_answered_with_a_coded_range_starts_over(
    gzip_cdn: GzipCdn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = make_data(3 * MiB, seed=22)
    url = gzip_cdn.add_file("/files/weights.bin", data)
    args = ("get", url, "-d", "out", "--sha256", sha(data), "--json")
    monkeypatch.setenv("MDL_RETRIES", "0")
    gzip_cdn.faults.add(Fault.reset(after_bytes=MiB, path_prefix="/files/", times=None))
    assert mdl(*args).exit_code == ExitCode.NETWORK
    gzip_cdn.faults.clear()
    assert [p for p in files_in(tmp_path / "out") if p.endswith(".part")], (
        "a partial download was kept"
    )
    monkeypatch.delenv("MDL_RETRIES")
    gzip_cdn.log.clear()
    file = only_file(mdl(*args))
    assert file["action"] == "downloaded", "the coded 206 was not spliced onto the kept bytes"
    assert (tmp_path / "out" / "weights.bin").read_bytes() == data
    gets = gzip_cdn.log.records(method="GET")
    assert any(r.status == 206 for r in gets) and gets[-1].range is None and gets[-1].status == 200


def test_deflate_is_decoded_too(
    cdn: CdnServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    headers = {"Content-Encoding": "deflate", "Content-Type": "application/json"}
    cdn.faults.add(
        Fault.http_error(
            200, zlib.compress(TOKENIZER), headers=headers, path_prefix="/d/", times=None
        )
    )
    assert mdl("get", f"{cdn.url}/d/vocab.json", "-d", "out").exit_code == 0
    assert (tmp_path / "out" / "vocab.json").read_bytes() == TOKENIZER


@pytest.mark.parametrize("coding", ["x-mystery", "compress", "gzip, x-mystery"])
def test_unknown_coding_is_exit_5_naming_the_url(
    cdn: CdnServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, coding: str
) -> None:
    monkeypatch.chdir(tmp_path)
    headers = {"Content-Encoding": coding}
    cdn.faults.add(
        Fault.http_error(
            200, b"\x1f\x9d\x90garbage", headers=headers, path_prefix="/u/", times=None
        )
    )
    result = mdl("get", f"{cdn.url}/u/model.bin", "-d", "out", "--json")
    assert result.exit_code == ExitCode.NETWORK, result.output
    message = json.loads(result.stdout)["files"][0]["error"]
    assert f"{cdn.url}/u/model.bin" in str(message)
    assert ("x-mystery" if "x-mystery" in coding else "compress") in str(message)
    assert not (tmp_path / "out" / "model.bin").exists()


def test_corrupt_gzip_is_exit_5_and_nothing_is_written(
    cdn: CdnServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MDL_RETRIES", "0")
    body = gzip.compress(TOKENIZER)[:200] + b"\x00" * 100
    headers = {"Content-Encoding": "gzip"}
    cdn.faults.add(Fault.http_error(200, body, headers=headers, path_prefix="/c/", times=None))
    result = mdl("get", f"{cdn.url}/c/tokenizer.json", "-d", "out")
    assert result.exit_code == ExitCode.NETWORK, result.output
    assert "corrupt" in result.stderr
    assert not (tmp_path / "out" / "tokenizer.json").exists()
