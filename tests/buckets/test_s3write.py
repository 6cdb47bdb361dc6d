"""mdl/buckets/_s3write.py, _s3conditional.py and _s3upload.py: the S3 store, writable, against
real servers: moto and SeaweedFS (its conditional writes are a separate implementation), and a
proxy that makes either misbehave as some stores do (conditions ignored, 409
ConditionalRequestConflict, a lost reply)."""

from __future__ import annotations

import base64
import hashlib
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import pytest
from s3proxy import s3_proxy
from s3server import S3, aws_environ, s3, s3_server  # noqa: F401
from seaweed import Weed

from mdl import partsize
from mdl.buckets import _s3conditional as conditional_module
from mdl.buckets import _s3upload as upload_module
from mdl.buckets._s3upload import S3Upload
from mdl.buckets._s3write import S3Writer
from mdl.buckets.lease import honours_conditions
from mdl.buckets.protocol import Seen, Writer
from mdl.buckets.registry import STORES
from mdl.buckets.s3 import mdl_metadata, sha256_of_head
from mdl.errors import IntegrityError, NetworkError
from mdl.upload._bucket import Bucket, ReadyFile

MiB = 1024 * 1024


@dataclass
class Place:
    """A bucket and a prefix of its own on one server, for one test."""

    server: str  # "moto" or "seaweedfs"
    endpoint: str
    bucket: str
    prefix: str  # "<unique>/"
    client: Any

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{self.prefix}{key}"

    def key(self, key: str) -> str:
        return f"{self.prefix}{key}"

    def writer(self, endpoint: str | None = None, **options: Any) -> S3Writer:
        return S3Writer(endpoint or self.endpoint, **options)

    def body(self, key: str) -> bytes:
        return bytes(self.client.get_object(Bucket=self.bucket, Key=self.key(key))["Body"].read())

    def unfinished(self) -> list[Any]:
        """Multipart uploads started and neither completed nor aborted."""
        uploads = self.client.list_multipart_uploads(Bucket=self.bucket).get("Uploads", [])
        return [u for u in uploads if str(u["Key"]).startswith(self.prefix)]


ROOT = "s3://ignored/"  # where a folder keeps its marks: S3 keeps its mark in metadata


def _environ(monkeypatch: pytest.MonkeyPatch, endpoint: str) -> None:
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    for name, value in aws_environ(endpoint).items():
        monkeypatch.setenv(name, value)


@pytest.fixture(params=["moto", pytest.param("seaweedfs", marks=pytest.mark.slow)])
def place(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Place]:
    """Each test on moto (reset) and on the session's SeaweedFS (a fresh prefix)."""
    if request.param == "moto":
        server: S3 = request.getfixturevalue("s3")
        client = server.client()
        client.create_bucket(Bucket="mirror")
        yield Place("moto", server.endpoint, "mirror", f"{uuid.uuid4().hex}/", client)
        return
    weed: Weed = request.getfixturevalue("seaweed_server")
    _environ(monkeypatch, weed.endpoint)
    client = weed.client()
    if "mirror" not in {b["Name"] for b in client.list_buckets().get("Buckets", [])}:
        client.create_bucket(Bucket="mirror")
    yield Place("seaweedfs", weed.endpoint, "mirror", f"{uuid.uuid4().hex}/", client)


@pytest.fixture
def moto(s3: S3) -> Place:  # noqa: F811
    client = s3.client()
    client.create_bucket(Bucket="mirror")
    return Place("moto", s3.endpoint, "mirror", "t/", client)


def _file(tmp_path: Path, name: str, size: int, *, seed: bytes = b"") -> tuple[Path, str]:
    data = (hashlib.sha256(seed + name.encode()).digest() * (size // 32 + 1))[:size]
    path = tmp_path / name
    path.write_bytes(data)
    return path, hashlib.sha256(data).hexdigest()


@pytest.mark.slow
def test_the_registry_gives_a_writer(place: Place) -> None:
    """``s3://`` in the store registry gives the S3 writer, on the endpoint it is given: what it
    writes is the object the server holds."""
    writer: Writer = STORES["s3"].writer(endpoint=place.endpoint, secrets=None)
    assert isinstance(writer, S3Writer)
    made = writer.create(place.uri("a"), b"x")
    assert made is not None and made.size == 1
    seen = writer.head(place.uri("a"))
    assert seen is not None and (seen.etag, seen.size) == (made.etag, 1)
    assert place.body("a") == b"x"


def test_create_only_once(place: Place) -> None:
    writer = place.writer()
    first = writer.create(place.uri("lease"), b"holder-1")
    assert isinstance(first, Seen)
    assert first.size == 8
    assert writer.create(place.uri("lease"), b"holder-2") is None
    assert place.body("lease") == b"holder-1"
    seen = writer.head(place.uri("lease"))
    assert seen is not None
    assert (seen.etag, seen.size) == (first.etag, 8)
    read = writer.read(place.uri("lease"), limit=100)
    assert read is not None
    assert read[0] == b"holder-1"
    assert read[1].etag == first.etag


def test_missing_objects(place: Place) -> None:
    writer = place.writer()
    assert writer.head(place.uri("none")) is None
    assert writer.read(place.uri("none"), limit=100) is None
    assert writer.replace(place.uri("none"), b"x", etag='"0123"') is None
    assert writer.delete(place.uri("none")) is False
    assert writer.delete(place.uri("none"), etag='"0123"') is False
    assert writer.head(place.uri("none")) is None


@pytest.mark.slow
def test_replace_only_over_its_version(place: Place) -> None:
    writer = place.writer()
    first = writer.create(place.uri("lease"), b"term-1")
    assert first is not None
    second = writer.replace(place.uri("lease"), b"term-2", etag=first.etag)
    assert second is not None
    assert second.etag != first.etag
    # the stale version: another holder renewed it since
    assert writer.replace(place.uri("lease"), b"term-3", etag=first.etag) is None
    assert place.body("lease") == b"term-2"
    head = writer.head(place.uri("lease"))
    assert head is not None
    assert head.etag == second.etag


def test_delete_only_its_version(place: Place) -> None:
    writer = place.writer()
    first = writer.create(place.uri("lease"), b"one")
    assert first is not None
    second = writer.replace(place.uri("lease"), b"two", etag=first.etag)
    assert second is not None
    assert writer.delete(place.uri("lease"), etag=first.etag) is False
    assert place.body("lease") == b"two"
    assert writer.delete(place.uri("lease"), etag=second.etag) is True
    assert writer.head(place.uri("lease")) is None
    assert writer.create(place.uri("other"), b"x") is not None
    assert writer.delete(place.uri("other")) is True
    assert writer.head(place.uri("other")) is None


@pytest.mark.slow
def test_the_store_clock(place: Place) -> None:
    """``now`` and every ``Seen.now`` are the store's Date header (whole seconds), not ours."""
    writer = place.writer()
    made = writer.create(place.uri("lease"), b"x")
    assert made is not None
    date = place.client.head_bucket(Bucket=place.bucket)["ResponseMetadata"]["HTTPHeaders"]["date"]
    said = parsedate_to_datetime(date).timestamp()
    now = writer.now()
    assert now == int(now)  # parsed from a Date: whole seconds
    assert said - 1 <= now <= said + 60  # bounded: only matters if it is wrong
    seen = writer.head(place.uri("lease"))
    assert seen is not None
    assert seen.now == int(seen.now)
    assert made.modified - 1 <= seen.modified <= seen.now
    # a fresh writer that has used no bucket yet still reads the clock
    assert said - 1 <= place.writer().now() <= said + 60


def test_upload_small_once(place: Place, tmp_path: Path) -> None:
    path, sha = _file(tmp_path, "a.bin", 3000)
    writer = place.writer()
    assert writer.upload(place.uri("m/a.bin"), path, size=3000, sha256=sha, root=ROOT) is True
    head = place.client.head_object(
        Bucket=place.bucket, Key=place.key("m/a.bin"), ChecksumMode="ENABLED"
    )
    assert sha256_of_head(head) == sha  # the store's own checksum
    # mdl's mark, bound to the key written and the bytes
    said = mdl_metadata(place.uri("m/a.bin"), sha256=sha, size=3000, side="")
    assert head["Metadata"] == said
    other, other_sha = _file(tmp_path, "b.bin", 3000, seed=b"other")
    assert (
        writer.upload(place.uri("m/a.bin"), other, size=3000, sha256=other_sha, root=ROOT) is False
    )
    assert hashlib.sha256(place.body("m/a.bin")).hexdigest() == sha


@pytest.mark.slow
def test_upload_in_parts_once(
    place: Place, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(upload_module, "MULTIPART_THRESHOLD", MiB)
    monkeypatch.setattr(upload_module, "PART_MINIMUM", 5 * MiB)  # S3's smallest part
    size = 11 * MiB + 7
    path, sha = _file(tmp_path, "big.bin", size)
    writer = place.writer()
    assert writer.upload(place.uri("m/big.bin"), path, size=size, sha256=sha, root=ROOT) is True
    head = place.client.head_object(
        Bucket=place.bucket, Key=place.key("m/big.bin"), ChecksumMode="ENABLED"
    )
    assert head["ContentLength"] == size
    assert str(head["ETag"]).strip('"').endswith("-3")  # 5 + 5 + 1 MiB
    # mdl's mark, bound to the key written and the bytes
    said = mdl_metadata(place.uri("m/big.bin"), sha256=sha, size=size, side="")
    assert head["Metadata"] == said
    # the store's composite SHA-256 (of the parts' SHA-256s) is of these bytes
    data = path.read_bytes()
    digests = b"".join(
        hashlib.sha256(data[i : i + 5 * MiB]).digest() for i in range(0, size, 5 * MiB)
    )
    composite = base64.b64encode(hashlib.sha256(digests).digest()).decode()
    assert str(head["ChecksumSHA256"]).partition("-")[0] == composite
    # publish's own check takes it as these bytes (it would skip the file)
    assert writer.holds(place.uri("m/big.bin"), path, size=size, sha256=sha)
    # a second writer never replaces them, and leaves no upload behind
    other, other_sha = _file(tmp_path, "other.bin", size, seed=b"other")
    assert (
        writer.upload(place.uri("m/big.bin"), other, size=size, sha256=other_sha, root=ROOT)
        is False
    )
    assert hashlib.sha256(place.body("m/big.bin")).hexdigest() == sha
    assert place.unfinished() == []


@pytest.mark.slow
@pytest.mark.parametrize("size", [3000, 6 * MiB])
def test_an_upload_told_to_overwrite_replaces_whole_or_in_parts(
    place: Place, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, size: int
) -> None:
    """``overwrite`` (publish's rule: it compared the object first): the object there is
    replaced by the verified bytes, marked, with the store's checksum; ``sent`` hears every byte;
    nothing is left unfinished."""
    monkeypatch.setattr(upload_module, "MULTIPART_THRESHOLD", MiB)
    monkeypatch.setattr(upload_module, "PART_MINIMUM", 5 * MiB)
    place.client.put_object(Bucket=place.bucket, Key=place.key("m/a.bin"), Body=b"theirs")
    path, sha = _file(tmp_path, "a.bin", size)
    told: list[int] = []
    done = place.writer().upload(
        place.uri("m/a.bin"),
        path,
        size=size,
        sha256=sha,
        root=ROOT,
        overwrite=True,
        sent=told.append,
    )
    assert done is True and sum(told) == size
    assert hashlib.sha256(place.body("m/a.bin")).hexdigest() == sha
    head = place.client.head_object(Bucket=place.bucket, Key=place.key("m/a.bin"))
    # mdl's mark, bound to the key written and the bytes
    said = mdl_metadata(place.uri("m/a.bin"), sha256=sha, size=size, side="")
    assert head["Metadata"] == said
    assert place.unfinished() == []


@pytest.mark.slow
def test_the_clock_is_the_endpoints_whichever_bucket_was_used(place: Place) -> None:
    """One clock per endpoint: ``now`` asks the same thing of the store before and after any
    bucket was used (not the bucket of the last URI parsed), and a bucket gone since does not
    matter."""
    with s3_proxy(place.endpoint) as proxy:
        writer = place.writer(proxy.endpoint)
        before = writer.now()
        asked_first = proxy.requests[-1][:2]
        assert writer.create(place.uri("lease"), b"x") is not None
        after = writer.now()
        asked_then = proxy.requests[-1][:2]
    assert asked_first == asked_then
    assert before - 1 <= after <= before + 60


@pytest.mark.slow
@pytest.mark.parametrize("size", [3000, 6 * MiB])
def test_a_changed_file_is_not_uploaded(
    place: Place, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, size: int
) -> None:
    monkeypatch.setattr(upload_module, "MULTIPART_THRESHOLD", MiB)
    monkeypatch.setattr(upload_module, "PART_MINIMUM", 5 * MiB)
    path, sha = _file(tmp_path, "a.bin", size)
    path.write_bytes(b"\0" + path.read_bytes()[1:])  # changed since it was verified
    with pytest.raises(IntegrityError, match="changed since it was verified") as caught:
        place.writer().upload(place.uri("a.bin"), path, size=size, sha256=sha, root=ROOT)
    assert caught.value.exit_code == 6
    assert place.writer().head(place.uri("a.bin")) is None
    assert place.unfinished() == []


@pytest.mark.slow
def test_a_failed_part_aborts_the_upload(
    moto: Place,
    s3: S3,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(upload_module, "MULTIPART_THRESHOLD", MiB)
    monkeypatch.setattr(upload_module, "PART_MINIMUM", 5 * MiB)
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")  # the 500 is final at once
    path, sha = _file(tmp_path, "big.bin", 11 * MiB)
    s3.cutter.fail_writes_after = len(s3.cutter.writes) + 2  # the start and one part
    with pytest.raises(NetworkError):
        moto.writer().upload(moto.uri("big.bin"), path, size=11 * MiB, sha256=sha, root=ROOT)
    s3.cutter.fail_writes_after = None
    assert moto.writer().head(moto.uri("big.bin")) is None
    assert moto.unfinished() == []


@pytest.mark.parametrize("size", [3000, 6 * MiB])
def test_publish_never_writes_a_file_that_is_not_its_verified_bytes(
    moto: Place,
    s3: S3,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    size: int,
) -> None:
    """publish goes through the one uploader: a file whose bytes are not the verified ones fails
    (exit 6) before any object is complete, its object never there even for a moment (no PUT of
    it, a multipart upload aborted), the other files of the batch uploaded."""
    from mdl.progress import NullProgress

    monkeypatch.setattr(upload_module, "MULTIPART_THRESHOLD", MiB)
    monkeypatch.setattr(upload_module, "PART_MINIMUM", 5 * MiB)
    good, good_sha = _file(tmp_path, "good.bin", 3000)
    bad, bad_sha = _file(tmp_path, "bad.bin", size)
    bad.write_bytes(b"\0" + bad.read_bytes()[1:])  # changed since it was verified
    bucket = Bucket(f"s3://{moto.bucket}/hub", endpoint=moto.endpoint, connections=2)
    files = [
        ReadyFile("m", "good.bin", good, 3000, good_sha, source="test"),
        ReadyFile("m", "bad.bin", bad, size, bad_sha, source="test"),
    ]
    outcomes = {o.path: o for o in bucket.send(files, progress=NullProgress())}
    assert outcomes["good.bin"].action == "uploaded"
    assert outcomes["bad.bin"].action == "failed" and outcomes["bad.bin"].exit_code == 6
    # objects by content (the published layout): the bad file's would be at its verified sha256
    assert outcomes["bad.bin"].dest == f"s3://{moto.bucket}/hub/m/{bad_sha}"
    complete = [w for w in s3.cutter.writes if w[1].endswith(f"/hub/m/{bad_sha}") and not w[2]]
    completed = [
        w for w in s3.cutter.writes if w[1].endswith(f"/{bad_sha}") and "uploadId=" in w[2]
    ]
    assert complete == [] and [w for w in completed if "partNumber" not in w[2]] == []
    body = moto.client.get_object(Bucket=moto.bucket, Key=f"hub/m/{good_sha}")["Body"].read()
    assert hashlib.sha256(body).hexdigest() == good_sha
    assert moto.client.list_multipart_uploads(Bucket=moto.bucket).get("Uploads", []) == []


@pytest.mark.slow
def test_listing(place: Place) -> None:
    writer = place.writer()
    for key, data in (("m/a", b"1"), ("m/b/c", b"22"), ("n/d", b"333")):
        assert writer.create(place.uri(key), data) is not None
    now = writer.now()
    listed = {item.uri: item for item in writer.listing(place.uri("m/"))}
    assert {uri: item.size for uri, item in listed.items()} == {
        place.uri("m/a"): 1,
        place.uri("m/b/c"): 2,
    }
    assert all(now - 60 <= item.modified <= now + 1 for item in listed.values())
    assert {item.uri for item in writer.listing(place.uri(""))} == {
        place.uri("m/a"),
        place.uri("m/b/c"),
        place.uri("n/d"),
    }
    assert list(writer.listing(place.uri("none/"))) == []


@pytest.mark.slow
def test_a_store_that_ignores_the_conditions(moto: Place) -> None:
    """What the lease's once-per-run probe detects: both of two creates succeed."""
    with s3_proxy(moto.endpoint) as proxy:
        proxy.strip_conditions = True
        writer = moto.writer(proxy.endpoint)
        assert writer.create(moto.uri("probe"), b"first") is not None
        assert writer.create(moto.uri("probe"), b"second") is not None
    assert moto.body("probe") == b"second"
    # the same store, asked directly, honours them
    assert moto.writer().create(moto.uri("probe"), b"third") is None


@pytest.mark.slow
def test_the_lease_probe_on_real_stores(place: Place) -> None:
    """Both servers honour If-None-Match and If-Match as the probe asks; stripped, they fail it."""
    assert honours_conditions(place.writer(), place.uri(".mdl-probe-1")) is True
    if place.server == "moto":  # SeaweedFS checks signatures: a stripped header breaks them
        with s3_proxy(place.endpoint) as proxy:
            proxy.strip_conditions = True
            assert (
                honours_conditions(place.writer(proxy.endpoint), place.uri(".mdl-probe-2")) is False
            )
    assert place.writer().head(place.uri(".mdl-probe-1")) is None
    assert place.writer().head(place.uri(".mdl-probe-2")) is None


@pytest.mark.slow
def test_a_conflict_is_tried_again(place: Place) -> None:
    waits: list[float] = []
    with s3_proxy(place.endpoint) as proxy:
        writer = place.writer(proxy.endpoint, sleep=waits.append)
        proxy.conflicts = 1
        made = writer.create(place.uri("lease"), b"mine")
        assert made is not None
        proxy.conflicts = 2
        assert writer.replace(place.uri("lease"), b"renewed", etag=made.etag) is not None
        conditional = [r for r in proxy.requests if r[2] and r[0] == "PUT"]
    assert len(conditional) == 5  # 1 + 1 tries, then 2 + 1
    assert waits == [0.1, 0.1, 0.2]
    assert place.body("lease") == b"renewed"


@pytest.mark.slow
def test_conflicts_that_last_are_a_network_error(place: Place) -> None:
    waits: list[float] = []
    with s3_proxy(place.endpoint) as proxy:
        proxy.conflicts = 100
        writer = place.writer(proxy.endpoint, sleep=waits.append)
        with pytest.raises(NetworkError, match="ConditionalRequestConflict") as caught:
            writer.create(place.uri("lease"), b"mine")
    assert caught.value.exit_code == 5
    assert len(waits) == conditional_module.CONFLICT_TRIES - 1
    assert place.writer().head(place.uri("lease")) is None


@pytest.mark.slow
def test_a_lost_reply_to_our_own_write(place: Place) -> None:
    """The store wrote it, the reply was lost, botocore tried again and got 412: the bytes say
    the object is ours."""
    with s3_proxy(place.endpoint) as proxy:
        writer = place.writer(proxy.endpoint)
        proxy.lose_replies = 1
        made = writer.create(place.uri("lease"), b"holder-1 take-7")
        assert made is not None
        assert [r[0] for r in proxy.requests if r[2]] == ["PUT", "PUT"]  # botocore tried again
        proxy.lose_replies = 1
        renewed = writer.replace(place.uri("lease"), b"holder-1 take-8", etag=made.etag)
        assert renewed is not None
        # another's bytes there: not ours
        place.client.put_object(Bucket=place.bucket, Key=place.key("other"), Body=b"holder-2")
        proxy.lose_replies = 1
        assert writer.create(place.uri("other"), b"holder-1") is None
    head = place.writer().head(place.uri("lease"))
    assert head is not None
    assert head.etag == renewed.etag


@pytest.mark.slow
def test_a_lost_reply_then_a_conflict_is_still_ours(place: Place) -> None:
    """The first try wrote and its reply was lost, botocore's retry met a 409, our own try after
    it got 412 (botocore tried it once): the 412 is our own object, not another's."""
    waits: list[float] = []
    with s3_proxy(place.endpoint) as proxy:
        writer = place.writer(proxy.endpoint, sleep=waits.append)
        proxy.lose_replies, proxy.conflicts = 1, 1
        made = writer.create(place.uri("lease"), b"holder-1 take-9")
        assert made is not None
        assert len([r for r in proxy.requests if r[2]]) == 3  # lost, 409, 412
    assert waits == [0.1]
    assert place.body("lease") == b"holder-1 take-9"
    head = place.writer().head(place.uri("lease"))
    assert head is not None and head.etag == made.etag


@pytest.mark.slow
def test_a_lease_write_to_a_store_that_hangs_fails_within_its_bound(
    moto: Place, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Lease-sized requests have a client of their own with a short read timeout and few tries:
    a renewal against a store that never answers fails (exit 5) instead of hanging for minutes."""
    monkeypatch.setattr(conditional_module, "SMALL_TIMEOUT", 0.5)
    with s3_proxy(moto.endpoint) as proxy:
        proxy.hang = True
        writer = moto.writer(proxy.endpoint)
        with pytest.raises(NetworkError) as caught:
            writer.create(moto.uri("lease"), b"holder-1")
        hung = [r for r in proxy.requests if r[2]]
    assert caught.value.exit_code == 5
    assert len(hung) == 1 + conditional_module.SMALL_RETRIES


@pytest.mark.slow
def test_a_lost_reply_to_a_completed_upload(
    place: Place, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The completion was applied, its reply lost, botocore tried again (moto: NoSuchUpload,
    SeaweedFS: 412): the object there is ours, whole, and nothing is left behind."""
    monkeypatch.setattr(upload_module, "MULTIPART_THRESHOLD", MiB)
    monkeypatch.setattr(upload_module, "PART_MINIMUM", 5 * MiB)
    path, sha = _file(tmp_path, "big.bin", 6 * MiB)
    with s3_proxy(place.endpoint) as proxy:
        proxy.lose_replies = 1  # the completion: the only conditional write of an upload
        writer = place.writer(proxy.endpoint)
        assert (
            writer.upload(place.uri("big.bin"), path, size=6 * MiB, sha256=sha, root=ROOT) is True
        )
        completions = [r for r in proxy.requests if r[2]]
    assert len(completions) == 2
    assert hashlib.sha256(place.body("big.bin")).hexdigest() == sha
    assert place.unfinished() == []
    assert not [r for r in caplog.records if r.levelname == "WARNING" and r.name == "mdl.s3"]


@pytest.mark.slow
def test_a_lost_reply_to_a_small_upload(place: Place, tmp_path: Path) -> None:
    path, sha = _file(tmp_path, "a.bin", 3000)
    with s3_proxy(place.endpoint) as proxy:
        proxy.lose_replies = 1
        writer = place.writer(proxy.endpoint)
        assert writer.upload(place.uri("a.bin"), path, size=3000, sha256=sha, root=ROOT) is True
        other, other_sha = _file(tmp_path, "b.bin", 3000, seed=b"other")
        proxy.lose_replies = 1  # applied? no: refused, and the bytes there are not these
        assert (
            writer.upload(place.uri("a.bin"), other, size=3000, sha256=other_sha, root=ROOT)
            is False
        )
        assert len([r for r in proxy.requests if r[2]]) == 4
    assert hashlib.sha256(place.body("a.bin")).hexdigest() == sha


@pytest.mark.slow
def test_delete_where_the_store_refuses_its_if_match(place: Place) -> None:
    """A store without DeleteObject If-Match: the version is compared by a HEAD first."""
    with s3_proxy(place.endpoint) as proxy:
        proxy.refuse_conditional_delete = True
        writer = place.writer(proxy.endpoint)
        first = writer.create(place.uri("lease"), b"one")
        assert first is not None
        second = writer.replace(place.uri("lease"), b"two", etag=first.etag)
        assert second is not None
        assert writer.delete(place.uri("lease"), etag=first.etag) is False
        assert writer.delete(place.uri("lease"), etag=second.etag) is True
        third = writer.create(place.uri("lease"), b"three")
        assert third is not None
        assert writer.delete(place.uri("lease"), etag=third.etag) is True
        refused = [r for r in proxy.requests if r[0] == "DELETE" and r[2]]
    assert len(refused) == 1  # refused once, never asked again: the plain delete after the HEAD
    assert place.writer().head(place.uri("lease")) is None


def test_a_lease_is_read_bounded_and_a_big_object_not_at_all(place: Place) -> None:
    """At most ``limit`` + 1 bytes of a small object; none of one whose Content-Length says it is
    bigger (its body is not read: memory stays small however big it is)."""
    writer = place.writer()
    place.client.put_object(Bucket=place.bucket, Key=place.key("small"), Body=b"x" * 10)
    place.client.put_object(Bucket=place.bucket, Key=place.key("big"), Body=b"y" * (1 << 20))
    small = writer.read(place.uri("small"), limit=10)
    assert small is not None and small[0] == b"x" * 10
    cut = writer.read(place.uri("small"), limit=4)
    assert cut is not None and cut[0] == b"" and cut[1].size == 10
    big = writer.read(place.uri("big"), limit=4096)
    assert big is not None and big[0] == b"" and big[1].size == 1 << 20


@pytest.mark.slow
def test_a_conflict_on_completing_starts_the_upload_again(
    place: Place, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """AWS: a 409 to CompleteMultipartUpload means starting the multipart upload again (the id
    may be spent): a new upload, its parts sent again, the first one aborted."""
    monkeypatch.setattr(upload_module, "MULTIPART_THRESHOLD", MiB)
    monkeypatch.setattr(upload_module, "PART_MINIMUM", 5 * MiB)
    path, sha = _file(tmp_path, "big.bin", 6 * MiB)
    with s3_proxy(place.endpoint) as proxy:
        proxy.conflicts = 1  # the completion: the only conditional write of an upload
        writer = place.writer(proxy.endpoint)
        assert (
            writer.upload(place.uri("big.bin"), path, size=6 * MiB, sha256=sha, root=ROOT) is True
        )
        starts = [r for r in proxy.requests if r[0] == "POST" and r[1].endswith("?uploads")]
        completions = [r for r in proxy.requests if r[2]]
    assert len(starts) == 2 and len(completions) == 2
    assert hashlib.sha256(place.body("big.bin")).hexdigest() == sha
    assert place.unfinished() == []


def test_no_such_upload_is_ours_only_when_the_object_says_our_sha256(
    place: Place, tmp_path: Path
) -> None:
    """A NoSuchUpload on completing is our success only if the object at the key carries our
    mark for our SHA-256; another's object there is not ours (the error stands), nor one that
    only says our SHA-256 in its metadata (anyone can write that)."""
    if place.server == "moto":
        pytest.skip("moto 5.2 answers 500 (a KeyError), not NoSuchUpload, for an unknown upload id")
    from mdl.buckets.s3 import S3Object
    from mdl.errors import NotFoundError

    writer = place.writer()
    obj = S3Object(place.bucket, place.key("k.bin"))
    with pytest.raises(NotFoundError):  # nothing there
        S3Upload(writer, obj, Path(), 0, "a")._complete(
            "no-such-upload", [{"PartNumber": 1, "ETag": '"0"'}]
        )
    place.client.put_object(
        Bucket=place.bucket, Key=obj.key, Body=b"theirs", Metadata={"sha256": "b" * 64}
    )
    with pytest.raises(NotFoundError):  # another's object
        S3Upload(writer, obj, Path(), 0, "a")._complete(
            "no-such-upload", [{"PartNumber": 1, "ETag": '"0"'}]
        )
    with pytest.raises(NotFoundError):  # our SHA-256 said, but no mark of ours
        S3Upload(writer, obj, Path(), 0, "b" * 64)._complete(
            "no-such-upload", [{"PartNumber": 1, "ETag": '"0"'}]
        )
    ours = mdl_metadata(obj.uri, sha256="b" * 64, size=6, side="")
    place.client.put_object(Bucket=place.bucket, Key=obj.key, Body=b"theirs", Metadata=ours)
    assert S3Upload(writer, obj, Path(), 6, "b" * 64)._complete(
        "no-such-upload", [{"PartNumber": 1, "ETag": '"0"'}]
    )


@pytest.mark.slow
def test_numbered_leases_on_a_real_store(place: Place) -> None:
    """The lease scheme against a real S3 server: the first generation created once, renewed
    with its token, released (kept, marked), the next take creating the next number (none
    removed: a generation is found by walking the run from 1 by name)."""
    from mdl.buckets.lease import look, take
    from mdl.buckets.names import Generation

    writer, prefix = place.writer(), place.uri(".mdl/leases/m/w.bin/")
    lease = Generation.of(place.uri(".mdl/"), place.uri("m/w.bin"))
    first = take(writer, lease, holder="a")
    assert first is not None and first.number == 1
    assert take(writer, lease, holder="b") is None
    first.renew()
    assert look(writer, lease).token == first.token
    first.release()
    assert look(writer, lease).state == "released"
    second = take(writer, lease, holder="b")
    assert second is not None and second.number == 2
    assert [item.uri for item in writer.listing(prefix)] == [prefix + "1", prefix + "2"]
    second.release()
    third = take(writer, lease, holder="c")
    assert third is not None and third.number == 3
    assert [item.uri for item in writer.listing(prefix)] == [prefix + str(n) for n in (1, 2, 3)]


# --- assembly: a file's published parts made into its object by the store (issue 61) ---


def _published(
    place: Place, name: str, size: int, tmp_path: Path, part: int = 5 * MiB
) -> tuple[Path, str, list[str]]:
    """A verified local file and its parts published as a fill leader publishes them: plain
    objects under mdl's namespace, ``part`` bytes each but the last, made by ``create``."""
    path, sha = _file(tmp_path, name, size)
    data = path.read_bytes()
    writer = place.writer()
    uris = []
    for number, start in enumerate(range(0, size, part), 1):
        uri = place.uri(f".mdl/parts/m/{name}/{sha}-{part}/{number:05d}")
        assert writer.create(uri, data[start : start + part]) is not None
        uris.append(uri)
    return path, sha, uris


def test_a_big_create_carries_its_sha256(place: Place) -> None:
    """A published part (over ``SMALL_BODY``) goes up with its SHA-256, which the store keeps: a
    store that checks refuses altered bytes; created once only."""
    data = os.urandom(2 * MiB)
    writer = place.writer()
    assert writer.create(place.uri("p/00001"), data) is not None
    assert writer.create(place.uri("p/00001"), b"other" * MiB) is None
    head = place.client.head_object(
        Bucket=place.bucket, Key=place.key("p/00001"), ChecksumMode="ENABLED"
    )
    assert sha256_of_head(head) == hashlib.sha256(data).hexdigest()
    assert place.body("p/00001") == data


def test_assemble_from_published_parts(
    place: Place, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three published parts (5 + 5 + 1 MiB and 7 bytes) made into the object by the store: its
    bytes, mdl's mark, a checksum ``holds`` takes as these bytes, no upload left unfinished, and
    no byte of the file sent again."""
    monkeypatch.setattr(partsize, "PART", 5 * MiB)
    size = 11 * MiB + 7
    path, sha, parts = _published(place, "big.bin", size, tmp_path)
    assert len(parts) == 3
    with s3_proxy(place.endpoint) as proxy:
        writer = place.writer(proxy.endpoint)
        made = writer.assemble(
            place.uri("m/big.bin"), parts, path, size=size, sha256=sha, root=ROOT
        )
        requests = list(proxy.requests)
    writer = place.writer()
    assert made is True
    assert [r[0] for r in requests].count("PUT") == 3  # the copies: no body sent
    assert place.body("m/big.bin") == path.read_bytes()
    head = place.client.head_object(Bucket=place.bucket, Key=place.key("m/big.bin"))
    # mdl's mark, bound to the key written and the bytes
    said = mdl_metadata(place.uri("m/big.bin"), sha256=sha, size=size, side="")
    assert head["Metadata"] == said
    assert str(head["ETag"]).strip('"').endswith("-3")
    assert writer.holds(place.uri("m/big.bin"), path, size=size, sha256=sha)
    assert place.unfinished() == []
    # once there, never replaced: a second assembly says so and leaves nothing behind
    again = writer.assemble(place.uri("m/big.bin"), parts, path, size=size, sha256=sha, root=ROOT)
    assert again is False
    assert place.unfinished() == []


def test_assemble_cuts_the_file_at_the_part_size_the_names_say(
    moto: Place, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Parts of 6 MiB (a lock's part size, not the 5 MiB mdl would cut the file at now): the
    object is made of them; names of two part sizes make none (the caller uploads)."""
    monkeypatch.setattr(partsize, "PART", 5 * MiB)
    size = 13 * MiB + 7
    path, sha, parts = _published(moto, "six.bin", size, tmp_path, part=6 * MiB)
    writer, uri = moto.writer(), moto.uri("m/six.bin")
    assert len(parts) == 3 and partsize.part_size(size) == 5 * MiB
    mixed = [*parts[:2], parts[2].replace(f"-{6 * MiB}/", f"-{5 * MiB}/")]
    assert writer.assemble(uri, mixed, path, size=size, sha256=sha, root=ROOT) is None
    assert writer.assemble(uri, parts, path, size=size, sha256=sha, root=ROOT) is True
    assert moto.body("m/six.bin") == path.read_bytes() and moto.unfinished() == []


def test_assemble_never_replaces_an_object(
    place: Place, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(partsize, "PART", 5 * MiB)
    size = 6 * MiB
    path, sha, parts = _published(place, "a.bin", size, tmp_path)
    place.client.put_object(Bucket=place.bucket, Key=place.key("m/a.bin"), Body=b"theirs")
    writer = place.writer()
    assert (
        writer.assemble(place.uri("m/a.bin"), parts, path, size=size, sha256=sha, root=ROOT)
        is False
    )
    assert place.body("m/a.bin") == b"theirs"
    assert place.unfinished() == []


def test_a_part_that_is_not_the_files_bytes_is_never_assembled(
    place: Place, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A part object another writer (or a lying store) made of other bytes, of the right size: the
    copy's proof differs from the local range, nothing is made, nothing is left unfinished."""
    monkeypatch.setattr(partsize, "PART", 5 * MiB)
    size = 11 * MiB
    path, sha, parts = _published(place, "big.bin", size, tmp_path)
    key = parts[1].removeprefix(f"s3://{place.bucket}/")
    wrong = bytearray(place.client.get_object(Bucket=place.bucket, Key=key)["Body"].read())
    wrong[MiB] ^= 1
    place.client.put_object(Bucket=place.bucket, Key=key, Body=bytes(wrong))
    made = place.writer().assemble(
        place.uri("m/big.bin"), parts, path, size=size, sha256=sha, root=ROOT
    )
    assert made is None
    assert place.writer().head(place.uri("m/big.bin")) is None
    assert place.unfinished() == []
    assert any("is not part 2 of the verified file" in r.getMessage() for r in caplog.records)


def test_a_store_without_server_side_copy(
    place: Place, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """UploadPartCopy answered 501 NotImplemented: None (the caller uploads), aborted."""
    monkeypatch.setattr(partsize, "PART", 5 * MiB)
    size = 6 * MiB
    path, sha, parts = _published(place, "a.bin", size, tmp_path)
    with s3_proxy(place.endpoint) as proxy:
        proxy.refuse_copies = True
        made = place.writer(proxy.endpoint).assemble(
            place.uri("m/a.bin"), parts, path, size=size, sha256=sha, root=ROOT
        )
    assert made is None
    assert place.writer().head(place.uri("m/a.bin")) is None
    assert place.unfinished() == []


def test_assemble_checks_the_local_file_and_the_parts_named(
    moto: Place, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The local file changed since it was verified: exit 6, nothing made or left. Parts that
    cannot be the file's layout (too few, another bucket): None before any request."""
    monkeypatch.setattr(partsize, "PART", 5 * MiB)
    size = 6 * MiB
    path, sha, parts = _published(moto, "a.bin", size, tmp_path)
    writer, uri = moto.writer(), moto.uri("m/a.bin")
    assert writer.assemble(uri, parts[:1], path, size=size, sha256=sha, root=ROOT) is None
    elsewhere = [parts[0], parts[1].replace("s3://mirror/", "s3://other/")]
    assert writer.assemble(uri, elsewhere, path, size=size, sha256=sha, root=ROOT) is None
    assert moto.unfinished() == []
    path.write_bytes(b"\0" + path.read_bytes()[1:])
    with pytest.raises(IntegrityError, match="changed since it was verified") as caught:
        writer.assemble(uri, parts, path, size=size, sha256=sha, root=ROOT)
    assert caught.value.exit_code == 6
    assert writer.head(uri) is None
    assert moto.unfinished() == []
