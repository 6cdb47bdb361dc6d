"""`mdl serve --pull` read by run:ai's stand-in (tests/endpoint/test_loader_pattern.py's
``StandIn``: a listing, every shard's 8 bytes and header, then every tensor as 1 MiB ranges on 8
connections at once), against `mdl pull` of the same model alone, both from an origin paced per
stream (CdnServer). Each tree's own mdl and test helpers; trees alternate, each rep a fresh folder.

    python bench/serve_standin.py --tree /work/base --size-mib 128 --rate-mbps 50 --reps 3

Prints per tree the median of S (serve + stand-in, from start to the last tensor), D (`mdl pull`
alone) and S/D, and the ratio of each tree's S to the first's. The real run:ai is bench/serve.py.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def one(size_mib: int, rate_mbps: float) -> dict[str, float]:
    """One S and one D run with this tree's mdl (run from its root): seconds each."""
    sys.path.insert(0, str(Path.cwd() / "tests"))
    from runfixtures import safetensors_bytes
    from serveproc import ServeProcess, isolated, model_catalog
    from servers import CdnServer

    spec = importlib.util.spec_from_file_location(
        "loader_pattern", Path.cwd() / "tests" / "endpoint" / "test_loader_pattern.py"
    )
    assert spec is not None and spec.loader is not None
    pattern = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(pattern)
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
            began = time.monotonic()
            with ServeProcess(tmp, "m", "--pull", "--wait", "300", env=env) as serve:
                tensors = pattern.StandIn(serve.ready(), cdn).load()
                times["S"] = time.monotonic() - began
                assert serve.pulled().stop() == 0, serve.stderr
            assert len(tensors) == 24
        with tempfile.TemporaryDirectory() as scratch:
            tmp = Path(scratch)
            env = isolated(tmp, model_catalog(tmp, files))
            began = time.monotonic()
            subprocess.run(
                [sys.executable, "-m", "mdl", "pull", "m", "--no-progress"], env=env, check=True
            )
            times["D"] = time.monotonic() - began
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tree", type=Path, action="append", default=[], help="another checkout")
    parser.add_argument("--size-mib", type=int, default=128)
    parser.add_argument("--rate-mbps", type=float, default=50.0, help="MB/s per origin stream")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.size_mib, args.rate_mbps)))
        return
    trees = [ROOT, *args.tree]
    runs: dict[Path, list[dict[str, float]]] = {tree: [] for tree in trees}
    for rep in range(args.reps):
        for tree in trees:
            python = tree / ".venv" / "bin" / "python"
            out = subprocess.run(
                [str(python if python.exists() else sys.executable), str(Path(__file__)),
                 "--one", "--size-mib", str(args.size_mib), "--rate-mbps", str(args.rate_mbps)],
                cwd=tree, check=True, capture_output=True, text=True,
            )  # fmt: skip
            runs[tree].append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(f"rep {rep + 1} {tree}: {runs[tree][-1]}", file=sys.stderr)
    first = statistics.median(r["S"] for r in runs[ROOT])
    print("| tree | S median s | D median s | S/D | S / this tree's S |")
    print("|---|---|---|---|---|")
    for tree, got in runs.items():
        s = statistics.median(r["S"] for r in got)
        d = statistics.median(r["D"] for r in got)
        print(f"| {tree} | {s:.2f} | {d:.2f} | {s / d:.2f}× | {s / first:.2f}× |")


if __name__ == "__main__":
    main()
