"""`mdl get`: URLs, hf:// URIs and serverless job outputs (inline base64 and presigned redirects).

Everything runs through the real CLI against the loopback Hub stand-in and CDN (tests/servers.py).
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import tracemalloc
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from runfixtures import mdl
from servers import Fault, HubServer, make_data

from mdl.catalog.settings import build_settings
from mdl.download.get import GetRun, fetch_sources
from mdl.progress import NullProgress
from mdl.sources.joboutput import InlineFile
from mdl.sources.oneoff import parse_sources
from mdl.transfer._state import OVERLAP
from mdl.transfer.scheduling import SPLIT_THRESHOLD, plan_pieces

DATA = make_data(2_500_000, seed=11)
LORA = make_data(300_000, seed=12)
MiB = 1024 * 1024


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def inline(name: str, data: bytes, **extra: Any) -> dict[str, Any]:
    return {
        "type": "file_data",
        "filename": name,
        "data": base64.b64encode(data).decode(),
        "size": len(data),
        "content_type": "application/octet-stream",
        **extra,
    }


def redirect(name: str, url: str, **extra: Any) -> dict[str, Any]:
    return {"type": "redirect", "url": url, "filename": name, **extra}


def files_in(folder: Path) -> list[str]:
    """Every file and folder under ``folder``, relative, sorted (hidden ones included)."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


# what a get keeps beside the files it downloaded: their record, nothing else
RECORD = [".mdl", ".mdl/get.json"]


def signature_of(url: str) -> str:
    return parse_qs(urlsplit(url).query)["X-Amz-Signature"][0]


@pytest.fixture
def env(hub: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> HubServer:
    hub.add_repo("org/tiny", {"config.json": b'{"a": 1}', "model.safetensors": DATA})
    hub.add_repo("org/ds", {"data/train.jsonl": b'{"x": 1}\n'}, repo_type="dataset")
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setenv("MDL_LOG_FILE", str(tmp_path / "mdl.log"))
    monkeypatch.chdir(tmp_path)
    return hub


def write_job(tmp_path: Path, doc: Any, name: str = "job.json") -> str:
    (tmp_path / name).write_text(json.dumps(doc))
    return name


# -- the "done when"
# -------------------------------------------------------------------------------


@pytest.mark.slow
def test_saved_job_with_inline_lora_and_presigned_large_file(
    env: HubServer, tmp_path: Path
) -> None:
    big = make_data(40 * MiB, seed=13)  # above the split threshold: fetched as parallel ranges
    url = env.cdn.add_file("/results/job-7/model.safetensors", big, signed=True)
    job = {
        "id": "job-7",
        "status": "COMPLETED",
        "output": {
            "files": [
                inline("style_lora.safetensors", LORA),
                redirect("model.safetensors", url, size=len(big)),
            ]
        },
    }
    result = mdl("get", write_job(tmp_path, job), "-d", "out", "--connections", "4", "--json")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["ok"] is True
    assert [(f["path"], f["size"], f["sha256"], f["action"]) for f in doc["files"]] == [
        ("style_lora.safetensors", len(LORA), sha(LORA), "downloaded"),
        ("model.safetensors", len(big), sha(big), "downloaded"),
    ]
    assert [f["dest"] for f in doc["files"]] == [
        str(tmp_path / "out" / "style_lora.safetensors"),
        str(tmp_path / "out" / "model.safetensors"),
    ]
    assert (tmp_path / "out" / "style_lora.safetensors").read_bytes() == LORA
    assert (tmp_path / "out" / "model.safetensors").read_bytes() == big
    assert files_in(tmp_path / "out") == [*RECORD, "model.safetensors", "style_lora.safetensors"], (
        "no temp files"
    )
    ranged = [
        r
        for r in env.cdn.log.records(method="GET", path_prefix="/results/")
        if r.range not in (None, "bytes=0-0")
    ]
    assert len(ranged) > 1, "--connections: a big file comes as parallel ranges"
    assert signature_of(url) not in result.stdout + result.stderr


# -- every shape, from a file and from stdin
# ---------------------------------------------------------------

ONE = inline("a.bin", b"alpha")
TWO = [inline("a.bin", b"alpha"), inline("b.bin", b"beta")]


@pytest.mark.slow
@pytest.mark.parametrize(
    "doc",
    [
        pytest.param(ONE, id="descriptor"),
        pytest.param(TWO, id="list"),
        pytest.param({"files": TWO}, id="files"),
        pytest.param({"id": "j", "status": "COMPLETED", "output": ONE}, id="envelope-descriptor"),
        pytest.param({"id": "j", "status": "COMPLETED", "output": TWO}, id="envelope-list"),
        pytest.param(
            {"id": "j", "status": "completed", "output": {"files": TWO}}, id="envelope-files"
        ),
    ],
)
@pytest.mark.parametrize("via", ["file", "stdin"])
def test_every_job_output_shape(env: HubServer, tmp_path: Path, doc: Any, via: str) -> None:
    if via == "stdin":
        result = mdl("get", "-", "-d", "out", "--json", stdin=json.dumps(doc))
    else:
        result = mdl("get", write_job(tmp_path, doc), "-d", "out", "--json")
    assert result.exit_code == 0, result.stderr
    expected = (
        {"a.bin": b"alpha", "b.bin": b"beta"} if "b.bin" in json.dumps(doc) else {"a.bin": b"alpha"}
    )
    assert {f["path"]: (f["size"], f["sha256"]) for f in json.loads(result.stdout)["files"]} == {
        name: (len(data), sha(data)) for name, data in expected.items()
    }
    assert {name: (tmp_path / "out" / name).read_bytes() for name in expected} == expected
    assert files_in(tmp_path / "out") == sorted(expected)


def test_job_output_from_stdin_into_the_current_folder(env: HubServer, tmp_path: Path) -> None:
    job = {"type": "file_data", "filename": "a.bin", "data": base64.b64encode(b"xyz").decode()}
    result = mdl("get", "-", stdin=json.dumps(job))
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "a.bin").read_bytes() == b"xyz"


def test_mime_wrapped_base64_is_decoded(env: HubServer, tmp_path: Path) -> None:
    job = {
        "type": "file_data",
        "filename": "a.bin",
        "data": base64.encodebytes(LORA).decode(),
        "sha256": sha(LORA),
    }
    result = mdl("get", "-", stdin=json.dumps(job))
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "a.bin").read_bytes() == LORA


def test_one_descriptor_can_be_named_with_o(env: HubServer, tmp_path: Path) -> None:
    result = mdl("get", "-", "-o", "w/lora.bin", stdin=json.dumps(ONE))
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "w" / "lora.bin").read_bytes() == b"alpha"
    assert files_in(tmp_path / "w") == ["lora.bin"]


# -- refusals: the exit code, the culprit named, and nothing written
# ------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(
    "name",
    [
        "../evil",
        "a/../../evil",
        "/etc/evil",
        "a//evil",
        "a/./evil",
        "a/.mdl/evil",
        "a/CON/evil",
        "a\\evil",
        "..",
        ".",
        "",
        "C:evil",
        "CON",
        "nul.txt",
        "a\x00b",
        "evil.",
        ".mdl",
        "COM1.bin",
    ],
)
def test_hostile_filenames_are_exit_2_and_nothing_is_written(
    env: HubServer, tmp_path: Path, name: str
) -> None:
    url = env.cdn.add_file("/x/ok2.bin", DATA)
    job = {"files": [inline("ok.bin", b"fine"), redirect("ok2.bin", url), inline(name, b"evil")]}
    result = mdl("get", write_job(tmp_path, job), "-d", "out")
    assert result.exit_code == 2, result.stderr
    assert "job.json.files[2].filename: must be a relative path inside the folder" in result.stderr
    assert repr(name) in result.stderr
    assert not (tmp_path / "out").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["job.json", "mdl.log"]
    assert len(env.cdn.log) == 0, "nothing is fetched either"


@pytest.mark.parametrize("second", ["a.bin", "A.BIN"])
def test_the_same_filename_twice_is_exit_2(env: HubServer, tmp_path: Path, second: str) -> None:
    url = env.cdn.add_file("/x/a.bin", DATA)
    job = [inline("a.bin", b"one"), redirect(second, url)]
    result = mdl("get", "-", "-d", "out", stdin=json.dumps(job))
    assert result.exit_code == 2
    assert f"stdin[1].filename: {second!r} is also the file name of stdin[0]" in result.stderr
    assert not (tmp_path / "out").exists()


def test_two_sources_naming_one_file_are_exit_2(env: HubServer, tmp_path: Path) -> None:
    write_job(tmp_path, ONE, "one.json")
    write_job(tmp_path, [inline("b.bin", b"b"), inline("a.bin", b"other")], "two.json")
    result = mdl("get", "one.json", "two.json", "-d", "out")
    assert result.exit_code == 2
    assert "two.json[1] and one.json would both be saved as" in result.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("doc", "needle"),
    [
        (
            {"id": "abc123", "status": "FAILED", "error": "CUDA out of memory"},
            "job abc123 is FAILED: CUDA out of memory",
        ),
        ({"id": "abc123", "status": "IN_PROGRESS"}, "job abc123 is IN_PROGRESS"),
        ({"id": "abc123", "status": "CANCELLED", "output": ONE}, "job abc123 is CANCELLED"),
    ],
)
def test_a_job_that_did_not_complete_is_exit_2(
    env: HubServer, tmp_path: Path, doc: Any, needle: str
) -> None:
    result = mdl("get", write_job(tmp_path, doc), "--json")
    assert result.exit_code == 2
    assert needle in result.stderr
    error = json.loads(result.stdout)["error"]
    assert error["code"] == 2 and needle in error["message"]
    assert not (tmp_path / "a.bin").exists()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("payload", "needle"),
    [
        ("not json", "not valid JSON"),
        ('{"type": "file_data", "filename": "a", "data": "%%%"}', "stdin.data: not valid base64"),
        ('{"type": "file_data", "filename": "a", "data": "eHl"}', "incorrect padding"),
        ('{"type": "file_data", "filename": "a", "data": "eA==eHl6"}', "not valid base64"),
        ('{"type": "ftp", "filename": "a"}', "stdin.type"),
        ('{"type": "redirect", "filename": "a", "url": "file:///etc/passwd"}', "stdin.url"),
        ('{"type": "redirect", "filename": "a", "url": "http://example.com/a"}', "use https://"),
        ("[]", "no files"),
    ],
)
def test_broken_job_output_is_exit_2(
    env: HubServer, tmp_path: Path, payload: str, needle: str
) -> None:
    result = mdl("get", "-", stdin=payload)
    assert result.exit_code == 2
    assert needle in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mdl.log"]


def test_bad_base64_anywhere_means_nothing_is_written(env: HubServer, tmp_path: Path) -> None:
    url = env.cdn.add_file("/x/c.bin", DATA)
    job = [
        inline("a.bin", b"fine"),
        redirect("c.bin", url),
        {**inline("b.bin", b"x"), "data": "!!!!"},
    ]
    result = mdl("get", "-", "-d", "out", stdin=json.dumps(job))
    assert result.exit_code == 2
    assert "stdin[2].data: not valid base64" in result.stderr
    assert not (tmp_path / "out").exists()
    assert len(env.cdn.log) == 0


@pytest.mark.parametrize(
    ("extra", "args", "needle"),
    [
        ({"size": 4}, (), "stdin[1]: the job output says 4 bytes, its data decodes to 3"),
        ({"sha256": "ab" * 32}, (), "stdin[1]: sha256 mismatch: the job output says " + "ab" * 32),
    ],
)
def test_inline_size_or_sha256_mismatch_is_exit_6_and_nothing_is_written(
    env: HubServer, tmp_path: Path, extra: dict[str, Any], args: tuple[str, ...], needle: str
) -> None:
    url = env.cdn.add_file("/x/c.bin", DATA)
    job = [inline("a.bin", b"fine"), {**inline("b.bin", b"xyz"), **extra}, redirect("c.bin", url)]
    result = mdl("get", "-", "-d", "out", *args, stdin=json.dumps(job))
    assert result.exit_code == 6, result.stderr
    assert needle in result.stderr
    assert "nothing was written" in result.stderr
    assert not (tmp_path / "out").exists()
    assert len(env.cdn.log) == 0


def test_bad_base64_wins_over_a_size_mismatch(env: HubServer, tmp_path: Path) -> None:
    job = [{**inline("a.bin", b"xyz"), "size": 9}, {**inline("b.bin", b"x"), "data": "@@@@"}]
    result = mdl("get", "-", stdin=json.dumps(job))
    assert result.exit_code == 2
    assert "stdin[1].data: not valid base64" in result.stderr
    assert "1 more inline file(s) are wrong too" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mdl.log"]


def test_inline_against_sha256_flag(env: HubServer, tmp_path: Path) -> None:
    bad = mdl("get", "-", "--sha256", "cd" * 32, stdin=json.dumps(ONE))
    assert bad.exit_code == 6
    assert not (tmp_path / "a.bin").exists()
    ok = mdl("get", "-", "--sha256", sha(b"alpha").upper(), stdin=json.dumps(ONE))
    assert ok.exit_code == 0, ok.stderr
    assert (tmp_path / "a.bin").read_bytes() == b"alpha"


# -- redirect descriptors and URLs: the engine, its checks, and expiry
# ----------------------------------


def test_redirect_descriptor_with_sha256_is_verified(env: HubServer, tmp_path: Path) -> None:
    url = env.cdn.add_file("/out/a.bin", DATA, signed=True)
    good = [redirect("a.bin", url, size=len(DATA), sha256=sha(DATA).upper())]
    result = mdl("get", "-", "--json", stdin=json.dumps(good))
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["files"][0]["sha256"] == sha(DATA)
    assert (tmp_path / "a.bin").read_bytes() == DATA
    bad = [redirect("b.bin", env.cdn.add_file("/out/b.bin", DATA, signed=True), sha256="ab" * 32)]
    result = mdl("get", "-", stdin=json.dumps(bad))
    assert result.exit_code == 6
    assert "sha256 mismatch" in result.stderr
    assert files_in(tmp_path) == [*RECORD, "a.bin", "mdl.log"], (
        "no file at the final path, no partial left"
    )


@pytest.mark.parametrize("with_sha256", [False, True], ids=["probed", "streamed"])
@pytest.mark.parametrize("delta", [1, -1])
def test_redirect_size_the_download_contradicts_is_exit_6(
    env: HubServer, tmp_path: Path, with_sha256: bool, delta: int
) -> None:
    url = env.cdn.add_file("/out/a.bin", DATA, signed=True)
    extra = {"sha256": sha(DATA)} if with_sha256 else {}
    job = [redirect("a.bin", url, size=len(DATA) + delta, **extra)]
    result = mdl("get", "-", "-d", "out", stdin=json.dumps(job))
    assert result.exit_code == 6, result.stderr
    assert f"{len(DATA) + delta}" in result.stderr
    assert not (tmp_path / "out" / "a.bin").exists()
    assert files_in(tmp_path / "out") == [], "no partial, no state left"


@pytest.mark.parametrize("with_sha256", [False, True], ids=["probed", "streamed"])
def test_expired_presigned_url_is_exit_3(env: HubServer, tmp_path: Path, with_sha256: bool) -> None:
    url = env.cdn.add_file("/out/lora.safetensors", DATA, signed=True)
    env.cdn.expire_signed_urls()
    extra = {"sha256": sha(DATA)} if with_sha256 else {}
    job = [redirect("lora.safetensors", url, size=len(DATA), **extra)]
    result = mdl("get", "-", "--json", stdin=json.dumps(job))
    assert result.exit_code == 3, result.stderr
    assert "link has expired" in result.stderr and "ask for a fresh one" in result.stderr
    assert "Request has expired" in result.stderr, "the server's own words are kept"
    assert "/out/lora.safetensors?REDACTED" in result.stderr
    doc = json.loads(result.stdout)
    assert doc["ok"] is False and "link has expired" in doc["files"][0]["error"]
    assert (
        signature_of(url) not in result.stdout + result.stderr + (tmp_path / "mdl.log").read_text()
    )
    assert len(env.cdn.log) == 1, "a direct link cannot be renewed: it is not asked again"
    assert not (tmp_path / "lora.safetensors").exists()


def test_expired_url_on_the_command_line_is_exit_3(env: HubServer, tmp_path: Path) -> None:
    url = env.cdn.add_file("/out/x.bin", DATA, signed=True)
    env.cdn.expire_signed_urls()
    result = mdl("get", url)
    assert result.exit_code == 3
    assert "x.bin: the link has expired" in result.stderr
    assert signature_of(url) not in result.stderr


def test_plain_http_urls_need_a_local_host(env: HubServer, tmp_path: Path) -> None:
    result = mdl("get", "http://example.com/model.bin?X-Amz-Signature=SECRETSIG")
    assert result.exit_code == 2
    assert "use https://" in result.stderr and "SECRETSIG" not in result.stderr
    url = env.cdn.add_file("/files/ok.bin", DATA)
    assert url.startswith("http://127.0.0.1:")
    assert mdl("get", url).exit_code == 0
    assert (tmp_path / "ok.bin").read_bytes() == DATA


@pytest.mark.slow
@pytest.mark.parametrize("port", ["99999", "abc", "-1"])
@pytest.mark.parametrize("scheme", ["https", "http", "HTTP"])
def test_a_url_with_a_bad_port_is_exit_2_naming_it(
    env: HubServer, tmp_path: Path, port: str, scheme: str
) -> None:
    """Said as the scheme it was given with (an http:// URL is no "https:// URL"), with what mdl
    takes.
    """
    url = f"{scheme}://127.0.0.1:{port}/x.bin"
    result = mdl("get", url)
    assert result.exit_code == 2, result.stderr
    # shown redacted: scheme lowered
    assert f"{url.lower()}: not a valid {scheme.lower()}:// URL" in result.stderr
    assert (
        "hint: mdl takes https:// URLs, and http:// ones to loopback or private hosts"
        in result.stderr
    )
    assert not list(tmp_path.glob("x.bin*"))


def test_a_url_without_a_file_name_needs_o(env: HubServer, tmp_path: Path) -> None:
    url = env.cdn.add_file("/files/", DATA)
    refused = mdl("get", url)
    assert refused.exit_code == 2 and "ends without one" in refused.stderr
    named = mdl("get", url, "-o", "named.bin")
    assert named.exit_code == 0, named.stderr
    assert (tmp_path / "named.bin").read_bytes() == DATA
    reserved = mdl("get", env.cdn.add_file("/files/CON", DATA))
    assert reserved.exit_code == 2 and "reserved device name" in reserved.stderr


# -- secrets: never in stdout, stderr, the log, or anything left on disk
# --------------------------------


def test_signature_never_shows_on_a_successful_get(env: HubServer, tmp_path: Path) -> None:
    target = env.cdn.add_file("/store/lora.bin", DATA)
    env.cdn.add_redirect(
        "/dl/lora.bin", target + "?X-Amz-Signature=SECRETSIG2222&X-Amz-Credential=SECRETCRED"
    )
    url = (
        env.cdn.url
        + "/dl/lora.bin?X-Amz-Signature=SECRETSIG1111&X-Amz-Security-Token=SECRETTOKEN&X-Amz-Expires=60"
    )
    job = {"id": "j", "status": "COMPLETED", "output": [redirect("lora.bin", url, size=len(DATA))]}
    result = mdl("get", write_job(tmp_path, job), "-d", "out", "-v", "--json")
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "out" / "lora.bin").read_bytes() == DATA
    log = (tmp_path / "mdl.log").read_text()
    assert "REDACTED" in log, "the URLs were logged (at DEBUG), redacted"
    for secret in ("SECRETSIG", "SECRETCRED", "SECRETTOKEN"):
        assert secret not in result.stdout
        assert secret not in result.stderr
        assert secret not in log


def test_signature_never_shows_when_a_get_is_cut_short(env: HubServer, tmp_path: Path) -> None:
    """The link expires mid-download: exit 3, the partial and its resume record are kept, and
    neither they, the output nor the log carry the signature."""
    url = (
        env.cdn.add_file("/out/model.bin", DATA, signed=True)
        + "&X-Amz-Security-Token=SECRETSIG3333"
    )
    env.cdn.faults.add(Fault.reset(after_bytes=1_000_000, path_prefix="/out/"))
    env.cdn.faults.add(Fault.expire_urls(path_prefix="/out/", skip=1))
    job = [redirect("model.bin", url, size=len(DATA), sha256=sha(DATA))]
    result = mdl("get", write_job(tmp_path, job), "-d", "out", "-v", "--json")
    assert result.exit_code == 3, result.stderr
    assert "link has expired" in result.stderr
    assert not (tmp_path / "out" / "model.bin").exists()
    records = list((tmp_path / "out" / ".mdl" / "partial").glob("*.part.json"))
    assert len(records) == 1, files_in(tmp_path / "out")
    assert json.loads(records[0].read_text())["source"].endswith("/out/model.bin?REDACTED")
    log = (tmp_path / "mdl.log").read_text()
    for secret in ("SECRETSIG3333", signature_of(url)):
        assert secret not in result.stdout + result.stderr + log
        for path in (tmp_path / "out").rglob("*"):
            if path.is_file() and not path.name.endswith(".part"):
                assert secret not in path.read_text(errors="replace"), path


# -- hf:// and plain URLs
# ------------------------------------------------------------------------------


def test_hf_uri_and_output_file(env: HubServer, tmp_path: Path) -> None:
    result = mdl("get", "hf://org/tiny/model.safetensors", "-o", "w/model.bin", "--json")
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "w" / "model.bin").read_bytes() == DATA
    assert json.loads(result.stdout)["files"][0]["sha256"] == sha(DATA)
    ds = mdl("get", "hf://datasets/org/ds@main/data/train.jsonl")
    assert ds.exit_code == 0, ds.stderr
    assert (tmp_path / "data" / "train.jsonl").read_bytes() == b'{"x": 1}\n', (
        "its folder in the repo is kept"
    )
    assert mdl("get", "hf://org/tiny/missing.bin").exit_code == 4


def test_get_ignores_the_hf_cache_layout(
    env: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MDL_LAYOUT", "hf-cache")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    result = mdl("get", "hf://org/tiny/model.safetensors", "-d", "out")
    assert result.exit_code == 0, result.stderr
    assert files_in(tmp_path / "out") == [*RECORD, "model.safetensors"], "-d means -d"
    assert not (tmp_path / "cache").exists()


def test_url_with_wrong_sha256_is_exit_6(env: HubServer, tmp_path: Path) -> None:
    url = env.cdn.add_file("/files/x.bin", DATA)
    result = mdl("get", url, "--sha256", "ab" * 32)
    assert result.exit_code == 6
    assert not (tmp_path / "x.bin").exists()
    ok = mdl("get", url, "--sha256", sha(DATA))
    assert ok.exit_code == 0
    assert (tmp_path / "x.bin").read_bytes() == DATA


def test_get_usage_errors(env: HubServer, tmp_path: Path) -> None:
    write_job(tmp_path, TWO)
    assert mdl("get", "job.json", "-o", "x", "-d", "y").exit_code == 2
    assert mdl("get", "nope.json").exit_code == 2
    assert mdl("get", "hf://just-a-name").exit_code == 2
    assert mdl("get", "job.json", "-o", "x").exit_code == 2, "-o names one file"
    assert mdl("get", "job.json", "--sha256", sha(b"alpha")).exit_code == 2
    assert mdl("get", "-", "--sha256", "xyz", stdin=json.dumps(ONE)).exit_code == 2
    assert mdl("get", "-", "-", stdin=json.dumps(ONE)).exit_code == 2
    (tmp_path / "folder").mkdir()
    assert mdl("get", "-", "-o", "folder", stdin=json.dumps(ONE)).exit_code == 2
    for bad in ("0", "65"):
        result = mdl("get", "-", "--connections", bad, stdin=json.dumps(ONE))
        assert result.exit_code == 2 and "--connections" in result.stderr
    assert files_in(tmp_path) == ["folder", "job.json", "mdl.log"]


def test_a_folder_in_the_way_is_exit_7_before_anything_is_written(
    env: HubServer, tmp_path: Path
) -> None:
    (tmp_path / "out" / "b.bin").mkdir(parents=True)
    result = mdl("get", "-", "-d", "out", stdin=json.dumps(TWO))
    assert result.exit_code == 7
    assert "b.bin is a folder" in result.stderr
    assert files_in(tmp_path / "out") == ["b.bin"]


# -- memory: a big inline payload is never held twice
# ----------------------------------------------------


@pytest.mark.slow
def test_inline_base64_is_decoded_without_a_second_full_copy(tmp_path: Path) -> None:
    decoded = 48 * MiB
    payload = make_data(decoded, seed=14)
    digest = sha(payload)
    text = json.dumps({"files": [inline("big.safetensors", payload, sha256=digest)]})
    del payload
    # the JSON is in memory, parsed, once
    items = parse_sources(["job.json"], read_text=lambda _: text)
    item = items[0]
    assert isinstance(item, InlineFile)
    settings = build_settings(environ={}, dest=tmp_path / "out")
    limit = decoded // 4
    run = GetRun(settings, NullProgress())

    tracemalloc.start()
    try:
        report = fetch_sources(items, run, output=None, sha256=None)
        _, peak = tracemalloc.get_traced_memory()
        # The yardstick is sound: decoding the whole string at once would blow through it.
        tracemalloc.reset_peak()
        whole = base64.b64decode(item.data)
        _, whole_peak = tracemalloc.get_traced_memory()
        del whole
    finally:
        tracemalloc.stop()
        run.close()
    assert report.ok, report.files
    assert report.files[0].sha256 == digest and report.files[0].size == decoded
    assert whole_peak > limit
    assert peak < limit, (
        f"peak {peak / MiB:.1f} MiB while writing a {decoded / MiB:.0f} MiB inline file"
    )
    assert (tmp_path / "out" / "big.safetensors").stat().st_size == decoded


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_a_probed_url_is_not_probed_again_and_its_answer_carries_the_first_bytes(
    env: HubServer, tmp_path: Path
) -> None:
    big = make_data(40 * MiB, seed=14)
    url = env.cdn.add_file("/results/probe-once.bin", big, signed=True)
    result = mdl("get", url, "-o", str(tmp_path / "f.bin"), "--connections", "4", "--json")
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "f.bin").read_bytes() == big
    gets = env.cdn.log.records(method="GET", path_prefix="/results/")
    probe, ranges = gets[0], gets[1:]
    # get's probe is an open-ended GET (aria2c's first request): it found the size, the ETag and
    # that ranges work, and its answer is the whole first piece, read by the download while the
    # other streams start: no second probe, no range asks for a byte of that piece but the 64 KiB a
    # join repeats to prove it continues the probe's answer (engine rule 15: no sha256 checks this
    # file).
    assert probe.range == "bytes=0-"
    assert all(r.range != "bytes=0-0" for r in gets)
    assert ranges and all(r.if_range for r in ranges)  # the probe's ETag guards every range
    first_piece = plan_pieces(len(big), connections=4, split_threshold=SPLIT_THRESHOLD)[0].end
    assert first_piece is not None
    assert (
        min(int(r.range.removeprefix("bytes=").split("-")[0]) for r in ranges)
        >= first_piece - OVERLAP
    )
    assert sum(r.bytes_sent for r in ranges) <= len(big) - first_piece + len(ranges) * OVERLAP


def test_a_small_file_is_fetched_by_its_probe_alone(env: HubServer, tmp_path: Path) -> None:
    small = make_data(300_000, seed=13)
    url = env.cdn.add_file("/results/small.bin", small)
    for extra in ((), ("--sha256", sha256(small))):
        env.cdn.log.clear()
        target = tmp_path / f"small{len(extra)}.bin"
        result = mdl("get", url, "-o", str(target), *extra)
        assert result.exit_code == 0, result.stderr
        assert target.read_bytes() == small
        (only,) = env.cdn.log.records(method="GET", path_prefix="/results/")
        assert only.range == "bytes=0-" and only.bytes_sent == len(small)


@pytest.mark.slow
def test_a_known_sha256_keeps_parallel_ranges(env: HubServer, tmp_path: Path) -> None:
    big = make_data(40 * MiB, seed=12)
    url = env.cdn.add_file("/results/hashed.bin", big)
    result = mdl(
        "get", url, "-o", str(tmp_path / "f.bin"), "--connections", "4", "--sha256", sha256(big)
    )
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "f.bin").read_bytes() == big
    gets = env.cdn.log.records(method="GET", path_prefix="/results/")
    assert len(gets) >= 4 and all(r.status == 206 for r in gets)
    assert len({r.connection for r in gets}) >= 4
    # The size probe is an open-ended GET whose answer is read as the first piece (what it wrote
    # into its socket past that is not counted): the other ranges ask for the rest, each byte once
    # (the hash checks the joins; the probe's answer may read on into a piece whose answer has not
    # begun, which then sends less).
    probe, ranges = gets[0], gets[1:]
    assert probe.range == "bytes=0-"
    first_piece = plan_pieces(len(big), connections=4, split_threshold=SPLIT_THRESHOLD)[0].end
    assert first_piece is not None
    spans = sorted(tuple(int(x) for x in r.range.removeprefix("bytes=").split("-")) for r in ranges)
    assert spans[0][0] == first_piece and spans[-1][1] == len(big) - 1, spans
    assert all(a[1] + 1 == b[0] for a, b in itertools.pairwise(spans)), spans
    assert sum(r.bytes_sent for r in ranges) <= len(big) - first_piece


def test_a_probed_target_that_expired_before_the_ranges_is_located_afresh(
    env: HubServer, tmp_path: Path
) -> None:
    big = make_data(40 * MiB, seed=15)
    env.cdn.add_file("/blobs/late.bin", big, signed=True)

    # a stable download link that redirects to a freshly signed one, as a job API's does
    def point() -> None:
        env.cdn.add_redirect("/dl/late.bin", env.cdn.signed_url("/blobs/late.bin"))

    point()
    # After the probe's request, the signed URLs expire (the file waited its turn) and the link is
    # re-signed.
    env.cdn.faults.add(
        Fault.call(lambda: (env.cdn.expire_signed_urls(), point()), skip=1, path_prefix="/blobs/")
    )
    url = env.cdn.url + "/dl/late.bin"
    result = mdl("get", url, "-o", str(tmp_path / "late.bin"), "--connections", "4")
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "late.bin").read_bytes() == big
    blobs = env.cdn.log.records(method="GET", path_prefix="/blobs/")
    assert any(r.status == 403 for r in blobs)  # the probe's target had expired
    # the probe, then one fresh locate
    assert len(env.cdn.log.records(method="GET", path_prefix="/dl/")) == 2
