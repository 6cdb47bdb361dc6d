"""`mdl serve --pull` read by run:ai's stand-in (tests/endpoint/test_loader_pattern.py's
``StandIn``: a listing, every shard's 8 bytes and header, then every tensor as 1 MiB ranges on 8
connections at once), against `mdl pull` of the same model alone, both from an origin paced per
stream (CdnServer). Each tree's own mdl and test helpers; trees alternate, each rep a fresh folder.
The stand-in runs in a process of its own (as a loader does), beside the origin's.

    python bench/serve_standin.py --tree /work/base --size-mib 128 --rate-mbps 50 --reps 3
    python bench/serve_standin.py --tree /work/base --ranges --rate-mbps 2 --size-mib 640
    python bench/serve_standin.py --tree /work/base --ranges --rate-mbps 1000 --machine-mbps 32

Prints per tree the median of S (serve + stand-in, from start to the last tensor's last byte read;
"S joined": to the tensors cut out of the reads, the stand-in's own copying), F (to the first
tensor), D (`mdl pull` alone), D1 (`mdl pull --jobs 1`: one big file at a time on all connections,
as `serve --pull` fetches; the origin paces each stream, so D's two files at once get twice the
streams), the ratios, and each tree's S over the first's.
``--ranges``: serve and pull both from a catalog.lock (`mdl lock`) with the part hashes of each
shard beside it, at the part size `mdl lock` records (tests/serveproc.py ``lock_with_parts``: the
range release of this tree). The real run:ai is bench/serve.py.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def one(
    size_mib: int,
    rate_mbps: float,
    *,
    ranges: bool = False,
    machine_mbps: float = 0.0,
    d1: bool = True,
) -> dict[str, float]:
    """One S and one D run with this tree's mdl (run from its root): seconds each, and F (the
    stand-in's first tensor). ``ranges``: both from a lock with the part hashes of each shard beside
    it (tests/serveproc.py ``lock_with_parts``). ``machine_mbps``: the origin's streams share it."""
    sys.path.insert(0, str(Path.cwd() / "tests"))
    from runfixtures import safetensors_bytes
    from serveproc import ServeProcess, isolated, model_catalog
    from servers import CdnServer

    if machine_mbps:
        _machine_cap(machine_mbps * 1e6)

    if ranges:  # (a tree older than the part hashes has none)
        from serveproc import lock_with_parts

    per = size_mib * (1 << 20) // 2 // 12
    shards = {
        f"model-{n:05d}-of-00002.safetensors": safetensors_bytes(
            {f"layer.{n}.{i}": per for i in range(12)}, seed=str(n)
        )
        for n in (1, 2)
    }
    times: dict[str, float] = {}
    with CdnServer(throttle_bps=rate_mbps * 1e6) as cdn:
        files = {name: (cdn.add_file(f"/{name}", data), data) for name, data in shards.items()}
        with tempfile.TemporaryDirectory() as scratch:
            tmp = Path(scratch)
            env = isolated(tmp, model_catalog(tmp, files))
            if ranges:
                lock_with_parts(env, shards)
            cdn.log.clear()  # (the lock's own look at the files: not the row's)
            # the stand-in in a process of its own, as a loader is (its imports made): in this
            # one, its 8 reading threads took the GIL from the origin's, which slowed the pull
            reader = subprocess.Popen([sys.executable, __file__, "--stand-in"], text=True,
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE)  # fmt: skip
            assert reader.stdin is not None and reader.stdout is not None
            assert reader.stdout.readline() == "ready\n"
            began, cpu = time.monotonic(), _children_cpu()
            with ServeProcess(tmp, "m", "--pull", "--wait", "300", env=env) as serve:
                reader.stdin.write(json.dumps(serve.ready().environment) + "\n")
                reader.stdin.flush()
                got = json.loads(reader.stdout.readline())
                # the last byte read; "S joined": then every tensor cut out of its reads (the
                # stand-in's own copying, not a byte served)
                times |= {key: got[key] - began for key in ("S", "S joined", "F")}
                assert serve.pulled().stop() == 0, serve.stderr
            times["S cpu"] = _children_cpu() - cpu
            assert reader.wait() == 0 and got["tensors"] == 24
            _asked(cdn, times, "S")
        for name, more in (("D", ()), ("D1", ("--jobs", "1")))[: 2 if d1 else 1]:
            with tempfile.TemporaryDirectory() as scratch:
                tmp = Path(scratch)
                env = isolated(tmp, model_catalog(tmp, files))
                if ranges:
                    lock_with_parts(env, shards)
                cdn.log.clear()  # (the lock's own look at the files: not the row's)
                began, cpu = time.monotonic(), _children_cpu()
                pull = [sys.executable, "-m", "mdl", "pull", "m", "--no-progress", *more]
                subprocess.run(pull, env=env, check=True)
                times[name] = time.monotonic() - began
                times[f"{name} cpu"] = _children_cpu() - cpu
                _asked(cdn, times, name)
    return times


def _stand_in() -> None:
    """The stand-in's run, in a process of its own (run from the tree's root): "ready" once
    imported, then, given the endpoint's environment (a JSON line), run:ai's reads; prints when
    the last byte and the first tensor came, and the tensors once cut out (monotonic clock)."""
    sys.path.insert(0, str(Path.cwd() / "tests"))
    from serveproc import loader_client

    spec = importlib.util.spec_from_file_location(
        "loader_pattern", Path.cwd() / "tests" / "endpoint" / "test_loader_pattern.py"
    )
    assert spec is not None and spec.loader is not None
    pattern = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(pattern)
    print("ready", flush=True)
    environment = json.loads(sys.stdin.readline())

    class Served:  # (what the stand-in asks of a ServeProcess)
        def boto3(self, **config: Any) -> Any:
            return loader_client(environment, **config)

    class Origin:  # (what it asks of the origin: its bytes sent, not known here)
        class log:
            @staticmethod
            def body_bytes(**_: Any) -> int:
                return 0

    stand_in = pattern.StandIn(Served(), Origin())
    came = _timed(stand_in)
    tensors = stand_in.load()
    joined = time.monotonic()
    print(json.dumps({"S": max(came.values()), "S joined": joined,
                      "F": _first_tensor(stand_in, came), "tensors": len(tensors)}), flush=True)  # fmt: skip


def _asked(cdn: Any, times: dict[str, float], name: str) -> None:
    """The origin's requests and connections in the row ``name`` (its log then cleared)."""
    asked = cdn.log.records(method="GET")
    times[f"{name} requests"] = len(asked)
    times[f"{name} connections"] = len({record.connection for record in asked})
    cdn.log.clear()


def _children_cpu() -> float:
    """CPU-seconds of the children waited for so far (mdl serve's, mdl pull's)."""
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def _machine_cap(bps: float) -> None:
    """Every body the origin (CdnServer) sends, whatever the stream, paced by one token bucket:
    a per-machine cap (its per-stream pacing cuts bodies in slices of 1/50 s)."""
    import servers

    from mdl.transfer.scheduling import RateLimiter

    bucket, send, never = RateLimiter(int(bps)), servers.Exchange._send, threading.Event()

    def paced(self: Any, piece: Any) -> None:
        bucket.consume(len(piece), never)
        send(self, piece)

    servers.Exchange._send = paced  # type: ignore[method-assign]


def _timed(stand_in: Any) -> dict[tuple[str, int, int], float]:
    """When each of the stand-in's reads came (its ``read`` wrapped)."""
    came: dict[tuple[str, int, int], float] = {}
    read = stand_in.read

    def timed(key: str, first: int, last: int) -> bytes:
        data: bytes = read(key, first, last)
        came[(key, first, last)] = time.monotonic()
        return data

    stand_in.read = timed
    return came


def _first_tensor(stand_in: Any, came: dict[tuple[str, int, int], float]) -> float:
    """When the first read of a tensor's bytes (past a shard's header) came."""
    bases = {
        key: 8 + int.from_bytes(data, "little")
        for (key, first, _), (data, _) in stand_in.got.items()
        if first == 0
    }
    return min(at for (key, first, _), at in came.items() if first >= bases[key])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tree", type=Path, action="append", default=[], help="another checkout")
    parser.add_argument("--size-mib", type=int, default=128)
    parser.add_argument("--rate-mbps", type=float, default=50.0, help="MB/s per origin stream")
    parser.add_argument(
        "--machine-mbps", type=float, default=0.0, help="MB/s all origin streams share (0: none)"
    )
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument(
        "--ranges", action="store_true", help="a trusted hash for each range (a lock's part hashes)"
    )
    parser.add_argument("--no-d1", action="store_true", help="no D1 row (pull --jobs 1)")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--stand-in", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stand_in:
        _stand_in()
        return
    if args.one:
        got = one(args.size_mib, args.rate_mbps, ranges=args.ranges, machine_mbps=args.machine_mbps,
                  d1=not args.no_d1)  # fmt: skip
        print(json.dumps(got))
        return
    trees = [ROOT, *args.tree]
    runs: dict[Path, list[dict[str, float]]] = {tree: [] for tree in trees}
    for rep in range(args.reps):
        for tree in trees:
            python = tree / ".venv" / "bin" / "python"
            out = subprocess.run(
                [str(python if python.exists() else sys.executable), str(Path(__file__)),
                 "--one", "--size-mib", str(args.size_mib), "--rate-mbps", str(args.rate_mbps),
                 "--machine-mbps", str(args.machine_mbps), *(["--ranges"] if args.ranges else []),
                 *(["--no-d1"] if args.no_d1 else [])],
                cwd=tree, check=True, capture_output=True, text=True,
            )  # fmt: skip
            runs[tree].append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(f"rep {rep + 1} {tree}: {runs[tree][-1]}", file=sys.stderr)
    first = _median(runs[ROOT], "S")
    print("| tree | S s | F s | D s | D1 s | S/D | S joined/D | F/D | S/D1 | F/D1 "
          "| S / this tree's S | mdl CPU-s in S · in D | origin GETs in S · in D "
          "| origin connections in S · in D |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for tree, got in runs.items():
        s, f, d, d1 = (_median(got, k) for k in ("S", "F", "D", "D1"))
        joined = _median([run | {"S": run.get("S joined", run["S"])} for run in got], "S")
        print(f"| {tree} | {s:.2f} | {f:.2f} | {d:.2f} | {d1:.2f} | {s / d:.2f}× | {joined / d:.2f}× "
              f"| {f / d:.2f}× "
              f"| {s / d1:.2f}× | {f / d1:.2f}× | {s / first:.2f}× "
              f"| {_median(got, 'S cpu'):.2f} · {_median(got, 'D cpu'):.2f} "
              f"| {_median(got, 'S requests'):.0f} · {_median(got, 'D requests'):.0f} "
              f"| {_median(got, 'S connections'):.0f} · {_median(got, 'D connections'):.0f} |")  # fmt: skip


def _median(runs: list[dict[str, float]], key: str) -> float:
    return statistics.median(run.get(key, math.nan) for run in runs)


if __name__ == "__main__":
    main()
