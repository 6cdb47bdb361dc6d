"""A bounded soak of `mdl pull`: faults, overlapping processes and random interruptions, then
verify.

    python bench/soak.py [--runs 200] [--procs 4] [--seed 1] [--time-limit 300] [--report
    bench/SOAK.md]

The Hub stand-in and its CDN (tests/servers.py) serve a small catalog: a snapshot with an LFS file
and small git files, a 34 MB file fetched as parallel ranges, and direct URLs (one pinned by sha256,
one known by ETag only). Rounds go on until ``--runs`` pulls were made or the time is up; each
round:

1. the local copy loses a few files (sometimes all of them; sometimes a file is corrupted and
   touched);
2. a random mix of faults is queued: 503/429 (with and without Retry-After), other 5xx, resets after
   N bytes (FIN or RST), stalls, 200s to ranges, signed URLs expiring, Hub API and resolve errors,
   an object replaced mid-way;
3. ``--procs`` ``mdl pull --all`` processes start on the same destination, some interrupted at a
   random moment by SIGINT, SIGTERM or SIGKILL; sometimes a file then changes upstream;
4. every run that failed runs again (bounded; the last tries without faults) until all succeed;
5. a settling pull without faults; then every file must be what upstream serves now, model folders
   must hold nothing but catalog files, and (at any point) a final path never holds bytes that are
   not one whole version.

At the end `mdl clean`, `mdl verify --all`, a count of stray files, a table and a Markdown report.
Exit 0 only when nothing was corrupted, nothing stray was left and no run ended in an unexpected
way.
"""

from __future__ import annotations

import argparse
import contextlib
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

import runner as r
from servers import Fault, HubServer, make_data  # tests/servers.py

MB = 1_000_000
RUN_TIMEOUT = 120.0  # a single mdl process that takes longer is counted as hung and killed
MAX_RERUNS = 6  # attempts per failed run (the last half without faults or interruptions)
# How an interrupted run may end: done anyway, 130, or killed by the signal (before mdl's handlers,
# or SIGKILL).
INTERRUPTED_OK = {0, 130, -signal.SIGINT, -signal.SIGTERM, -signal.SIGKILL}
BLOBS = {"path_prefix": "/blobs/"}
WORDS = {
    "faults": "Faults by kind",
    "interruptions": "Interruptions",
    "endings": "How interrupted runs ended",
    "damage": "Local damage",
    "exits": "Exit statuses of the pulls",
}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class Source:
    """Where one catalog file comes from, what upstream serves now, and every version it ever
    served.
    """

    model: str
    path: str  # under the model folder
    repo: str = ""  # a Hub file: its repo and path there; else a direct URL: its CDN path
    repo_path: str = ""
    cdn_path: str = ""
    replaceable: bool = True
    size: int = 0
    current: str = ""
    versions: set[str] = field(default_factory=set)


class Upstream:
    """The servers and the catalog's sources, replaced thread-safely (faults run in server
    threads).
    """

    def __init__(self, hub: HubServer, rng: random.Random) -> None:
        self.hub, self.rng, self.lock, self.seed, self.sources = (
            hub,
            rng,
            threading.Lock(),
            1000,
            [],
        )

    def data(self, size: int) -> bytes:
        with self.lock:
            self.seed += 1
            return make_data(size, seed=self.seed)

    def catalog(self) -> str:
        """Create the repos and direct files; the catalog's text."""
        snap = {
            "config.json": b'{"hidden_size": 64, "soak": true}',
            "tokenizer.json": self.data(300_000),
            # a git file checked by its blob id, and an LFS one
            "model.safetensors": self.data(6 * MB),
        }
        self.hub.add_repo("org/snap", snap)
        # above 32 MiB: parallel ranges
        self.hub.add_repo("org/big", {"weights.bin": self.data(34 * MB)})
        lora, extra = self.data(3 * MB), self.data(2 * MB)
        urls = [
            self.hub.cdn.add_file(f"/files/{n}", d)
            for n, d in (("lora.safetensors", lora), ("extra.bin", extra))
        ]
        for path, data in snap.items():
            self.add(Source("snap", path, "org/snap", path), data)
        self.add(Source("big", "weights.bin", "org/big", "weights.bin"))
        self.add(Source("mix", "cfg/config.json", "org/snap", "config.json"))
        self.add(
            Source(
                "mix", "lora.safetensors", cdn_path="/files/lora.safetensors", replaceable=False
            ),
            lora,
        )
        self.add(Source("mix", "extra.bin", cdn_path="/files/extra.bin"), extra)
        pinned = f'{{ url = "{urls[0]}", sha256 = "{sha(lora)}", size = {len(lora)} }}'
        return "\n".join(
            [
                '[models.snap]\nrepo = "org/snap"\n',
                "[models.big]",
                'files = [{ repo = "org/big", path = "weights.bin" }]\n',
                "[models.mix]",
                "files = [",
                '  { repo = "org/snap", path = "config.json", as = "cfg/config.json" },',
                f"  {pinned},",
                f'  {{ url = "{urls[1]}" }},',
                "]",
                "",
            ]
        )

    def add(self, source: Source, data: bytes | None = None) -> None:
        data = (
            self.hub.repo(source.repo).files[source.repo_path].content.read()
            if data is None
            else data
        )
        source.size, source.current = len(data), sha(data)
        source.versions.add(source.current)
        self.sources.append(source)

    def replace(self, source: Source) -> None:
        """A new version upstream (the same size half the time: only the hash tells them apart)."""
        size = (
            source.size
            if self.rng.random() < 0.5
            else max(1, int(source.size * self.rng.uniform(0.8, 1.2)))
        )
        pad = "x" * self.rng.randint(0, 200)
        text = json.dumps({"soak_version": self.seed, "pad": pad}).encode()
        data = text if source.path.endswith(".json") else self.data(size)
        with self.lock:
            if source.repo:
                self.hub.replace_file(source.repo, source.repo_path, data)
            else:
                self.hub.cdn.add_file(source.cdn_path, data)
            for s in self.sources:
                if s is source or (
                    source.repo and (s.repo, s.repo_path) == (source.repo, source.repo_path)
                ):
                    s.size, s.current = len(data), sha(data)
                    s.versions.add(s.current)


def random_fault(rng: random.Random, upstream: Upstream) -> tuple[str, str, Fault]:
    """(kind, "cdn" or "hub", fault): one of the faults a real CDN and Hub produce."""
    times, skip, few = rng.randint(1, 3), rng.randint(0, 6), rng.randint(0, 4)
    extra = next(s for s in upstream.sources if s.path == "extra.bin")
    made = {
        "cdn-503": lambda: Fault.http_error(
            503, retry_after=rng.choice([0, 1]), times=times, skip=skip, **BLOBS
        ),
        "cdn-429": lambda: Fault.http_error(
            429, retry_after=rng.choice([0, 1]), times=times, skip=skip, **BLOBS
        ),
        "cdn-5xx": lambda: Fault.http_error(
            rng.choice([500, 502, 504]), times=times, skip=skip, **BLOBS
        ),
        "cdn-reset": lambda: Fault.reset(
            after_bytes=rng.randint(10_000, 3 * MB),
            rst=rng.random() < 0.3,
            times=times,
            skip=skip,
            **BLOBS,
        ),
        "cdn-stall": lambda: Fault.stall(
            after_bytes=rng.randint(0, 2 * MB), seconds=3, skip=skip, **BLOBS
        ),
        "cdn-200-to-range": lambda: Fault.full_body(skip=few, **BLOBS),
        "cdn-url-expired": lambda: Fault.expire_urls(skip=rng.randint(1, 12), **BLOBS),
        "direct-reset": lambda: Fault.reset(
            after_bytes=rng.randint(10_000, MB), path_prefix="/files/", skip=few
        ),
        "direct-503": lambda: Fault.http_error(
            503, retry_after=0, path_prefix="/files/", times=times, skip=few
        ),
        "direct-replaced": lambda: Fault.call(
            lambda: upstream.replace(extra), path_prefix="/files/extra", skip=rng.randint(1, 4)
        ),
        "hub-api-503": lambda: Fault.http_error(
            503, retry_after=0, path_prefix="/api/models/", skip=skip
        ),
        "hub-resolve-502": lambda: Fault.http_error(
            502, path_prefix="/org/", times=times, skip=skip
        ),
    }
    kind = rng.choice([*made, "cdn-reset"])  # resets twice as often
    return kind, "hub" if kind.startswith("hub") else "cdn", made[kind]()


@dataclass
class Run:
    """One `mdl pull` process."""

    number: int
    args: list[str]
    proc: subprocess.Popen[bytes]
    started: float
    err: Path
    signal_at: float = 0.0
    signal: signal.Signals | None = None
    signalled: bool = False
    code: int | None = None


class Soak:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args, self.rng, self.started = args, random.Random(args.seed), time.monotonic()
        self.work = Path(tempfile.mkdtemp(prefix="mdl-soak-"))
        self.dest, self.logs = self.work / "models", self.work / "logs"
        self.logs.mkdir()
        self.hub = HubServer().start()
        self.upstream = Upstream(self.hub, self.rng)
        (self.work / "catalog.toml").write_text(self.upstream.catalog())
        self.env = r.clean_env(
            self.work,
            HF_ENDPOINT=self.hub.url,
            MDL_CATALOG=str(self.work / "catalog.toml"),
            MDL_DEST=str(self.dest),
            MDL_STALL_TIMEOUT="1",
            MDL_RETRIES="4",
            MDL_LOCK_TIMEOUT="90",
            TERM="dumb",
        )
        self.faults: list[tuple[str, Fault]] = []
        self.count: Counter[str] = Counter()  # runs, rounds, re-runs, corrupted, stray, …
        self.kinds: dict[str, Counter[str]] = {k: Counter() for k in WORDS}
        self.anomalies: list[str] = []
        self.notes: list[str] = []

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def spawn(self, args: list[str], *, interrupt: bool) -> Run:
        self.count["runs"] += 1
        n = self.count["runs"]
        err = self.logs / f"run-{n:04d}.err"
        with err.open("wb") as out:
            proc = subprocess.Popen(
                r.mdl(*args),
                env={**self.env, "MDL_LOG_FILE": str(err.with_suffix(".log"))},
                cwd=self.work,
                stdout=subprocess.DEVNULL,
                stderr=out,
            )
        run = Run(n, args, proc, time.monotonic(), err)
        if interrupt:
            run.signal_at = run.started + self.rng.uniform(0.2, 3.0)
            run.signal = self.rng.choices(
                [signal.SIGINT, signal.SIGTERM, signal.SIGKILL], weights=[0.4, 0.4, 0.2]
            )[0]
        return run

    def wait_all(self, runs: list[Run]) -> None:
        """Wait for the runs, sending each its interruption when due; judge how each ended."""
        pending = list(runs)
        while pending:
            now = time.monotonic()
            for run in list(pending):
                if run.signal is not None and not run.signalled and now >= run.signal_at:
                    if run.proc.poll() is None:
                        with contextlib.suppress(ProcessLookupError):
                            run.proc.send_signal(run.signal)
                        run.signalled = True
                        self.kinds["interruptions"][run.signal.name] += 1
                    else:
                        run.signal = None  # it had finished before its interruption was due
                if run.proc.poll() is None and now - run.started > RUN_TIMEOUT:
                    run.proc.kill()
                    run.proc.wait()
                    self.anomalies.append(
                        f"run {run.number} hung for {RUN_TIMEOUT:.0f}s: {' '.join(run.args)}"
                    )
                if (code := run.proc.poll()) is not None:
                    run.code = code
                    pending.remove(run)
                    self.judge(run)
            time.sleep(0.03)

    def judge(self, run: Run) -> None:
        code, text = run.code, run.err.read_text(errors="replace")
        self.kinds["exits"][str(code)] += 1
        if run.signalled and run.signal is not None:
            # It may have been failing on its own (5) when the signal came; mdl never prints a
            # traceback (Python does, for a Ctrl-C that lands while it is still importing: that ends
            # -SIGINT).
            if code not in INTERRUPTED_OK | {5} or (code in (0, 5, 130) and "Traceback" in text):
                self.anomalies.append(
                    f"run {run.number} ({run.signal.name}) ended {code}: {tail(text)}"
                )
            took = time.monotonic() - run.signal_at
            if code == 0 and took > 1.5:
                self.anomalies.append(
                    f"run {run.number} ignored {run.signal.name}; it ended {took:.1f}s later"
                )
            self.kinds["endings"][ending(code, text)] += 1
        # 5 (network, after the retries) is fair under faults
        elif code not in (0, 5) or "Traceback" in text:
            self.anomalies.append(f"run {run.number} ended {code}: {tail(text)}")

    def pull_args(self) -> list[str]:
        args = ["pull", "--all"]
        args += (
            ["--connections", str(self.rng.choice([2, 4, 8]))] if self.rng.random() < 0.7 else []
        )
        return args + (
            ["--jobs", str(self.rng.choice([1, 2, 4]))] if self.rng.random() < 0.7 else []
        )

    def queue_faults(self, count: int) -> None:
        for kind, server, fault in (random_fault(self.rng, self.upstream) for _ in range(count)):
            (self.hub if server == "hub" else self.hub.cdn).faults.add(fault)
            self.faults.append((kind, fault))

    def calm(self) -> None:
        """No more faults, no throttle."""
        self.hub.faults.clear()
        self.hub.cdn.faults.clear()
        self.hub.cdn.throttle_bps = None

    def damage(self) -> None:
        """Give the round work: lose files, or everything, or find one corrupted (and touched)."""
        present = [s for s in self.upstream.sources if (self.dest / s.model / s.path).exists()]
        roll = self.rng.random()
        if roll < 0.1 and self.dest.exists():
            shutil.rmtree(self.dest)
            self.kinds["damage"]["destination wiped"] += 1
            return
        if roll < 0.2 and present:
            victim = self.rng.choice(present)
            target = self.dest / victim.model / victim.path
            if data := bytearray(target.read_bytes()):
                data[self.rng.randrange(len(data))] ^= 0xFF
                # a new mtime: the pull hashes it again and repairs it
                target.write_bytes(bytes(data))
                self.kinds["damage"]["file corrupted and touched"] += 1
                return
        for victim in self.rng.sample(present, k=min(len(present), self.rng.randint(1, 3))):
            (self.dest / victim.model / victim.path).unlink()
            self.kinds["damage"]["file deleted"] += 1

    def check_versions(self, *, current: bool) -> None:
        """Count final paths holding bytes that are not one whole version (with ``current``:
        today's).
        """
        for s in self.upstream.sources:
            target = self.dest / s.model / s.path
            if not target.exists():
                if current:  # not corruption, but a settled round must have every file
                    self.anomalies.append(f"{s.model}/{s.path} missing after a settled round")
                continue
            digest = sha(target.read_bytes())
            if digest != s.current if current else digest not in s.versions:
                self.count["corrupted"] += 1
                which = "today's version" if current else "any version upstream ever served"
                self.anomalies.append(f"{s.model}/{s.path}: bytes are not {which} ({digest[:16]})")

    def strays(self) -> list[str]:
        expected = {f"{s.model}/{s.path}" for s in self.upstream.sources}
        found = [p.relative_to(self.dest).as_posix() for p in self.dest.rglob("*") if p.is_file()]
        return [p for p in found if p not in expected and not p.startswith(".mdl/")]

    def leftovers(self) -> list[str]:
        state = self.dest / ".mdl"
        found = state.rglob("*") if state.is_dir() else []
        return [
            str(p.relative_to(self.dest))
            for p in found
            if p.is_file() and (p.name.endswith((".part", ".part.json")) or ".tmp" in p.name)
        ]

    def round(self) -> None:
        self.count["rounds"] += 1
        if self.count["rounds"] > 1:
            self.damage()
        self.hub.cdn.throttle_bps = self.rng.choice([6 * MB, 12 * MB, 25 * MB, None])
        self.queue_faults(self.rng.randint(2, 6))
        runs = []  # overlapping runs, some interrupted
        for _ in range(max(1, min(self.args.procs, self.args.runs - self.count["runs"]))):
            runs.append(
                self.spawn(self.pull_args(), interrupt=self.rng.random() < self.args.interrupt)
            )
            time.sleep(self.rng.uniform(0, 0.4))
        self.wait_all(runs)
        self.check_versions(current=False)
        changed = self.rng.random() < 0.3  # sometimes a file changes upstream before the re-runs
        if changed:
            self.upstream.replace(
                self.rng.choice([s for s in self.upstream.sources if s.replaceable])
            )
            self.count["upstream changes"] += 1
        failed = [run for run in runs if run.code != 0]
        self.count["needed a re-run"] += len(failed)
        failed = failed or runs[:1] * changed
        for attempt in range(1, MAX_RERUNS + 1):  # run the failed ones again; the last tries calmly
            if not failed:
                break
            calm = attempt > MAX_RERUNS // 2
            if calm:
                self.calm()
            elif self.rng.random() < 0.5:
                self.queue_faults(self.rng.randint(1, 3))
            chance = 0 if calm else self.args.interrupt / 2
            again = [self.spawn(run.args, interrupt=self.rng.random() < chance) for run in failed]
            self.count["re-runs"] += len(again)
            self.wait_all(again)
            self.check_versions(current=False)
            failed = [run for run in again if run.code != 0]
        if failed:
            self.anomalies.append(
                f"round {self.count['rounds']}: runs still failing after {MAX_RERUNS} re-runs"
            )
        # settle: one calm run; then every file must be today's, the model folders clean
        self.calm()
        self.kinds["faults"].update(kind for kind, fault in self.faults for _ in range(fault.hits))
        self.faults = []
        settle = self.spawn(["pull", "--all"], interrupt=False)
        self.wait_all([settle])
        if settle.code != 0:
            self.anomalies.append(f"round {self.count['rounds']}: settling run ended {settle.code}")
        self.check_versions(current=True)
        if strays := self.strays():
            self.count["stray"] += len(strays)
            self.anomalies.append(
                f"round {self.count['rounds']}: stray files in model folders: {strays}"
            )
        if left := self.leftovers():
            self.count["leftovers"] += len(left)
            self.notes.append(
                f"round {self.count['rounds']}: after the settling run, before `mdl clean`: {left}"
            )

    def finish(self) -> str:
        """`mdl clean` and `mdl verify --all`; what verify said."""
        self.calm()
        clean = subprocess.run(
            r.mdl("clean"), env=self.env, capture_output=True, timeout=RUN_TIMEOUT
        )
        if clean.returncode != 0:
            self.anomalies.append(
                f"mdl clean exited {clean.returncode}: {tail(clean.stderr.decode())}"
            )
        if left := self.leftovers():
            self.count["stray"] += len(left)
            self.anomalies.append(f"left after `mdl clean`: {left}")
        verify = subprocess.run(
            r.mdl("verify", "--all", "--json"),
            env=self.env,
            capture_output=True,
            timeout=RUN_TIMEOUT,
        )
        files = []
        with contextlib.suppress(ValueError, KeyError):
            files = json.loads(verify.stdout)["files"]
        bad = [f for f in files if f.get("action") != "verified"]
        if verify.returncode != 0 or bad or len(files) != len(self.upstream.sources):
            self.count["corrupted"] += max(1, len(bad))
            self.anomalies.append(
                f"mdl verify --all exited {verify.returncode}: {tail(verify.stderr.decode())}"
            )
        return f"exit {verify.returncode}, {len(files)} files"

    def run(self) -> int:
        try:
            while self.count["runs"] < self.args.runs and self.elapsed() < self.args.time_limit:
                self.round()
                c = self.count
                print(
                    f"round {c['rounds']:3d}: {c['runs']:4d} runs,"
                    f" {sum(self.kinds['faults'].values()):4d} faults, {c['needed a re-run']:3d}"
                    f" needed a re-run, {c['corrupted']} corrupted, {c['stray']} stray,"
                    f" {self.elapsed():5.0f}s",
                    flush=True,
                )
            verified = self.finish()
            served = self.hub.cdn.log.body_bytes(method="GET")
            # files the Hub answered itself
            served += self.hub.log.body_bytes(method="GET", path_prefix="/org/")
        finally:
            self.hub.stop()
        ok = self.count["corrupted"] == 0 and self.count["stray"] == 0 and not self.anomalies
        report = self.report(verified, served, ok)
        print("\n" + report)
        if self.args.report:
            Path(self.args.report).write_text(report, encoding="utf-8")
            print(f"\nwritten to {self.args.report}")
        if ok and not self.args.keep:
            shutil.rmtree(self.work, ignore_errors=True)
        else:
            print(f"work folder kept for inspection: {self.work}")
        return 0 if ok else 1

    def report(self, verified: str, served: int, ok: bool) -> str:
        c, k = self.count, self.kinds
        rows = [
            ("pull runs (processes)", c["runs"]),
            ("rounds", c["rounds"]),
            ("faults injected (requests hit)", sum(k["faults"].values())),
            ("interruptions (signals sent)", sum(k["interruptions"].values())),
            ("runs that needed a re-run", c["needed a re-run"]),
            ("re-runs made", c["re-runs"]),
            (
                "upstream changes (between runs / mid-download)",
                f"{c['upstream changes']} / {k['faults']['direct-replaced']}",
            ),
            ("files corrupted", c["corrupted"]),
            ("stray files left", c["stray"]),
            ("partial/temp files before `mdl clean` (summed over rounds)", c["leftovers"]),
            ("`mdl verify --all`", verified),
            ("bytes served by the servers", f"{served / MB:.0f} MB"),
            ("wall time", f"{self.elapsed():.0f} s"),
        ]
        lines = [
            "# mdl soak",
            "",
            f"- date: {r.now()}",
            (
                f"- machine: {platform.platform()}, {os.cpu_count()} CPUs, "
                f"Python {platform.python_version()}"
            ),
            f"- command: `{self.args.command}`",
            f"- result: {'PASS' if ok else 'FAIL'}",
            "",
            "| what | count |",
            "|---|---|",
            *[f"| {what} | {n} |" for what, n in rows],
            "",
        ]
        for key, title in WORDS.items():
            counted = sorted(
                k[key].items(), key=lambda kv: (kv[0].lstrip("-").isdigit() and int(kv[0]), kv[0])
            )
            lines += [
                f"{title}: " + (", ".join(f"{what}: {n}" for what, n in counted) or "none"),
                "",
            ]
        for title, found in (("Notes", self.notes), ("Anomalies", self.anomalies)):
            lines += [f"{title}:", "", *[f"- {n}" for n in found[:50]], ""] if found else []
        return "\n".join(lines)


def ending(code: int | None, text: str) -> str:
    """How an interrupted run ended, in words."""
    if code == 130:
        return "130, handled by mdl"
    if code == -signal.SIGKILL:
        return "killed (SIGKILL)"
    if code in (-signal.SIGINT, -signal.SIGTERM):
        # CPython: a KeyboardInterrupt that passed through exec() (dataclasses, lazy imports) makes
        # the interpreter re-kill itself with SIGINT at exit, whatever sys.exit() said.
        if "mdl: error: interrupted" in text:
            return "handled by mdl, then exited by SIGINT (a shell sees 130)"
        return "signalled while Python was still starting (before mdl's handlers)"
    return "finished anyway (the signal came as it was ending)" if code == 0 else f"exit {code}"


def tail(text: str, lines: int = 3) -> str:
    return " | ".join(text.strip().splitlines()[-lines:])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--runs", type=int, default=200, help="pull processes to run in all (default 200)"
    )
    parser.add_argument(
        "--procs", type=int, default=4, help="concurrent processes per round (default 4)"
    )
    parser.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    parser.add_argument(
        "--time-limit", type=float, default=300.0, help="stop starting rounds after this (s)"
    )
    parser.add_argument(
        "--interrupt", type=float, default=0.35, help="chance a run is interrupted (default 0.35)"
    )
    parser.add_argument(
        "--report", default=str(r.HERE / "SOAK.md"), help="Markdown report ('' for none)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args(argv)
    args.command = "python bench/soak.py " + " ".join(sys.argv[1:] if argv is None else argv)
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        # Started in the background by a shell: SIGINT is ignored and the children would inherit
        # that. A handler here is reset to the default in each child.
        signal.signal(signal.SIGINT, signal.default_int_handler)
    return Soak(args).run()


if __name__ == "__main__":
    sys.exit(main())
