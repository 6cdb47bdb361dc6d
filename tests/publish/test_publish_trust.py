"""What `mdl publish` trusts to skip an object: only a SHA-256 the store computed over the object's
bytes (issue 24).

Metadata (`x-amz-meta-sha256`) is set by whoever writes the object, so an object with the right size
and metadata but other bytes must be uploaded again; what mdl uploaded itself, single-part and
multipart, is still skipped. A model that is not fully installed is refused before anything is sent.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from runfixtures import mdl
from s3server import ACCESS_KEY, REGION, S3, SECRET_KEY
from servers import HubServer, make_data
from typer.testing import Result

from mdl.buckets._parts import S3_MAX_PARTS, part_layout
from mdl.errors import ExitCode

MiB = 1024 * 1024
BIG = make_data(17 * MiB + 5, seed=81)  # above the 16 MiB part size: a multipart upload of 2 parts
CONFIG = b'{"model_type": "bert", "hidden_size": 8}\n'
VOCAB = b"[PAD]\n[UNK]\n" * 50
FILES = {"config.json": CONFIG, "vocab.txt": VOCAB, "big.safetensors": BIG}
BUCKET = "team-models"
TO = f"s3://{BUCKET}/hub"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def key(data: bytes) -> str:
    """Where publish stores these bytes: by content."""
    return f"hub/tiny/{sha(data)}"


def files_of(result: Result) -> dict[str, dict[str, Any]]:
    return {f["path"]: f for f in json.loads(result.stdout)["files"] if f["path"] is not None}


def bare_client(s3: S3) -> Any:
    """A client that adds no checksum of its own to a write (as older tools and other SDKs do)."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=s3.endpoint,
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        config=Config(request_checksum_calculation="when_required"),
    )


def put_multipart(client: Any, key: str, data: bytes, *, part: int, checksum: bool) -> None:
    """Write ``data`` as a multipart object of ``part``-byte parts, our metadata on it, with or
    without S3's SHA-256 checksums."""
    extra: dict[str, Any] = {"ChecksumAlgorithm": "SHA256"} if checksum else {}
    upload = client.create_multipart_upload(
        Bucket=BUCKET, Key=key, Metadata={"sha256": sha(BIG)}, **extra
    )
    done = []
    for number, start in enumerate(range(0, len(data), part), start=1):
        reply = client.upload_part(
            Bucket=BUCKET,
            Key=key,
            UploadId=upload["UploadId"],
            PartNumber=number,
            Body=data[start : start + part],
            **extra,
        )
        done.append(
            {"PartNumber": number, "ETag": reply["ETag"]}
            | ({"ChecksumSHA256": reply["ChecksumSHA256"]} if checksum else {})
        )
    client.complete_multipart_upload(
        Bucket=BUCKET, Key=key, UploadId=upload["UploadId"], MultipartUpload={"Parts": done}
    )


@pytest.fixture
def seeded(hub: HubServer, s3: S3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """`tiny` pulled from the Hub stand-in into ``<tmp>/a``; the bucket exists, empty."""
    hub.add_repo("org/tiny", FILES)
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setenv("MDL_LOG_FILE", str(tmp_path / "mdl.log"))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "catalog.toml").write_text('[models.tiny]\nrepo = "org/tiny"\n')
    s3.client().create_bucket(Bucket=BUCKET)
    pulled = mdl("pull", "tiny", "--dest", str(tmp_path / "a"))
    assert pulled.exit_code == 0, pulled.stderr
    return tmp_path / "a"


@pytest.fixture
def published(seeded: Path, s3: S3) -> Path:
    """`tiny` published once; the store's write log cleared."""
    first = mdl("publish", "tiny", "--to", TO, "--dest", str(seeded), "--json")
    assert first.exit_code == 0, first.output
    assert {f["action"] for f in files_of(first).values()} == {"uploaded"}
    s3.cutter.writes.clear()
    return seeded


def publish_again(dest: Path) -> dict[str, str]:
    result = mdl("publish", "tiny", "--to", TO, "--dest", str(dest), "--json")
    assert result.exit_code == 0, result.output
    return {p: f["action"] for p, f in files_of(result).items()}


def assert_bucket_is_right(s3: S3) -> None:
    client = s3.client()
    for path, data in FILES.items():
        assert client.get_object(Bucket=BUCKET, Key=key(data))["Body"].read() == data, path
    (listed,) = client.list_objects_v2(Bucket=BUCKET, Prefix="hub/.mdl/versions/tiny/")["Contents"]
    manifest = json.loads(client.get_object(Bucket=BUCKET, Key=listed["Key"])["Body"].read())
    assert {f["path"]: f["sha256"] for f in manifest["files"]} == {
        p: sha(d) for p, d in FILES.items()
    }


@pytest.mark.slow
def test_a_rerun_skips_every_object_mdl_uploaded_single_part_and_multipart(
    published: Path, s3: S3
) -> None:
    head = s3.client().head_object(Bucket=BUCKET, Key=key(BIG), ChecksumMode="ENABLED")
    assert head["ETag"].endswith('-2"'), "the big file went up in 2 parts"
    assert publish_again(published) == dict.fromkeys(FILES, "skipped")
    assert s3.cutter.writes == [], "nothing is sent again"


@pytest.mark.slow
@pytest.mark.parametrize("stored", [b"X" * len(VOCAB), VOCAB], ids=["other-bytes", "same-bytes"])
def test_metadata_without_a_store_checksum_never_decides(
    published: Path, s3: S3, stored: bytes
) -> None:
    bare_client(s3).put_object(
        Bucket=BUCKET, Key=key(VOCAB), Body=stored, Metadata={"sha256": sha(VOCAB)}
    )
    head = s3.client().head_object(Bucket=BUCKET, Key=key(VOCAB), ChecksumMode="ENABLED")
    assert head["ContentLength"] == len(VOCAB) and head["Metadata"]["sha256"] == sha(VOCAB)
    assert "ChecksumSHA256" not in head
    actions = publish_again(published)
    # the metadata never decides; the same bytes are proved by the ETag the store computed over
    # them (their MD5: a store that keeps no checksum, rclone's serve s3, s3rver, issue 86)
    assert actions == {
        "config.json": "skipped",
        "vocab.txt": "skipped" if stored == VOCAB else "uploaded",
        "big.safetensors": "skipped",
    }
    assert_bucket_is_right(s3)
    assert publish_again(published)["vocab.txt"] == "skipped", (
        "what mdl uploaded again is trusted again"
    )


@pytest.mark.slow
def test_a_store_checksum_of_other_bytes_is_uploaded_again(published: Path, s3: S3) -> None:
    s3.client().put_object(
        Bucket=BUCKET,
        Key=key(CONFIG),
        Body=b"Z" * len(CONFIG),
        ChecksumAlgorithm="SHA256",
        Metadata={"sha256": sha(CONFIG)},
    )
    assert publish_again(published)["config.json"] == "uploaded"
    assert_bucket_is_right(s3)


@pytest.mark.slow
@pytest.mark.parametrize("checksum", [True, False], ids=["composite-of-other-bytes", "no-checksum"])
def test_a_tampered_multipart_object_is_uploaded_again(
    published: Path, s3: S3, checksum: bool
) -> None:
    evil = bytearray(BIG)
    evil[16 * MiB + 7] ^= 0xFF  # one byte in the second part
    put_multipart(bare_client(s3), key(BIG), bytes(evil), part=16 * MiB, checksum=checksum)
    head = s3.client().head_object(Bucket=BUCKET, Key=key(BIG), ChecksumMode="ENABLED")
    assert head["ContentLength"] == len(BIG) and head["Metadata"]["sha256"] == sha(BIG)
    assert ("ChecksumSHA256" in head) is checksum
    actions = publish_again(published)
    assert actions == {
        "config.json": "skipped",
        "vocab.txt": "skipped",
        "big.safetensors": "uploaded",
    }
    assert_bucket_is_right(s3)


@pytest.mark.slow
def test_a_multipart_object_of_other_part_sizes_is_recognised_from_its_layout(
    published: Path, s3: S3
) -> None:
    put_multipart(bare_client(s3), key(BIG), BIG, part=6 * MiB, checksum=True)
    s3.cutter.writes.clear()
    assert publish_again(published)["big.safetensors"] == "skipped"
    assert s3.cutter.writes == []


def test_a_model_not_fully_installed_is_refused_with_exit_4_and_nothing_is_sent(
    seeded: Path, s3: S3
) -> None:
    (seeded / "tiny" / "vocab.txt").unlink()
    result = mdl("publish", "tiny", "--to", TO, "--dest", str(seeded), "--json")
    assert result.exit_code == ExitCode.NOT_FOUND, result.output
    assert "tiny: not fully installed" in result.stderr and "vocab.txt (missing)" in result.stderr
    assert "mdl pull tiny" in result.stderr
    doc = json.loads(result.stdout)
    assert doc["manifests"] == [] and files_of(result) == {}
    [refused] = doc["files"]
    assert (refused["model"], refused["action"]) == ("tiny", "missing")
    assert refused["error"] == "tiny: not fully installed (partial): vocab.txt (missing)"
    assert "Contents" not in s3.client().list_objects_v2(Bucket=BUCKET), (
        "no object and no manifest key"
    )


@given(
    st.integers(min_value=1, max_value=10**13),
    st.one_of(st.integers(min_value=-5, max_value=10**12), st.none(), st.text(max_size=3)),
    st.one_of(st.integers(min_value=-5, max_value=10**6), st.none(), st.floats()),
)
def test_a_part_layout_from_the_store_is_whole_and_bounded_or_none(
    size: int, first: object, count: object
) -> None:
    sizes = part_layout(size, first=first, count=count)
    if sizes is None:
        return
    assert len(sizes) == count and 1 <= len(sizes) <= S3_MAX_PARTS
    assert sum(sizes) == size and all(s == first for s in sizes[:-1]) and 0 < sizes[-1] <= sizes[0]


@given(
    st.integers(min_value=1, max_value=10**10),
    st.integers(min_value=1, max_value=S3_MAX_PARTS),
    st.data(),
)
def test_every_layout_of_equal_parts_and_a_last_one_is_learned(
    first: int, count: int, data: st.DataObject
) -> None:
    last = data.draw(st.integers(min_value=1, max_value=first))
    size = first * (count - 1) + last
    assert part_layout(size, first=first, count=count) == [first] * (count - 1) + [last]
    assert part_layout(size + first, first=first, count=count) is None, (
        "the parts must make up the object"
    )
    assert part_layout(size, first=first, count=S3_MAX_PARTS + 1) is None
