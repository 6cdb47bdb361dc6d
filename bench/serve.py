"""``mdl serve --pull`` beside run:ai's model streamer: a ~2 GiB safetensors model in two shards on
an origin (nginx) shaped to ``--rate`` MB/s (tc HTB in a network namespace of the bench's own), and
the real ``runai-model-streamer`` loading every tensor into CPU memory from ``s3://mdl/m/``.

    python bench/serve.py                          # 2 GiB, 200 MB/s, 3 repetitions (about 12 min)
    python bench/serve.py --size-mib 256 --reps 1  # a quick check (about 1 min)
    python bench/serve.py --ranges                 # part hashes beside the lock: release by range
    python bench/serve.py --write-results          # and rewrite the block in bench/SERVE.md
    python bench/serve.py --only serve,front --modes files --json out.json
    python bench/serve.py --rate 0 --per-connection 1 --shards 3 --size-mib 768 --ranges
                                                   # each connection capped at 1 MiB/s (nginx
                                                   # limit_rate, the front paced): a capped bucket

Rows (one run, side by side; each timed row ``--reps`` times, alternating, medians):

- ``D``: ``mdl pull m`` from the shaped origin (verified, durable): wall.
- ``S``: ``mdl serve m --pull --port 0 --env-file F`` and the loader started together (the loader
  imports torch, waits for F, sources it, lists ``s3://mdl/m/`` and streams): time to the loader's
  last tensor. ``S / D`` (target ≤ 1.10), ``S / (D + L)``. mdl's CPU-s (``os.wait4``).
- ``D + L``: ``mdl pull m``, then the loader reading the pulled files by path (the same process,
  torch import included, as in S).
- ``F``: the loader reading the origin's folder through ``bench/s3front.py``, a plain S3 front
  (no verification, no auth) whose port tc shapes to the same rate: the unverified overlap.
  ``S / F`` (target ≤ 1.05).
- first tensor: the loader's first tensor in S (and F) from the common start, over D.
- ``kill``: ``mdl serve --pull`` (and its loader) killed with SIGKILL once ``--kill-at`` (default
  50 %; a list gives a row each) of the model's bytes are in the destination (partial files'
  allocated blocks + finished files), both started again on the same destination: the origin's
  body bytes after the restart (nginx's ``$body_bytes_sent``) over the model (target: the share
  not yet fetched + 0.05, so ≤ 0.55 at 50 %).
- ``disk``: the model already pulled: the loader through ``mdl serve m`` (no ``--pull``) against
  the loader reading the files by path; load time (listing excluded, so both time the stream) and
  their throughput ratio (target ≥ 0.8).

The loader (``bench/serve_loader.py``) runs with ``--loader-python`` (default /work/bench-venv),
a venv of its own with ``torch==2.13.0`` (the CPU wheel), ``runai-model-streamer`` and
``runai-model-streamer-s3``; the bench makes it when missing (before entering the namespace: the
namespace has no network). ``--modes files,file``: ``stream_files(all shards)`` (vLLM's way: every
shard's header first) and ``stream_file`` per shard in order; each its own S and F rows. Every load
is checked: tensor count, bytes, and the sha256 of sampled tensors against the origin's bytes.

run:ai 0.17's S3 client sends absolute-form request targets (``GET http://host:port/mdl/m/x``) and
opens ~180 connections. Before 2173373 mdl serve refused both (403 SignatureDoesNotMatch; 503
SlowDown past 64 connections). The bench probes ``mdl serve`` as it is with run:ai's defaults first,
and when the probe fails runs mdl through ``bench/serve_shim.py`` (the request line in origin form,
nothing else) and probes again (``--shim auto|on|off``); ``--loader-env`` gives every loader settings
(e.g. ``RUNAI_STREAMER_S3_MAX_INFLIGHT_MIB=48``). The report names mdl's commit and says when mdl/
changed during the run.

Every row pulls with the same lock: ``mdl lock`` pins the catalog's files (``catalog.lock``) before
the timed rows. ``--ranges`` also writes ``catalog.lock.parts`` beside it: each shard's BLAKE3 part
hashes at mdl's part size for it (what ``mdl lock`` records on a machine that installed the files),
from the origin's files, so ``mdl serve --pull`` answers a range as soon as its parts verified
(release by range) and ``mdl pull`` checks each part as it lands; without it, no part hashes
(whole-file release). The report says which, and the range trust the warm-up pull used.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import random
import shlex
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import runner as r

LIVE: list[Proc] = []  # every child started, for kill_all
NETNS = "MDL_SERVE_NETNS"  # set in the re-executed bench, inside its own network namespace
HERE = r.HERE
LOADER, FRONT, SHIM = HERE / "serve_loader.py", HERE / "s3front.py", HERE / "serve_shim.py"
SERVE_MD = HERE / "SERVE.md"
MODEL, BUCKET = "m", "mdl"
MiB = r.MiB
ROW_VERSION = 1
TORCH = "torch==2.13.0"
LOADER_PACKAGES = ("runai-model-streamer", "runai-model-streamer-s3")
TIMEOUT_MS = "630000"  # what mdl serve writes by default (--wait 600 + 30 s): the front gets it too


def say(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


# -- the model
# -------------------------------------------------------------------------------------------------


@dataclass
class Shard:
    path: Path
    size: int
    sha256: str
    tensors: dict[str, list[int]]  # name -> [absolute start, end) in the file


def write_model(data: Path, size: int, shards: int, seed: int) -> list[Shard]:
    """``shards`` real safetensors files of about ``size`` bytes in all: an 8-byte little-endian
    header length, a JSON header (dtype, shape, data_offsets) padded to 8 bytes, then the data
    (incompressible). float16 tensors of 2–48 MiB ([rows, 4096]) with a small norm vector every
    eighth; names unique across shards. Cached beside the files (``model.meta.json``)."""
    meta = data / "model.meta.json"
    want = {"version": ROW_VERSION, "size": size, "shards": shards, "seed": seed}
    with contextlib.suppress(OSError, ValueError, KeyError):
        info = json.loads(meta.read_text())
        found = [
            Shard(Path(s["path"]), s["size"], s["sha256"], s["tensors"]) for s in info["shards"]
        ]
        if info["want"] == want and all(s.path.stat().st_size == s.size for s in found):
            return found
    data.mkdir(parents=True, exist_ok=True)
    for old in data.glob("*.safetensors"):
        old.unlink()
    rng = random.Random(seed)
    per, layer, made = size // shards, 0, []
    for index in range(shards):
        header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
        offset, kinds = (
            0,
            ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        )
        while offset < per:
            for kind in [*kinds, "input_layernorm"]:
                if kind == "input_layernorm":
                    shape, nbytes = [4096], 8192
                else:
                    rows = max(1, min(rng.randint(256, 6144), (per - offset) // 8192))
                    shape, nbytes = [rows, 4096], rows * 8192
                name = f"model.layers.{layer}.{kind}.weight"
                header[name] = {
                    "dtype": "F16",
                    "shape": shape,
                    "data_offsets": [offset, offset + nbytes],
                }
                offset += nbytes
                if offset >= per:
                    break
            layer += 1
        text = json.dumps(header, separators=(",", ":")).encode()
        text += b" " * (-len(text) % 8)
        start = 8 + len(text)
        path = data / f"model-{index + 1:05d}-of-{shards:05d}.safetensors"
        digest = hashlib.sha256()
        with path.open("wb") as out:
            for block in (struct.pack("<Q", len(text)), text):
                digest.update(block)
                out.write(block)
            for block in r.random_chunks(offset):
                digest.update(block)
                out.write(block)
        tensors = {
            k: [start + v["data_offsets"][0], start + v["data_offsets"][1]]
            for k, v in header.items()
            if k != "__metadata__"
        }
        made.append(Shard(path, start + offset, digest.hexdigest(), tensors))
    doc = {"want": want, "shards": [{**vars(s), "path": str(s.path)} for s in made]}
    meta.write_text(json.dumps(doc))
    return made


def pin(bench: Bench, shards: Sequence[Shard], *, ranges: bool) -> str:
    """``mdl lock`` of the bench's catalog (catalog.lock beside it), then the part hashes of each
    shard beside the lock (``ranges``: read from the origin's files, at mdl's part size for each, as
    ``mdl lock`` writes them on a machine that installed them) or none. What was pinned, said."""
    if str(r.ROOT) not in sys.path:  # this tree's mdl: its part size and its file format
        sys.path.insert(0, str(r.ROOT))
    from mdl.catalog.load import lock_beside
    from mdl.lockfile.parts import PartHashes, hashed, parts_beside, read_parts, write_parts

    lock = lock_beside(bench.catalog)
    lock.unlink(missing_ok=True)
    done = subprocess.run(bench.mdl("lock", "--all", shim=False), env=bench.env, cwd=bench.work,
                          capture_output=True, text=True, timeout=bench.args.run_timeout)  # fmt: skip
    if done.returncode != 0 or not lock.is_file():
        sys.exit(f"bench: mdl lock failed (exit {done.returncode}, {lock} "
                 f"{'written' if lock.is_file() else 'missing'}): {done.stderr.strip()[-2000:]}")  # fmt: skip
    beside = parts_beside(lock)
    beside.unlink(missing_ok=True)  # whatever mdl lock kept: the bench says which
    if not ranges:
        return f"whole-file release: `mdl lock` pins the {len(shards)} shards, no part hashes"
    found: dict[str, PartHashes] = {}
    for shard in shards:
        fd = os.open(shard.path, os.O_RDONLY)
        try:
            one, sha256 = hashed(fd, shard.size)
        finally:
            os.close(fd)
        if sha256 != shard.sha256:
            sys.exit(f"bench: {shard.path} changed: sha256 {sha256}, not {shard.sha256}")
        found[sha256] = one
    write_parts(beside, found)
    if read_parts(beside) != found:
        sys.exit(f"bench: {beside} does not read back as written")
    each = ", ".join(f"{len(x.digests)} × {x.part / MiB:g} MiB" for x in found.values())
    return f"release by range: `mdl lock` pins the shards, `{beside.name}` beside it ({each})"


def check_sample(shards: Sequence[Shard], seed: int, per_shard: int = 6) -> dict[str, str]:
    """sha256 of some tensors of each shard (its first, its last and random others), read from the
    origin's files: what the loader must have in memory."""
    rng, sample = random.Random(seed + 1), {}
    for shard in shards:
        names = list(shard.tensors)
        picked = {names[0], names[-1], *rng.sample(names, min(per_shard, len(names)))}
        with shard.path.open("rb") as f:
            for name in sorted(picked):
                start, end = shard.tensors[name]
                f.seek(start)
                sample[name] = hashlib.sha256(f.read(end - start)).hexdigest()
    return sample


# -- processes
# -------------------------------------------------------------------------------------------------


def kill_all() -> None:
    """Every child still running (an interrupted row's server and loader): killed, so nothing is
    left behind and the namespace ends with the bench."""
    for proc in LIVE:
        if proc.poll() is None:
            proc.kill()


class Proc:
    """A child in its own session; ``os.wait4`` for its exit and rusage (CPU of it and the children
    it waited for)."""

    def __init__(self, argv: Sequence[str], *, env: dict[str, str], logs: Path, cwd: Path) -> None:
        logs.parent.mkdir(parents=True, exist_ok=True)
        self.argv, self.logs = list(argv), logs
        self.out, self.err = logs.with_suffix(".out"), logs.with_suffix(".err")
        with self.out.open("wb") as out, self.err.open("wb") as err:
            err.write(f"$ {shlex.join(self.argv)}\n".encode())
            err.flush()
            self.popen = subprocess.Popen(
                self.argv, env=env, cwd=cwd, stdout=out, stderr=err, start_new_session=True
            )
        self.pid = self.popen.pid
        LIVE.append(self)
        self.started = time.time()
        self.ended: float | None = None
        self.code: int | None = None
        self.cpu = float("nan")

    def poll(self) -> int | None:
        if self.code is None:
            try:
                pid, status, usage = os.wait4(self.pid, os.WNOHANG)
            except ChildProcessError:
                pid, status, usage = self.pid, 0, None
            if pid:
                self.ended = time.time()
                self.code = os.waitstatus_to_exitcode(status)
                self.popen.returncode = self.code
                if usage is not None:
                    self.cpu = usage.ru_utime + usage.ru_stime
        return self.code

    def wait(self, timeout: float) -> int | None:
        deadline = time.monotonic() + timeout
        while self.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.code

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        self.wait(10)

    def stop(self, grace: float = 30.0) -> int | None:
        """SIGTERM (mdl serve: stop serving, exit), then SIGKILL after ``grace``."""
        if self.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGTERM)
            if self.wait(grace) is None:
                self.kill()
        return self.code

    def json(self) -> dict[str, Any]:
        with contextlib.suppress(OSError, ValueError):
            lines = self.out.read_text().strip().splitlines()
            return json.loads(lines[-1]) if lines else {}
        return {}

    def stderr_tail(self, n: int = 6) -> list[str]:
        with contextlib.suppress(OSError):
            return self.err.read_text(errors="replace").strip().splitlines()[-n:]
        return []


# -- the bench
# -------------------------------------------------------------------------------------------------


@dataclass
class Run:
    row: str
    rep: int
    ok: bool = True
    wall: float = float("nan")  # the row's time: D's wall, S's and F's last tensor from the start
    first: float = float("nan")  # the loader's first tensor from the start
    cpu: float = float("nan")  # mdl's CPU-s
    load: float = float("nan")  # the loader's stream alone (after its listing)
    origin_done: float = float("nan")  # the origin's last byte logged, from the start
    ready: float = float("nan")  # the loader had the environment (the endpoint listened)
    net: float = float("nan")  # F: the loader's last tensor from its environment (torch imported)
    notes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


class Bench:
    def __init__(self, args: argparse.Namespace, shards: list[Shard], check: Path) -> None:
        self.args, self.shards, self.check = args, shards, check
        self.work: Path = args.workdir
        self.model_bytes = sum(s.size for s in shards)
        self.tensor_count = sum(len(s.tensors) for s in shards)
        self.tensor_bytes = sum(e - b for s in shards for b, e in s.tensors.values())
        self.env = r.clean_env(self.work)
        self.catalog = self.work / "catalog.toml"
        self.access_log = self.work / "access.log"
        self.front_env = self.work / "front.env"
        self.nginx_env = self.work / "nginx.env"
        self.shim = False
        self.probes: list[dict[str, Any]] = []
        self.runs: list[Run] = []
        self.count = 0

    # -- pieces

    def fresh(self, name: str) -> Path:
        dest = self.work / "dests" / name
        shutil.rmtree(dest, ignore_errors=True)
        return dest

    def logs(self, name: str) -> Path:
        self.count += 1
        return self.work / "logs" / f"{self.count:03d}-{name}"

    def mdl(self, *args: str, shim: bool | None = None) -> list[str]:
        use = self.shim if shim is None else shim
        head = [r.PY, str(SHIM)] if use else r.mdl()
        return [*head, *args, "--catalog", str(self.catalog), "-q"]

    def loader(self, mode: str, *, env_file: Path | None, paths: Sequence[str] = (), logs: Path,
               settings: Sequence[str] | None = None) -> Proc:  # fmt: skip
        argv = [self.args.loader_python, str(LOADER), "--mode", mode, "--check", str(self.check)]
        if env_file is not None:
            argv += ["--env-file", str(env_file), "--env-timeout", str(self.args.run_timeout)]
            if not paths:
                argv += ["--s3-prefix", f"s3://{BUCKET}/{MODEL}/"]
        for item in self.args.loader_env if settings is None else settings:
            argv += ["--set", item]
        return Proc([*argv, *paths], env=self.env, logs=logs, cwd=self.work)

    def local_paths(self, dest: Path) -> list[str]:
        return [str(dest / MODEL / s.path.name) for s in self.shards]

    def quiet(self) -> None:
        os.sync()
        r.wait_for_quiet(self.args.quiet_cpu, self.args.quiet_wait)

    def mark(self) -> int:
        return self.access_log.stat().st_size if self.access_log.exists() else 0

    def settle(self, quiet: float = 0.5, limit: float = 10.0) -> None:
        deadline, size, since = time.monotonic() + limit, self.mark(), time.monotonic()
        while time.monotonic() < deadline and time.monotonic() - since < quiet:
            time.sleep(0.05)
            if (now := self.mark()) != size:
                size, since = now, time.monotonic()

    def origin(self, mark: int) -> tuple[int, int, float]:
        """(requests, body bytes, the last one's $msec) nginx logged since ``mark``."""
        requests = body = 0
        last = float("nan")
        with self.access_log.open("rb") as f:
            f.seek(mark)
            for line in f.read().decode(errors="replace").splitlines():
                parts = line.split(" ")
                if len(parts) > 5 and parts[4].isdigit():
                    requests += 1
                    body += int(parts[4])
                    last = float(parts[0]) if last != last else max(last, float(parts[0]))
        return requests, body, last

    def judge_load(self, run: Run, out: dict[str, Any], proc: Proc) -> bool:
        """The loader's load is whole and right; its failure, in its own words, in the notes."""
        if not out.get("ok"):
            run.notes.append(
                f"loader failed (exit {proc.code}): {out.get('error') or proc.stderr_tail(3)}"
            )
            return False
        problems = []
        if out.get("tensors") != self.tensor_count:
            problems.append(f"{out.get('tensors')} tensors, not {self.tensor_count}")
        if out.get("bytes") != self.tensor_bytes:
            problems.append(f"{out.get('bytes')} bytes, not {self.tensor_bytes}")
        if out.get("mismatched"):
            problems.append(f"sha256 differs: {out['mismatched'][:3]}")
        if problems:
            run.notes.append("loaded wrong: " + "; ".join(problems))
            return False
        return True

    def wait_loader(self, proc: Proc, run: Run) -> dict[str, Any]:
        if proc.wait(self.args.run_timeout) is None:
            proc.kill()
            run.notes.append(f"loader timed out after {self.args.run_timeout:g} s (killed)")
        out = proc.json()
        run.extra["loader"] = {k: v for k, v in out.items() if k not in ("traceback",)}
        return out

    # -- rows

    def pull(self, rep: int, *, then_load: bool) -> tuple[Run, Run | None]:
        """D (and L: the loader on the pulled files)."""
        dest = self.fresh("pull")
        self.quiet()
        mark = self.mark()
        run = Run("D", rep)
        proc = Proc(self.mdl("pull", MODEL, "--dest", str(dest)), env=self.env,
                    logs=self.logs(f"pull{rep}"), cwd=self.work)  # fmt: skip
        if proc.wait(self.args.run_timeout) is None:
            proc.kill()
            run.notes.append("mdl pull timed out (killed)")
        run.wall, run.cpu = proc.ended - proc.started if proc.ended else float("nan"), proc.cpu
        run.ok = proc.code == 0
        if not run.ok:
            run.notes.append(f"mdl pull exit {proc.code}: {proc.stderr_tail(3)}")
        self.settle()
        requests, body, _ = self.origin(mark)
        run.extra.update(requests=requests, origin_bytes=body)
        self.runs.append(run)
        load = None
        if then_load and run.ok:
            load = Run("L", rep)
            self.quiet()
            proc = self.loader(
                "files", env_file=None, paths=self.local_paths(dest), logs=self.logs(f"local{rep}")
            )
            out = self.wait_loader(proc, load)
            load.ok = self.judge_load(load, out, proc)
            if load.ok:
                load.wall = out["last"] - proc.started
                load.first = out["first"] - proc.started
                load.load = out["last"] - out["env"]
            self.runs.append(load)
        return run, load

    def serve(self, rep: int, mode: str) -> Run:
        """S: mdl serve --pull and the loader, started together."""
        dest, env_file = self.fresh("serve"), self.work / "serve.env"
        env_file.unlink(missing_ok=True)
        self.quiet()
        mark = self.mark()
        run = Run(f"S[{mode}]", rep)
        argv = self.mdl("serve", MODEL, "--pull", "--port", "0", "--env-file", str(env_file),
                        "--dest", str(dest))  # fmt: skip
        start = time.time()
        server = Proc(argv, env=self.env, logs=self.logs(f"serve{rep}-{mode}"), cwd=self.work)
        loader = self.loader(mode, env_file=env_file, logs=self.logs(f"serve{rep}-{mode}-loader"))
        out = self.wait_loader(loader, run)
        code = server.stop()
        run.ok = self.judge_load(run, out, loader)
        if run.ok:
            run.wall, run.first = out["last"] - start, out["first"] - start
            run.ready = out["env"] - start
            run.load = out["last"] - out.get("listed", out["env"])
        run.cpu = server.cpu
        run.extra["mdl_exit"] = code
        if code not in (0, 130):
            run.notes.append(f"mdl serve exit {code}: {server.stderr_tail(3)}")
        self.settle()
        requests, body, last = self.origin(mark)
        run.origin_done = last - start
        run.extra.update(requests=requests, origin_bytes=body)
        self.runs.append(run)
        return run

    def front(self, rep: int, mode: str) -> Run:
        """F: the loader through the plain S3 front of the shaped origin."""
        self.quiet()
        run = Run(f"F[{mode}]", rep)
        log = self.work / "s3front.log"
        mark = log.stat().st_size if log.exists() else 0
        start = time.time()
        loader = self.loader(mode, env_file=self.front_env, logs=self.logs(f"front{rep}-{mode}"))
        out = self.wait_loader(loader, run)
        run.ok = self.judge_load(run, out, loader)
        if run.ok:
            run.wall, run.first = out["last"] - start, out["first"] - start
            run.load = out["last"] - out.get("listed", out["env"])
            run.net = out["last"] - out["env"]
        run.extra["pattern"] = access_pattern(log, mark)
        self.runs.append(run)
        return run

    def kill(self, rep: int, mode: str, at: float) -> Run:
        """kill: mdl serve --pull killed at ``at`` of the model's bytes, both started again."""
        dest, env_file = self.fresh("kill"), self.work / "kill.env"
        run_name = f"kill{rep}-{at:.0%}".replace("%", "pc")
        env_file.unlink(missing_ok=True)
        self.quiet()
        run = Run(f"kill@{at:.0%}", rep)
        argv = self.mdl("serve", MODEL, "--pull", "--port", "0", "--env-file", str(env_file),
                        "--dest", str(dest))  # fmt: skip
        mark = self.mark()
        start = time.time()
        server = Proc(argv, env=self.env, logs=self.logs(f"{run_name}-first"), cwd=self.work)
        loader = self.loader(mode, env_file=env_file, logs=self.logs(f"{run_name}-first-loader"))
        goal, have = at * self.model_bytes, 0
        deadline = time.monotonic() + self.args.run_timeout
        while time.monotonic() < deadline and server.poll() is None:
            have = in_dest(dest)
            if have >= goal:
                break
            time.sleep(0.02)
        killed_at = time.time() - start
        os.kill(server.pid, signal.SIGKILL)
        server.wait(10)
        run.extra.update(
            killed_at_s=killed_at, in_dest_at_kill=have, share_at_kill=have / self.model_bytes
        )
        if have < goal:
            run.notes.append(
                f"killed late or not at all: {have / self.model_bytes:.0%} in the dest"
            )
        # what a loader whose server died does, by itself (then it is killed: the new server has
        # another port and key)
        loader.wait(5)
        first_out = loader.json() if loader.code is not None else {}
        run.extra["loader_after_kill"] = first_out.get("error") or (
            "still waiting after 5 s" if loader.code is None else "ok")  # fmt: skip
        loader.kill()
        self.settle()
        run.extra["in_dest_after_kill"] = in_dest(dest)
        before = self.origin(mark)
        mark = self.mark()
        env_file.unlink(missing_ok=True)
        again = time.time()
        server = Proc(argv, env=self.env, logs=self.logs(f"{run_name}-again"), cwd=self.work)
        loader = self.loader(mode, env_file=env_file, logs=self.logs(f"{run_name}-again-loader"))
        out = self.wait_loader(loader, run)
        code = server.stop()
        run.ok = self.judge_load(run, out, loader)
        if run.ok:
            run.wall = out["last"] - again
        if code not in (0, 130):
            run.notes.append(f"mdl serve (restarted) exit {code}: {server.stderr_tail(3)}")
        self.settle()
        after = self.origin(mark)
        run.extra.update(
            origin_before_kill=before[1], origin_after_restart=after[1],
            refetched_share=after[1] / self.model_bytes, requests_after=after[0],
            total_share=(before[1] + after[1]) / self.model_bytes,
        )  # fmt: skip
        self.runs.append(run)
        return run

    def disk(self, rep: int, dest: Path, which: str) -> Run:
        """disk: the loader through mdl serve (no --pull) on a pulled model, or on its files."""
        self.quiet()
        run = Run(f"disk-{which}", rep)
        server = None
        if which == "serve":
            env_file = self.work / "disk.env"
            env_file.unlink(missing_ok=True)
            argv = self.mdl("serve", MODEL, "--port", "0", "--env-file", str(env_file),
                            "--dest", str(dest))  # fmt: skip
            server = Proc(argv, env=self.env, logs=self.logs(f"disk{rep}-serve"), cwd=self.work)
            loader = self.loader(
                "files", env_file=env_file, logs=self.logs(f"disk{rep}-serve-loader")
            )
        elif which == "nginx":
            # a yardstick: the origin's nginx (C, sendfile) as a path-style S3, unshaped
            paths = [f"s3://fast/{s.path.name}" for s in self.shards]
            loader = self.loader(
                "files", env_file=self.nginx_env, paths=paths, logs=self.logs(f"disk{rep}-nginx")
            )
        else:
            loader = self.loader("files", env_file=None, paths=self.local_paths(dest),
                                 logs=self.logs(f"disk{rep}-local"))  # fmt: skip
        out = self.wait_loader(loader, run)
        if server is not None:
            server.stop()
            run.cpu = server.cpu
        run.ok = self.judge_load(run, out, loader)
        if run.ok:
            run.load = out["last"] - out.get("listed", out["env"])
            run.wall = out["last"] - loader.started
        self.runs.append(run)
        return run

    def probe_mdl(self, dest: Path, *, shim: bool) -> dict[str, Any]:
        """Does the streamer, with its defaults (none of ``--loader-env``), load a model on disk
        from ``mdl serve`` (as it is, or through the shim)? Its error and mdl's refusals."""
        env_file = self.work / "probe.env"
        env_file.unlink(missing_ok=True)
        argv = self.mdl("serve", MODEL, "--port", "0", "--env-file", str(env_file), "--dest",
                        str(dest), shim=shim)  # fmt: skip
        log = self.work / "mdl.log"
        mark = log.stat().st_size if log.exists() else 0
        name = "probe-shim" if shim else "probe"
        server = Proc(argv, env=self.env, logs=self.logs(f"{name}-serve"), cwd=self.work)
        loader = self.loader(
            "files", env_file=env_file, logs=self.logs(f"{name}-loader"), settings=()
        )
        out = self.wait_loader(loader, Run(name, 0))
        server.stop()
        refused: list[str] = []
        with contextlib.suppress(OSError), log.open("rb") as f:
            f.seek(mark)
            text = f.read().decode(errors="replace")
            refused = [ln for ln in text.splitlines() if "WARNING" in ln and "mdl.serve" in ln]
        kinds: dict[str, int] = {}
        for line in refused:
            kind = line.split("mdl.serve: ", 1)[-1]
            kind = (
                kind.split(": ", 1)[1] if kind.startswith("127.0.0.1 ") and ": " in kind else kind
            )
            kinds[kind[:140]] = kinds.get(kind[:140], 0) + 1
        found = {"shim": shim, "ok": bool(out.get("ok")), "error": out.get("error"),
                 "refused": refused[:2], "kinds": kinds}  # fmt: skip
        say(f"bench: probe of mdl serve{' + shim' if shim else ' as it is'}, run:ai defaults: "
            f"{'loaded' if out.get('ok') else out.get('error')}")  # fmt: skip
        for kind, count in kinds.items():
            say(f"bench:   mdl log: {count} × {kind}")
        return found


def warm_files(out: dict[str, Any]) -> list[dict[str, Any]]:
    """The per-file entries of ``mdl pull --json``'s report (wherever it nests them)."""
    found: list[dict[str, Any]] = []

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            if "range_trust" in value or ("path" in value and "size" in value):
                found.append(value)
            else:
                for item in value.values():
                    walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(out)
    return found


def in_dest(dest: Path) -> int:
    """Bytes of the model in ``dest``: the partial files' allocated blocks (mdl writes ranges in
    place into sparse files) and the finished files' sizes."""
    total = 0
    for path in (dest / ".mdl" / "partial", dest / MODEL):
        with contextlib.suppress(OSError):
            for item in path.rglob("*"):
                with contextlib.suppress(OSError):
                    st = item.stat()
                    if item.is_file():
                        total += (
                            min(st.st_blocks * 512, st.st_size)
                            if path.name == "partial"
                            else st.st_size
                        )
    return total


def access_pattern(log: Path, mark: int) -> dict[str, Any]:
    """What the loader asked the front for: requests by kind, range sizes, the most in flight at
    once, and whether every header read ended before the first tensor range."""
    rows = []
    with contextlib.suppress(OSError), log.open("rb") as f:
        f.seek(mark)
        for line in f.read().decode(errors="replace").splitlines():
            p = line.split(" ")
            if len(p) >= 7:
                rows.append((float(p[0]), float(p[1]), p[2], p[3], p[4], int(p[5]), int(p[6]),
                             p[7] if len(p) > 7 else ""))  # fmt: skip
    gets = [x for x in rows if x[2] == "GET" and "list-type" not in x[3] and x[4] != "-"]
    lists = [x for x in rows if "list-type" in x[3]]
    heads = [x for x in rows if x[2] == "HEAD"]
    small = [x for x in gets if x[4] == "bytes=0-7" or x[4].startswith("bytes=8-")]  # the headers
    big = [x for x in gets if x not in small]
    events = sorted([(x[0], 1) for x in gets] + [(x[1], -1) for x in gets])
    most = level = 0
    for _, step in events:
        level += step
        most = max(most, level)
    return {
        "requests": len(rows),
        "connections": len({x[7] for x in rows}),
        "lists": len(lists),
        "heads": len(heads),
        "header_gets": len(small),
        "tensor_gets": len(big),
        "tensor_range_mib_median": round(statistics.median([x[6] for x in big]) / MiB, 2)
        if big
        else 0,
        "tensor_range_mib_max": round(max(x[6] for x in big) / MiB, 2) if big else 0,
        "most_in_flight": most,
        "headers_before_tensors": bool(
            small and big and max(x[1] for x in small) <= min(x[0] for x in big)
        ),
    }


# -- setup
# -------------------------------------------------------------------------------------------------


def ensure_loader_venv(python: str) -> None:
    """The loader's own venv: torch 2.13.0 (CPU wheel), runai-model-streamer(-s3). Made when
    missing, before the namespace (which has no network)."""
    probe = [python, "-c", "import torch, runai_model_streamer, runai_model_streamer_s3, boto3"]
    if Path(python).exists() and subprocess.run(probe, capture_output=True).returncode == 0:
        return
    venv = Path(python).parent.parent
    say(f"bench: making the loader's venv {venv} ({TORCH}, {' '.join(LOADER_PACKAGES)})")
    if not Path(python).exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [python, "-m", "pip", "install", "-q"]
    subprocess.run([*pip, TORCH], check=True)
    subprocess.run([*pip, *LOADER_PACKAGES, "boto3"], check=True)
    result = subprocess.run(probe, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"bench: the loader's venv cannot import the streamer:\n{result.stderr[-2000:]}")


def mdl_tree() -> dict[str, str]:
    """The mdl under test: this checkout's commit, and a digest of every file under mdl/ (other
    people may be editing it: a change during the run is reported)."""
    digest = hashlib.sha256()
    for path in sorted((r.ROOT / "mdl").rglob("*.py")):
        digest.update(str(path.relative_to(r.ROOT)).encode() + b"\0" + path.read_bytes())
    commit = _first_out(["git", "-C", str(r.ROOT), "rev-parse", "--short", "HEAD"])
    dirty = _first_out(["git", "-C", str(r.ROOT), "status", "--porcelain", "--", "mdl"])
    name = f"{commit}{' + uncommitted changes under mdl/' if dirty else ''} (mdl/*.py {digest.hexdigest()[:12]})"
    return {"name": name, "digest": digest.hexdigest()}


def _first_out(argv: list[str]) -> str:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        return subprocess.run(argv, capture_output=True, text=True, timeout=30).stdout.strip()
    return "?"


def loader_versions(python: str) -> dict[str, str]:
    code = (
        "import importlib.metadata as m, json;"
        "print(json.dumps({p: m.version(p) for p in ('torch', 'runai-model-streamer',"
        " 'runai-model-streamer-s3', 'boto3')}))"
    )
    with contextlib.suppress(Exception):
        return json.loads(
            subprocess.run([python, "-c", code], capture_output=True, text=True).stdout
        )
    return {}


def in_namespace() -> int:
    """Run this bench again in a network namespace of its own (``unshare -n``: its own loopback,
    whose tc rules touch nobody else's traffic), with loopback up."""
    if os.geteuid() != 0:
        sys.exit("bench: --rate shapes loopback in a network namespace: run as root, or --rate 0")
    script = 'ip link set lo up && exec "$@"'
    argv = ["unshare", "-n", "sh", "-c", script, "sh", sys.executable, *sys.argv]
    # unshare and sh exec: the child's pid is the bench's own, which cleans up on SIGTERM
    child = subprocess.Popen(argv, env={**os.environ, NETNS: "1"})

    def forward(signum: int, frame: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            child.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    return child.wait()


def shape(ports: Sequence[int], rate: float) -> None:
    """What each port sends: an HTB class of ``rate`` MB/s shared by all its connections (tc's
    ``mbps``: 10^6 bytes/s); everything else on loopback (mdl's endpoint to the loader) unshaped
    (``default 0``)."""
    run = lambda *a: subprocess.run(["tc", *a], check=True, capture_output=True)  # noqa: E731
    run("qdisc", "replace", "dev", "lo", "root", "handle", "1:", "htb", "default", "0")
    speed = f"{rate:g}mbps"
    for i, port in enumerate(ports):
        cls = f"1:{i + 10:x}"
        limit = ["rate", speed, "ceil", speed, "burst", "1mb", "cburst", "1mb", "quantum", "65536"]
        run("class", "add", "dev", "lo", "parent", "1:", "classid", cls, "htb", *limit)
        run("filter", "add", "dev", "lo", "parent", "1:", "protocol", "ip", "prio", "1", "u32",
            "match", "ip", "sport", str(port), "0xffff", "flowid", cls)  # fmt: skip


def link(args: argparse.Namespace) -> str:
    """The origin's (and the front's) link, in words."""
    said = [f"shaped to {args.rate:g} MB/s (tc HTB, own network namespace)"] if args.rate else []
    if args.per_connection:
        said.append(f"{args.per_connection:g} MiB/s per connection (nginx limit_rate)")
    return ", ".join(said) or "unshaped"


def write_env(path: Path, port: int) -> None:
    """A loader's environment for an S3 endpoint of the bench's own on ``port`` (no auth checked),
    the same request timeout as mdl serve writes."""
    values = {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
        "RUNAI_STREAMER_S3_USE_VIRTUAL_ADDRESSING": "0",
        "RUNAI_STREAMER_S3_REQUEST_TIMEOUT_MS": TIMEOUT_MS,
    }
    path.write_text("".join(f"export {k}={v}\n" for k, v in values.items()))


def start_front(
    work: Path, data: Path, env: dict[str, str], per_connection: float = 0.0
) -> tuple[Proc, int]:
    for _ in range(5):
        port = r.free_port()
        argv = [r.PY, str(FRONT), "--root", str(data), "--bucket", BUCKET, "--prefix", f"{MODEL}/",
                "--port", str(port), "--log", str(work / "s3front.log"),
                "--limit-rate", str(round(per_connection * MiB))]  # fmt: skip
        proc = Proc(argv, env=env, logs=work / "logs" / "s3front", cwd=work)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and proc.poll() is None:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
                return proc, port
            time.sleep(0.05)
        proc.kill()
    raise RuntimeError("bench: the S3 front did not start")


# -- the report
# -------------------------------------------------------------------------------------------------


def med(runs: Sequence[Run], attr: str = "wall") -> float:
    values = [getattr(x, attr) for x in runs if x.ok and getattr(x, attr) == getattr(x, attr)]
    return statistics.median(values) if values else float("nan")


def spread(runs: Sequence[Run], attr: str = "wall") -> str:
    values = [getattr(x, attr) for x in runs if x.ok and getattr(x, attr) == getattr(x, attr)]
    return f"{min(values):.2f}–{max(values):.2f}" if values else "-"


def verdict(value: float, target: float, *, at_most: bool = True) -> str:
    if value != value:
        return "no data"
    return "met" if (value <= target if at_most else value >= target) else "missed"


def report(
    args: argparse.Namespace, bench: Bench, info: dict[str, Any]
) -> tuple[str, dict[str, Any]]:
    by: dict[str, list[Run]] = {}
    for x in bench.runs:
        by.setdefault(x.row, []).append(x)
    d = med(by.get("D", []))
    lrows = by.get("L", [])
    pairs = [
        p.wall + q.wall for p in by.get("D", []) for q in lrows if p.rep == q.rep and p.ok and q.ok
    ]
    dl = statistics.median(pairs) if pairs else float("nan")
    lines = [
        "| row | what | median s | min–max s | mdl CPU-s | first tensor s | ratio | target | verdict |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    summary: dict[str, Any] = {"D": d, "D+L": dl}

    def add(row: str, what: str, runs: Sequence[Run], ratio: str = "", target: str = "", judged: str = "",
            cpu: bool = False, first: bool = False) -> None:  # fmt: skip
        if not runs:
            return
        failed = sum(not x.ok for x in runs)
        tail = f" ({failed} of {len(runs)} failed)" if failed else ""
        lines.append(
            f"| {row} | {what}{tail} | {med(runs):.2f} | {spread(runs)} | "
            f"{format(med(runs, 'cpu'), '.2f') if cpu else ''} | "
            f"{format(med(runs, 'first'), '.2f') if first else ''} | "
            f"{ratio} | {target} | {judged} |"
        )

    add("1 · D", "`mdl pull m` (verified) from the shaped origin", by.get("D", []), cpu=True)
    add("3 · L", "loader on the pulled files (paths; torch import included)", lrows, first=True)
    if pairs:
        lines.append(
            f"| 3 · D + L | pull, then load | {dl:.2f} | {min(pairs):.2f}–{max(pairs):.2f} | | | | | |"
        )
    for mode in args.modes:
        s_runs, f_runs = by.get(f"S[{mode}]", []), by.get(f"F[{mode}]", [])
        s, f = med(s_runs), med(f_runs)
        how = "stream_files(all)" if mode == "files" else "stream_file per shard"
        shim = " (+ shim)" if bench.shim else ""
        if s_runs:
            sd, sdl = s / d, s / dl
            add(f"2 · S [{mode}]", f"`mdl serve m --pull`{shim} + loader, {how}", s_runs,
                f"S/D {sd:.2f}; S/(D+L) {sdl:.2f}", "S/D ≤ 1.10", verdict(sd, 1.10), cpu=True, first=True)  # fmt: skip
            fs = med(s_runs, "first")
            lines.append(f"| 5 · first [{mode}] | loader's first tensor in S | {fs:.2f} | {spread(s_runs, 'first')} "
                         f"| | | first/D {fs / d:.2f} | | |")  # fmt: skip
            summary[f"S[{mode}]"] = {"S": s, "S/D": sd, "S/(D+L)": sdl, "first": fs, "first/D": fs / d,
                                     "cpu": med(s_runs, "cpu"), "origin_done": med(s_runs, "origin_done"),
                                     "ready": med(s_runs, "ready")}  # fmt: skip
        if f_runs:
            sf = s / f
            add(f"4 · F [{mode}]", f"loader through the plain S3 front, {how} (no verification)", f_runs,
                f"S/F {sf:.2f}", "S/F ≤ 1.05", verdict(sf, 1.05), first=True)  # fmt: skip
            fnet = med(f_runs, "net")
            lines.append(f"| 4 · F net [{mode}] | F without the loader's start-up (torch import): from its "
                         f"first request | {fnet:.2f} | {spread(f_runs, 'net')} | | | S/F net {s / fnet:.2f} | | |")  # fmt: skip
            summary[f"F[{mode}]"] = {"F": f, "S/F": sf, "first": med(f_runs, "first"), "F_net": fnet,
                                     "S/F_net": s / fnet}  # fmt: skip
    kills = [x for x in bench.runs if x.row.startswith("kill@")]
    for name in dict.fromkeys(x.row for x in kills):
        group = [x for x in kills if x.row == name]
        share = statistics.median([x.extra.get("refetched_share", float("nan")) for x in group])
        at = statistics.median([x.extra.get("share_at_kill", float("nan")) for x in group])
        target = round(1 - float(name[5:-1]) / 100 + 0.05, 2)  # the bytes not yet fetched + 5 %
        lines.append(
            f"| 6 · {name} | `mdl serve --pull` SIGKILLed at {at:.0%} of the bytes in the dest, both "
            f"restarted; loader done after the restart (s) | {med(group):.2f} | {spread(group)} | | | "
            f"origin bytes after restart / model {share:.2f} | ≤ {target:.2f} | {verdict(share, target)} |"
        )
        summary[name] = {"refetched_share": share, "share_at_kill": at,
                         "total_share": statistics.median([x.extra.get("total_share", float("nan")) for x in group])}  # fmt: skip
    ds, dl_ = by.get("disk-serve", []), by.get("disk-local", [])
    if ds and dl_:
        ls, ll = med(ds, "load"), med(dl_, "load")
        ratio = ll / ls
        mib = bench.tensor_bytes / MiB
        lines.append(f"| 7 · disk | loader via `mdl serve m` (on disk{', + shim' if bench.shim else ''}): stream time | "
                     f"{ls:.2f} | {spread(ds, 'load')} | {med(ds, 'cpu'):.2f} | | {mib / ls:.0f} MiB/s | | |")  # fmt: skip
        lines.append(f"| 7 · disk | loader on the same files (paths): stream time | {ll:.2f} | {spread(dl_, 'load')} "
                     f"| | | {mib / ll:.0f} MiB/s; serve/local throughput {ratio:.2f} | ≥ 0.8 | {verdict(ratio, 0.8, at_most=False)} |")  # fmt: skip
        summary["disk"] = {"serve_s": ls, "local_s": ll, "throughput_ratio": ratio}
        dn = by.get("disk-nginx", [])
        if dn:
            ln = med(dn, "load")
            lines.append(f"| 7 · disk (yardstick) | loader via nginx as a path-style S3 (C, sendfile, loopback speed): stream time "
                         f"| {ln:.2f} | {spread(dn, 'load')} | | | {mib / ln:.0f} MiB/s; serve/nginx throughput {ln / ls:.2f} | | |")  # fmt: skip
            summary["disk"].update(nginx_s=ln, serve_over_nginx=ln / ls)
    notes = [f"- {x.row} rep {x.rep}: {n}" for x in bench.runs for n in x.notes]
    for mode in args.modes:
        s_runs = by.get(f"S[{mode}]", [])
        if s_runs:
            notes.append(
                f"- S [{mode}]: endpoint ready (env file read by the loader) at {med(s_runs, 'ready'):.2f} s, "
                f"origin's last byte at {med(s_runs, 'origin_done'):.2f} s, first tensor "
                f"{med(s_runs, 'first'):.2f} s, last {med(s_runs):.2f} s (medians, from the common start)"
            )
    for x in kills:
        e = x.extra
        notes.append(
            f"- {x.row} rep {x.rep}: killed at {e.get('killed_at_s', 0):.2f} s with {e.get('in_dest_at_kill', 0) / MiB:.0f} MiB "
            f"in the dest ({e.get('in_dest_after_kill', 0) / MiB:.0f} MiB once settled); origin sent "
            f"{e.get('origin_before_kill', 0) / MiB:.0f} MiB before, {e.get('origin_after_restart', 0) / MiB:.0f} MiB after "
            f"({e.get('total_share', float('nan')):.2f} × model in all); the loader, its server dead: "
            f"{e.get('loader_after_kill')}"
        )
    pattern = next((x.extra["pattern"] for x in bench.runs if x.row == "F[files]" and x.ok), None)
    text = "\n".join(
        [
            f"Command: `{info['command']}` ({info['when']}; {info['machine']}; mdl {info['mdl']}).",
            f"Model: {len(bench.shards)} safetensors shards, {bench.model_bytes / MiB:.0f} MiB, "
            f"{bench.tensor_count} float16 tensors; origin nginx and front: {link(args)}; "
            f"{args.reps} repetitions, medians. Loader: run:ai "
            f"{info['loader'].get('runai-model-streamer', '?')} (s3 "
            f"{info['loader'].get('runai-model-streamer-s3', '?')}), torch {info['loader'].get('torch', '?')}.",
            f"Lock: {info['release']}.",
            "",
            *lines,
            "",
        ]
        + probe_lines(bench, args)
        + (
            [f"Streamer's requests to the front (F [files], first run): {json.dumps(pattern)}", ""]
            if pattern
            else []
        )
        + (["Notes:", *notes, ""] if notes else [])
    )
    return text, summary


def probe_lines(bench: Bench, args: argparse.Namespace) -> list[str]:
    out = []
    for probe in bench.probes:
        what = "`mdl serve` + `bench/serve_shim.py`" if probe["shim"] else "`mdl serve` as it is"
        kinds = "; ".join(f"{n} × `{k}`" for k, n in probe["kinds"].items())
        out.append(
            f"Probe: run:ai with its defaults from {what} (model on disk): "
            + (
                "loaded."
                if probe["ok"]
                else f"failed: `{probe['error']}`; mdl's log: {kinds or 'nothing refused'}."
            )
        )
    if bench.shim:
        out.append("Every `mdl serve` row ran mdl through `bench/serve_shim.py` (the request target in origin form, "
                   "nothing else changed).")  # fmt: skip
    if args.loader_env:
        out.append(
            f"Every loader (S, F, kill, disk, on paths too) ran with `{' '.join(args.loader_env)}`."
        )
    return [*out, ""] if out else []


def write_serve_md(text: str) -> None:
    begin = (
        "<!-- serve:begin (generated by bench/serve.py --write-results; edits inside are lost) -->"
    )
    end = "<!-- serve:end -->"
    current = (
        SERVE_MD.read_text(encoding="utf-8")
        if SERVE_MD.exists()
        else "# `mdl serve --pull` with run:ai's streamer (`bench/serve.py`)\n"
    )
    block = f"{begin}\n{text}\n{end}"
    if begin in current and end in current:
        head, rest = current.split(begin, 1)
        current = head + block + rest.split(end, 1)[1]
    else:
        current = current.rstrip("\n") + f"\n\n## Results\n\n{block}\n"
    SERVE_MD.write_text(current, encoding="utf-8")
    say(f"bench: wrote {SERVE_MD}")


# -- main
# -------------------------------------------------------------------------------------------------

ROWS = ("pull", "serve", "front", "kill", "disk")


def csv(choices: Sequence[str]) -> Any:
    def parse(text: str) -> list[str]:
        items = [x.strip() for x in text.split(",") if x.strip()]
        bad = [x for x in items if x not in choices]
        if bad:
            raise argparse.ArgumentTypeError(f"unknown {bad}; choose from {', '.join(choices)}")
        return items

    return parse


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--size-mib", type=int, default=2048, help="the model's size (default 2048)")
    add("--shards", type=int, default=2, help="its safetensors files (default 2)")
    add("--rate", type=float, default=200.0,
        help="the origin's link in MB/s (tc in a namespace of the bench's own; root); 0: none")  # fmt: skip
    add("--per-connection", type=float, default=0.0, metavar="MIB_S",
        help="also cap each connection of the origin and the front at this many MiB/s (nginx"
        " limit_rate; the front paces its sendfile); 0: none (default)")  # fmt: skip
    add("--reps", type=int, default=3, help="repetitions of each timed row (default 3)")
    add("--modes", type=csv(("files", "file")), default=["files", "file"],
        help="loader modes: files (stream_files of all shards), file (stream_file per shard)")  # fmt: skip
    add("--only", type=csv(ROWS), default=list(ROWS), help=", ".join(ROWS))
    add("--kill-at", type=lambda s: [float(x) for x in s.split(",")], default=[0.5],
        help="kill mdl serve at these shares of the bytes, a row each (default 0.5)")  # fmt: skip
    add("--kill-reps", type=int, default=1, help="kill runs (default 1)")
    add("--shim", choices=("auto", "on", "off"), default="auto",
        help="run mdl through bench/serve_shim.py: auto (when the probe fails), on, off")  # fmt: skip
    add("--run-timeout", type=float, default=300.0, help="seconds any one process may take")
    add("--quiet-cpu", type=float, default=0.5, help="start a run once others use under this")
    add("--quiet-wait", type=float, default=10.0, help="wait at most this long for quiet")
    add("--loader-env", action="append", metavar="NAME=VALUE",
        help="a setting for every loader (repeatable; default none: run:ai's defaults). E.g."
        " RUNAI_STREAMER_S3_MAX_INFLIGHT_MIB=48 (49 connections) for an mdl that serves 64 at once"
        " (before 2173373): run:ai's default opens ~180")  # fmt: skip
    add("--seed", type=int, default=1)
    add("--loader-python", default="/work/bench-venv/bin/python")
    add("--workdir", type=Path, default=Path("/tmp/mdl-serve-bench"))
    add("--clean", action="store_true", help="also delete the cached model and logs at the end")
    add("--json", type=Path, help="also write the raw numbers as JSON here")
    add("--write-results", action="store_true", help="rewrite the block in bench/SERVE.md")
    add("--ranges", action="store_true",
        help="part hashes beside catalog.lock (release by range); default: the lock alone")  # fmt: skip
    args = parser.parse_args()
    args.loader_env = [x for x in args.loader_env or [] if x and x != "none"]
    if not os.environ.get(NETNS):
        ensure_loader_venv(args.loader_python)
        r.ensure_tools(("nginx",))
        if args.rate:
            return in_namespace()
    args.workdir = args.workdir.resolve()
    args.workdir.mkdir(parents=True, exist_ok=True)
    command = " ".join(["python", "bench/serve.py", *sys.argv[1:]])
    r.interruptible()
    shutil.rmtree(args.workdir / "logs", ignore_errors=True)
    shutil.rmtree(args.workdir / "dests", ignore_errors=True)
    for name in ("access.log", "s3front.log", "mdl.log"):
        (args.workdir / name).unlink(missing_ok=True)
    data = args.workdir / "data"
    say(f"bench: writing the model ({args.size_mib} MiB, {args.shards} shards) in {data}")
    shards = write_model(data, args.size_mib * MiB, args.shards, args.seed)
    check = args.workdir / "check.json"
    check.write_text(json.dumps(check_sample(shards, args.seed)))
    r.warm([s.path for s in shards])
    # a second port, unshaped: the disk row's yardstick (nginx as a path-style S3 at loopback speed)
    tree = mdl_tree()
    nginx = r.Nginx(data=data, prefix=args.workdir / "nginx", access_log=args.workdir / "access.log",
                    more_ports=1, limit_rate=f"{round(args.per_connection * 1024)}k")  # fmt: skip
    code = 0
    with contextlib.ExitStack() as stack:
        nginx.start()
        stack.callback(nginx.stop)
        stack.callback(lambda: shutil.rmtree(args.workdir / "dests", ignore_errors=True))
        env = r.clean_env(args.workdir)
        front, front_port = start_front(args.workdir, data, env, args.per_connection)
        stack.callback(front.kill)
        stack.callback(kill_all)  # first of all: the children, before their folders go
        if args.rate:
            shape([nginx.port, front_port], args.rate)
        catalog = ["[settings]", 'dest = "dest"', f"[models.{MODEL}]", "files = ["]
        where = "capped" if args.per_connection else "fast"
        catalog += [f'  {{ url = "{nginx.url}/{where}/{s.path.name}", sha256 = "{s.sha256}", size = {s.size} }},'
                    for s in shards]  # fmt: skip
        (args.workdir / "catalog.toml").write_text("\n".join([*catalog, "]", ""]))
        bench = Bench(args, shards, check)
        for path, port in ((bench.front_env, front_port), (bench.nginx_env, nginx.ports[0])):
            write_env(path, port)
        say(f"bench: nginx {nginx.url} and the S3 front :{front_port}, {link(args)};"
            f" model {bench.model_bytes / MiB:.0f} MiB, {bench.tensor_count} tensors")  # fmt: skip
        # warm-up (untimed): a pull, which the probe and the disk rows use
        disk = bench.fresh("disk")
        release = pin(bench, shards, ranges=args.ranges)
        say(f"bench: {release}")
        warm = Proc(bench.mdl("pull", MODEL, "--dest", str(disk), "--json", shim=False), env=env,
                    logs=bench.logs("warm-up-pull"), cwd=args.workdir)  # fmt: skip
        if warm.wait(args.run_timeout) != 0:
            warm.kill()
            sys.exit(f"bench: the warm-up pull failed: {warm.stderr_tail(5)}")
        trust = sorted({str(f.get("range_trust")) for f in warm_files(warm.json())})
        release += f"; the warm-up pull's range trust: {', '.join(trust) or '?'}"
        if args.ranges and trust != ["lock"]:
            sys.exit(f"bench: --ranges, but the warm-up pull's range trust was {trust}")
        say(f"bench: warm-up pull {warm.ended - warm.started:.1f} s (range trust {trust})")
        bench.probes = [bench.probe_mdl(disk, shim=False)]
        bench.shim = not bench.probes[0]["ok"] if args.shim == "auto" else args.shim == "on"
        if bench.shim:
            bench.probes.append(bench.probe_mdl(disk, shim=True))
        timed = [("pull", None)] if "pull" in args.only else []
        timed += [(kind, m) for kind in ("serve", "front") if kind in args.only for m in args.modes]
        for rep in range(args.reps):
            order = timed[rep % len(timed) :] + timed[: rep % len(timed)] if timed else []
            for kind, mode in order:
                if kind == "pull":
                    run, load = bench.pull(rep, then_load=True)
                    say(
                        f"bench: rep {rep} D {run.wall:.2f} s"
                        + (f", L {load.wall:.2f} s" if load else "")
                    )
                elif kind == "serve":
                    run = bench.serve(rep, mode)
                    say(f"bench: rep {rep} S[{mode}] {run.wall:.2f} s (first {run.first:.2f}, "
                        f"origin done {run.origin_done:.2f}, mdl CPU {run.cpu:.2f}){' ' + '; '.join(run.notes) if run.notes else ''}")  # fmt: skip
                else:
                    run = bench.front(rep, mode)
                    say(f"bench: rep {rep} F[{mode}] {run.wall:.2f} s (first {run.first:.2f})"
                        f"{' ' + '; '.join(run.notes) if run.notes else ''}")  # fmt: skip
        if "kill" in args.only:
            for rep, at in ((rep, at) for rep in range(args.kill_reps) for at in args.kill_at):
                run = bench.kill(rep, args.modes[0], at)
                say(f"bench: kill {rep}: at {run.extra.get('share_at_kill', 0):.0%}, refetched "
                    f"{run.extra.get('refetched_share', float('nan')):.2f} × model; loader after "
                    f"restart {run.wall:.2f} s{' ' + '; '.join(run.notes) if run.notes else ''}")  # fmt: skip
        if "disk" in args.only:
            for rep in range(args.reps):
                kinds = ["serve", "local", "nginx"]
                for which in kinds[rep % 3 :] + kinds[: rep % 3]:
                    run = bench.disk(rep, disk, which)
                    say(
                        f"bench: disk {which} {run.load:.2f} s{' ' + '; '.join(run.notes) if run.notes else ''}"
                    )
        tree_after = mdl_tree()
        info = {
            "command": command,
            "when": r.now(),
            "machine": f"{os.cpu_count()} cores",
            "mdl": tree["name"]
            + (
                ""
                if tree["digest"] == tree_after["digest"]
                else "; CHANGED DURING THE RUN: " + tree_after["name"]
            ),
            "loader": loader_versions(args.loader_python),
            "release": release,
        }
        text, summary = report(args, bench, info)
        sys.stdout.write("\n" + text + "\n")
        if args.json is not None:
            args.json.write_text(json.dumps({
                **info, "summary": summary, "probes": bench.probes, "shim": bench.shim,
                "loader_env": args.loader_env,
                "model_bytes": bench.model_bytes, "runs": [vars(x) for x in bench.runs],
            }, indent=2, default=str))  # fmt: skip
        if args.write_results:
            write_serve_md(text)
        code = 1 if any(not x.ok for x in bench.runs) else 0
    if args.clean:
        shutil.rmtree(args.workdir, ignore_errors=True)
    return code


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        say("bench: interrupted (servers, children and destinations cleaned up)")
        sys.exit(130)
