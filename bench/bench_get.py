"""Benchmark ``mdl get`` on a serverless job response with a large inline (base64) file.

Side by side with what users do today: ``jq -r .output.files[0].data job.json | base64 -d > file`` and the
plain Python a trainer's client ships (``json.load`` + ``base64.b64decode`` + write). Reports wall time and
peak RSS (of the whole pipeline for jq | base64), median of ``--reps`` runs, tools alternating.

    python bench/bench_get.py --size-mib 64 --reps 5
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

PYTHON_CLIENT = """
import base64, json, sys
doc = json.load(open(sys.argv[1]))
item = doc["output"]["files"][0]
open(sys.argv[2] + "/" + item["filename"], "wb").write(base64.b64decode(item["data"]))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=64)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mdl-bench-get-"))
    try:
        data = os.urandom(args.size_mib * 1024 * 1024)
        digest = hashlib.sha256(data).hexdigest()
        job = {
            "id": "bench",
            "status": "COMPLETED",
            "output": {
                "files": [
                    {
                        "type": "file_data",
                        "filename": "lora.safetensors",
                        "data": base64.b64encode(data).decode(),
                        "size": len(data),
                        "sha256": digest,
                    }
                ]
            },
        }
        job_path = work / "job.json"
        job_path.write_text(json.dumps(job))
        del job, data
        mdl = shutil.which("mdl", path=str(Path(sys.executable).parent)) or "mdl"
        tools: dict[str, tuple[list[str] | str, bool]] = {
            "mdl get": ([mdl, "get", str(job_path), "-d", str(work / "out-mdl"), "-q"], False),
            "python json+b64decode": (
                [sys.executable, "-c", PYTHON_CLIENT, str(job_path), str(work / "out-py")],
                False,
            ),
        }
        if shutil.which("jq"):
            tools["jq | base64 -d"] = (
                f"jq -r '.output.files[0].data' {job_path} | base64 -d > {work}/out-jq.bin",
                True,
            )
        (work / "out-py").mkdir()
        results: dict[str, list[tuple[float, float]]] = {name: [] for name in tools}
        for _ in range(args.reps):
            for name, (cmd, shell) in tools.items():
                # RUSAGE_CHILDREN keeps the maximum over all children so far: measure each tool in a fresh
                # interpreter so its peak is its own.
                probe = (
                    "import resource, subprocess, sys, json, time;"
                    "cmd = json.loads(sys.argv[1]); shell = sys.argv[2] == '1';"
                    "t = time.perf_counter(); subprocess.run(cmd, shell=shell, check=True);"
                    "w = time.perf_counter() - t;"
                    "print(w, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)"
                )
                out = subprocess.run(
                    [sys.executable, "-c", probe, json.dumps(cmd), "1" if shell else "0"],
                    check=True,
                    capture_output=True,
                    text=True,
                ).stdout.split()
                results[name].append((float(out[0]), float(out[1])))
        print(f"job.json: {job_path.stat().st_size / 2**20:.0f} MiB text, one {args.size_mib} MiB inline file")
        print(f"{'tool':<24} {'wall s (median)':>16} {'peak RSS MiB (median)':>22}")
        base = statistics.median(w for w, _ in results["mdl get"])
        for name, runs in results.items():
            wall = statistics.median(w for w, _ in runs)
            rss = statistics.median(r for _, r in runs)
            print(f"{name:<24} {wall:>16.2f} {rss:>22.1f}   (mdl/{name}: {base / wall:.2f}x wall)")
        written = (work / "out-mdl" / "lora.safetensors").read_bytes()
        assert hashlib.sha256(written).hexdigest() == digest
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
