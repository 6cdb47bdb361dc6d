"""Fleet simulation: one machine seeds a bucket, then N nodes pull from it at once — against N nodes on the Hub.

Everything runs on 127.0.0.1: the Hub stand-in of tests/servers.py (its CDN serves the LFS files from disk),
an S3 server in a process of its own, and each node an ``mdl pull`` process with its own destination. The S3
server is s3rver (``--server s3rver``, the default: npm's filesystem-backed S3 with SigV4, streaming ranged
GETs from disk; installed into the work folder with npm) or moto (``--server moto``, the tests' server: it
copies a whole object in memory for every GET, ranged or not, so it measures moto rather than the clients).
Reported: the bytes the Hub stand-in served (0 after seeding, when the nodes pull from the bucket), wall time
and aggregate throughput of the nodes, the same nodes straight from the Hub, and for one node mdl's s3 pull
beside boto3's ``download_file`` (what an ``aws s3 cp`` script does).

    python bench/fleet.py                       # 2 GiB model, 8 nodes, 3 alternating repetitions of the 1-node pair
    python bench/fleet.py --size-gib 0.25 --nodes 4 --reps 1     # a quick check
    python bench/fleet.py --write-results       # and rewrite bench/FLEET.md

No traffic leaves the loopback; the AWS variables are set to test credentials, a 127.0.0.1 endpoint and
AWS_EC2_METADATA_DISABLED=true for every process.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from servers import Content, HubServer  # noqa: E402  (tests/ is not a package)

MiB = 1024 * 1024
REPO = "fleet-org/fleet-model"
MODEL = "fleet-model"
BUCKET = "fleet-bucket"
PREFIX = "hub"
MIRROR = f"s3://{BUCKET}/{PREFIX}/{{model}}/{{path}}"
ACCESS_KEY = "S3RVER"  # s3rver's built-in test key pair (moto takes any)
SECRET_KEY = "S3RVER"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_model(folder: Path, size: int, shard: int) -> dict[str, Path]:
    """Shards of random bytes (made once, kept for the next run) and a config.json."""
    folder.mkdir(parents=True, exist_ok=True)
    count = max(1, -(-size // shard))
    files: dict[str, Path] = {}
    for i in range(count):
        name = f"model-{i + 1:05d}-of-{count:05d}.safetensors"
        path = folder / name
        want = min(shard, size - i * shard)
        if not path.exists() or path.stat().st_size != want:
            with path.open("wb") as out:
                left = want
                while left:
                    n = min(left, 8 * MiB)
                    out.write(os.urandom(n))
                    left -= n
        files[name] = path
    config = folder / "config.json"
    config.write_text(json.dumps({"model_type": "fleet", "shards": count}) + "\n")
    files["config.json"] = config
    return files


@dataclass
class Servers:
    hub: Any
    s3_endpoint: str
    moto: subprocess.Popen[bytes]
    env: dict[str, str] = field(default_factory=dict)

    def hub_bytes(self) -> int:
        """Bytes of file contents the Hub stand-in sent: its CDN, and resolve answers that carried a body."""
        resolves = [r for r in self.hub.log.records(method="GET") if "/resolve/" in r.url_path]
        return self.hub.cdn.log.body_bytes() + sum(r.bytes_sent for r in resolves)

    def clear(self) -> None:
        self.hub.log.clear()
        self.hub.cdn.log.clear()

    def stop(self) -> None:
        self.hub.stop()
        self.moto.terminate()
        try:
            self.moto.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.moto.kill()


def s3_command(server: str, work: Path, port: int) -> list[str]:
    """How to start the S3 server on 127.0.0.1:port (s3rver is installed with npm on first use)."""
    if server == "moto":
        return [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    folder = work / "s3rver"
    binary = folder / "node_modules" / ".bin" / "s3rver"
    if not binary.exists():
        folder.mkdir(parents=True, exist_ok=True)
        subprocess.run(["npm", "install", "--silent", "--prefix", str(folder), "s3rver@3.7.1"], check=True)
    store = work / "s3rver-data"
    shutil.rmtree(store, ignore_errors=True)
    store.mkdir()
    return [str(binary), "-d", str(store), "-a", "127.0.0.1", "-p", str(port), "--silent"]


def start_servers(work: Path, files: dict[str, Path], *, server: str) -> Servers:
    hub = HubServer()
    hub.add_repo(REPO, {name: Content(path) for name, path in files.items()})
    hub.start()
    port = free_port()
    moto = subprocess.Popen(
        s3_command(server, work, port),
        stdout=(work / f"{server}.log").open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2):
                break
        except OSError:
            if time.monotonic() > deadline or moto.poll() is not None:
                hub.stop()  # nothing of ours is left running
                moto.kill()
                raise RuntimeError(f"{server} did not start; see {server}.log") from None
            time.sleep(0.2)
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "HF_", "MDL_")) and "proxy" not in k.lower()
    }
    home = work / "home"
    home.mkdir(exist_ok=True)
    env |= {
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "XDG_DATA_HOME": str(home / ".local/share"),
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": endpoint,
        "HF_ENDPOINT": hub.url,
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "MDL_LOG_FILE": str(work / "mdl.log"),
        "MDL_CATALOG": str(work / "catalog.toml"),
    }
    (work / "catalog.toml").write_text(f'[models.{MODEL}]\nrepo = "{REPO}"\n')
    servers = Servers(hub, endpoint, moto, env)
    _boto(servers).create_bucket(Bucket=BUCKET)
    return servers


def _boto(servers: Servers) -> Any:
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=servers.s3_endpoint,
        region_name="us-east-1",
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
    )


def mdl(servers: Servers, *args: str) -> list[str]:
    return [sys.executable, "-m", "mdl", *args]


def run(servers: Servers, command: list[str]) -> float:
    started = time.perf_counter()
    proc = subprocess.run(command, env=servers.env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {proc.returncode}: {proc.stderr[-2000:]}")
    return time.perf_counter() - started


def nodes_at_once(servers: Servers, work: Path, count: int, *, mirror: bool, flags: list[str]) -> float:
    """``count`` mdl pull processes at once, each into its own destination; their wall time."""
    dests = [work / f"node-{i}" for i in range(count)]
    for dest in dests:
        shutil.rmtree(dest, ignore_errors=True)
    extra = [*flags, "--mirror", MIRROR] if mirror else flags
    started = time.perf_counter()
    procs = [
        subprocess.Popen(
            mdl(servers, "pull", MODEL, "--dest", str(dest), "-q", *extra),
            env=servers.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for dest in dests
    ]
    failures = []
    for proc in procs:
        _, err = proc.communicate()
        if proc.returncode != 0:
            failures.append(err.decode(errors="replace")[-500:])
    wall = time.perf_counter() - started
    if failures:
        raise RuntimeError("nodes failed: " + "\n".join(failures))
    for dest in dests:
        shutil.rmtree(dest, ignore_errors=True)
    return wall


def boto_download(servers: Servers, dest: Path, names: list[str]) -> float:
    """What an ``aws s3 cp`` script does: boto3 download_file per object (its default multipart settings)."""
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    script = (
        "import sys, boto3\n"
        "c = boto3.client('s3')\n"
        "for name in sys.argv[2:]:\n"
        f"    c.download_file('{BUCKET}', '{PREFIX}/{MODEL}/' + name, sys.argv[1] + '/' + name)\n"
    )
    seconds = run(servers, [sys.executable, "-c", script, str(dest), *names])
    shutil.rmtree(dest, ignore_errors=True)
    return seconds


def boto_upload(servers: Servers, files: dict[str, Path]) -> float:
    """What an ``aws s3 cp``/``sync`` script does to seed: boto3 upload_file per object (its default settings,
    no SHA-256 checksum asked for)."""
    script = (
        "import sys, boto3\n"
        "c = boto3.client('s3')\n"
        "for path in sys.argv[1:]:\n"
        f"    c.upload_file(path, '{BUCKET}', 'boto-seed/' + path.rsplit('/', 1)[-1])\n"
    )
    return run(servers, [sys.executable, "-c", script, *(str(p) for p in files.values())])


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(8 * MiB):
            h.update(chunk)
    return h.hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-gib", type=float, default=2.0)
    parser.add_argument("--shard-mib", type=int, default=512)
    parser.add_argument("--nodes", type=int, default=8)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--server", choices=("s3rver", "moto"), default="s3rver")
    # mdl's defaults. With --server moto, 8 nodes x 4 files x 8 ranges = 256 connections at once is more than one
    # moto process accepts within mdl's 10 s connect timeout (the nodes then rightly fall back to the Hub).
    parser.add_argument("--node-connections", type=int, default=8)
    parser.add_argument("--node-jobs", type=int, default=4)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/mdl-fleet"))
    parser.add_argument("--write-results", action="store_true", help="rewrite bench/FLEET.md with this run")
    args = parser.parse_args()
    work: Path = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    size = int(args.size_gib * 1024 * MiB)
    files = make_model(work / "data", size, args.shard_mib * MiB)
    total = sum(p.stat().st_size for p in files.values())
    print(f"model: {len(files)} files, {total / MiB:.0f} MiB; {args.nodes} nodes", flush=True)
    servers = start_servers(work, files, server=args.server)
    rows: dict[str, Any] = {"size_mib": round(total / MiB), "files": len(files), "nodes": args.nodes}
    rows["server"] = args.server
    try:
        seed = work / "seed"
        shutil.rmtree(seed, ignore_errors=True)
        rows["seed_pull_s"] = run(servers, mdl(servers, "pull", MODEL, "--dest", str(seed), "-q"))
        rows["seed_publish_s"] = run(
            servers, mdl(servers, "publish", MODEL, "--to", f"s3://{BUCKET}/{PREFIX}", "--dest", str(seed), "-q")
        )
        rows["seed_boto3_s"] = boto_upload(servers, files)
        rows["republish_s"] = run(
            servers, mdl(servers, "publish", MODEL, "--to", f"s3://{BUCKET}/{PREFIX}", "--dest", str(seed), "-q")
        )
        rows["hub_bytes_seeding"] = servers.hub_bytes()
        print(f"seeded: pull {rows['seed_pull_s']:.1f}s, publish {rows['seed_publish_s']:.1f}s", flush=True)

        servers.clear()
        flags = ["--connections", str(args.node_connections), "--jobs", str(args.node_jobs)]
        rows["node_flags"] = " ".join(flags)
        rows["fleet_bucket_s"] = nodes_at_once(servers, work, args.nodes, mirror=True, flags=flags)
        rows["hub_bytes_fleet_bucket"] = servers.hub_bytes()
        print(f"{args.nodes} nodes from the bucket: {rows['fleet_bucket_s']:.1f}s", flush=True)
        servers.clear()
        rows["fleet_hub_s"] = nodes_at_once(servers, work, args.nodes, mirror=False, flags=flags)
        rows["hub_bytes_fleet_hub"] = servers.hub_bytes()
        print(f"{args.nodes} nodes from the Hub: {rows['fleet_hub_s']:.1f}s", flush=True)

        names = sorted(files)
        one = work / "one"
        mdl_times: list[float] = []
        boto_times: list[float] = []
        for _ in range(args.reps):  # alternating, medians
            shutil.rmtree(one, ignore_errors=True)
            mdl_times.append(run(servers, mdl(servers, "pull", MODEL, "--dest", str(one), "-q", "--mirror", MIRROR)))
            shutil.rmtree(one, ignore_errors=True)
            boto_times.append(boto_download(servers, work / "boto", names))
        rows["one_node_mdl_s"] = statistics.median(mdl_times)
        rows["one_node_boto3_s"] = statistics.median(boto_times)
        rows["one_node_runs"] = {"mdl": mdl_times, "boto3": boto_times}
        shutil.rmtree(one, ignore_errors=True)
    finally:
        servers.stop()
    report(rows, total, args)


def report(rows: dict[str, Any], total: int, args: argparse.Namespace) -> None:
    n = rows["nodes"]
    fleet_bytes = n * total
    lines = [
        f"Model: {rows['files']} files, {rows['size_mib']} MiB; {n} nodes (processes, separate destinations); "
        f"2 cores, loopback, S3 server {rows['server']} in its own process, Hub stand-in CDN from disk.",
        "",
        "| step | wall | aggregate | bytes from the Hub stand-in |",
        "|---|---|---|---|",
        f"| seed: `mdl pull` from the Hub | {rows['seed_pull_s']:.1f} s "
        f"| {total / MiB / rows['seed_pull_s']:.0f} MiB/s | {rows['hub_bytes_seeding'] / MiB:.0f} MiB |",
        f"| seed: `mdl publish` to the bucket | {rows['seed_publish_s']:.1f} s "
        f"| {total / MiB / rows['seed_publish_s']:.0f} MiB/s | 0 |",
        f"| seed: boto3 `upload_file` per object (no checksum) | {rows['seed_boto3_s']:.1f} s "
        f"| {total / MiB / rows['seed_boto3_s']:.0f} MiB/s | 0 |",
        f"| re-run of `mdl publish` (all skipped) | {rows['republish_s']:.1f} s | — | 0 |",
        f"| {n} nodes `mdl pull {rows['node_flags']} --mirror s3://…` at once | {rows['fleet_bucket_s']:.1f} s "
        f"| {fleet_bytes / MiB / rows['fleet_bucket_s']:.0f} MiB/s | {rows['hub_bytes_fleet_bucket'] / MiB:.1f} MiB |",
        f"| {n} nodes `mdl pull {rows['node_flags']}` from the Hub at once | {rows['fleet_hub_s']:.1f} s "
        f"| {fleet_bytes / MiB / rows['fleet_hub_s']:.0f} MiB/s | {rows['hub_bytes_fleet_hub'] / MiB:.0f} MiB |",
        f"| 1 node `mdl pull --mirror s3://…` (median of {args.reps}) | {rows['one_node_mdl_s']:.1f} s "
        f"| {total / MiB / rows['one_node_mdl_s']:.0f} MiB/s | 0 |",
        f"| 1 node boto3 `download_file` per object (median of {args.reps}) | {rows['one_node_boto3_s']:.1f} s "
        f"| {total / MiB / rows['one_node_boto3_s']:.0f} MiB/s | 0 |",
        "",
        f"mdl / boto3 for one node: {rows['one_node_mdl_s'] / rows['one_node_boto3_s']:.2f}× the time "
        "(mdl also verifies every byte's sha256 against the Hub's and fsyncs; boto3 does neither). "
        f"Runs: {json.dumps(rows['one_node_runs'])}",
    ]
    text = "\n".join(lines)
    print()
    print(text)
    if args.write_results:
        out = ROOT / "bench" / "FLEET.md"
        out.write_text(
            "# Fleet simulation (`bench/fleet.py`)\n\n"
            f"Command: `python bench/fleet.py --size-gib {args.size_gib} --nodes {n} --reps {args.reps} "
            f"--server {args.server} --node-connections {args.node_connections} --node-jobs {args.node_jobs}`\n\n"
            + text
            + "\n"
        )
        print(f"\nwritten to {out}")


if __name__ == "__main__":
    main()
