"""A test-sized stand-in of run:ai's streamer reading from ``mdl serve --pull`` (the real one is in
bench/serve.py: too large for CI): it lists the model, reads ``bytes=0-7`` of every shard, then
every shard's JSON header, then all tensors as chunk-aligned ranges from several threads at once,
each worker on its own connection (the absolute-form target the AWS CRT client sends is held in
test_endpoint). Every tensor it gets is the origin's, and it gets no byte of a shard before the
origin sent the whole shard (bytes are served only once verified)."""

from __future__ import annotations

import itertools
import json
import struct
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from runfixtures import safetensors_bytes
from serveproc import ServeProcess, isolated, model_catalog
from servers import CdnServer

pytestmark = pytest.mark.slow

CHUNK = 1 << 20  # the stand-in's range size (run:ai's is 8 MiB: the files here are smaller)
WORKERS = 8


def _shards() -> dict[str, bytes]:
    return {
        f"model-{n:05d}-of-00002.safetensors": safetensors_bytes(
            {f"layer.{n}.{i}": (300_000 + 7919 * i) for i in range(12)}, seed=str(n)
        )
        for n in (1, 2)
    }


class StandIn:
    """The streamer's reads, timed: each range's bytes and when they came."""

    def __init__(self, serve: ServeProcess, cdn: CdnServer) -> None:
        self.serve, self.cdn = serve, cdn
        self.local = threading.local()
        # each range's bytes, and the bytes of its file the origin had sent when they came
        self.got: dict[tuple[str, int, int], tuple[bytes, int]] = {}

    def client(self) -> Any:
        if not hasattr(self.local, "s3"):
            self.local.s3 = self.serve.boto3(read_timeout=120, max_pool_connections=1)
        return self.local.s3

    def read(self, key: str, first: int, last: int) -> bytes:
        body = self.client().get_object(Bucket="mdl", Key=key, Range=f"bytes={first}-{last}")
        data: bytes = body["Body"].read()
        sent = self.cdn.log.body_bytes(path_prefix="/" + key.removeprefix("m/"))
        self.got[(key, first, last)] = (data, sent)
        return data

    def load(self) -> dict[str, bytes]:
        """Every tensor's bytes, by ``<file>:<name>``, read as run:ai reads them."""
        listed = self.client().list_objects_v2(Bucket="mdl", Prefix="m/")["Contents"]
        keys = sorted(o["Key"] for o in listed if o["Key"].endswith(".safetensors"))
        with ThreadPoolExecutor(WORKERS) as pool:
            lengths = [
                struct.unpack("<Q", b)[0] for b in pool.map(lambda k: self.read(k, 0, 7), keys)
            ]
            headers = [json.loads(h) for h in pool.map(lambda kl: self.read(kl[0], 8, 7 + kl[1]),
                                                      zip(keys, lengths, strict=True))]  # fmt: skip
            ranges = []
            for key, length, header in zip(keys, lengths, headers, strict=True):
                base = 8 + length
                end = base + max(
                    t["data_offsets"][1] for n, t in header.items() if n != "__metadata__"
                )
                # cut at CHUNK-aligned file offsets, as the streamer cuts its reads
                cuts = [base, *range((base // CHUNK + 1) * CHUNK, end, CHUNK), end]
                ranges += [(key, a, b - 1) for a, b in itertools.pairwise(cuts)]
            list(pool.map(lambda r: self.read(*r), ranges))
        tensors = {}
        for key, length, header in zip(keys, lengths, headers, strict=True):
            data = b"".join(
                self.got[r][0]
                for r in sorted(r for r in self.got if r[0] == key and r[1] >= 8 + length)
            )
            for name, tensor in header.items():
                if name != "__metadata__":
                    start, stop = tensor["data_offsets"]
                    tensors[f"{key}:{name}"] = data[start:stop]
        return tensors


def test_the_stand_in_loads_every_tensor_verified_while_the_pull_runs(tmp_path: Path) -> None:
    shards = _shards()
    with CdnServer(throttle_bps=2 << 20) as cdn:
        files = {name: (cdn.add_file(f"/{name}", data), data) for name, data in shards.items()}
        env = isolated(tmp_path, model_catalog(tmp_path, files))
        with ServeProcess(tmp_path, "m", "--pull", "--wait", "120", env=env) as serve:
            stand_in = StandIn(serve.ready(), cdn)
            tensors = stand_in.load()
            assert serve.pulled().stop() == 0, serve.stderr
    for name, data in shards.items():
        length = struct.unpack("<Q", data[:8])[0]
        header = json.loads(data[8 : 8 + length])
        for tensor, entry in header.items():
            start, stop = entry["data_offsets"]
            assert tensors[f"m/{name}:{tensor}"] == data[8 + length + start : 8 + length + stop]
        # nothing of the shard reached the loader before the origin had sent all of it
        sent = [at for (key, _, _), (_, at) in stand_in.got.items() if key == f"m/{name}"]
        assert min(sent) >= len(data), name
