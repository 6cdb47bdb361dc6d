"""A no-op `mdl get` (everything already there, as a get saved it) of a big Hub file against the same
of a 42-byte one: what "nothing to do" costs.

    python bench/noop_get.py [--size-mib 512] [--reps 5] [--variant DIR]... [--workdir DIR] [--json FILE]

Each folder is filled once by `mdl get hf://bench/NAME -d DIR` (untimed); then the same command runs again
in alternating rounds, under GNU time, against the Hub stand-in of tests/servers.py (it serves the listing;
no body is asked for). Target (issue 88): the big no-op's CPU within 0.3 CPU-s of the tiny one's: the get
judges its files by its record (size, mtime), never by reading them back. A ``--variant`` (another tree's
mdl, e.g. before the change) is timed on the same folders.
"""

from __future__ import annotations

import argparse
import subprocess
import sys

import runner as r

TARGET_CPU_S = 0.3


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    r.add_common(parser, reps=5)
    parser.add_argument("--size-mib", type=int, default=512)
    args = r.parse(parser)
    data = args.workdir / "data"
    big = r.write_file(data / "big" / "model.safetensors", args.size_mib * r.MiB)
    tiny = data / "tiny" / "config.json"
    tiny.parent.mkdir(parents=True, exist_ok=True)
    tiny.write_bytes(b'{"architectures": ["Bench"], "n": 42}'.ljust(42))
    repos = {
        "bench/big": {"model.safetensors": r.file_content(big.path, sha256=big.sha256)},
        "bench/tiny": {"config.json": r.file_content(tiny)},
    }
    hub = r.HubServer()
    for repo, files in repos.items():
        hub.add_repo(repo, files)
    hub.start()
    try:
        env = {**r.clean_env(args.workdir), "HF_ENDPOINT": hub.url}
        trees = [("", None), *((f" [{v.resolve().name}]", v.resolve()) for v in args.variant)]
        tools = []
        for name, size in (("big", args.size_mib * r.MiB), ("tiny", 42)):
            folder = args.workdir / "out" / name
            argv = r.mdl("get", f"hf://bench/{name}", "-d", str(folder), "-q")
            # filled once, by this tree (a variant reads the same folder and record)
            subprocess.run(argv, env=env, check=True, capture_output=True)
            label = f"no-op get {r_size(size)}"
            for suffix, tree in trees:
                extra = {} if tree is None else {"PYTHONPATH": str(tree)}
                tools.append((f"{label}{suffix}", argv, extra))
        runs: r.Runs = {name: [] for name, _, _ in tools}
        log = args.workdir / "logs" / "runs.log"
        for rep, (name, argv, extra) in r.rotations(tools, args.reps):
            m = r.run_measured(argv, env={**env, **extra}, log=log, quiet=(0.5, 10.0))
            runs[name].append(m)
            sys.stderr.write(
                f"  rep {rep + 1}/{args.reps}  {name:32} {m.wall:6.2f} s  cpu {m.cpu:5.2f} s"
                f"  (others busy {m.busy:.0%}){'' if m.ok else '  FAILED'}\n"
            )
    finally:
        hub.stop()
    print(r.side_by_side(runs, attr="cpu"))
    gap = r.median(runs[tools[0][0]], "cpu") - r.median(runs[tools[len(trees)][0]], "cpu")
    verdict = "PASS" if abs(gap) <= TARGET_CPU_S else "FAIL"
    print(f"\nbig - tiny CPU: {gap:+.2f} s (target: within ±{TARGET_CPU_S} CPU-s): {verdict}")
    r.save_json(args, runs=runs, gap_cpu_s=gap)
    return 0 if verdict == "PASS" else 1


def r_size(n: int) -> str:
    return f"{n // r.MiB} MiB" if n >= r.MiB else f"{n} B"


if __name__ == "__main__":
    sys.exit(main())
