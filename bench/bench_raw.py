"""The raw body read (past the HTTP parser) against the parser path: `mdl get` of one big file from a loopback nginx.

    python bench/bench_raw.py [--file /tmp/mdl-bench/data/big-fast.bin] [--reps 3] [--strace] [--tree DIR]...

Runs ``mdl get URL --sha256 … -d DEST`` (verified, durable) with the raw reader on (``RAW_LEAST`` as shipped) and off
(``RAW_LEAST`` past any file), alternating, under ``/usr/bin/time``; prints wall, user and system CPU-seconds and the
connections and requests nginx saw, per run and as medians. ``--strace`` adds one run each under ``strace -c -f`` for
the system calls the transport makes per byte. ``--tree DIR`` runs another checkout's ``mdl`` package (before/after).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from nginx import Nginx  # noqa: E402

# The CLI with RAW_LEAST set first: "on" keeps the shipped value, "off" reads every body through the parser.
RUN = """
import sys
import mdl.transfer.body as body
if sys.argv.pop(1) == "off":
    body.RAW_LEAST = 1 << 62
from mdl.__main__ import main
main()
"""
SYSCALLS = "ioctl,mmap,munmap,futex,recvfrom,recvmsg,read,fdatasync,connect"


def sha256_of(path: Path) -> str:
    meta = path.with_name(path.name + ".meta.json")
    if meta.exists():
        return str(json.loads(meta.read_text())["sha256"])
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while block := file.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def run_once(mode: str, url: str, sha: str, dest: Path, log: Path, tree: Path, strace: Path | None) -> dict[str, float]:
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    log.write_text("")
    subprocess.run(["sync"], check=False)
    timing = dest.parent / "time.txt"
    command = [sys.executable, "-c", RUN, mode, "get", url, "--sha256", sha, "-d", str(dest), "-q"]
    if strace is not None:
        command = ["strace", "-c", "-f", "-e", f"trace={SYSCALLS}", "-o", str(strace), *command]
    env = {**os.environ, "PYTHONPATH": str(tree)}
    subprocess.run(
        ["/usr/bin/time", "-f", "%e %U %S", "-o", str(timing), *command],
        env=env,
        cwd=dest.parent,  # not this checkout: `python -c` puts the working folder first on sys.path
        stdout=subprocess.DEVNULL,
        check=True,
    )
    wall, user, system = (float(x) for x in timing.read_text().split()[-3:])
    lines = [line.split() for line in log.read_text().splitlines() if line.strip()]
    return {
        "wall": wall,
        "cpu": user + system,
        "user": user,
        "sys": system,
        "requests": len(lines),
        "connections": len({line[1] for line in lines}),
    }


def strace_counts(path: Path) -> dict[str, int]:
    counts = {}
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) >= 5 and re.fullmatch(r"[\d.]+", parts[0]) and parts[-1] != "total":
            counts[parts[-1]] = int(parts[3])
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--file", type=Path, default=Path("/tmp/mdl-bench/data/big-fast.bin"))
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--strace", action="store_true")
    parser.add_argument("--tree", type=Path, action="append", help="folder holding an mdl package (default: this one)")
    parser.add_argument("--modes", default="on,off")
    args = parser.parse_args()
    if not args.file.exists():
        parser.error(f"{args.file}: make one (e.g. head -c 2G /dev/urandom > FILE)")
    trees = args.tree or [HERE.parent]
    modes = args.modes.split(",")
    sha = sha256_of(args.file)
    work = Path(tempfile.mkdtemp(prefix="mdl-bench-raw-"))
    log = work / "access.log"
    results: dict[str, list[dict[str, float]]] = {}
    try:
        with Nginx("nginx", data=args.file.parent, prefix=work / "nginx", access_log=log) as nginx:
            url = f"{nginx.url}/fast/{args.file.name}"
            subprocess.run(["cat", str(args.file)], stdout=subprocess.DEVNULL, check=True)  # in the page cache
            for rep in range(args.reps):
                runs = [(tree, mode) for tree in trees for mode in modes]
                for tree, mode in runs if rep % 2 == 0 else runs[::-1]:
                    key = f"{tree} raw {mode}"
                    got = run_once(mode, url, sha, work / "out" / "d", log, tree, None)
                    results.setdefault(key, []).append(got)
                    print(key, " ".join(f"{k}={v:g}" for k, v in got.items()), flush=True)
            if args.strace:
                for tree in trees:
                    for mode in modes:
                        trace = work / "strace.txt"
                        run_once(mode, url, sha, work / "out" / "d", log, tree, trace)
                        print(f"{tree} raw {mode} strace", json.dumps(strace_counts(trace)), flush=True)
        for key, measured in results.items():
            medians = {name: statistics.median(run[name] for run in measured) for name in measured[0]}
            print("median", key, " ".join(f"{k}={v:g}" for k, v in medians.items()))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
