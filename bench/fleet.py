"""Fleet simulation: one machine seeds a bucket, then N nodes pull from it at once, against N nodes
on the Hub.

    python bench/fleet.py                       # 2 GiB model, 8 nodes, 3 alternating rounds of the
    1-node pair python bench/fleet.py --size-gib 0.25 --nodes 4 --reps 1     # a quick check python
    bench/fleet.py --write-results       # and rewrite bench/FLEET.md

All on 127.0.0.1: the Hub stand-in of tests/servers.py (its CDN serves the LFS files from disk), an
S3 server in a process of its own (s3rver, npm's filesystem-backed S3, installed into the work
folder on first use; or ``--server moto``, which copies a whole object in memory for every GET), and
each node an ``mdl pull`` with its own folder. Reported: the bytes the Hub served (0 once the nodes
pull from the bucket), wall time and aggregate throughput, and for one node mdl's s3 pull beside
boto3's ``download_file`` (what an ``aws s3 cp`` script does). The AWS variables are test
credentials, a 127.0.0.1 endpoint and AWS_EC2_METADATA_DISABLED=true.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import runner as r
from servers import Content, HubServer  # tests/servers.py

REPO, MODEL, BUCKET, PREFIX = "fleet-org/fleet-model", "fleet-model", "fleet-bucket", "hub"
MIRROR = f"s3://{BUCKET}/{PREFIX}/{{model}}/{{sha256}}"  # publish stores each file by content
BOTO = "import sys, boto3\nc = boto3.client('s3')\nfor name in sys.argv[2:]:\n    c.{}\n"
DOWNLOAD = BOTO.format(
    f"download_file('{BUCKET}', '{PREFIX}/{MODEL}/' + name, sys.argv[1] + '/' + name)"
)
UPLOAD = BOTO.format(f"upload_file(name, '{BUCKET}', 'boto-seed/' + name.rsplit('/', 1)[-1])")


def s3_server(kind: str, work: Path, port: int) -> list[str]:
    """How to start the S3 server on 127.0.0.1:port (s3rver is installed with npm on first use)."""
    if kind == "moto":
        return [r.PY, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    binary = work / "s3rver" / "node_modules" / ".bin" / "s3rver"
    if not binary.exists():
        subprocess.run(
            ["npm", "install", "--silent", "--prefix", str(work / "s3rver"), "s3rver@3.7.1"],
            check=True,
        )
    shutil.rmtree(work / "s3rver-data", ignore_errors=True)
    (work / "s3rver-data").mkdir()
    return [
        str(binary),
        "-d",
        str(work / "s3rver-data"),
        "-a",
        "127.0.0.1",
        "-p",
        str(port),
        "--silent",
    ]


def at_once(argvs: list[list[str]], env: dict[str, str]) -> float:
    """Start every command at once; their wall time (an error when one fails)."""
    started = time.perf_counter()
    procs = [
        subprocess.Popen(a, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        for a in argvs
    ]
    failed = [p.communicate()[1].decode(errors="replace")[-500:] for p in procs if p.wait() != 0]
    if failed:
        raise RuntimeError("failed: " + "\n".join(failed))
    return time.perf_counter() - started


def wait_for(port: int, proc: subprocess.Popen[bytes], name: str) -> None:
    """Until the server accepts connections on 127.0.0.1:port (an error if it exits or takes 30
    s).
    """
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
            return
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(
                    f"{name} did not start; see its log in the work folder"
                ) from None
            time.sleep(0.2)


Step = tuple[str, float, int, int]  # what, wall, bytes moved, bytes from the Hub


def seed_and_pull(
    args: argparse.Namespace,
    work: Path,
    hub: HubServer,
    endpoint: str,
    paths: list[Path],
    total: int,
) -> tuple[list[Step], dict[str, list[r.Measure]]]:
    """Seed the bucket (against boto3's upload), N nodes from the bucket then from the Hub, the
    1-node pair.
    """
    env = r.clean_env(
        work,
        HF_ENDPOINT=hub.url,
        MDL_CATALOG=str(work / "catalog.toml"),
        AWS_ACCESS_KEY_ID="S3RVER",
        AWS_SECRET_ACCESS_KEY="S3RVER",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_ENDPOINT_URL=endpoint,
    )
    bucket = f"import boto3; boto3.client('s3').create_bucket(Bucket='{BUCKET}')"
    subprocess.run([r.PY, "-c", bucket], env=env, check=True)
    log = work / "logs" / "runs.log"

    def timed(*argv: str) -> float:
        m = r.run_measured(argv, env=env, log=log)
        if not m.ok:
            raise RuntimeError(f"{' '.join(argv)} failed; see {log}")
        return m.wall

    def hub_bytes() -> int:
        resolves = [x for x in hub.log.records(method="GET") if "/resolve/" in x.url_path]
        return hub.cdn.log.body_bytes() + sum(x.bytes_sent for x in resolves)

    seed = work / "seed"
    publish = ("publish", MODEL, "--to", f"s3://{BUCKET}/{PREFIX}", "--dest", str(seed), "-q")
    shutil.rmtree(seed, ignore_errors=True)
    steps: list[Step] = []
    wall = timed(*r.mdl("pull", MODEL, "--dest", str(seed), "-q"))
    steps.append(("seed: `mdl pull` from the Hub", wall, total, hub_bytes()))
    # the nodes pull on the lock: every file's sha256 (config.json's too: the Hub lists only its
    # git blob id) names its object
    timed(*r.mdl("lock", MODEL, "-q"))
    steps.append(("seed: `mdl publish` to the bucket", timed(*r.mdl(*publish)), total, 0))
    wall = timed(r.PY, "-c", UPLOAD, "-", *map(str, paths))
    steps.append(("seed: boto3 `upload_file` per object (no checksum)", wall, total, 0))
    steps.append(("re-run of `mdl publish` (all skipped)", timed(*r.mdl(*publish)), 0, 0))
    flags = ["--connections", str(args.node_connections), "--jobs", str(args.node_jobs)]
    for where, extra in (("--mirror s3://…", ["--mirror", MIRROR]), ("from the Hub", [])):
        hub.log.clear()
        hub.cdn.log.clear()
        argvs = [
            r.mdl("pull", MODEL, "--dest", str(work / f"node-{i}"), "-q", *flags, *extra)
            for i in range(args.nodes)
        ]
        for i in range(args.nodes):
            shutil.rmtree(work / f"node-{i}", ignore_errors=True)
        wall = at_once(argvs, env)
        what = f"{args.nodes} nodes `mdl pull {' '.join(flags)} {where}` at once"
        steps.append((what, wall, args.nodes * total, hub_bytes()))
    names = [hashlib.sha256(p.read_bytes()).hexdigest() for p in paths]  # the objects' names
    mirrored = ["pull", MODEL, "-q", "--mirror", MIRROR, "--dest"]
    pair = [
        r.Tool("1 node `mdl pull --mirror s3://…`", lambda d: r.mdl(*mirrored, str(d))),
        r.python("1 node boto3 `download_file` per object", DOWNLOAD, *names),
    ]
    runs = r.measure(pair, reps=args.reps, work=work, env=env)
    return steps, runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    r.add_common(parser, reps=3, workdir=Path("/tmp/mdl-fleet"))
    parser.add_argument("--size-gib", type=float, default=2.0)
    parser.add_argument("--shard-mib", type=int, default=512)
    parser.add_argument("--nodes", type=int, default=8)
    parser.add_argument("--server", choices=("s3rver", "moto"), default="s3rver")
    # mdl's defaults. With moto, 8 nodes × 4 files × 8 ranges = 256 connections at once is more than
    # one moto process accepts within mdl's 10 s connect timeout (the nodes then rightly fall back
    # to the Hub).
    parser.add_argument("--node-connections", type=int, default=8)
    parser.add_argument("--node-jobs", type=int, default=4)
    parser.add_argument(
        "--write-results", action="store_true", help="rewrite bench/FLEET.md with this run"
    )
    args = r.parse(parser)
    work, size, shard = args.workdir, int(args.size_gib * r.GiB), args.shard_mib * r.MiB
    count = max(1, -(-size // shard))
    files = [
        r.write_file(
            work / "data" / f"model-{i + 1:05d}-of-{count:05d}.safetensors",
            min(shard, size - i * shard),
            meta=work / f"shard-{i}.meta.json",
        )
        for i in range(count)
    ]
    (work / "data" / "config.json").write_text(
        json.dumps({"model_type": "fleet", "shards": count}) + "\n"
    )
    paths = [f.path for f in files] + [work / "data" / "config.json"]
    total = sum(p.stat().st_size for p in paths)
    print(f"model: {len(paths)} files, {total / r.MiB:.0f} MiB; {args.nodes} nodes", flush=True)
    (work / "catalog.toml").write_text(f'[models.{MODEL}]\nrepo = "{REPO}"\n')
    port = r.free_port()
    endpoint = f"http://127.0.0.1:{port}"
    hub = HubServer()
    hub.add_repo(REPO, {p.name: Content(p) for p in paths})
    s3 = subprocess.Popen(
        s3_server(args.server, work, port),
        stdout=(work / f"{args.server}.log").open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        with hub:
            wait_for(port, s3, args.server)
            steps, runs = seed_and_pull(args, work, hub, endpoint, paths, total)
    finally:
        s3.terminate()
        s3.wait(timeout=10)
    rows = [
        {
            "step": what,
            "wall": f"{wall:.1f} s",
            "aggregate": f"{moved / r.MiB / wall:.0f} MiB/s" if moved else "—",
            "hub": f"{from_hub / r.MiB:.0f} MiB",
        }
        for what, wall, moved, from_hub in steps
    ]
    rows += [
        {
            "step": f"{name} (median of {args.reps})",
            "wall": f"{r.median(ms):.1f} s",
            "aggregate": f"{total / r.MiB / r.median(ms):.0f} MiB/s",
            "hub": "0 MiB",
        }
        for name, ms in runs.items()
    ]
    mine, boto = (r.median(ms) for ms in runs.values())
    columns = [
        ("step", "step"),
        ("wall", "wall"),
        ("aggregate", "aggregate"),
        ("hub", "bytes from the Hub stand-in"),
    ]
    text = "\n".join(
        [
            (
                f"Model: {len(paths)} files, {total / r.MiB:.0f} MiB; {args.nodes} nodes"
                f" (processes, separate destinations); loopback, S3 server {args.server} in its own"
                " process, Hub stand-in CDN from disk."
            ),
            "",
            r.table(rows, columns, markdown=True),
            "",
            (
                f"mdl / boto3 for one node: {mine / boto:.2f}× the time (mdl also verifies every"
                " byte's sha256 against the Hub's and fsyncs; boto3 does neither)."
            ),
        ]
    )
    print("\n" + text)
    r.save_json(args, steps=steps, runs=runs)
    if args.write_results:
        heading = "# Fleet simulation (`bench/fleet.py`)"
        (r.HERE / "FLEET.md").write_text(f"{heading}\n\nCommand: `{args.command}`\n\n{text}\n")


if __name__ == "__main__":
    sys.exit(main())
