"""Release by range: ``mdl serve --pull`` of files with a trusted hash for each range (the part
hashes beside the catalog.lock ``mdl lock`` wrote) answers a ranged GET as soon as every range it
touches verified, before the file is whole; a range whose bytes fail their hash is never served
(its read waits for it fetched again); a whole GET still waits for the whole file and carries the
whole object's checksum, and every answer carries the object's one ETag.
The origin's byte log says what it had sent when each answer came."""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import logging
import os
import struct
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from runfixtures import HANG, safetensors_bytes, wait_for
from serveproc import ServeProcess, isolated, loader_client, lock_with_parts, model_catalog
from servers import CdnServer, Fault, make_data

from mdl.transfer.ranges import merged, touching

pytestmark = pytest.mark.slow

PART = 1 << 20  # bytes per trusted range (a lock's are 16 MiB: the files here are smaller)
CHUNK = 1 << 20  # the stand-in's range size (run:ai's is 8 MiB)
HELD_AT = 4 * PART  # the origin sends this much of each file, then holds the rest


def _serve(tmp_path: Path, files: dict[str, tuple[str, bytes]], *args: str) -> ServeProcess:
    """``serve --pull`` of ``files`` locked with their part hashes (PART bytes each), each file on
    one connection: its ranges asked one after the other, in order (a request each: a hold after
    some is exact)."""
    env = isolated(tmp_path, model_catalog(tmp_path, files))
    lock_with_parts(env, {name: data for name, (_, data) in files.items()}, part=PART)
    return ServeProcess(
        tmp_path, "m", "--pull", "--wait", "120", "--connections", "1", *args, env=env
    )


def _hold(cdn: CdnServer, name: str, held: threading.Event, *, after: int) -> None:
    """The origin answers the first ``after`` requests of ``name`` (its first ``after`` ranges),
    then sends nothing more until ``held`` is set."""
    cdn.faults.add(
        Fault.stall(until=held, resume=True, path_prefix=f"/{name}", skip=after, times=None)
    )


def _sent(cdn: CdnServer, name: str) -> list[tuple[int, int]]:
    """The bytes of ``name`` the origin has sent so far, by its log: each GET's range start plus
    the bytes it sent."""
    spans = []
    for record in cdn.log.records(method="GET", path_prefix=f"/{name}"):
        asked = record.header("range") or "bytes=0-"
        start = int(asked.removeprefix("bytes=").split("-")[0])
        spans.append((start, start + record.bytes_sent))
    return merged([s for s in spans if s[0] < s[1]])


def _ranges_of(first: int, last: int, size: int) -> list[tuple[int, int]]:
    """The trusted ranges bytes ``first``-``last`` touch (``[start, end)`` each)."""
    spans = [(s, min(s + PART, size)) for s in range(0, size, PART)]
    return [spans[i] for i in touching(spans, first, last + 1)]


class RunAi:
    """run:ai's streamer's reads (as tests/endpoint/test_loader_pattern.py's stand-in): a listing,
    ``bytes=0-7`` of every shard, every header, then every tensor as CHUNK-aligned ranges from
    WORKERS threads, each on its own connection. Each answer's bytes are kept with the origin's
    bytes of that file when it came."""

    WORKERS = 8

    def __init__(self, serve: ServeProcess, cdn: CdnServer) -> None:
        self.serve, self.cdn = serve, cdn
        self.local = threading.local()
        self.got: dict[tuple[str, int, int], tuple[bytes, list[tuple[int, int]]]] = {}

    def client(self) -> Any:
        if not hasattr(self.local, "s3"):
            self.local.s3 = self.serve.boto3(read_timeout=HANG, max_pool_connections=1)
        return self.local.s3

    def read(self, name: str, first: int, last: int) -> bytes:
        answer = self.client().get_object(
            Bucket="mdl", Key=f"m/{name}", Range=f"bytes={first}-{last}"
        )
        data: bytes = answer["Body"].read()
        self.got[(name, first, last)] = (data, _sent(self.cdn, name))
        return data

    def load(self) -> dict[str, bytes]:
        """Every tensor's bytes, by ``<file>:<name>``."""
        listed = self.client().list_objects_v2(Bucket="mdl", Prefix="m/")["Contents"]
        names = sorted(o["Key"].removeprefix("m/") for o in listed)
        with ThreadPoolExecutor(self.WORKERS) as pool:
            lengths = [
                struct.unpack("<Q", b)[0] for b in pool.map(lambda n: self.read(n, 0, 7), names)
            ]
            headers = [
                json.loads(h)
                for h in pool.map(
                    lambda nl: self.read(nl[0], 8, 7 + nl[1]), zip(names, lengths, strict=True)
                )
            ]
            ranges = []
            for name, length, header in zip(names, lengths, headers, strict=True):
                base = 8 + length
                end = base + max(t["data_offsets"][1] for t in header.values())
                cuts = [base, *range((base // CHUNK + 1) * CHUNK, end, CHUNK), end]
                ranges += [(name, a, b - 1) for a, b in itertools.pairwise(cuts)]
            list(pool.map(lambda r: self.read(*r), ranges))
        tensors = {}
        for name, length, header in zip(names, lengths, headers, strict=True):
            data = b"".join(
                self.got[r][0]
                for r in sorted(r for r in self.got if r[0] == name and r[1] >= 8 + length)
            )
            for tensor, entry in header.items():
                start, stop = entry["data_offsets"]
                tensors[f"{name}:{tensor}"] = data[start:stop]
        return tensors


def _shards() -> dict[str, bytes]:
    return {
        f"model-{n:05d}-of-00002.safetensors": safetensors_bytes(
            {f"layer.{n}.{i}": 500_000 + 7919 * i for i in range(12)}, seed=str(n)
        )
        for n in (1, 2)
    }


def _in_thread(work: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
    done: list[Any] = []

    def run() -> None:
        try:
            done.append(work())
        except Exception as exc:  # said by the test that joins it
            done.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, done


def test_run_ai_s_reads_leave_by_range_before_the_shard_is_whole_never_before_they_verify(
    tmp_path: Path,
) -> None:
    shards = _shards()
    held = threading.Event()
    with CdnServer() as cdn:
        files = {name: (cdn.add_file(f"/{name}", data), data) for name, data in shards.items()}
        for name in shards:  # each file's first HELD_AT bytes, then nothing till the test says
            _hold(cdn, name, held, after=HELD_AT // PART)
        with _serve(tmp_path, files) as serve:
            loader = RunAi(serve.ready(), cdn)
            thread, done = _in_thread(loader.load)
            # every read within the bytes sent so far is answered while the rest is held
            early = [
                (name, a, b) for name, (_, data) in files.items() for a, b in _reads_below(data)
            ]
            wait_for(
                lambda: all(r in loader.got for r in early) or bool(done), what="the early reads"
            )
            assert not done, done
            assert not held.is_set()
            for name, data in shards.items():
                assert _sent(cdn, name) == [(0, HELD_AT)] and len(data) > HELD_AT, name
            assert all(b < HELD_AT for _, _, b in loader.got), "a byte the origin had not sent"
            held.set()
            thread.join(timeout=HANG)
            assert len(done) == 1 and isinstance(done[0], dict), done
            tensors = done[0]
            assert serve.pulled().stop() == 0, serve.stderr
    for name, data in shards.items():
        length = struct.unpack("<Q", data[:8])[0]
        for tensor, entry in json.loads(data[8 : 8 + length]).items():
            start, stop = entry["data_offsets"]
            assert tensors[f"{name}:{tensor}"] == data[8 + length + start : 8 + length + stop]
    for (name, first, last), (data, sent) in loader.got.items():
        assert data == shards[name][first : last + 1]
        # each answer came once the origin had sent every byte of each range it touches
        for span in _ranges_of(first, last, len(shards[name])):
            assert any(a <= span[0] and span[1] <= b for a, b in sent), (name, first, last, sent)


def _reads_below(data: bytes) -> list[tuple[int, int]]:
    """The stand-in's reads of ``data`` whose every range lies in its first HELD_AT bytes."""
    length = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8 : 8 + length])
    base = 8 + length
    end = base + max(t["data_offsets"][1] for t in header.values())
    cuts = [base, *range((base // CHUNK + 1) * CHUNK, end, CHUNK), end]
    reads = [(0, 7), (8, 7 + length)] + [(a, b - 1) for a, b in itertools.pairwise(cuts)]
    return [(a, b) for a, b in reads if _ranges_of(a, b, len(data))[-1][1] <= HELD_AT]


@pytest.mark.parametrize("mode", ["auto", "locked", "frozen"])  # each way a pull takes the lock
def test_a_range_whose_bytes_fail_their_hash_is_never_served_its_read_waits_for_them_again(
    tmp_path: Path, mode: str
) -> None:
    data = make_data(6 * PART + 4321, seed=70)
    held = threading.Event()
    asked = (2 * PART + 10, 2 * PART + 70_000)
    with CdnServer() as cdn:
        url = cdn.add_file("/w.bin", data)
        cdn.flips.append([2 * PART + 20_000, 1])  # the first time it is sent: inverted
        _hold(cdn, "w.bin", held, after=1)
        flags = () if mode == "auto" else (f"--{mode}",)
        with _serve(tmp_path, {"w.bin": (url, data)}, *flags) as serve:
            s3 = serve.ready().boto3(read_timeout=HANG)

            def read() -> bytes:
                answer = s3.get_object(
                    Bucket="mdl", Key="m/w.bin", Range="bytes={}-{}".format(*asked)
                )
                body: bytes = answer["Body"].read()
                return body

            thread, done = _in_thread(read)
            wait_for(
                lambda: "a loader waits for m/w.bin" in _log(tmp_path), what="the read to wait"
            )
            held.set()  # the range lands with a wrong byte: the read waits for it fetched again
            thread.join(timeout=HANG)
            assert done == [data[asked[0] : asked[1] + 1]]
            assert serve.pulled().stop() == 0, serve.stderr
        asked_for = [r.header("range") for r in cdn.log.records(method="GET", path_prefix="/w")]
        # its ranges in order, one at a time; the one whose bytes failed fetched again alone
        assert asked_for.count(f"bytes={2 * PART}-{3 * PART - 1}") == 2, asked_for
        sent = sum(r.bytes_sent for r in cdn.log.records(method="GET", path_prefix="/w"))
        assert sent == len(data) + PART
    assert "1 range(s) failed their lock hash and were fetched again alone" in _log(tmp_path)


def test_a_range_that_fails_its_hash_on_every_try_fails_the_file_not_the_ranges_that_left(
    tmp_path: Path,
) -> None:
    """An honest root, an origin that corrupts one range every time it sends it: the ranges that
    left held their own hashes (the file failed for the one that never did), so no alarm says a
    loader may have read wrong bytes; the error names the range that failed (exit 6)."""
    data = make_data(6 * PART + 4321, seed=71)
    held = threading.Event()
    with CdnServer() as cdn:
        url = cdn.add_file("/w.bin", data)
        cdn.flips.append([2 * PART + 20_000, 1_000])  # every time it is sent
        _hold(cdn, "w.bin", held, after=2)
        with _serve(tmp_path, {"w.bin": (url, data)}) as serve:
            s3 = serve.ready().boto3(read_timeout=HANG)
            got = s3.get_object(Bucket="mdl", Key="m/w.bin", Range="bytes=10-1000")
            assert got["Body"].read() == data[10:1001]  # it held its hash: it left
            held.set()
            serve.pulled()
            assert serve.stop() == 6, serve.stderr
    assert "left to a loader" not in serve.stderr
    assert f"bytes {2 * PART}-{3 * PART - 1} failed their lock hash on every try" in serve.stderr
    assert "left verified by its lock hash before" not in _log(tmp_path)


def test_a_whole_get_waits_for_the_whole_file_and_every_answer_has_the_object_s_etag(
    tmp_path: Path,
) -> None:
    from boto3.s3.transfer import (
        TransferConfig,
    )  # here: a worker running no such test never loads it

    data = make_data(6 * PART + 999, seed=72)
    sha256 = hashlib.sha256(data).hexdigest()
    etag = f'"{sha256}"'
    held = threading.Event()
    with CdnServer() as cdn:
        url = cdn.add_file("/w.bin", data)
        _hold(cdn, "w.bin", held, after=HELD_AT // PART)
        with _serve(tmp_path, {"w.bin": (url, data)}) as serve:
            s3 = serve.ready().boto3(read_timeout=HANG)
            head = s3.head_object(Bucket="mdl", Key="m/w.bin")
            assert (head["ETag"], head["ContentLength"]) == (etag, len(data))
            whole, got_whole = _in_thread(
                lambda: (
                    s3.get_object(
                        Bucket="mdl", Key="m/w.bin", IfMatch=etag, ChecksumMode="ENABLED"
                    ),
                    _sent(cdn, "w.bin"),
                )
            )
            wait_for(lambda: _sent(cdn, "w.bin") == [(0, HELD_AT)], what="the first bytes sent")
            part = s3.get_object(
                Bucket="mdl",
                Key="m/w.bin",
                Range=f"bytes=10-{PART + 9}",
                IfMatch=etag,
                ChecksumMode="ENABLED",
            )
            assert part["ResponseMetadata"]["HTTPStatusCode"] == 206
            assert part["Body"].read() == data[10 : PART + 10]
            assert (
                part["ETag"] == etag and part["ContentRange"] == f"bytes 10-{PART + 9}/{len(data)}"
            )
            sent = part["ResponseMetadata"]["HTTPHeaders"]
            assert not any(name.startswith("x-amz-checksum") for name in sent), sent
            assert not got_whole and _sent(cdn, "w.bin") == [(0, HELD_AT)], (
                "before the file was whole"
            )
            # a download of ranges pinned by If-Match to the HEAD's ETag (boto3's), early or late
            into = tmp_path / "downloaded"
            config = TransferConfig(
                multipart_threshold=PART, multipart_chunksize=PART, max_concurrency=2
            )
            download, downloaded = _in_thread(
                lambda: s3.download_file("mdl", "m/w.bin", str(into), Config=config)
            )
            held.set()
            whole.join(timeout=HANG)
            download.join(timeout=HANG)
            assert downloaded == [None] and into.read_bytes() == data
            ((answer, sent_then),) = got_whole
            assert answer["Body"].read() == data and answer["ETag"] == etag
            assert answer["ChecksumSHA256"] == base64.b64encode(bytes.fromhex(sha256)).decode()
            assert sent_then == [(0, len(data))], "the whole GET waited for the whole file"
            assert serve.pulled().stop() == 0, serve.stderr


def _log(folder: Path) -> str:
    log = folder / "mdl.log"
    return log.read_text(errors="replace") if log.exists() else ""


def test_every_shard_s_head_comes_first_and_is_served_while_another_shard_is_fetched(
    tmp_path: Path,
) -> None:
    shards = _shards()
    first, second = sorted(shards)
    data = shards[second]
    held, begun = threading.Event(), threading.Event()
    with CdnServer() as cdn:
        files = {name: (cdn.add_file(f"/{name}", body), body) for name, body in shards.items()}
        cdn.faults.add(Fault.call(begun.set, path_prefix=f"/{first}", methods=frozenset({"GET"})))
        _hold(cdn, first, held, after=2)  # the first shard stops after its first two ranges
        # one file at a time: the second shard's own fetch waits behind the first
        with _serve(tmp_path, files, "--jobs", "1") as serve:
            s3 = serve.ready().boto3(read_timeout=HANG)
            # the crew's one file is the first shard before a loader waits on the second (a file
            # a loader waits on before the crew takes its first would be taken first)
            assert begun.wait(HANG), "the first shard's fetch began"

            def read(first: int, last: int) -> bytes:
                asked = f"bytes={first}-{last}"
                body: bytes = s3.get_object(Bucket="mdl", Key=f"m/{second}", Range=asked)[
                    "Body"
                ].read()
                return body

            length = struct.unpack("<Q", read(0, 7))[0]
            assert read(8, 7 + length) == data[8 : 8 + length]
            assert not held.is_set()
            asked = [
                r.header("range") for r in cdn.log.records(method="GET", path_prefix=f"/{second}")
            ]
            assert asked == [f"bytes=0-{PART - 1}"], "its head alone, ahead of its fetch"
            held.set()
            assert serve.pulled().stop() == 0, serve.stderr
        sent = sum(r.bytes_sent for r in cdn.log.records(method="GET", path_prefix=f"/{second}"))
        assert sent == len(data), "the head is not fetched twice"
    log = _log(tmp_path)
    assert f"m/{second}: head fetched first" in log
    (outcome,) = [line for line in log.splitlines() if f" path={second} " in line]
    # the head is this run's: the file was downloaded, not resumed
    assert " action=downloaded " in outcome and f" fetched={len(data)} " in outcome, outcome


def test_an_answer_released_by_range_stops_short_at_a_range_taken_back(tmp_path: Path) -> None:
    """The fetch takes back bytes of a range an answer is about to send (a piece dropped, the file
    started over): the answer stops at it, never sending bytes not the ones that verified."""
    from mdl.endpoint.shelf import Early, ShelfObject, _windows
    from mdl.transfer.ranges import Digests, RangeCheck, Releases, digest

    data = make_data(3 * PART, seed=74)
    path = tmp_path / "f.part"
    path.write_bytes(data)
    trust = Digests.fixed(
        "lock", len(data), PART, [digest(data[s : s + PART]) for s in range(0, len(data), PART)]
    )
    obj = ShelfObject("m/f", "m", "f", len(data), '"x"', None, False, "partial", path, "x")
    cancel, releases = threading.Event(), Releases()
    fd = os.open(path, os.O_RDWR)
    try:
        with RangeCheck(trust, fd, path, releases) as check, releases.holding(check):
            check.landed(0, len(data))
            assert check.settle(cancel) == []
            until = time.monotonic() + HANG
            early = Early(
                obj, partial(_windows, releases, [path], 10, len(data) - 10, cancel, until)
            )
            assert early.ready  # its first range read before the answer begins
            check.taken_back(PART + 5, PART + 6)  # (the engine, before the bytes change)
            os.pwrite(fd, b"\0", PART + 5)
            sent = b"".join(bytes(view) for view in early)
            early.close()
            assert sent == data[10:PART], "the first range only: nothing taken back leaves"
    finally:
        os.close(fd)


@pytest.mark.parametrize("output", [(), ("--json", "--progress", "json")], ids=["lines", "json"])
def test_ranges_released_then_refused_by_the_file_s_hash_are_said_and_the_object_refused(
    tmp_path: Path, output: tuple[str, ...]
) -> None:
    """A root that lies though bound (the part hashes beside the lock are another file's: a
    tampered lock) lets that file's bytes leave; once the sha256 refuses the file the release is
    never silent: stderr names the ranges that left (with ``--progress json``, the file's ``error``
    event, as ``released_wrong``; stdout still the one endpoint document), the pull fails (exit 6)
    whatever a later try does, and every later request for the object is an S3 error, never more
    of those bytes."""
    from botocore.exceptions import ClientError

    from mdl.lockfile.parts import PartHashes, write_parts
    from mdl.transfer.ranges import digest

    data, other = make_data(6 * PART + 4321, seed=75), make_data(6 * PART + 4321, seed=76)
    held = threading.Event()
    with CdnServer() as cdn:
        url = cdn.add_file("/w.bin", other)  # the origin sends another file as big
        _hold(cdn, "w.bin", held, after=2)
        env = isolated(tmp_path, model_catalog(tmp_path, {"w.bin": (url, data)}))
        written = lock_with_parts(env, {"w.bin": data}, part=PART)
        digests = tuple(digest(other[s : s + PART]) for s in range(0, len(other), PART))
        pinned = hashlib.sha256(data).hexdigest()
        write_parts(written, {pinned: PartHashes(len(other), PART, digests)})
        serve = ServeProcess(tmp_path, "m", "--pull", "--wait", "120", "--connections", "1",
                             *output, env=env)  # fmt: skip
        with serve:
            s3 = serve.ready().boto3(read_timeout=HANG)
            got = s3.get_object(Bucket="mdl", Key="m/w.bin", Range="bytes=10-1000")
            assert got["Body"].read() == other[10:1001]  # what the tampered root vouched for
            held.set()
            serve.pulled()
            said = f"m/w.bin: bytes 0-{PART - 1} left to a loader before the file verified"
            wait_for(lambda: said in serve.stderr, what="the ranges that left said")
            for asked in ("bytes=10-1000", f"bytes={3 * PART}-{4 * PART}"):
                with pytest.raises(ClientError) as refused:
                    s3.get_object(Bucket="mdl", Key="m/w.bin", Range=asked)
                assert refused.value.response["Error"]["Code"] == "InvalidObjectState"
            assert f"bytes 0-{PART - 1} left before the file verified" in str(refused.value)
            assert serve.stop() == 6, serve.stderr
    assert f"bytes 0-{PART - 1} left verified by its lock hash before" in _log(tmp_path)
    if output:
        _said_as_events(serve, wrong=[[0, PART - 1]])


def _said_as_events(serve: ServeProcess, *, wrong: list[list[int]]) -> None:
    """``--json --progress json``: stdout the one endpoint document, stderr only events, the
    file's ``error`` naming the ranges that left wrong, and the ``end`` its exit code."""
    (document,) = [json.loads(line) for line in serve.stdout.splitlines()]
    assert document["ok"] is True and document["endpoint"] == serve.url
    events = [json.loads(line) for line in serve.stderr.splitlines()]
    assert [e["event"] for e in events].count("begin") == 1 and events[-1]["event"] == "end"
    assert events[-1]["exit_code"] == 6 and events[-1]["summary"]["failed"] == 1
    told = [e for e in events if e["event"] == "error" and "released_wrong" in e]
    assert [(e["model"], e["path"], e["released_wrong"]) for e in told] == [("m", "w.bin", wrong)]
    assert "left to a loader before the file verified" in told[0]["message"]


def test_an_answer_under_way_stops_at_the_next_range_once_its_file_is_refused(
    tmp_path: Path,
) -> None:
    from mdl.endpoint.shelf import Early, ShelfObject, _windows
    from mdl.transfer.ranges import Digests, RangeCheck, Releases, digest

    data = make_data(3 * PART, seed=77)
    path = tmp_path / "f.part"
    path.write_bytes(data)
    trust = Digests.fixed(
        "lock", len(data), PART, [digest(data[s : s + PART]) for s in range(0, len(data), PART)]
    )
    obj = ShelfObject("m/f", "m", "f", len(data), '"x"', None, False, "partial", path, "x")
    cancel, releases = threading.Event(), Releases()
    fd = os.open(path, os.O_RDWR)
    try:
        with RangeCheck(trust, fd, path, releases) as check, releases.holding(check):
            check.landed(0, len(data))
            assert check.settle(cancel) == []
            until = time.monotonic() + HANG
            early = Early(
                obj, partial(_windows, releases, [path], 10, len(data) - 10, cancel, until)
            )
            assert early.ready  # its first range read before the answer begins
            releases.refuted(check, "its sha256 refused the file")  # while the answer is sent
            sent = b"".join(bytes(view) for view in early)
            early.close()
            assert sent == data[10:PART], "the range under way only: cut at the next"
        assert releases.wrong(path) == ((0, PART),)
    finally:
        os.close(fd)


def test_a_shard_a_loader_s_wait_put_behind_another_still_has_its_head_served_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A loader's wait for the second shard came before the crew took its first file (a loader
    started with the endpoint; held so here, in-process): with ``--jobs 1`` the second shard is
    fetched first, and the first shard's head still comes beside it, so the loader's read of the
    first shard's header is not held behind the whole second shard."""
    from mdl import api
    from mdl.download import _workers
    from mdl.download.demand import Demand

    caplog.set_level(logging.INFO, logger="mdl.pull")
    shards = _shards()
    first, second = sorted(shards)
    held, waited = threading.Event(), threading.Event()
    want, run = Demand.want, _workers.Crew.run

    def wanted(demand: Demand, model: str, path: str) -> None:
        want(demand, model, path)
        waited.set()

    def crew_after_the_wait(crew: _workers.Crew) -> dict[int, Any]:
        assert waited.wait(HANG), "a loader's wait"
        return run(crew)

    monkeypatch.setattr(Demand, "want", wanted)
    monkeypatch.setattr(_workers.Crew, "run", crew_after_the_wait)
    with CdnServer() as cdn:
        files = {name: (cdn.add_file(f"/{name}", body), body) for name, body in shards.items()}
        _hold(cdn, second, held, after=2)  # the second shard stops after its first two ranges
        # its head is sent once a loader waits on it (its header asked before it verified)
        cdn.faults.add(Fault.stall(until=waited, resume=True, path_prefix=f"/{second}"))
        env = isolated(tmp_path, model_catalog(tmp_path, files))
        lock_with_parts(env, shards, part=PART)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        ready: list[Any] = []
        reports: list[Any] = []
        stop, listening = threading.Event(), threading.Event()
        serving, served = _in_thread(
            lambda: api.serve(
                "m", pull=True, port=0, wait=HANG, connections=1, jobs=1, environ=env, stop=stop,
                on_ready=lambda facts: (ready.append(facts), listening.set()),
                on_pulled=lambda report: (reports.append(report.pulled), stop.set()),
            )
        )  # fmt: skip
        try:
            assert listening.wait(HANG), "the endpoint listening"
            s3 = loader_client(ready[0].environment, read_timeout=HANG)

            def header(name: str) -> bytes:
                length = struct.unpack("<Q", shards[name][:8])[0]
                answer = s3.get_object(Bucket="mdl", Key=f"m/{name}", Range=f"bytes=8-{7 + length}")
                body: bytes = answer["Body"].read()
                assert body == shards[name][8 : 8 + length], name
                return body

            header(second)
            wait_for(
                lambda: f"bytes={PART}-{2 * PART - 1}" in _asked_of(cdn, second),
                what="the crew's fetch of the second shard, its head's first",
            )
            # the second shard's fetch is held; the first shard's header comes all the same
            reader, got = _in_thread(lambda: header(first))
            reader.join(timeout=HANG)
            assert not held.is_set()
            assert len(got) == 1 and isinstance(got[0], bytes), got
            assert _asked_of(cdn, first) == [f"bytes=0-{PART - 1}"], "its head alone, beside"
        finally:
            held.set()
            serving.join(timeout=HANG)
            stop.set()
    assert served and served[0].exit_code == 0, (served, reports)
    assert f"m/{first}: head fetched first" in caplog.text


def _asked_of(cdn: CdnServer, name: str) -> list[str | None]:
    return [r.header("range") for r in cdn.log.records(method="GET", path_prefix=f"/{name}")]


def test_a_shard_verified_whole_leaves_by_range_before_its_record_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fixed defect, as found (issue 90): a file's range check stopped serving it as its fetch
    ended, and the endpoint served it whole only once its record was written (the records are
    written every 0.1 s) and looked at (every 0.1 s), so a loader's read of its last ranges, asked
    as they verified, waited up to 0.2 s. Here the records are held till the pull ends (the
    second shard held by the origin meanwhile): the first shard, verified and in place, is not
    served whole yet (503 at once, ``wait=0``), and every range of it leaves."""
    from botocore.exceptions import ClientError

    from mdl import api
    from mdl.download import _fetch

    monkeypatch.setattr(_fetch, "SERVED_FLUSH_INTERVAL", HANG)
    shards = _shards()
    first, second = sorted(shards)
    held = threading.Event()
    with CdnServer() as cdn:
        files = {name: (cdn.add_file(f"/{name}", body), body) for name, body in shards.items()}
        _hold(cdn, second, held, after=2)
        env = isolated(tmp_path, model_catalog(tmp_path, files))
        lock_with_parts(env, shards, part=PART)
        ready: list[Any] = []
        stop, listening = threading.Event(), threading.Event()
        serving, served = _in_thread(
            lambda: api.serve(
                "m", pull=True, port=0, wait=0, connections=1, jobs=1, environ=env, stop=stop,
                on_ready=lambda facts: (ready.append(facts), listening.set()),
                on_pulled=lambda _: stop.set(),
            )
        )  # fmt: skip
        try:
            assert listening.wait(HANG), "the endpoint listening"
            s3 = loader_client(ready[0].environment, attempts=1, read_timeout=HANG)
            wait_for(lambda: (tmp_path / "models" / "m" / first).exists(), what="shard 1 placed")
            assert not held.is_set() and _sent(cdn, second)[-1][1] < len(shards[second])
            with pytest.raises(ClientError, match="ServiceUnavailable"):  # its record unwritten
                s3.get_object(Bucket="mdl", Key=f"m/{first}")
            size = len(shards[first])
            for start in range(0, size, PART):
                last = min(start + PART, size) - 1
                answer = s3.get_object(
                    Bucket="mdl", Key=f"m/{first}", Range=f"bytes={start}-{last}"
                )
                assert answer["Body"].read() == shards[first][start : last + 1], start
        finally:
            held.set()
            serving.join(timeout=HANG)
            stop.set()
    assert served and served[0].exit_code == 0, served
