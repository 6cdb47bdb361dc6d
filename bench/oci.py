"""A model in an OCI registry (issue 87): ``mdl publish --to oci://`` against ``oras push``, a
re-publish and a one-shard change (blobs sent, counted by the registry), ``mdl pull`` of the
ModelPack artifact by tag against the same bytes from nginx, and a pull killed (``kill -9``) at 50 %
and again at 75 % then run to the end (bytes the registry sent over the model's size).

    python bench/oci.py [--mib 2048] [--reps 2] [--kill-rate 200] [--variant DIR]... [--workdir DIR]
        [--json FILE]

The registry is Debian's ``docker-registry`` (CNCF distribution, filesystem storage) on 127.0.0.1,
started fresh (empty) before each publish so neither tool finds the other's blobs; nginx serves the
same four shards from ``/fast/``. Targets: pull by tag ≤ 1.05 × the same pull from nginx (wall);
publish ≤ 1.0 × ``oras push`` (wall); a re-publish sends 0 blobs; a version that changes 1 of 4
shards sends that shard, the config and the manifest; the killed pull's extra bytes ≤ one part.
The killed pull goes through a counting proxy shaped to ``--kill-rate`` MB/s (a link's worth in
flight, not loopback's socket buffers); the registry's own CPU per pull by tag is said beside (on
two cores a Go server copying every byte competes with the client; nginx sends files by sendfile).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import runner as r

SHARDS = [f"model-0000{i}-of-00004.safetensors" for i in range(1, 5)]
REPO = "bench/m"
PART = 32 * r.MiB  # mdl's part: what one kill may cost twice
REGISTRY_BIN = shutil.which("docker-registry") or "/usr/bin/docker-registry"
ORAS_PUSH = """
import sys, oras.client
host, target, *files = sys.argv[1:]
client = oras.client.OrasClient(hostname=host, insecure=True)
client.push(files=files, target=target, disable_path_validation=True)
"""


class Registry:
    """``docker-registry serve`` on a free loopback port, its storage emptied on each start, its
    access log (one line per request) kept: what the blob counts read."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.proc = folder, None
        self.log = folder / "access.log"
        self.port = 0

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, *, empty: bool = True) -> Registry:
        if empty:
            shutil.rmtree(self.folder / "data", ignore_errors=True)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port = r.free_port()
        config = self.folder / "config.yml"
        config.write_text(
            "version: 0.1\nlog:\n  level: error\n"
            f"storage:\n  filesystem:\n    rootdirectory: {self.folder / 'data'}\n"
            f"  delete:\n    enabled: true\nhttp:\n  addr: {self.host}\n"
        )
        out = self.log.open("ab")
        self.proc = subprocess.Popen(
            [REGISTRY_BIN, "serve", str(config)], stdout=out, stderr=out, start_new_session=True
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"docker-registry did not start: {self.log.read_text()[-800:]}")

    def cpu(self) -> float:
        """The registry process's CPU-seconds so far (user + system, /proc)."""
        assert self.proc is not None
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.proc is not None:
            r.kill_group(self.proc.pid)
            self.proc.wait()
            self.proc = None

    def mark(self) -> int:
        return self.log.stat().st_size if self.log.exists() else 0

    def requests(self, mark: int) -> list[str]:
        """The request lines (``METHOD PATH``) the registry logged since ``mark``."""
        time.sleep(0.3)  # its log is written after the reply
        with self.log.open("rb") as f:
            f.seek(mark)
            text = f.read().decode(errors="replace")
        return re.findall(r'"((?:GET|HEAD|POST|PUT|PATCH|DELETE) \S+) HTTP', text)


def blobs_sent(lines: list[str]) -> int:
    """Blob uploads finished (the closing PUT of an upload session carries ``digest=``)."""
    return sum(1 for line in lines if line.startswith("PUT ") and "digest=" in line)


class CountingProxy:
    """A TCP forwarder in front of the registry counting the bytes it sends back: what a pull
    fetched, whatever the tool says."""

    def __init__(self, target: int, *, rate: float) -> None:
        # ``rate``: bytes/s the link back carries (all connections): what a kill finds in flight
        # is then a link's worth, not loopback's socket buffers
        self.target, self.sent, self._lock, self.rate = target, 0, threading.Lock(), rate
        self.began = time.monotonic()
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target))
            threading.Thread(target=self._pipe, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, True), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, count: bool) -> None:
        try:
            while data := src.recv(256 << 10):
                if count:
                    with self._lock:
                        self.sent += len(data)
                        due = self.began + self.sent / self.rate
                    time.sleep(max(0.0, due - time.monotonic()))
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self.server.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    r.add_common(parser, reps=2)
    parser.add_argument("--mib", type=int, default=2048, help="the model's size (4 shards)")
    parser.add_argument(
        "--kill-rate", type=float, default=200, help="MB/s of the killed pull's link (default 200)"
    )
    args = r.parse(parser)
    r.ensure_tools(("nginx", "time"))
    work = args.workdir
    data = work / "data" / "model"
    files = [
        # a prefix each: the generator gives files of one size the same bytes
        r.write_file(
            data / name,
            args.mib * r.MiB // 4,
            prefix=name.encode(),
            meta=work / f"{name}.meta.json",
        )
        for name in SHARDS
    ]
    total = sum(f.size for f in files)
    runs: dict[str, list[r.Measure]] = {}
    counts: dict[str, int | float] = {}
    registry = Registry(work / "registry")
    with r.Nginx(data=work / "data", prefix=work / "nginx") as nginx:
        r.warm([f.path for f in files])
        entries = "".join(
            f'[[models.m.files]]\nurl = "{nginx.url}/fast/model/{f.path.name}"\n'
            f'sha256 = "{f.sha256}"\nsize = {f.size}\n\n'
            for f in files
        )
        (work / "nginx.toml").write_text(entries)
        env, log = r.clean_env(work), work / "logs" / "runs.log"
        env["PYTHONPATH"] = str(r.ROOT)
        src = work / "src"
        shutil.rmtree(src, ignore_errors=True)
        # the model installed by mdl (publish publishes what its records say it installed)
        first = r.run_measured(
            r.mdl("pull", "m", "--catalog", str(work / "nginx.toml"), "--dest", str(src), "-q"),
            env=env,
            log=log,
        )
        assert first.ok, f"the first pull failed: see {log}"

        def publish(tag: str) -> list[str]:
            return r.mdl(
                "publish", "m", "--catalog", str(work / "nginx.toml"), "--dest", str(src),
                "--to", f"oci://{registry.host}/{REPO}:{tag}", "-q",
            )  # fmt: skip

        try:
            for rep, tool in r.rotations(["mdl publish", "oras push"], args.reps):
                registry.stop()
                registry.start()
                if tool == "mdl publish":
                    argv = publish("v1")
                else:
                    argv = [r.PY, "-c", ORAS_PUSH, registry.host, f"{registry.host}/{REPO}:v1"]
                    argv += SHARDS  # relative: oras names each layer by the path it is given
                runs.setdefault(tool, []).append(
                    r.run_measured(argv, env=env, log=log, cwd=src / "m")
                )
            # what the pulls read: mdl's own artifact, in a registry that has nothing else
            registry.stop()
            registry.start()
            assert r.run_measured(publish("v1"), env=env, log=log).ok, f"publish failed: {log}"
            mark = registry.mark()
            again = r.run_measured(publish("v1"), env=env, log=log)
            counts["re-publish: blobs sent"] = blobs_sent(registry.requests(mark))
            runs["mdl re-publish"] = [again]
            registry_cpu: list[float] = []
            pull_rows(args, work, registry, env, log, runs, registry_cpu)
            counts["registry CPU-s per pull by tag"] = round(statistics.median(registry_cpu), 2)
            killed_row(work, registry, args.kill_rate, env, log, counts, total)
            one_shard_row(work, registry, nginx.url, files, src, publish, env, log, counts)
        finally:
            registry.stop()
    print(f"\n{args.mib} MiB in 4 shards, {args.reps} rounds; ratio: wall over the baseline")
    print(r.side_by_side({k: v for k, v in runs.items() if "publish" in k or "oras" in k},
                         baseline="oras push", attr="wall"))  # fmt: skip
    print(r.side_by_side({k: v for k, v in runs.items() if k.startswith("pull")},
                         baseline="pull from nginx", attr="wall"))  # fmt: skip
    for name, value in counts.items():
        print(f"{name}: {value}")
    pulled = r.median(runs["pull by tag"]) / r.median(runs["pull from nginx"])
    published = r.median(runs["mdl publish"]) / r.median(runs["oras push"])
    print(f"pull by tag / nginx: {pulled:.3f}× (target ≤ 1.05×)")
    print(f"mdl publish / oras push: {published:.3f}× (target ≤ 1.0×)")
    r.save_json(args, runs=runs, counts=counts)


def pull_rows(
    args: argparse.Namespace,
    work: Path,
    registry: Registry,
    env: dict[str, str],
    log: Path,
    runs: dict[str, list[r.Measure]],
    registry_cpu: list[float],
) -> None:
    """``mdl pull`` by tag from the registry against the same catalog pull from nginx (and the
    CPU-seconds the registry spent serving each pull by tag, in ``registry_cpu``)."""
    (work / "oci.toml").write_text(f'[models.m]\noci = "oci://{registry.host}/{REPO}:v1"\n')
    for _, kind in r.rotations(["pull by tag", "pull from nginx"], args.reps):
        out = work / "out"
        shutil.rmtree(out, ignore_errors=True)
        catalog = work / ("oci.toml" if kind == "pull by tag" else "nginx.toml")
        argv = r.mdl("pull", "m", "--catalog", str(catalog), "--dest", str(out), "-q")
        served = registry.cpu()
        runs.setdefault(kind, []).append(r.run_measured(argv, env=env, log=log))
        if kind == "pull by tag":  # the server's share of a 2-core machine (nginx: sendfile)
            registry_cpu.append(registry.cpu() - served)


def killed_row(
    work: Path,
    registry: Registry,
    rate_mbps: float,
    env: dict[str, str],
    log: Path,
    counts: dict[str, int | float],
    total: int,
) -> None:
    """``mdl get oci://…`` killed at 50 % and at 75 % of the model's bytes sent, then to the end:
    the bytes the registry sent over the model's size."""
    proxy = CountingProxy(registry.port, rate=rate_mbps * 1e6)
    out = work / "killed"
    shutil.rmtree(out, ignore_errors=True)
    argv = r.mdl("get", f"oci://127.0.0.1:{proxy.port}/{REPO}:v1", "-d", str(out), "-q")
    try:
        for share in (0.5, 0.75):
            with log.open("ab") as err:
                proc = subprocess.Popen(argv, env=env, stderr=err, start_new_session=True)
                deadline = time.monotonic() + 600
                while proxy.sent < share * total and proc.poll() is None:
                    assert time.monotonic() < deadline, "the killed pull never got there"
                    time.sleep(0.01)
                proc.send_signal(signal.SIGKILL)
                proc.wait()
        assert r.run_measured(argv, env=env, log=log).ok, f"the resumed pull failed: {log}"
    finally:
        proxy.close()
    extra = proxy.sent - total
    counts["killed twice: sent / size"] = round(proxy.sent / total, 4)
    counts["killed twice: extra MiB"] = round(extra / r.MiB, 1)
    # each kill may lose what was in flight: the bytes past the last part written down, and what
    # the sockets held (the proxy counts what it sent, read or not)
    counts["killed twice: extra MiB per kill"] = round(extra / 2 / r.MiB, 1)
    counts["killed twice: extra per kill ≤ one part"] = int(extra / 2 <= PART)


def one_shard_row(
    work: Path,
    registry: Registry,
    cdn: str,
    files: list[r.DataFile],
    src: Path,
    publish: object,
    env: dict[str, str],
    log: Path,
    counts: dict[str, int | float],
) -> None:
    """A version that changes 1 of 4 shards: published as v2 beside v1, the blobs it sent."""
    changed = r.write_file(
        work / "data" / "v2" / SHARDS[3], files[3].size, prefix=b"v2", meta=work / "v2.meta.json"
    )
    catalog = (work / "nginx.toml").read_text()
    catalog = catalog.replace(f"/fast/model/{SHARDS[3]}", f"/fast/v2/{SHARDS[3]}")
    (work / "nginx.toml").write_text(catalog.replace(files[3].sha256, changed.sha256))
    pulled = r.run_measured(
        r.mdl("pull", "m", "--catalog", str(work / "nginx.toml"), "--dest", str(src), "-q"),
        env=env,
        log=log,
    )
    assert pulled.ok, f"the v2 pull failed: {log}"
    mark = registry.mark()
    assert r.run_measured(publish("v2"), env=env, log=log).ok  # type: ignore[operator]
    lines = registry.requests(mark)
    counts["1 of 4 shards: blobs sent"] = blobs_sent(lines)
    counts["1 of 4 shards: manifests put"] = sum(
        1 for line in lines if line.startswith("PUT ") and "/manifests/" in line
    )
    print("1 of 4 shards, requests:", json.dumps(lines, indent=1), file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
