"""`mdl pack` against `zip -0 -r` and `zip -r` on a checkpoint with one shard over 2 GiB.

    python bench/pack.py [FOLDER] [--size-gib 2.5] [--reps 3] [--no-deflate] [--out /dev/shm/x]
    [--settle 3]

FOLDER (default /tmp/mdl-bench-pack) keeps the run between invocations while its size matches. The
tools alternate, each after a ``sync`` and ``--settle`` seconds, so one tool's deleted archive and
dirty pages are not flushed on the next one's clock. Results and findings: bench/README-pack.md.
"""

from __future__ import annotations

import argparse
import json
import struct
import sys
from pathlib import Path

import runner as r

CHECKPOINT = "checkpoint-1000"


def build_run(folder: Path, size_gib: float) -> Path:
    """run/checkpoint-1000: a safetensors shard of incompressible bytes, small configs and an
    optimizer file.
    """
    ckpt = folder / "run" / CHECKPOINT
    size = int(size_gib * r.GiB)
    header = json.dumps({"w": {"dtype": "U8", "shape": [size], "data_offsets": [0, size]}}).encode()
    header += b" " * (-len(header) % 8)
    prefix = struct.pack("<Q", len(header)) + header
    r.write_file(
        ckpt / "model.safetensors",
        8 + len(header) + size,
        prefix=prefix,
        meta=folder / "model.meta.json",
    )
    (ckpt / "config.json").write_text(
        json.dumps({"model_type": "llama", "hidden_size": 4096}, indent=2)
    )
    (ckpt / "tokenizer.json").write_text(
        json.dumps({"model": {"vocab": {f"t{i}": i for i in range(20000)}}})
    )
    # left out by the deploy profile
    r.write_file(ckpt / "optimizer.pt", r.MiB, meta=folder / "optimizer.meta.json")
    return folder / "run"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    r.add_common(parser, reps=3)
    parser.add_argument("folder", nargs="?", default=Path("/tmp/mdl-bench-pack"), type=Path)
    parser.add_argument("--size-gib", type=float, default=2.5)
    parser.add_argument(
        "--no-deflate", action="store_true", help="skip zip -r (deflate takes 1-2 min per run)"
    )
    parser.add_argument(
        "--out",
        type=Path,
        help="where archives go (default FOLDER/out; /dev/shm avoids disk noise)",
    )
    parser.add_argument(
        "--settle", type=float, default=3.0, help="seconds to wait after the sync before each run"
    )
    args = r.parse(parser)
    r.ensure_tools(("zip", "time"))
    run = build_run(args.folder, args.size_gib)
    argv = ["pack", str(run), "--checkpoint", CHECKPOINT, "-q", "-o"]
    mine = r.Tool("mdl pack", lambda d: r.mdl(*argv, str(d / "mdl.zip")))
    tools = [mine, *r.variants_of([mine], args.variant)]
    tools.append(
        r.Tool(
            "zip -0 -r",
            lambda d: ["zip", "-q", "-0", "-r", str(d / "zip0.zip"), CHECKPOINT],
            cwd=run,
        )
    )
    if not args.no_deflate:
        tools.append(
            r.Tool("zip -r", lambda d: ["zip", "-q", "-r", str(d / "zip.zip"), CHECKPOINT], cwd=run)
        )
    dest = (args.out or args.folder / "out") / "dest"
    env = r.clean_env(args.workdir)
    runs = r.measure(
        tools, reps=args.reps, work=args.workdir, env=env, dest=dest, settle=args.settle
    )
    size = (run / CHECKPOINT / "model.safetensors").stat().st_size
    print(
        f"\nshard: {size / r.GiB:.2f} GiB, {args.reps} alternating rounds; ratio: wall / zip -0"
        " -r's (target ≤ 0.9)"
    )
    print(r.side_by_side(runs, nbytes=size, baseline="zip -0 -r"))
    r.save_json(args, runs=runs)


if __name__ == "__main__":
    sys.exit(main())
