"""A bounded soak of `mdl pull`: faults, overlapping processes and random interruptions, then verify.

    python bench/soak.py [--runs 200] [--procs 4] [--seed 1] [--time-limit 300] [--report bench/SOAK.md]

A Hub stand-in and its CDN (tests/servers.py) run in this process and serve a small catalog: a snapshot
with an LFS file and small git files, a 34 MB file fetched as parallel ranges, and direct URLs (one pinned by
sha256, one known by ETag only). The soak goes in rounds until `--runs` pulls were made or the time is up:

1. The local copy loses a few files (sometimes all of it, sometimes a file is corrupted and touched), so each
   round has work to do.
2. A random mix of faults is queued on the servers: 503/429 (with and without Retry-After), other 5xx, resets
   after N bytes (FIN or RST), stalls, 200s to range requests, signed URLs expiring, Hub API and resolve
   errors, and a direct-URL object replaced between two requests.
3. `--procs` real `python -m mdl pull --all` processes start on the same destination, some interrupted at a
   random moment with SIGINT, SIGTERM or SIGKILL.
4. Sometimes a file changes upstream now, between the interrupted runs and their re-runs.
5. Every run that did not succeed is run again (bounded; the last tries without faults) until all succeed.
6. A settling `mdl pull --all` without faults; then every file must equal what upstream serves now, model
   folders must hold nothing but catalog files, and (at any point) a final path never holds bytes that are
   not one whole version of its file.

At the end: `mdl clean`, `mdl verify --all`, a count of stray files, a table on stdout and a Markdown report.
Exit status 0 only when nothing was corrupted, nothing stray was left and no run ended in an unexpected way.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import hashlib
import json
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT / "tests") not in sys.path:
    sys.path.insert(0, str(ROOT / "tests"))

from servers import Fault, HubServer, make_data  # noqa: E402  (tests/ is not a package)

MB = 1_000_000
RUN_TIMEOUT = 120.0  # a single mdl process that takes longer than this is counted as hung and killed
MAX_RERUNS = 6  # attempts per failed run (the last ones without faults or interruptions)
# Exit statuses an interrupted run may end with: done anyway, 130, or killed by the signal before mdl's own
# handler was installed (Python still starting) / by SIGKILL.
INTERRUPTED_OK = {0, 130, -signal.SIGINT, -signal.SIGTERM, -signal.SIGKILL}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# -- the catalog and its sources ----------------------------------------------------------------------------


@dataclass
class Source:
    """Where one catalog file comes from, what upstream serves now, and every version it ever served."""

    model: str
    path: str  # save path under the model folder
    kind: str  # "hub" | "direct"
    repo: str = ""
    repo_path: str = ""
    cdn_path: str = ""
    replaceable: bool = True
    size: int = 0
    current: str = ""  # sha256 of what upstream serves now
    versions: set[str] = field(default_factory=set)


class Upstream:
    """The servers and the catalog's sources, with thread-safe replacement (faults run in server threads)."""

    def __init__(self, hub: HubServer, rng: random.Random) -> None:
        self.hub = hub
        self.rng = rng
        self.lock = threading.Lock()
        self.seed = 1000
        self.sources: list[Source] = []
        self.replaced = 0

    def data(self, size: int) -> bytes:
        with self.lock:
            self.seed += 1
            seed = self.seed
        return make_data(size, seed=seed)

    def build(self) -> str:
        """Create the repos and direct files; returns the catalog text."""
        hub, cdn = self.hub, self.hub.cdn
        snap = {
            "config.json": b'{"hidden_size": 64, "soak": true}',
            "tokenizer.json": self.data(300_000),  # a plain git file: checked by its git blob id
            "model.safetensors": self.data(6 * MB),  # LFS, one stream
        }
        hub.add_repo("org/snap", snap)
        hub.add_repo("org/big", {"weights.bin": self.data(34 * MB)})  # above 32 MiB: parallel ranges
        lora = self.data(3 * MB)
        lora_url = cdn.add_file("/files/lora.safetensors", lora)
        extra = self.data(2 * MB)
        extra_url = cdn.add_file("/files/extra.bin", extra)
        for path, data in snap.items():
            self._add(Source("snap", path, "hub", repo="org/snap", repo_path=path), data)
        self._add(Source("big", "weights.bin", "hub", repo="org/big", repo_path="weights.bin"), None)
        self._add(Source("mix", "cfg/config.json", "hub", repo="org/snap", repo_path="config.json"), None)
        self._add(
            Source("mix", "lora.safetensors", "direct", cdn_path="/files/lora.safetensors", replaceable=False), lora
        )
        self._add(Source("mix", "extra.bin", "direct", cdn_path="/files/extra.bin"), extra)
        return f"""
[models.snap]
repo = "org/snap"

[models.big]
files = [{{ repo = "org/big", path = "weights.bin" }}]

[models.mix]
files = [
  {{ repo = "org/snap", path = "config.json", as = "cfg/config.json" }},
  {{ url = "{lora_url}", sha256 = "{sha(lora)}", size = {len(lora)} }},
  {{ url = "{extra_url}" }},
]
"""

    def _add(self, source: Source, data: bytes | None) -> None:
        if data is None:
            data = self.hub.repo(source.repo).files[source.repo_path].content.read()
        source.size = len(data)
        source.current = sha(data)
        source.versions.add(source.current)
        self.sources.append(source)

    def replace(self, source: Source) -> None:
        """A new version upstream (same size half the time: only the hash tells them apart)."""
        size = source.size if self.rng.random() < 0.5 else max(1, int(source.size * self.rng.uniform(0.8, 1.2)))
        if source.path.endswith(".json"):
            data = json.dumps({"soak_version": self.seed, "pad": "x" * self.rng.randint(0, 200)}).encode()
        else:
            data = self.data(size)
        digest = sha(data)
        with self.lock:
            if source.kind == "hub":
                self.hub.replace_file(source.repo, source.repo_path, data)
                targets = [s for s in self.sources if s.repo == source.repo and s.repo_path == source.repo_path]
            else:
                self.hub.cdn.add_file(source.cdn_path, data)
                targets = [source]
            for target in targets:
                target.size = len(data)
                target.current = digest
                target.versions.add(digest)
            self.replaced += 1


# -- faults -------------------------------------------------------------------------------------------------


def random_faults(rng: random.Random, upstream: Upstream, count: int) -> list[tuple[str, str, Fault]]:
    """`count` random faults as (kind, server, fault)."""
    blobs = "/blobs/"
    out: list[tuple[str, str, Fault]] = []
    for _ in range(count):
        kind = rng.choice(
            [
                "cdn-503",
                "cdn-429",
                "cdn-5xx",
                "cdn-reset",
                "cdn-reset",
                "cdn-stall",
                "cdn-200-to-range",
                "cdn-url-expired",
                "direct-reset",
                "direct-503",
                "direct-replaced",
                "hub-api-503",
                "hub-resolve-502",
            ]
        )
        times = rng.randint(1, 3)
        skip = rng.randint(0, 6)
        fault: Fault
        server = "cdn"
        if kind == "cdn-503":
            fault = Fault.http_error(503, retry_after=rng.choice([0, 1]), path_prefix=blobs, times=times, skip=skip)
        elif kind == "cdn-429":
            fault = Fault.http_error(429, retry_after=rng.choice([0, 1]), path_prefix=blobs, times=times, skip=skip)
        elif kind == "cdn-5xx":
            fault = Fault.http_error(rng.choice([500, 502, 504]), path_prefix=blobs, times=times, skip=skip)
        elif kind == "cdn-reset":
            after = rng.randint(10_000, 3 * MB)
            fault = Fault.reset(after_bytes=after, rst=rng.random() < 0.3, path_prefix=blobs, times=times, skip=skip)
        elif kind == "cdn-stall":
            fault = Fault.stall(after_bytes=rng.randint(0, 2 * MB), seconds=3, path_prefix=blobs, skip=skip)
        elif kind == "cdn-200-to-range":
            fault = Fault.full_body(path_prefix=blobs, skip=rng.randint(0, 4))
        elif kind == "cdn-url-expired":
            fault = Fault.expire_urls(path_prefix=blobs, skip=rng.randint(1, 12))
        elif kind == "direct-reset":
            fault = Fault.reset(after_bytes=rng.randint(10_000, 1 * MB), path_prefix="/files/", skip=rng.randint(0, 4))
        elif kind == "direct-503":
            fault = Fault.http_error(503, retry_after=0, path_prefix="/files/", times=times, skip=rng.randint(0, 4))
        elif kind == "direct-replaced":
            extra = next(s for s in upstream.sources if s.path == "extra.bin")
            fault = Fault.call(lambda s=extra: upstream.replace(s), path_prefix="/files/extra", skip=rng.randint(1, 4))
        elif kind == "hub-api-503":
            server = "hub"
            fault = Fault.http_error(503, retry_after=0, path_prefix="/api/models/", skip=rng.randint(0, 6))
        else:  # hub-resolve-502
            server = "hub"
            fault = Fault.http_error(502, path_prefix="/org/", times=times, skip=rng.randint(0, 6))
        out.append((kind, server, fault))
    return out


# -- runs ---------------------------------------------------------------------------------------------------


@dataclass
class Run:
    """One `mdl pull` process."""

    number: int
    args: list[str]
    proc: subprocess.Popen[bytes]
    started: float
    log: Path
    signal_at: float | None = None
    signal: signal.Signals | None = None
    signalled: bool = False
    code: int | None = None
    hung: bool = False


@dataclass
class Stats:
    runs: int = 0
    rounds: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    interruptions: Counter[str] = field(default_factory=Counter)
    needed_rerun: int = 0
    reruns: int = 0
    corrupted: int = 0
    stray: int = 0
    leftovers_before_clean: int = 0
    local_damage: Counter[str] = field(default_factory=Counter)
    upstream_changes: int = 0
    exit_codes: Counter[str] = field(default_factory=Counter)
    interrupt_endings: Counter[str] = field(default_factory=Counter)
    anomalies: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    bytes_served: int = 0
    bytes_fetched_min: int = 0


class Soak:
    def __init__(self, args: argparse.Namespace, argv: list[str]) -> None:
        self.args = args
        self.argv = argv
        self.rng = random.Random(args.seed)
        self.work = Path(tempfile.mkdtemp(prefix="mdl-soak-"))
        self.dest = self.work / "models"
        self.logs = self.work / "logs"
        self.logs.mkdir()
        self.stats = Stats()
        self.hub = HubServer().start()
        self.upstream = Upstream(self.hub, self.rng)
        self.catalog = self.work / "catalog.toml"
        self.catalog.write_text(self.upstream.build())
        self.faults: list[tuple[str, Fault]] = []
        self.env = self._env()
        self.started = time.monotonic()

    def _env(self) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("MDL_", "HF_", "HUGGINGFACE_", "XDG_")) and k not in ("NO_COLOR",)
        }
        home = self.work / "home"
        env.update(
            HOME=str(home),
            XDG_CONFIG_HOME=str(home / ".config"),
            XDG_DATA_HOME=str(home / ".local/share"),
            XDG_CACHE_HOME=str(home / ".cache"),
            XDG_STATE_HOME=str(home / ".local/state"),
            HF_HOME=str(home / ".cache/huggingface"),
            HF_HUB_DISABLE_TELEMETRY="1",
            HF_ENDPOINT=self.hub.url,
            MDL_CATALOG=str(self.catalog),
            MDL_DEST=str(self.dest),
            MDL_STALL_TIMEOUT="1",
            MDL_RETRIES="4",
            MDL_LOCK_TIMEOUT="90",
            TERM="dumb",
            PYTHONDONTWRITEBYTECODE="1",
        )
        return env

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def out_of_budget(self) -> bool:
        return self.stats.runs >= self.args.runs or self.elapsed() >= self.args.time_limit

    # -- processes -----------------------------------------------------------------------------------------

    def spawn(self, args: list[str], *, interrupt: bool) -> Run:
        self.stats.runs += 1
        number = self.stats.runs
        log = self.logs / f"run-{number:04d}.log"
        env = dict(self.env, MDL_LOG_FILE=str(log))
        with log.with_suffix(".err").open("wb") as stderr:
            proc = subprocess.Popen(
                [sys.executable, "-m", "mdl", *args], env=env, cwd=self.work, stdout=subprocess.DEVNULL, stderr=stderr
            )
        run = Run(number, args, proc, time.monotonic(), log)
        if interrupt:
            run.signal_at = run.started + self.rng.uniform(0.2, 3.0)
            run.signal = self.rng.choices([signal.SIGINT, signal.SIGTERM, signal.SIGKILL], weights=[0.4, 0.4, 0.2])[0]
        return run

    def wait_all(self, runs: list[Run]) -> None:
        pending = list(runs)
        while pending:
            now = time.monotonic()
            for run in list(pending):
                if run.signal is not None and not run.signalled and run.signal_at is not None and now >= run.signal_at:
                    if run.proc.poll() is None:
                        with contextlib.suppress(ProcessLookupError):
                            run.proc.send_signal(run.signal)
                        run.signalled = True
                        self.stats.interruptions[run.signal.name] += 1
                    else:
                        run.signal = None  # finished before its interruption was due
                code = run.proc.poll()
                if code is None and now - run.started > RUN_TIMEOUT:
                    run.hung = True
                    run.proc.kill()
                    code = run.proc.wait()
                if code is not None:
                    run.code = code
                    pending.remove(run)
                    self._judge(run)
            time.sleep(0.03)

    def _judge(self, run: Run) -> None:
        code = run.code
        self.stats.exit_codes[str(code)] += 1
        err = run.log.with_suffix(".err")
        text = err.read_text(errors="replace") if err.exists() else ""
        if run.hung:
            self.stats.anomalies.append(f"run {run.number} hung for {RUN_TIMEOUT:.0f}s: {' '.join(run.args)}")
        elif run.signalled:
            # A run may also have been failing on its own (5) when the signal came; mdl itself never prints a
            # traceback (Python does, for a Ctrl-C that lands while it is still importing: that ends -SIGINT).
            if code not in INTERRUPTED_OK | {5} or (code in (0, 5, 130) and "Traceback" in text):
                self.stats.anomalies.append(f"run {run.number} ({run.signal.name}) ended {code}: {tail(text)}")
            sent = (run.signal_at or run.started) - run.started
            took = time.monotonic() - (run.signal_at or run.started)
            if code == 0 and took > 1.5:
                self.stats.anomalies.append(f"run {run.number} ignored {run.signal.name}; it ended {took:.1f}s later")
            self.stats.interrupt_endings[ending(code, text)] += 1
            with (self.logs / "signals.txt").open("a") as out:
                out.write(f"run {run.number}: {run.signal.name} at {sent:.2f}s, ended {code} ~{took:.2f}s later\n")
        elif code not in (0, 5) or "Traceback" in text:
            # 5 (network, after the retries) is a legitimate outcome under injected faults; anything else is not.
            self.stats.anomalies.append(f"run {run.number} ended {code}: {tail(text)}")

    def pull_args(self) -> list[str]:
        args = ["pull", "--all"]
        if self.rng.random() < 0.7:
            args += ["--connections", str(self.rng.choice([2, 4, 8]))]
        if self.rng.random() < 0.7:
            args += ["--jobs", str(self.rng.choice([1, 2, 4]))]
        return args

    # -- faults --------------------------------------------------------------------------------------------

    def queue_faults(self, count: int) -> None:
        for kind, server, fault in random_faults(self.rng, self.upstream, count):
            (self.hub if server == "hub" else self.hub.cdn).faults.add(fault)
            self.faults.append((kind, fault))

    def clear_faults(self) -> None:
        self.hub.faults.clear()
        self.hub.cdn.faults.clear()

    def count_faults(self) -> None:
        for kind, fault in self.faults:
            if fault.hits:
                self.stats.faults[kind] += fault.hits
        self.faults = []

    # -- the local copy ------------------------------------------------------------------------------------

    def damage(self) -> None:
        """Give the round work: lose files, or everything, or find one corrupted (and touched)."""
        present = [s for s in self.upstream.sources if (self.dest / s.model / s.path).exists()]
        roll = self.rng.random()
        if roll < 0.1 and self.dest.exists():
            shutil.rmtree(self.dest)
            self.stats.local_damage["destination wiped"] += 1
            return
        if roll < 0.2 and present:
            victim = self.rng.choice(present)
            target = self.dest / victim.model / victim.path
            data = bytearray(target.read_bytes())
            if data:
                data[self.rng.randrange(len(data))] ^= 0xFF
                target.write_bytes(bytes(data))  # new mtime: pull re-hashes it and repairs it
                self.stats.local_damage["file corrupted and touched"] += 1
                return
        for victim in self.rng.sample(present, k=min(len(present), self.rng.randint(1, 3))):
            (self.dest / victim.model / victim.path).unlink()
            self.stats.local_damage["file deleted"] += 1

    def check_whole_versions(self, *, current: bool) -> int:
        """Final paths holding bytes that are not one whole version (or, with `current`, not today's)."""
        bad = 0
        for source in self.upstream.sources:
            target = self.dest / source.model / source.path
            if not target.exists():
                if current:  # not corruption, but a settled round must have every file
                    self.stats.anomalies.append(f"{source.model}/{source.path} missing after a settled round")
                continue
            digest = sha(target.read_bytes())
            ok = digest == source.current if current else digest in source.versions
            if not ok:
                bad += 1
                which = "today's version" if current else "any version upstream ever served"
                self.stats.anomalies.append(f"{source.model}/{source.path}: bytes are not {which} ({digest[:16]})")
        return bad

    def stray_in_models(self) -> list[str]:
        expected = {(s.model, s.path) for s in self.upstream.sources}
        strays = []
        for model in {s.model for s in self.upstream.sources}:
            folder = self.dest / model
            if folder.is_dir():
                for path in folder.rglob("*"):
                    if path.is_file() and (model, path.relative_to(folder).as_posix()) not in expected:
                        strays.append(str(path.relative_to(self.dest)))
        top = self.dest.iterdir() if self.dest.is_dir() else iter(())
        extra_top = [p.name for p in top if p.name not in {".mdl", "snap", "big", "mix"}]
        return strays + extra_top

    def leftovers(self) -> list[str]:
        state = self.dest / ".mdl"
        if not state.is_dir():
            return []
        return [
            str(p.relative_to(self.dest))
            for p in state.rglob("*")
            if p.is_file() and (p.name.endswith((".part", ".part.json")) or ".tmp" in p.name)
        ]

    # -- a round -------------------------------------------------------------------------------------------

    def round(self) -> None:
        self.stats.rounds += 1
        if self.stats.rounds > 1:
            self.damage()
        self.hub.cdn.throttle_bps = self.rng.choice([6 * MB, 12 * MB, 25 * MB, None])
        self.queue_faults(self.rng.randint(2, 6))

        # Phase 1: overlapping runs, some interrupted.
        procs = max(1, min(self.args.procs, self.args.runs - self.stats.runs))
        runs = []
        for _ in range(procs):
            runs.append(self.spawn(self.pull_args(), interrupt=self.rng.random() < self.args.interrupt))
            time.sleep(self.rng.uniform(0, 0.4))
        self.wait_all(runs)
        self.stats.corrupted += self.check_whole_versions(current=False)

        # Sometimes a file changes upstream between the interrupted runs and their re-runs.
        changed = False
        if self.rng.random() < 0.3:
            candidates = [s for s in self.upstream.sources if s.replaceable]
            self.upstream.replace(self.rng.choice(candidates))
            self.stats.upstream_changes += 1
            changed = True

        # Phase 2: run the failed ones again until they succeed (bounded; the last tries calmly).
        failed = [r for r in runs if r.code != 0]
        self.stats.needed_rerun += len(failed)
        if changed and not failed:
            failed = [runs[0]]
        attempt = 0
        while failed:
            attempt += 1
            calm = attempt > MAX_RERUNS // 2
            if calm:
                self.clear_faults()
                self.hub.cdn.throttle_bps = None
            elif self.rng.random() < 0.5:
                self.queue_faults(self.rng.randint(1, 3))
            again = [
                self.spawn(r.args, interrupt=not calm and self.rng.random() < self.args.interrupt / 2) for r in failed
            ]
            self.stats.reruns += len(again)
            self.wait_all(again)
            self.stats.corrupted += self.check_whole_versions(current=False)
            failed = [r for r in again if r.code != 0]
            if failed and attempt >= MAX_RERUNS:
                self.stats.anomalies.append(f"round {self.stats.rounds}: runs still failing after {attempt} re-runs")
                break

        # Settle: one calm run; then everything must be today's version and the model folders clean.
        self.clear_faults()
        self.count_faults()
        self.hub.cdn.throttle_bps = None
        settle = self.spawn(["pull", "--all"], interrupt=False)
        self.wait_all([settle])
        if settle.code != 0:
            self.stats.anomalies.append(f"round {self.stats.rounds}: settling run ended {settle.code}")
        self.stats.corrupted += self.check_whole_versions(current=True)
        strays = self.stray_in_models()
        if strays:
            self.stats.stray += len(strays)
            self.stats.anomalies.append(f"round {self.stats.rounds}: stray files in model folders: {strays}")
        left = self.leftovers()
        if left:
            self.stats.leftovers_before_clean += len(left)
            self.stats.notes.append(f"round {self.stats.rounds}: after the settling run, before `mdl clean`: {left}")

    # -- the whole soak ------------------------------------------------------------------------------------

    def finish(self) -> tuple[int, int]:
        """`mdl clean` and `mdl verify --all`; returns (verify exit code, verified files)."""
        self.clear_faults()
        clean = subprocess.run(
            [sys.executable, "-m", "mdl", "clean"],
            env=dict(self.env, MDL_LOG_FILE=str(self.logs / "clean.log")),
            capture_output=True,
            timeout=RUN_TIMEOUT,
        )
        if clean.returncode != 0:
            self.stats.anomalies.append(f"mdl clean exited {clean.returncode}: {tail(clean.stderr.decode())}")
        left = self.leftovers()
        if left:
            self.stats.stray += len(left)
            self.stats.anomalies.append(f"left after `mdl clean`: {left}")
        verify = subprocess.run(
            [sys.executable, "-m", "mdl", "verify", "--all", "--json"],
            env=dict(self.env, MDL_LOG_FILE=str(self.logs / "verify.log")),
            capture_output=True,
            timeout=RUN_TIMEOUT,
        )
        try:
            files = json.loads(verify.stdout)["files"]
        except (ValueError, KeyError):
            files = []
        bad = [f for f in files if f.get("action") != "verified"]
        if verify.returncode != 0 or bad or len(files) != len(self.upstream.sources):
            self.stats.corrupted += max(1, len(bad))
            self.stats.anomalies.append(f"mdl verify --all exited {verify.returncode}: {tail(verify.stderr.decode())}")
        self.stats.bytes_served = self.hub.cdn.log.body_bytes(method="GET") + self.hub.log.body_bytes(
            method="GET", path_prefix="/org/"
        )
        return verify.returncode, len(files)

    def run(self) -> int:
        try:
            while not self.out_of_budget():
                self.round()
                print(
                    f"round {self.stats.rounds:3d}: {self.stats.runs:4d} runs, "
                    f"{sum(self.stats.faults.values()):4d} faults, {self.stats.needed_rerun:3d} needed a re-run, "
                    f"{self.stats.corrupted} corrupted, {self.stats.stray} stray, {self.elapsed():5.0f}s",
                    flush=True,
                )
            verify_code, verified = self.finish()
        finally:
            self.hub.stop()
        ok = self.stats.corrupted == 0 and self.stats.stray == 0 and not self.stats.anomalies
        report = self.report(verify_code=verify_code, verified=verified, ok=ok)
        print()
        print(report)
        if self.args.report:
            Path(self.args.report).write_text(report, encoding="utf-8")
            print(f"\nwritten to {self.args.report}")
        if ok and not self.args.keep:
            shutil.rmtree(self.work, ignore_errors=True)
        else:
            print(f"work folder kept for inspection: {self.work}")
        return 0 if ok else 1

    def report(self, *, verify_code: int, verified: int, ok: bool) -> str:
        s = self.stats
        command = "python bench/soak.py " + " ".join(self.argv)
        rows = [
            ("pull runs (processes)", s.runs),
            ("rounds", s.rounds),
            ("faults injected (requests hit)", sum(s.faults.values())),
            ("interruptions (signals sent)", sum(s.interruptions.values())),
            ("runs that needed a re-run", s.needed_rerun),
            ("re-runs made", s.reruns),
            ("upstream changes (between runs / mid-download)", f"{s.upstream_changes} / {s.faults['direct-replaced']}"),
            ("files corrupted", s.corrupted),
            ("stray files left", s.stray),
            ("partial/temp files before `mdl clean` (summed over rounds)", s.leftovers_before_clean),
            ("`mdl verify --all`", f"exit {verify_code}, {verified} files"),
            ("bytes served by the servers", f"{s.bytes_served / MB:.0f} MB"),
            ("wall time", f"{self.elapsed():.0f} s"),
        ]
        lines = [
            "# mdl soak",
            "",
            f"- date: {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}",
            f"- machine: {platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
            f"- command: `{command}`",
            f"- result: {'PASS' if ok else 'FAIL'}",
            "",
            "| what | count |",
            "|---|---|",
            *[f"| {k} | {v} |" for k, v in rows],
            "",
            "Faults by kind: " + (", ".join(f"{k} {v}" for k, v in sorted(s.faults.items())) or "none"),
            "",
            "Interruptions: " + (", ".join(f"{k} {v}" for k, v in sorted(s.interruptions.items())) or "none"),
            "",
            "How interrupted runs ended: "
            + (", ".join(f"{k}: {v}" for k, v in sorted(s.interrupt_endings.items())) or "none"),
            "",
            "Local damage: " + (", ".join(f"{k} {v}" for k, v in sorted(s.local_damage.items())) or "none"),
            "",
            "Exit statuses of the pulls: "
            + ", ".join(f"{k}: {v}" for k, v in sorted(s.exit_codes.items(), key=lambda kv: int(kv[0]))),
            "",
        ]
        if s.notes:
            lines += ["Notes:", "", *[f"- {n}" for n in s.notes[:50]], ""]
        if s.anomalies:
            lines += ["Anomalies:", "", *[f"- {a}" for a in s.anomalies[:50]], ""]
        return "\n".join(lines)


def ending(code: int | None, text: str) -> str:
    """How an interrupted run ended, in words."""
    handled = "mdl: error: interrupted" in text
    if code == 130:
        return "130, handled by mdl"
    if code == -signal.SIGKILL:
        return "killed (SIGKILL)"
    if code in (-signal.SIGINT, -signal.SIGTERM) and handled:
        # CPython quirk: a KeyboardInterrupt that passed through exec() (dataclasses, lazy imports) sets a flag
        # that makes the interpreter re-kill itself with SIGINT at exit, whatever sys.exit() said.
        return "handled by mdl, then exited by SIGINT (a shell sees 130)"
    if code in (-signal.SIGINT, -signal.SIGTERM):
        return "signalled while Python was still starting (before mdl's handlers)"
    if code == 0:
        return "finished anyway (the signal came as it was ending)"
    return f"exit {code}"


def tail(text: str, lines: int = 3) -> str:
    return " | ".join(text.strip().splitlines()[-lines:])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Bounded soak of mdl pull under faults and interruptions.")
    parser.add_argument("--runs", type=int, default=200, help="pull processes to run in all (default 200)")
    parser.add_argument("--procs", type=int, default=4, help="concurrent processes per round (default 4)")
    parser.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    parser.add_argument("--time-limit", type=float, default=300.0, help="stop starting rounds after this (s)")
    parser.add_argument("--interrupt", type=float, default=0.35, help="chance a run is interrupted (default 0.35)")
    parser.add_argument("--report", default=str(ROOT / "bench" / "SOAK.md"), help="Markdown report ('' for none)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args(argv)
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        # Started in the background by a shell (`cmd &`, nohup): SIGINT is ignored and the children would inherit
        # that, so our Ctrl-Cs would do nothing. A handler here is reset to the default in each child.
        signal.signal(signal.SIGINT, signal.default_int_handler)
    return Soak(args, list(sys.argv[1:] if argv is None else argv)).run()


if __name__ == "__main__":
    sys.exit(main())
