"""``mdl serve --pull``: a loader reads while mdl fetches, and only ever verified bytes. A read of
bytes still on their way waits (and answers 503 past --wait, never a byte); a corrupt byte from
the origin is never served and the file is fetched again; the file a loader waits on is fetched
next; kill -9 then a restart fetches only what was missing."""

from __future__ import annotations

import contextlib
import hashlib
import json
import signal
import threading
from pathlib import Path

import pytest
from botocore.exceptions import ClientError
from runfixtures import wait_for
from serveproc import ServeProcess, isolated, model_catalog
from servers import CdnServer, Fault, make_data

from mdl.endpoint.serving import REFETCHES

pytestmark = pytest.mark.slow


def _claimed(folder: Path) -> int:
    """The bytes the resume records under ``folder``'s destination say are saved."""
    records = (folder / "models" / ".mdl" / "partial").glob("*.part.json")
    total = 0
    for record in records:
        with contextlib.suppress(OSError, ValueError):  # replaced as we read: the next look counts
            total += sum(done for _, _, done in json.loads(record.read_text())["pieces"])
    return total


def _logged(folder: Path, text: str) -> bool:
    log = folder / "mdl.log"
    return log.exists() and text in log.read_text(errors="replace")


def test_a_read_of_bytes_not_verified_waits_and_never_gets_a_byte_before(tmp_path: Path) -> None:
    data = make_data(6 << 20, seed=3)
    held = threading.Event()
    with CdnServer() as cdn:
        url = cdn.add_file("/w.bin", data)
        # the origin sends half, then holds the rest until the test lets it go
        cdn.faults.add(Fault.stall(after_bytes=3 << 20, until=held, resume=True, path_prefix="/w"))
        catalog = model_catalog(tmp_path, {"w.bin": (url, data)})
        env = isolated(tmp_path, catalog)
        with ServeProcess(tmp_path, "m", "--pull", "--wait", "1", "--jobs", "1", env=env) as serve:
            # each refusal waits out --wait 1 once, not again on a retry
            s3 = serve.ready().boto3(attempts=1, read_timeout=120)
            wait_for(lambda: cdn.log.body_bytes(path_prefix="/w") >= 3 << 20, what="half sent")
            for asked in ("bytes=0-0", "bytes=0-1048575", None):
                with pytest.raises(ClientError) as refused:
                    extra = {"Range": asked} if asked else {}
                    s3.get_object(Bucket="mdl", Key="m/w.bin", **extra)
                assert refused.value.response["Error"]["Code"] == "ServiceUnavailable"
                assert "not verified yet" in refused.value.response["Error"]["Message"]
            got: list[bytes] = []
            # a second endpoint on the same destination, with a longer wait: a loader that asks
            # now gets the bytes once they verified (another process's pull brings them)
            with ServeProcess(tmp_path / "second", "m", "--wait", "120", env=env) as reading:
                s3_wait = reading.ready().boto3(read_timeout=120)
                reader = threading.Thread(
                    target=lambda: got.append(
                        s3_wait.get_object(Bucket="mdl", Key="m/w.bin", Range="bytes=5-")[
                            "Body"
                        ].read()
                    )
                )
                reader.start()
                wait_for(lambda: _logged(tmp_path, "a loader waits for m/w.bin"), what="a wait")
                assert got == []
                held.set()
                reader.join(timeout=120)
                assert got == [data[5:]]
                assert reading.stop() == 0
            assert serve.pulled().stop() == 0, serve.stderr


def test_a_corrupt_byte_from_the_origin_is_never_served_and_the_file_is_fetched_again(
    tmp_path: Path,
) -> None:
    good = make_data(2 << 20, seed=4)
    bad = bytearray(good)
    bad[12345] ^= 0xFF
    with CdnServer() as cdn:
        url = cdn.add_file("/w.bin", bytes(bad))
        # the third GET (the second fetch again) gets the right bytes
        cdn.faults.add(
            Fault.call(lambda: cdn.add_file("/w.bin", good), path_prefix="/w", skip=2,
                       methods=frozenset({"GET"}))
        )  # fmt: skip
        catalog = model_catalog(tmp_path, {"w.bin": (url, good)})
        env = isolated(tmp_path, catalog)
        with ServeProcess(tmp_path, "m", "--pull", "--wait", "120", env=env) as serve:
            s3 = serve.ready().boto3(read_timeout=130)
            body = s3.get_object(Bucket="mdl", Key="m/w.bin", ChecksumMode="ENABLED")["Body"]
            assert body.read() == good
            assert len(cdn.log.records(method="GET", path_prefix="/w")) >= 3
            assert serve.pulled().stop() == 0, serve.stderr
    assert (
        "fetching again what did not verify: m" in serve.stderr + (tmp_path / "mdl.log").read_text()
    )


def test_bytes_that_never_verify_are_an_s3_error_that_says_why(tmp_path: Path) -> None:
    good = make_data(1 << 20, seed=5)
    with CdnServer() as cdn:
        url = cdn.add_file("/w.bin", good[:-1] + b"\x00")
        catalog = model_catalog(tmp_path, {"w.bin": (url, good)})
        env = isolated(tmp_path, catalog)
        with ServeProcess(tmp_path, "m", "--pull", "--wait", "120", env=env) as serve:
            s3 = serve.ready().boto3(read_timeout=130)
            with pytest.raises(ClientError) as refused:
                s3.get_object(Bucket="mdl", Key="m/w.bin", Range="bytes=0-0")
            error = refused.value.response["Error"]
            assert error["Code"] == "InvalidObjectState"
            assert "never verified" in error["Message"] and "sha256" in error["Message"]
            # the first pull, then REFETCHES more
            assert len(cdn.log.records(method="GET", path_prefix="/w")) == 1 + REFETCHES
            assert serve.pulled().stop() == 6  # the pull's integrity failure is the run's exit code
    assert not (tmp_path / "models" / "m" / "w.bin").exists()


def test_the_file_a_loader_waits_on_is_fetched_next(tmp_path: Path) -> None:
    files = {f"shard-{n}.bin": make_data(1 << 20, seed=n) for n in (1, 2, 10, 11)}
    held = threading.Event()
    with CdnServer() as cdn:
        urls = {name: cdn.add_file(f"/{name}", data) for name, data in files.items()}
        cdn.faults.add(
            Fault.stall(after_bytes=1000, until=held, resume=True, path_prefix="/shard-1.")
        )
        catalog = model_catalog(tmp_path, {n: (urls[n], d) for n, d in files.items()})
        env = isolated(tmp_path, catalog)
        with ServeProcess(tmp_path, "m", "--pull", "--jobs", "1", env=env) as serve:
            s3 = serve.ready().boto3(read_timeout=120)
            wait_for(lambda: cdn.log.records(path_prefix="/shard-1."), what="shard 1 asked for")
            got: list[bytes] = []
            reader = threading.Thread(
                target=lambda: got.append(
                    s3.get_object(Bucket="mdl", Key="m/shard-11.bin")["Body"].read()
                )
            )
            reader.start()
            wait_for(lambda: _logged(tmp_path, "a loader waits for m/shard-11.bin"), what="a wait")
            held.set()
            reader.join(timeout=120)
            assert got == [files["shard-11.bin"]]
            serve.pulled()  # every shard asked for (the last may come after the read it was behind)
            order = [r.url_path for r in cdn.log.records(method="GET")]
            # natural order (2 before 10), but the one waited on first
            assert order == ["/shard-1.bin", "/shard-11.bin", "/shard-2.bin", "/shard-10.bin"]
            assert serve.stop() == 0


def test_kill_9_mid_pull_then_a_restart_fetches_only_what_was_missing(tmp_path: Path) -> None:
    data = make_data(12 << 20, seed=6)
    with CdnServer(throttle_bps=3 << 20) as cdn:
        url = cdn.add_file("/w.bin", data)
        catalog = model_catalog(tmp_path, {"w.bin": (url, data)})
        env = isolated(tmp_path, catalog)
        with ServeProcess(tmp_path, "m", "--pull", env=env) as first:
            first.ready()
            # killed once its resume record says half the file is saved (however slow the machine)
            wait_for(lambda: _claimed(tmp_path) >= len(data) // 2, what="half the file recorded")
            first.process.send_signal(signal.SIGKILL)
            first.wait()
        cdn.throttle_bps = None  # (the restart's proof is the bytes it asks for, not their pace)
        claimed = _claimed(tmp_path)
        # (the first run's answers may still count a write the dead client never read)
        first_run = len(cdn.log)
        with ServeProcess(tmp_path / "again", "m", "--pull", "--wait", "120", env=env) as second:
            s3 = second.ready().boto3(read_timeout=130)
            body = s3.get_object(Bucket="mdl", Key="m/w.bin")["Body"].read()
            assert hashlib.sha256(body).digest() == hashlib.sha256(data).digest()
            again = sum(record.bytes_sent for record in cdn.log.records()[first_run:])
            # what the first run's record claimed is not fetched again
            assert again <= len(data) - claimed, (claimed, again)
            assert second.pulled().stop() == 0, second.stderr


@pytest.mark.parametrize("layout", ["plain", "hf-cache"])
def test_a_hub_repo_is_served_as_pulled_in_either_layout(tmp_path: Path, layout: str) -> None:
    """The main case: a snapshot of a Hub repo (LFS shards, small files by git blob id), pulled
    and served; in the Hugging Face cache its bytes are the blobs the snapshot links to."""
    from servers import HubServer

    files = {
        "config.json": b'{"architectures": ["X"]}',
        "model-00001-of-00002.safetensors": make_data(2 << 20, seed=7),
        "model-00002-of-00002.safetensors": make_data(1 << 20, seed=8),
        "nested/vocab.txt": b"a\nb\n",
    }
    with HubServer() as hub:
        hub.add_repo("org/tiny", files, lfs_threshold=1 << 20)
        catalog = tmp_path / "catalog.toml"
        catalog.write_text('[models.tiny]\nrepo = "org/tiny"\n')
        env = {**isolated(tmp_path, catalog), "HF_ENDPOINT": hub.url, "MDL_LAYOUT": layout}
        with ServeProcess(tmp_path, "tiny", "--pull", "--wait", "120", env=env) as serve:
            s3 = serve.ready().boto3(read_timeout=130)
            for name, data in files.items():
                got = s3.get_object(Bucket="mdl", Key=f"tiny/{name}", ChecksumMode="ENABLED")
                assert got["Body"].read() == data, name
            listed = s3.list_objects_v2(Bucket="mdl", Prefix="tiny/")["Contents"]
            assert sorted(o["Key"] for o in listed) == sorted(f"tiny/{n}" for n in files)
            assert serve.pulled().stop() == 0, serve.stderr
