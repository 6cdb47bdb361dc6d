"""--fill-mirror in parts (issue 61), against a real shared folder as the fleet's mirror and the Hub
stand-in as the origin: the lease's holder publishes parts as its fetch lands them, a waiting
machine reads them while the holder is still fetching, a taker of a dead holder's lease continues
from its parts, and a wrong part is caught by the whole file's hash (nothing wrong installed, and
the next holder leaves nothing wrong in the mirror)."""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from runfixtures import HANG, wait_for
from s3proxy import s3_proxy
from s3server import S3, s3, s3_server  # noqa: F401
from servers import Fault, HubServer, hold_after, make_data

import mdl.download._fill as fill_module
from mdl import partsize
from mdl.buckets.lease import lease_body
from mdl.buckets.names import Generation, Part, namespace
from mdl.buckets.protocol import Writer
from mdl.buckets.registry import STORES
from mdl.catalog.load import parse_catalog
from mdl.catalog.settings import build_settings
from mdl.catalog.specs import CatalogSettings
from mdl.cli.summary import summary_line
from mdl.download.puller import pull_models
from mdl.download.session import TERM_VARIABLE
from mdl.progress import Progress
from mdl.report import RunReport
from mdl.setting import Overrides

PART = 1 << 20  # the tests' part size (MiB): 40 parts
# 40 MiB + 3 bytes: fetched in parallel ranges (a record saved as they land), a short last part
WEIGHTS = make_data(40 * PART + 3, seed=61)
SHA = hashlib.sha256(WEIGHTS).hexdigest()
COUNT = 41  # parts: 40 whole, then 3 bytes
CATALOG = """
[models.tiny]
repo = "org/tiny"
include = ["*.safetensors"]
"""


@pytest.fixture(autouse=True)
def small_parts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(partsize, "PART", PART)


@pytest.fixture
def tiny(hub: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> HubServer:
    hub.add_repo("org/tiny", {"model.safetensors": WEIGHTS})
    monkeypatch.setenv("MDL_LOG_FILE", str(tmp_path / "mdl.log"))
    return hub


@pytest.fixture
def root(tmp_path: Path) -> Path:
    folder = tmp_path / "shared"
    folder.mkdir()
    return folder


def pull(hub: HubServer, dest: Path, root: Path, env: dict[str, str] | None = None) -> RunReport:
    environ = {"HF_ENDPOINT": hub.url, **(env or {})}
    catalog = CatalogSettings(mirrors=(f"file://{root}/{{model}}/{{path}}",))
    settings = build_settings(
        Overrides(fill_mirror=True), environ=environ, dest=dest, catalog=catalog
    )
    return pull_models(parse_catalog(CATALOG).models, settings, progress=Progress())


def in_thread(
    hub: HubServer, dest: Path, root: Path, env: dict[str, str] | None = None
) -> tuple[threading.Thread, list[RunReport]]:
    reports: list[RunReport] = []
    thread = threading.Thread(target=lambda: reports.append(pull(hub, dest, root, env)))
    thread.start()
    return thread, reports


def writer() -> Writer:
    return STORES["file"].writer(endpoint=None, secrets=None)


def object_uri(root: Path) -> str:
    return f"file://{root}/tiny/model.safetensors"


HELD = "ab" * 16  # the token of the leases the tests write: their holder's parts go under it


def parts_of(root: Path) -> tuple[str, int]:
    ns = namespace(f"file://{root}/{{model}}/{{path}}")
    assert ns is not None
    first = Part.of(ns, object_uri(root), pin=SHA, size=len(WEIGHTS), token=HELD)
    return first.prefix, first.size


def part_files(root: Path) -> list[Path]:
    return sorted(p for p in (root / ".mdl" / "parts").rglob("*") if p.is_file())


def publish(root: Path, numbers: range, *, wrong: int | None = None) -> None:
    """Parts of the weights published as a holder would (``wrong``: that one's bytes flipped)."""
    prefix, part = parts_of(root)
    for n in numbers:
        data = WEIGHTS[(n - 1) * part : n * part]
        if n == wrong:
            data = bytes([data[0] ^ 1]) + data[1:]
        assert writer().create(f"{prefix}{n:05d}", data) is not None


def dead_holder(root: Path, *, aged: bool) -> None:
    """A lease another machine took and never renews (killed); ``aged``: an hour ago (lapsed by
    the folder's clock), else now (it lapses within the pull's 1 s term)."""
    ns = namespace(f"file://{root}/{{model}}/{{path}}")
    assert ns is not None
    first = Generation.of(ns, object_uri(root)).uri
    assert writer().create(first, lease_body("dead:1:x", HELD)) is not None
    if aged:
        an_hour_ago = time.time() - 3600
        os.utime(root / first.removeprefix("file://"), (an_hour_ago, an_hour_ago))


def cdn_bytes(hub: HubServer) -> int:
    return hub.cdn.log.body_bytes()


def log_has(caplog: pytest.LogCaptureFixture, text: str) -> bool:
    return any(text in r.getMessage() for r in list(caplog.records))


@pytest.mark.slow
def test_a_follower_streams_the_parts_while_the_holder_still_fetches(
    tiny: HubServer, root: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The holder's origin stalls after 3 MiB of each range until the follower has read parts:
    those parts were published beside the fetch and streamed before the fetch could end."""
    caplog.set_level(logging.INFO, logger="mdl.pull")
    go_on = threading.Event()
    # the holder fetches half parts in order: the first 16 answers pass, every later one stalls
    tiny.cdn.faults.add(Fault.stall(until=go_on, resume=True, times=None, skip=16))
    leader, led = in_thread(tiny, tmp_path / "a", root)
    try:
        deadline = time.monotonic() + HANG
        while not part_files(root) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert part_files(root), "no part was published while the fetch was held"
        follower, followed = in_thread(tiny, tmp_path / "b", root)
        while not log_has(caplog, "parts another machine published"):
            assert time.monotonic() < deadline, "the follower read no part"
            time.sleep(0.05)
        assert not (root / "tiny" / "model.safetensors").exists()  # the holder still fetches
    finally:
        go_on.set()
        leader.join(HANG)
    follower.join(HANG)
    (first,), (second,) = led, followed
    assert first.exit_code == 0 and second.exit_code == 0, (first.files, second.files)
    for dest in ("a", "b"):
        assert (tmp_path / dest / "tiny" / "model.safetensors").read_bytes() == WEIGHTS
    filled, streamed = first.files[0], second.files[0]
    assert filled.fill == "filled" and filled.published >= 3 * PART, filled
    assert streamed.fill == "streamed" and streamed.streamed >= 3 * PART, streamed
    assert streamed.to_json()["streamed"] == streamed.streamed
    assert "1 streamed (" in summary_line(second.files, verb="pulled", seconds=1)
    assert "published beside the fetch" in summary_line(first.files, verb="pulled", seconds=1)
    # the CDN sent the file once, to the holder; the mirror holds it and no part is left
    assert cdn_bytes(tiny) == len(WEIGHTS)
    assert (root / "tiny" / "model.safetensors").read_bytes() == WEIGHTS
    assert part_files(root) == []


@pytest.mark.parametrize(("published", "aged"), [(1, True), (COUNT, True), (17, False)])
def test_a_taker_continues_from_the_parts_a_dead_holder_published(
    tiny: HubServer, root: Path, tmp_path: Path, published: int, aged: bool
) -> None:
    """Found lapsed at once, or lapsing while this machine reads its parts: they are kept, and
    only the tail comes from the origin."""
    dead_holder(root, aged=aged)
    publish(root, range(1, published + 1))
    report = pull(tiny, tmp_path / "a", root, env={TERM_VARIABLE: "1"})
    assert report.exit_code == 0, report.files
    (outcome,) = report.files
    assert (tmp_path / "a" / "tiny" / "model.safetensors").read_bytes() == WEIGHTS
    assert outcome.fill == "filled" and outcome.streamed == min(published * PART, len(WEIGHTS)), (
        outcome
    )
    # only the unpublished tail came from the origin
    assert cdn_bytes(tiny) == len(WEIGHTS) - outcome.streamed
    assert (root / "tiny" / "model.safetensors").read_bytes() == WEIGHTS
    assert part_files(root) == []


def test_a_wrong_part_is_caught_nothing_wrong_is_installed_and_the_next_holder_cleans_it(
    tiny: HubServer, root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a holder (a lying store, another writer) that published every part, one of them wrong
    ns = namespace(f"file://{root}/{{model}}/{{path}}")
    assert ns is not None
    prefix = Generation.of(ns, object_uri(root)).uri.removesuffix("1")
    assert writer().create(f"{prefix}1", lease_body("liar:1:x", HELD)) is not None
    publish(root, range(1, COUNT + 1), wrong=7)
    real_wait = fill_module.wait_for
    waits: list[str] = []

    def wait(*args: Any, **kwargs: Any) -> Any:
        # the parts failed and no object is there: the live holder is waited on again (for its
        # object), never the origin at once; the liar releases its lease meanwhile
        waits.append(args[1])
        if len(waits) == 2:
            made = writer().create(f"{prefix}2", lease_body("liar:1:x", HELD, released=True))
            assert made is not None
        return real_wait(*args, **kwargs)

    monkeypatch.setattr(fill_module, "wait_for", wait)
    report = pull(tiny, tmp_path / "a", root, env={TERM_VARIABLE: "3600"})
    assert report.exit_code == 0, report.files
    (outcome,) = report.files
    assert (tmp_path / "a" / "tiny" / "model.safetensors").read_bytes() == WEIGHTS
    assert any("mismatch" in w for w in outcome.warnings), outcome.warnings
    # the lease released, this machine filled the mirror (its wrong parts never reused), and no
    # wrong part stays behind
    assert len(waits) == 2 and outcome.fill == "filled", (waits, outcome)
    assert cdn_bytes(tiny) == len(WEIGHTS)
    assert (root / "tiny" / "model.safetensors").read_bytes() == WEIGHTS
    assert part_files(root) == []


def test_a_fill_with_parts_alone_publishes_them_then_leaves_none(
    tiny: HubServer, root: Path, tmp_path: Path
) -> None:
    report = pull(tiny, tmp_path / "a", root)
    assert report.exit_code == 0, report.files
    assert report.files[0].fill == "filled"
    assert cdn_bytes(tiny) == len(WEIGHTS)
    assert (root / "tiny" / "model.safetensors").read_bytes() == WEIGHTS
    assert part_files(root) == []


# == an S3 mirror (moto): the object made of the parts by the store ==========================

S3_TEMPLATE = "s3://fleet/hub/{model}/{path}"
S3_OBJECT = "s3://fleet/hub/tiny/model.safetensors"
S3_PART = 5 * PART  # S3 copies parts of at least 5 MiB (but the last): 4 parts
# a smaller file than the folder tests' (moto is slow): 3 whole parts and 3 bytes
SMALL = make_data(3 * S3_PART + 3, seed=62)
SMALL_SHA = hashlib.sha256(SMALL).hexdigest()


@pytest.fixture
def bucket(s3: S3, hub: HubServer, monkeypatch: pytest.MonkeyPatch) -> Any:  # noqa: F811
    monkeypatch.setattr(partsize, "PART", S3_PART)
    hub.add_repo("org/tiny", {"model.safetensors": SMALL})
    client = s3.client()
    client.create_bucket(Bucket="fleet")
    return client


def s3_pull(
    hub: HubServer,
    dest: Path,
    *,
    endpoint: str | None = None,
    env: dict[str, str] | None = None,
    connections: int | None = None,
) -> RunReport:
    environ = {"HF_ENDPOINT": hub.url, **(env or {})}
    catalog = CatalogSettings(
        mirrors=(S3_TEMPLATE,), mirror_endpoints=((S3_TEMPLATE, endpoint),) if endpoint else ()
    )
    settings = build_settings(
        Overrides(fill_mirror=True, connections=connections),
        environ=environ,
        dest=dest,
        catalog=catalog,
    )
    return pull_models(parse_catalog(CATALOG).models, settings, progress=Progress())


def s3_parts(client: Any) -> list[str]:
    listed = client.list_objects_v2(Bucket="fleet", Prefix="hub/.mdl/parts/").get("Contents", [])
    return [o["Key"] for o in listed]


def s3_object(client: Any) -> tuple[bytes, str]:
    found = client.get_object(Bucket="fleet", Key="hub/tiny/model.safetensors")
    return found["Body"].read(), found["ETag"]


@pytest.mark.slow
def test_an_s3_mirror_is_made_of_the_parts_by_the_store(
    hub: HubServer, bucket: Any, tmp_path: Path
) -> None:
    report = s3_pull(hub, tmp_path / "a")
    assert report.exit_code == 0, report.files
    (outcome,) = report.files
    assert outcome.fill == "filled" and outcome.warnings == (), outcome
    data, etag = s3_object(bucket)
    # the store's multipart object of the 9 published parts, not a second upload (16 MiB parts)
    assert data == SMALL and etag.strip('"').endswith("-4"), etag
    assert s3_parts(bucket) == []
    assert bucket.list_multipart_uploads(Bucket="fleet").get("Uploads", []) == []
    assert cdn_bytes(hub) == len(SMALL)


@pytest.mark.slow
def test_an_s3_holder_publishes_a_part_while_the_origin_still_holds_its_last_bytes(
    hub: HubServer, bucket: Any, tmp_path: Path
) -> None:
    """Two ranges, each held by the origin after 6 MiB: the first part (5 MiB) is whole on disk,
    and the store shows it while the fetch still waits on the origin; the object is made of the
    parts once the origin sends the rest."""
    go_on = hold_after(hub.cdn, 6 * PART)
    reports: list[RunReport] = []
    holder = threading.Thread(
        target=lambda: reports.append(s3_pull(hub, tmp_path / "a", connections=2))
    )
    holder.start()
    try:
        wait_for(lambda: any(k.endswith("/00001") for k in s3_parts(bucket)), what="part 1")
        assert cdn_bytes(hub) < len(SMALL), "the origin had sent the whole file"
        assert bucket.list_objects_v2(Bucket="fleet", Prefix="hub/tiny/").get("KeyCount") == 0
    finally:
        go_on.set()
        holder.join(HANG)
    (report,) = reports
    assert report.exit_code == 0, report.files
    (outcome,) = report.files
    assert outcome.fill == "filled" and outcome.published >= S3_PART, outcome
    data, etag = s3_object(bucket)
    assert data == SMALL and etag.strip('"').endswith("-4"), etag
    assert s3_parts(bucket) == []
    assert cdn_bytes(hub) == len(SMALL)


@pytest.mark.slow
def test_an_s3_store_without_server_side_copy_gets_the_file_uploaded(
    hub: HubServer,
    s3: S3,  # noqa: F811 (the fixture)
    bucket: Any,
    tmp_path: Path,
) -> None:
    with s3_proxy(s3.endpoint) as proxy:
        proxy.refuse_copies = True
        report = s3_pull(hub, tmp_path / "a", endpoint=proxy.endpoint)
    assert report.exit_code == 0, report.files
    assert report.files[0].fill == "filled", report.files
    data, etag = s3_object(bucket)
    assert data == SMALL and not etag.strip('"').endswith("-4"), etag
    assert s3_parts(bucket) == []
    assert bucket.list_multipart_uploads(Bucket="fleet").get("Uploads", []) == []


@pytest.mark.slow
def test_an_s3_taker_continues_from_a_dead_holders_parts_and_a_wrong_one_never_stays(
    hub: HubServer, bucket: Any, tmp_path: Path
) -> None:
    """A holder killed after 2 of 4 parts, one of them planted wrong by another writer: the taker
    keeps the parts, its hash catches the wrong one (from zero, once), the store's copy of it is
    proved wrong, and the object is uploaded whole; no part stays."""
    s3w = STORES["s3"].writer(endpoint=None, secrets=None)
    lease = "s3://fleet/hub/.mdl/leases/tiny/model.safetensors/1"
    assert s3w.create(lease, lease_body("dead:1:x", HELD)) is not None
    prefix = f"s3://fleet/hub/.mdl/parts/tiny/model.safetensors/{SMALL_SHA}-{S3_PART}/{HELD}/"
    for n in range(1, 3):
        data = SMALL[(n - 1) * S3_PART : n * S3_PART]
        assert s3w.create(f"{prefix}{n:05d}", data if n != 2 else data[::-1]) is not None

    def lapsed() -> bool:
        seen = s3w.head(lease)
        return seen is not None and seen.now - seen.modified > 1

    wait_for(lapsed, what="the lease lapsed by the store's clock")
    report = s3_pull(hub, tmp_path / "a", env={TERM_VARIABLE: "1"})
    assert report.exit_code == 0, report.files
    assert (tmp_path / "a" / "tiny" / "model.safetensors").read_bytes() == SMALL
    assert s3_object(bucket)[0] == SMALL
    assert s3_parts(bucket) == []
    assert bucket.list_multipart_uploads(Bucket="fleet").get("Uploads", []) == []


@pytest.mark.slow
def test_an_s3_taker_of_right_parts_fetches_only_the_tail(
    hub: HubServer, bucket: Any, tmp_path: Path
) -> None:
    s3w = STORES["s3"].writer(endpoint=None, secrets=None)
    lease = "s3://fleet/hub/.mdl/leases/tiny/model.safetensors/1"
    assert s3w.create(lease, lease_body("dead:1:x", HELD)) is not None
    prefix = f"s3://fleet/hub/.mdl/parts/tiny/model.safetensors/{SMALL_SHA}-{S3_PART}/{HELD}/"
    for n in range(1, 3):
        assert s3w.create(f"{prefix}{n:05d}", SMALL[(n - 1) * S3_PART : n * S3_PART])

    def lapsed() -> bool:
        seen = s3w.head(lease)
        return seen is not None and seen.now - seen.modified > 1

    wait_for(lapsed, what="the lease lapsed by the store's clock")
    report = s3_pull(hub, tmp_path / "a", env={TERM_VARIABLE: "1"})
    assert report.exit_code == 0, report.files
    (outcome,) = report.files
    assert outcome.fill == "filled" and outcome.streamed == 2 * S3_PART, outcome
    assert cdn_bytes(hub) == len(SMALL) - 2 * S3_PART
    data, etag = s3_object(bucket)
    assert data == SMALL and etag.strip('"').endswith("-4"), etag
    assert s3_parts(bucket) == []
