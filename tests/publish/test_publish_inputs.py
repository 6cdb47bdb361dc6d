"""Inputs of publish and of s3:// mirrors: targets, templates, catalog tables, the missing extra,
the Python API.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from runfixtures import mdl, without_modules
from s3server import S3
from servers import HubServer

from mdl.buckets.s3 import parse_s3_prefix, sha256_of_head
from mdl.catalog.load import parse_catalog
from mdl.catalog.settings import check_mirror
from mdl.errors import ExitCode, MdlError, UsageError
from mdl.upload.publisher import PublishReport


@given(st.text(max_size=80))
def test_any_target_is_a_prefix_or_a_usage_error(text: str) -> None:
    for candidate in (text, "s3://" + text, "s3://bucket-1/" + text):
        try:
            target = parse_s3_prefix(candidate)
        except UsageError:
            continue
        segments = target.prefix.split("/") if target.prefix else []
        assert ".." not in segments and "" not in segments and "." not in segments
        assert target.uri().startswith(f"s3://{target.bucket}")
        assert target.key("m", "p.bin").endswith("m/p.bin")


@pytest.mark.parametrize(
    ("uri", "bucket", "prefix"),
    [
        ("s3://team-models", "team-models", ""),
        ("s3://team-models/", "team-models", ""),
        ("s3://b.x-1/a/b/", "b.x-1", "a/b"),
    ],
)
def test_good_targets(uri: str, bucket: str, prefix: str) -> None:
    target = parse_s3_prefix(uri)
    assert (target.bucket, target.prefix) == (bucket, prefix)


def test_a_multipart_checksum_is_never_taken_for_the_objects_sha256() -> None:
    full = {
        "ChecksumSHA256": "n4bQgYhMfWWaL+qgxVrQFaO/TxsrC4Is0V1sFbDwCgg=",
        "ETag": '"5d41402abc4b2a76b9719d911017c592"',
    }
    assert (
        sha256_of_head(full) == "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
    )
    assert sha256_of_head({**full, "ETag": '"5d41402abc4b2a76b9719d911017c592-3"'}) is None
    assert sha256_of_head({**full, "ChecksumType": "COMPOSITE"}) is None
    assert sha256_of_head({**full, "ChecksumSHA256": full["ChecksumSHA256"] + "-3"}) is None


@pytest.mark.parametrize(
    ("mirrors", "said"),
    [
        (
            '[{ url = "http://m/{model}/{path}", endpoint = "http://e" }]',
            "settings.mirrors[0].endpoint",
        ),
        ('[{ url = "s3://b!/x/{path}" }]', "settings.mirrors[0].url: 'b!' is not a bucket name"),
        ('[{ url = "s3://bkt/{path}", endpont = "http://e" }]', "did you mean 'endpoint'"),
        (
            '[{ url = "s3://bkt/{path}", endpoint = "ftp://e" }]',
            "settings.mirrors[0].endpoint: must be an http(s) URL",
        ),
        ('["s3://bkt/{pth}"]', "unknown placeholder {pth}"),
    ],
)
def test_bad_mirror_entries_name_the_key(mirrors: str, said: str) -> None:
    with pytest.raises(MdlError) as caught:
        parse_catalog(f'[settings]\nmirrors = {mirrors}\n\n[models.x]\nrepo = "a/b"\n')
    assert caught.value.exit_code == ExitCode.USAGE
    assert said in caught.value.message


def test_mirror_entries_keep_their_endpoints() -> None:
    catalog = parse_catalog(
        '[settings]\nmirrors = ["http://m/{model}/{path}", { url = "s3://bkt/hub/{model}/{path}",'
        ' endpoint = "http://127.0.0.1:9/" }]\n\n[models.x]\nrepo = "a/b"\n'
    )
    assert catalog.settings.mirrors == ("http://m/{model}/{path}", "s3://bkt/hub/{model}/{path}")
    assert catalog.settings.mirror_endpoints == (
        ("s3://bkt/hub/{model}/{path}", "http://127.0.0.1:9"),
    )


@pytest.mark.parametrize("bad", ["ftp://x/{path}", "s3://no_such!/{path}", "http://m/{nope}"])
def test_a_bad_mirror_flag_is_exit_2_naming_it(
    bad: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "catalog.toml").write_text('[models.x]\nrepo = "a/b"\n')
    result = mdl("pull", "x", "--mirror", bad)
    assert result.exit_code == ExitCode.USAGE, result.output
    assert "--mirror" in result.stderr


@pytest.mark.slow
def test_publish_without_the_extra_is_exit_2_naming_it(tmp_path: Path) -> None:
    (tmp_path / "catalog.toml").write_text('[models.x]\nrepo = "a/b"\n')
    home = tmp_path / "home"
    (home / "d" / "x").mkdir(parents=True)
    env = {
        **without_modules(tmp_path, "boto3", "botocore"),
        "HOME": str(home),
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    command = [
        sys.executable,
        "-m",
        "mdl",
        "publish",
        "x",
        "--to",
        "s3://bucket-1/p",
        "--dest",
        str(home / "d"),
    ]
    proc = subprocess.run(command, env=env, capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode in (ExitCode.USAGE, ExitCode.NOT_FOUND), proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_the_python_api_publishes_and_prints_nothing(
    hub: HubServer, s3: S3, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import mdl as mdl_api

    hub.add_repo("org/tiny", {"config.json": b"{}\n", "w.safetensors": b"w" * 5000})
    catalog = tmp_path / "catalog.toml"
    catalog.write_text('[models.tiny]\nrepo = "org/tiny"\n')
    env = {**os.environ, "HF_ENDPOINT": hub.url}
    pulled = mdl_api.pull("tiny", catalog=catalog, dest=tmp_path / "d", environ=env)
    assert pulled.ok
    s3.client().create_bucket(Bucket="api-bucket")
    report = mdl_api.publish(
        "tiny", to="s3://api-bucket/m", catalog=catalog, dest=tmp_path / "d", environ=env
    )
    assert report.ok and report.target == "s3://api-bucket/m"
    (version,) = report.versions
    assert report.manifests == (f"s3://api-bucket/m/.mdl/versions/tiny/{version.id}.json",)
    assert report.template == "s3://api-bucket/m/{model}/{sha256}"
    assert sorted((f.path, f.action) for f in report.files) == [
        ("config.json", "uploaded"),
        ("w.safetensors", "uploaded"),
    ]
    with pytest.raises(UsageError):
        mdl_api.publish(
            "tiny", to="https://not-s3/x", catalog=catalog, dest=tmp_path / "d", environ=env
        )
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


@pytest.mark.parametrize(
    ("target", "template"),
    [
        ("oci://127.0.0.1:5000/team/tiny", "oci://127.0.0.1:5000/team/tiny"),
        ("oci://127.0.0.1:5000/team/tiny:v1", "oci://127.0.0.1:5000/team/tiny"),
        ("oci://reg.example.com/models/{model}", "oci://reg.example.com/models/{model}"),
        ("oci://reg.example.com/models/{model}:2026-11", "oci://reg.example.com/models/{model}"),
        ("oci://reg.example.com/models/{model}:{model}", "oci://reg.example.com/models/{model}"),
        ("oci://reg.example.com/m/{model}:v-{model}.1", "oci://reg.example.com/m/{model}"),
    ],
)
def test_a_registry_publishs_nodes_hint_is_a_mirror_mdl_takes(target: str, template: str) -> None:
    assert PublishReport((), target=target).template == template
    assert check_mirror(template, where="--mirror") == template
