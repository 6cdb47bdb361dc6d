"""Benchmark ``mdl pack`` against ``zip -0 -r`` and ``zip -r`` on a checkpoint with one shard over 2 GiB.

Usage: python bench/bench_pack.py [FOLDER] [--size-gib 2.5] [--reps 3] [--no-deflate]
FOLDER defaults to /tmp/mdl-bench-pack; the run is built once and reused while its size matches.
The tools run alternately (rotating who goes first), each after a ``sync`` so that one tool's dirty pages
are not flushed on the next one's clock. Wall time and peak RSS come from ``os.wait4`` per child.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import struct
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHECKPOINT = "checkpoint-1000"


def build_run(folder: Path, size_gib: float) -> Path:
    """run/checkpoint-1000/model.safetensors (random-ish, not sparse) plus small config files."""
    ckpt = folder / "run" / CHECKPOINT
    weights = ckpt / "model.safetensors"
    data_size = int(size_gib * (1 << 30))
    header = json.dumps({"w": {"dtype": "U8", "shape": [data_size], "data_offsets": [0, data_size]}}).encode()
    header += b" " * (-len(header) % 8)
    total = 8 + len(header) + data_size
    if weights.is_file() and weights.stat().st_size == total:
        return folder / "run"
    ckpt.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    block = bytearray(os.urandom(64 << 20))
    with weights.open("wb") as fh:
        fh.write(struct.pack("<Q", len(header)) + header)
        left = data_size
        while left:
            # A fresh random MiB in front of each 64 MiB block: no long-range repeats for deflate to find.
            block[: 1 << 20] = os.urandom(1 << 20)
            fh.write(block[: min(left, len(block))])
            left -= min(left, len(block))
    (ckpt / "config.json").write_text(json.dumps({"model_type": "llama", "hidden_size": 4096}, indent=2))
    (ckpt / "tokenizer.json").write_text(json.dumps({"model": {"vocab": {f"t{i}": i for i in range(20000)}}}))
    (ckpt / "optimizer.pt").write_bytes(os.urandom(1 << 20))  # left out by the deploy profile
    print(f"built {weights} ({total / (1 << 30):.2f} GiB) in {time.monotonic() - started:.1f}s", file=sys.stderr)
    return folder / "run"


def mdl_command(run: Path, out: Path) -> list[str]:
    """``python -m mdl pack`` when the CLI has the command, else ``pack_run`` in a subprocess."""
    probe = subprocess.run(
        [sys.executable, "-m", "mdl", "pack", "--help"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    if probe.returncode == 0:
        return [sys.executable, "-m", "mdl", "pack", str(run), "--checkpoint", CHECKPOINT, "-o", str(out), "-q"]
    code = (
        "from pathlib import Path; from mdl.archive.packer import PackOptions, pack_run;"
        "from mdl.progress import NullProgress;"
        f"pack_run(PackOptions(run_dir=Path({str(run)!r}), output=Path({str(out)!r}), checkpoint={CHECKPOINT!r}),"
        "progress=NullProgress())"
    )
    return [sys.executable, "-c", code]


def timed(command: list[str], cwd: Path) -> tuple[float, float, int]:
    """Wall seconds, CPU seconds (user + system, all threads) and peak RSS (KiB) of one child process.

    GNU time measures the peak RSS when it is there: a child forked straight from this (big) process
    would inherit this process's high-water mark across exec, and ru_maxrss would report that instead.
    """
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    gnu_time = Path("/usr/bin/time")
    report = Path(os.environ.get("TMPDIR", "/tmp")) / f"mdl-bench-time-{os.getpid()}"
    if gnu_time.exists():
        command = [str(gnu_time), "-f", "%M", "-o", str(report), *command]
    started = time.monotonic()
    child = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)
    elapsed = time.monotonic() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{command} failed with exit code {os.waitstatus_to_exitcode(status)}")
    cpu = usage.ru_utime + usage.ru_stime
    if gnu_time.exists():
        rss = int(report.read_text().split()[-1])
        report.unlink()
        return elapsed, cpu, rss
    return elapsed, cpu, usage.ru_maxrss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", nargs="?", default="/tmp/mdl-bench-pack", type=Path)
    parser.add_argument("--size-gib", type=float, default=2.5)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--no-deflate", action="store_true", help="skip zip -r (deflate takes 1-2 min per run)")
    parser.add_argument(
        "--out", type=Path, help="where archives are written (default FOLDER/out; /dev/shm avoids disk noise)"
    )
    parser.add_argument("--settle", type=float, default=3.0, help="seconds to wait after sync between runs")
    args = parser.parse_args()
    if shutil.which("zip") is None:
        raise SystemExit("zip is not installed: apt-get update && apt-get install -y zip unzip")

    run = build_run(args.folder, args.size_gib)
    out = args.out or args.folder / "out"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    tools = {
        "mdl pack": (mdl_command(run, out / "mdl.zip"), ROOT),
        "zip -0 -r": (["zip", "-q", "-0", "-r", str(out / "zip0.zip"), CHECKPOINT], run),
    }
    if not args.no_deflate:
        tools["zip -r"] = (["zip", "-q", "-r", str(out / "zip.zip"), CHECKPOINT], run)
    results: dict[str, list[tuple[float, float, int]]] = {name: [] for name in tools}
    names = list(tools)
    for rep in range(args.reps):
        for name in names[rep % len(names) :] + names[: rep % len(names)]:
            for leftover in out.iterdir():
                leftover.unlink()
            # Deleting the last 2.5 GiB archive (ext4 here mounts with "discard") and flushing its dirty
            # pages must not land on the next tool's clock.
            os.sync()
            time.sleep(args.settle)
            command, cwd = tools[name]
            seconds, cpu, rss = timed(command, cwd)
            results[name].append((seconds, cpu, rss))
            print(
                f"rep {rep + 1} {name:10s} {seconds:6.2f}s wall {cpu:6.2f}s cpu  peak RSS {rss / 1024:7.1f} MiB",
                file=sys.stderr,
            )
    for leftover in out.iterdir():
        leftover.unlink()

    size = (run / CHECKPOINT / "model.safetensors").stat().st_size
    print(f"\nshard: {size / (1 << 30):.2f} GiB, {args.reps} alternating repetitions, median (min-max)\n")
    print("| tool | median wall s | min-max wall s | MB/s | median CPU s | peak RSS MiB |")
    print("|---|---|---|---|---|---|")
    medians: dict[str, float] = {}
    cpus: dict[str, float] = {}
    for name, runs in results.items():
        times = [t for t, _, _ in runs]
        medians[name] = statistics.median(times)
        cpus[name] = statistics.median(c for _, c, _ in runs)
        rss = max(r for _, _, r in runs) / 1024
        rate = size / medians[name] / 1e6
        print(
            f"| {name} | {medians[name]:.2f} | {min(times):.2f}-{max(times):.2f} | {rate:.0f} "
            f"| {cpus[name]:.2f} | {rss:.1f} |"
        )
    ratio = medians["mdl pack"] / medians["zip -0 -r"]
    print(
        f"\nmdl/zip-0 wall-time ratio: {ratio:.2f} (target <= 0.9); CPU-time ratio: "
        f"{cpus['mdl pack'] / cpus['zip -0 -r']:.2f}"
    )


if __name__ == "__main__":
    main()
