"""`mdl get` of a serverless job response carrying a large inline (base64) file, against what users
do today.

    python bench/get.py [--size-mib 64] [--reps 5] [--variant DIR]... [--workdir DIR] [--json FILE]

Beside ``jq -r .output.files[0].data job.json | base64 -d > file`` and the plain Python a trainer's
client ships (``json.load`` + ``base64.b64decode`` + write): wall, CPU and peak RSS (of the whole
pipeline for jq), medians of alternating rounds, every output checked against the file's sha256 in
the first round.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import sys
from pathlib import Path

import runner as r

NAME = "lora.safetensors"
PYTHON_CLIENT = """import base64, json, sys
item = json.load(open(sys.argv[2]))["output"]["files"][0]
open(sys.argv[1] + "/" + item["filename"], "wb").write(base64.b64decode(item["data"]))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    r.add_common(parser, reps=5)
    parser.add_argument("--size-mib", type=int, default=64)
    args = r.parse(parser)
    data = os.urandom(args.size_mib * r.MiB)
    out = r.DataFile(Path(NAME), len(data), hashlib.sha256(data).hexdigest())
    job = args.workdir / "job.json"
    item = {
        "type": "file_data",
        "filename": NAME,
        "data": base64.b64encode(data).decode(),
        "size": out.size,
    }
    item["sha256"] = out.sha256
    job.write_text(json.dumps({"id": "bench", "status": "COMPLETED", "output": {"files": [item]}}))
    del data, item
    mine = r.Tool("mdl get", lambda d: r.mdl("get", str(job), "-d", str(d), "-q"), r.flat(out))
    naive = r.python("python json+b64decode", PYTHON_CLIENT, str(job), outputs=r.flat(out))
    tools = [mine, *r.variants_of([mine], args.variant), naive]
    if r.which("jq"):
        script = 'jq -r ".output.files[0].data" "$2" | base64 -d > "$1"'
        tools.append(r.shell("jq | base64 -d", script, str(job), out))
    runs = r.measure(
        tools, reps=args.reps, work=args.workdir, env=r.clean_env(args.workdir), warmup=True
    )
    print(
        f"\njob.json: {job.stat().st_size / r.MiB:.0f} MiB of text, one {args.size_mib} MiB inline"
        " file"
    )
    print(r.side_by_side(runs, nbytes=out.size))
    r.save_json(args, runs=runs)


if __name__ == "__main__":
    sys.exit(main())
