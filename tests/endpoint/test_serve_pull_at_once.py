"""``serve --pull`` where each connection's rate is the bound: the shards fetched at once as
``pull`` fetches them, and every shard's head before its tail, whatever the source (the origin, or
a mirror: a bucket, a shared folder, a URL). The sources are gated (each file's first range sent,
the rest held till the test says), so "at once" and "before" are events, not times."""

from __future__ import annotations

import json
import struct
import threading
from pathlib import Path

import pytest
from runfixtures import HANG, safetensors_bytes, wait_for
from serveproc import ServeProcess, isolated, lock_with_parts, model_catalog
from servers import CdnServer, Fault

pytestmark = pytest.mark.slow

PART = 1 << 20  # bytes per trusted range (a lock's are 16 MiB: the files here are smaller)
SHARDS = 3  # each a little over SPLIT_THRESHOLD: fetched as parallel ranges, as big shards are


def _shards() -> dict[str, bytes]:
    from mdl.transfer.scheduling import SPLIT_THRESHOLD

    shards = {
        f"model-{n:05d}-of-{SHARDS:05d}.safetensors": safetensors_bytes(
            {f"layer.{n}.{i}": 4_200_000 + 7919 * i for i in range(8)}, seed=str(n)
        )
        for n in range(1, SHARDS + 1)
    }
    assert all(len(data) >= SPLIT_THRESHOLD for data in shards.values())
    return shards


def _hold(cdn: CdnServer, prefix: str, held: threading.Event) -> None:
    """Requests under ``prefix``: the first answered, then nothing more until ``held`` is set."""
    cdn.faults.add(Fault.stall(until=held, resume=True, path_prefix=prefix, skip=1, times=None))


def _asked(cdn: CdnServer, prefix: str) -> list[int]:
    """The range starts of the GETs under ``prefix`` so far."""
    records = cdn.log.records(method="GET", path_prefix=prefix)
    return [int((r.header("range") or "bytes=0-")[6:].split("-")[0]) for r in records]


def _serve(
    tmp_path: Path, files: dict[str, tuple[str, bytes]], *args: str, mirror: str = ""
) -> ServeProcess:
    """``serve --pull`` of ``files`` locked with their part hashes (PART bytes each), each file on
    one connection (its ranges asked one after the other, in order: a hold after the first is
    exact); ``mirror``: the catalog's mirror template."""
    catalog = model_catalog(tmp_path, files)
    if mirror:
        catalog.write_text(f'[settings]\nmirrors = ["{mirror}"]\n\n' + catalog.read_text())
    env = isolated(tmp_path, catalog)
    lock_with_parts(env, {name: data for name, (_, data) in files.items()}, part=PART)
    return ServeProcess(
        tmp_path, "m", "--pull", "--wait", "120", "--connections", "1", *args, env=env
    )


def _header(s3: object, name: str) -> bytes:
    """A loader's first reads of shard ``name``: its header's length, then the header."""

    def read(first: int, last: int) -> bytes:
        answer = s3.get_object(Bucket="mdl", Key=f"m/{name}", Range=f"bytes={first}-{last}")  # type: ignore[attr-defined]
        body: bytes = answer["Body"].read()
        return body

    length = struct.unpack("<Q", read(0, 7))[0]
    return read(8, 7 + length)


def _log(folder: Path) -> str:
    log = folder / "mdl.log"
    return log.read_text(errors="replace") if log.exists() else ""


def test_the_shards_are_fetched_at_once_and_each_head_is_served_before_its_tail(
    tmp_path: Path,
) -> None:
    shards = _shards()
    held = threading.Event()
    with CdnServer() as cdn:
        files = {name: (cdn.add_file(f"/{name}", data), data) for name, data in shards.items()}
        for name in shards:  # each shard's first range, then nothing till the test says
            _hold(cdn, f"/{name}", held)
        with _serve(tmp_path, files) as serve:
            s3 = serve.ready().boto3(read_timeout=HANG)
            for name, data in shards.items():  # every head, while every tail is held
                length = struct.unpack("<Q", data[:8])[0]
                assert _header(s3, name) == data[8 : 8 + length], name
            # every shard's own fetch under way at once: each asked for its second range, which
            # no shard's is answered yet (a fetch one file after another asks for one file's only)
            wait_for(
                lambda: all(PART in _asked(cdn, f"/{name}") for name in shards),
                what="every shard's second range asked while every tail is held",
            )
            assert not held.is_set()
            held.set()
            assert serve.pulled().stop() == 0, serve.stderr
        for name, data in shards.items():
            sent = sum(r.bytes_sent for r in cdn.log.records(method="GET", path_prefix=f"/{name}"))
            assert sent == len(data), f"{name}: no byte fetched twice"


def test_every_shard_s_head_comes_first_from_a_mirror_too(tmp_path: Path) -> None:
    shards = _shards()
    first, *rest = sorted(shards)
    held = threading.Event()
    with CdnServer() as cdn:
        files = {name: (cdn.add_file(f"/{name}", data), data) for name, data in shards.items()}
        for name, data in shards.items():
            cdn.add_file(f"/mirror/m/{name}", data)
        # the mirror sends the first shard's first range, then holds the rest of it
        _hold(cdn, f"/mirror/m/{first}", held)
        # one file at a time: the other shards' own fetches wait behind the first
        with _serve(
            tmp_path,
            files,
            "--jobs",
            "1",
            "--progress",
            "json",
            mirror=f"{cdn.url}/mirror/{{model}}/{{path}}",
        ) as serve:
            s3 = serve.ready().boto3(read_timeout=HANG)
            for name, data in shards.items():  # every head, while the first shard is held
                length = struct.unpack("<Q", data[:8])[0]
                assert _header(s3, name) == data[8 : 8 + length], name
            assert not held.is_set()
            for name in rest:
                assert _asked(cdn, f"/mirror/m/{name}") == [0], f"{name}: its head alone"
            held.set()
            assert serve.pulled().stop() == 0, serve.stderr
        for name, data in shards.items():
            assert not _asked(cdn, f"/{name}"), f"{name}: nothing from the origin"
            records = cdn.log.records(method="GET", path_prefix=f"/mirror/m/{name}")
            assert sum(r.bytes_sent for r in records) == len(data), f"{name}: no byte twice"
    # each shard's bytes counted once, its head's with its tail's (one ledger per file)
    end = json.loads(serve.stderr.splitlines()[-1])
    assert end["event"] == "end" and end["summary"]["bytes"] == sum(map(len, shards.values()))
    log = _log(tmp_path)
    for name in rest:
        assert f"m/{name}: head fetched first" in log, name
