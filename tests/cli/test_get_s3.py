"""`mdl get s3://bucket/key` against a real S3 server on loopback (moto, tests/s3server.py).

The object is fetched by the transfer engine from a presigned URL: parallel ranges, resume,
verification.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
from runfixtures import mdl, without_modules
from s3server import ACCESS_KEY, S3, SECRET_KEY, s3, s3_server  # noqa: F401
from servers import make_data

from mdl.errors import ExitCode

MiB = 1024 * 1024
BIG = make_data(34 * MiB, seed=41)  # above the 32 MiB split threshold: parallel ranges


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MDL_LOG_FILE", str(tmp_path / "mdl.log"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.slow
def test_get_a_multi_mib_object_with_parallel_ranges(s3: S3, here: Path) -> None:  # noqa: F811
    s3.put("team-bucket", "runs/7/model.safetensors", BIG)
    result = mdl(
        "get",
        "s3://team-bucket/runs/7/model.safetensors",
        "-d",
        "out",
        "--connections",
        "4",
        "--json",
    )
    assert result.exit_code == 0, result.stderr
    assert (here / "out" / "model.safetensors").read_bytes() == BIG
    doc = json.loads(result.stdout)
    (entry,) = doc["files"]
    assert (entry["path"], entry["size"], entry["sha256"], entry["action"]) == (
        "model.safetensors",
        len(BIG),
        sha(BIG),
        "downloaded",
    )
    ranged = [r for r in s3.cutter.ranges if r not in (None, "bytes=0-0")]
    assert len(ranged) >= 4, f"--connections 4: parallel ranges, got {s3.cutter.ranges}"
    assert "source=s3://team-bucket/runs/7/model.safetensors" in (here / "mdl.log").read_text()
    assert sorted(p.name for p in (here / "out").iterdir()) == [".mdl", "model.safetensors"], (
        "no temp files left"
    )
    assert [p.name for p in (here / "out" / ".mdl").iterdir()] == ["get.json"], (
        "only the get's record"
    )


@pytest.mark.slow
def test_output_file_and_sha256(s3: S3, here: Path) -> None:  # noqa: F811
    s3.put("bucket-1", "a/b.bin", b"hello s3 world")
    ok = mdl("get", "s3://bucket-1/a/b.bin", "-o", "x.bin", "--sha256", sha(b"hello s3 world"))
    assert ok.exit_code == 0, ok.stderr
    assert (here / "x.bin").read_bytes() == b"hello s3 world"
    wrong = mdl("get", "s3://bucket-1/a/b.bin", "-o", "y.bin", "--sha256", "0" * 64)
    assert wrong.exit_code == ExitCode.INTEGRITY, wrong.stderr
    assert not (here / "y.bin").exists()


def test_the_stores_sha256_checksum_is_verified(s3: S3, here: Path) -> None:  # noqa: F811
    s3.put("bucket-2", "c.bin", BIG[:100_000], ChecksumAlgorithm="SHA256")
    result = mdl("get", "s3://bucket-2/c.bin", "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["files"][0]["sha256"] == sha(BIG[:100_000])


@pytest.mark.slow
def test_an_interrupted_get_resumes(s3: S3, here: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    s3.put("bucket-3", "big.bin", BIG)
    monkeypatch.setenv("MDL_RETRIES", "0")
    s3.cutter.after = 5 * MiB
    first = mdl("get", "s3://bucket-3/big.bin", "-d", "D", "--connections", "1")
    assert first.exit_code == ExitCode.NETWORK, first.output
    assert any(p.name.endswith(".part") for p in (here / "D").rglob("*")), "the partial is kept"
    s3.cutter.after = None
    monkeypatch.delenv("MDL_RETRIES")
    result = mdl("get", "s3://bucket-3/big.bin", "-d", "D", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["files"][0]["action"] == "resumed"
    assert (here / "D" / "big.bin").read_bytes() == BIG


def test_missing_bucket_and_key_exit_4(s3: S3, here: Path) -> None:  # noqa: F811
    s3.put("bucket-4", "there.bin", b"x")
    no_bucket = mdl("get", "s3://absent-bucket/k.bin")
    assert no_bucket.exit_code == ExitCode.NOT_FOUND, no_bucket.output
    assert "no such bucket 'absent-bucket'" in no_bucket.stderr
    no_key = mdl("get", "s3://bucket-4/absent.bin")
    assert no_key.exit_code == ExitCode.NOT_FOUND, no_key.output
    assert "no such key" in no_key.stderr
    assert not any(here.glob("*.bin"))


@pytest.mark.slow
def test_denied_exits_3(s3: S3, here: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    from moto.core.authorization import enable_iam_authentication

    s3.put("bucket-5", "secret.bin", b"classified")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAUNKNOWNUSER00000")
    # moto checks the signer against its IAM users: this key is unknown
    with enable_iam_authentication():
        result = mdl("get", "s3://bucket-5/secret.bin", "--json")
    assert result.exit_code == ExitCode.AUTH, result.output
    assert "access denied" in result.stderr
    assert "expired" not in result.stderr
    assert not (here / "secret.bin").exists()


@pytest.mark.parametrize(
    "uri",
    [
        "s3://",
        "s3://bucket",
        "s3://bucket/",
        "s3://b/key",
        "s3://bad_bucket!/k",
        "s3://bucket/dir/",
    ],
)
def test_bad_uris_exit_2(uri: str, here: Path) -> None:
    result = mdl("get", uri)
    assert result.exit_code == ExitCode.USAGE, result.output
    assert "s3://" in result.stderr


def test_secrets_never_shown(s3: S3, here: Path) -> None:  # noqa: F811
    s3.put("bucket-6", "f.bin", BIG[:300_000])
    result = mdl("get", "s3://bucket-6/f.bin", "--json", "-v")
    failing = mdl("get", "s3://bucket-6/missing.bin", "--json", "-v")
    assert result.exit_code == 0 and failing.exit_code == ExitCode.NOT_FOUND
    log = (here / "mdl.log").read_text()
    for text in (result.stdout, result.stderr, failing.stdout, failing.stderr, log):
        assert SECRET_KEY not in text
        assert "X-Amz-Signature" not in text and "Signature=" not in text
        assert ACCESS_KEY not in text, "the presigned query (X-Amz-Credential) is redacted whole"
    assert "s3://bucket-6/f.bin" in log


@pytest.mark.slow
def test_missing_extra_exit_2_naming_it(s3: S3, tmp_path: Path) -> None:  # noqa: F811
    env = without_modules(tmp_path, "boto3", "botocore")
    code = (
        "import sys; from mdl.__main__ import main; sys.argv = ['mdl', 'get',"
        " 's3://bucket/key.bin']; main()"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=tmp_path
    )
    assert proc.returncode == ExitCode.USAGE, proc.stderr
    assert "pip install 'mdl[s3]'" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_help_does_not_import_boto3(tmp_path: Path) -> None:
    code = (
        "import sys; from mdl.cli.app import app; import mdl.download.get; assert 'boto3' not in"
        " sys.modules"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr


@pytest.mark.slow
def test_slowdown_is_retried(s3: S3, here: Path) -> None:  # noqa: F811
    s3.put("bucket-7", "t.bin", b"throttled once")
    s3.cutter.slowdown = 1
    result = mdl("get", "s3://bucket-7/t.bin")
    assert result.exit_code == 0, result.output
    assert s3.cutter.slowed == 1
    assert (here / "t.bin").read_bytes() == b"throttled once"


@pytest.mark.slow
def test_slowdown_that_lasts_exits_5(s3: S3, here: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    s3.put("bucket-8", "t.bin", b"x")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")
    s3.cutter.slowdown = 1_000
    result = mdl("get", "s3://bucket-8/t.bin")
    assert result.exit_code == ExitCode.NETWORK, result.output
    assert "throttling" in result.stderr
    assert s3.cutter.slowed == 2
