"""Start-up time: `mdl --help`, `mdl list` (40 models), a tiny `mdl get` of a loopback URL and the
readiness probe (`mdl verify --all --quick --locked` of that file, pulled; beside `mdl --version`),
the tiny file's `mdl get s3://` through bench/s3front.py beside `aws s3 cp` (row ``s3``),
of this tree and of a baseline commit, beside `hf --help`, the minimal Typer + httpx2 app doing the
same get (bench/minimal_get.py) and `python -c "import typer, httpx2"`.

    python bench/startup.py                     # this tree only, beside the yardsticks
    python bench/startup.py --baseline 220b516  # also the tree at that commit (a temp folder)
    python bench/startup.py --only get --reps 9 --variant /tmp/patched --json out.json
    python bench/startup.py --only probe --reps 9 --baseline 92935b0
    python bench/startup.py --only s3 --reps 9 --baseline ac04d919

One untimed warm-up run of each command, then ``--reps`` alternating rounds; medians, ranges and
ratios, wall and CPU. The get rows fetch a 42-byte file from a server this script runs on 127.0.0.1,
which notes when each request arrives: after the timed rounds, ``--reps`` more alternating runs of
each get measure when its first request arrived after exec (what bench/timeline.py measures through
the latency proxy). Nothing else touches the network: `mdl list` is offline by contract and `hf
--help` parses flags only.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing
from email.utils import formatdate
from http.client import HTTPConnection
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import runner as r
from timeline import requests_between

MINIMAL = r.HERE / "minimal_get.py"
IMPORTS = "import typer, httpx2"
ROWS = ("get", "help", "list", "probe", "s3")
FRONT = r.HERE / "s3front.py"
RANGE = re.compile(r"bytes=(\d+)-(\d*)")
# issue 53: the tiny get costs no more than the minimal app (wall and CPU); issue 90: at most 1.3 x
# the libraries' import in CPU (was 1.5 x, wall and CPU)
TARGETS = (("minimal app", 1.0, ("wall", "cpu")), (f"python -c '{IMPORTS}'", 1.3, ("cpu",)))


BUCKET = "mdl"
# the S3 row's credentials and endpoint: bench/s3front.py on loopback, which takes any signature
S3_ENV = {
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_ACCESS_KEY_ID": "BENCHKEY",
    "AWS_SECRET_ACCESS_KEY": "bench-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_CONFIG_FILE": "/dev/null",
    "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
    "AWS_ENDPOINT_URL": f"http://127.0.0.1:{r.free_port()}",
}


@contextlib.contextmanager
def s3_front(tiny: r.DataFile) -> Iterator[None]:
    """bench/s3front.py serving the tiny file's folder, once it answers (at most 10 s)."""
    port = S3_ENV["AWS_ENDPOINT_URL"].rsplit(":", 1)[1]
    argv = [r.PY, str(FRONT), "--root", str(tiny.path.parent), "--bucket", BUCKET, "--prefix", "",
            "--port", port]  # fmt: skip
    front = subprocess.Popen(argv, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):  # (straight to 127.0.0.1: no proxy of the caller's)
            with contextlib.suppress(OSError), closing(HTTPConnection("127.0.0.1", int(port))) as c:
                c.request("HEAD", f"/{BUCKET}/{tiny.path.name}")
                if c.getresponse().status == 200:
                    break
            time.sleep(0.1)
        else:
            raise SystemExit(f"bench/s3front.py did not answer on port {port} within 10 s")
        yield
    finally:
        front.terminate()
        front.wait(timeout=10)


def s3_get(saved: Callable[[Path], str], tiny: r.DataFile) -> r.Tool:
    """`mdl get s3://` of the tiny file."""
    uri = f"s3://{BUCKET}/{tiny.path.name}"
    return r.Tool("mdl get s3://", lambda d: r.mdl("get", uri, "-o", saved(d), "-q"),
                  r.flat(tiny), env=S3_ENV)  # fmt: skip


def write_catalog(folder: Path, models: int = 40) -> Path:
    """A catalog of ``models`` entries, half snapshots and half explicit file lists, as a real
    project has.
    """
    lines = ["version = 1", "", "[settings]", 'dest = "models"', ""]
    for i in range(models):
        lines += [
            f"[models.model-{i:02d}]",
            f'description = "model number {i}"',
            'tags = ["bench", "nlp"]',
        ]
        if i % 2:
            lines += [f'repo = "org/repo-{i}"', 'include = ["*.json", "*.safetensors"]', ""]
            continue
        # never fetched: `mdl list` only reads the catalog
        url = f"https://cdn.example.com/{i}/vocab.txt"
        lines += ["files = [", f'  {{ repo = "org/weights-{i}", path = "model.safetensors" }},']
        lines += [f'  {{ url = "{url}", sha256 = "{"ab" * 32}", size = 1000 }},', "]", ""]
    path = folder / "catalog.toml"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def ready_probe(work: Path, url: str, env: dict[str, str]) -> list[str]:
    """The probe's arguments: a catalog of one model (``url``), pulled and locked by this tree."""
    folder = work / "probe"
    folder.mkdir(parents=True, exist_ok=True)
    catalog = folder / "catalog.toml"
    catalog.write_text(
        f'[settings]\ndest = "models"\n\n[models.tiny]\nfiles = [{{ url = "{url}" }}]\n'
    )
    for step in (("pull", "tiny"), ("lock",)):
        subprocess.run(
            r.mdl(*step, "--catalog", str(catalog)), env=env, check=True, capture_output=True
        )
    return ["verify", "--all", "--quick", "--locked", "--catalog", str(catalog)]


def export(rev: str, folder: Path) -> Path:
    """The mdl package as it was at ``rev``, in a folder of its own."""
    folder.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(
        ["git", "archive", rev, "mdl"], cwd=r.ROOT, capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return folder


class TinyServer:
    """One file on http://127.0.0.1:PORT/NAME, each request's arrival noted in ``log`` as the
    latency proxy notes it ("arrival release route conn fwd request", bench/latency.py), so that
    bench/timeline.py reads it too."""

    def __init__(self, f: r.DataFile, log: Path) -> None:
        body, name, self.log = f.path.read_bytes(), f.path.name, log
        etag, modified = f'"{f.sha256[:16]}"', formatdate(f.path.stat().st_mtime, usegmt=True)
        lock = threading.Lock()
        log.write_text("")

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                arrival = time.time()
                if self.path != f"/{name}":
                    self.send_error(404)
                    return
                # as nginx answers: validators, and a single range as 206 (mdl's first GET asks
                # bytes=0-; a 200 to it would cost mdl a second request nginx never makes it send)
                first, last = 0, len(body) - 1
                if (ranged := RANGE.fullmatch(self.headers.get("Range", ""))) is not None:
                    first = int(ranged[1])
                    last = min(int(ranged[2]), last) if ranged[2] else last
                self.send_response(206 if ranged else 200)
                if ranged:
                    self.send_header("Content-Range", f"bytes {first}-{last}/{len(body)}")
                self.send_header("Content-Length", str(last + 1 - first))
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Accept-Ranges", "bytes")
                self.send_header("ETag", etag)
                self.send_header("Last-Modified", modified)
                self.end_headers()
                self.wfile.write(body[first : last + 1])
                with lock, log.open("a") as out:
                    out.write(
                        f"{arrival:.6f} {time.time():.6f} tiny {id(self.connection)} fwd"
                        f" {self.command} {self.path}\n"
                    )

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}/{name}"

    def __enter__(self) -> TinyServer:
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


def first_requests(
    tools: Sequence[r.Tool], *, reps: int, work: Path, env: dict[str, str], log: Path
) -> dict[str, list[float]]:
    """Seconds from spawn to each get's first request at the server, ``reps`` alternating rounds
    (not under GNU time: nothing stands between the spawn and the command)."""
    seen: dict[str, list[float]] = {t.name: [] for t in tools}
    dest = work / "out" / "first"
    for _, tool in r.rotations(list(tools), reps):
        dest.mkdir(parents=True, exist_ok=True)
        argv = tool.argv(dest)
        r.wait_for_quiet(0.5, 5.0)
        started = time.time()
        # (in the work folder: `python -m mdl` run in a checkout imports the checkout's mdl first,
        # whatever PYTHONPATH names)
        subprocess.run(argv, env={**env, **tool.env}, cwd=work, capture_output=True, check=False)
        ended = time.time()
        if arrivals := requests_between(log, started, ended):
            seen[tool.name].append(arrivals[0][0] - started)
        shutil.rmtree(dest)
    return seen


def mean_cpu(ms: Sequence[r.Measure]) -> float:
    """The mean CPU of the successful runs: GNU time says CPU in 10 ms steps, ~8 % of a tiny get's,
    so a median of them cannot tell 1.24x from 1.33x; the mean of many reps can."""
    values = [m.cpu for m in ms if m.ok]
    return statistics.fmean(values) if values else float("nan")


def ratio_lines(runs: r.Runs, mine: Sequence[str]) -> list[str]:
    """Each mdl get over each yardstick, wall (medians) and CPU (means), with the issue's targets."""
    lines = []
    for name in mine:
        for other, target, judged in TARGETS:
            if other not in runs:
                continue
            wall = r.median(runs[name]) / r.median(runs[other])
            cpu = mean_cpu(runs[name]) / mean_cpu(runs[other])
            judged_ratio = max({"wall": wall, "cpu": cpu}[m] for m in judged)
            verdict = "met" if judged_ratio <= target else "missed"
            lines.append(
                f"{name} / {other}: wall {wall:.2f} x, CPU {cpu:.2f} x"
                f" (target <= {target:.1f} x: {verdict})"
            )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    r.add_common(parser, reps=20)
    parser.add_argument("--runs", type=int, dest="reps", help="the same as --reps (default 20)")
    parser.add_argument(
        "--baseline", help="a git revision to compare with (e.g. the previous commit)"
    )
    parser.add_argument(
        "--only", default=",".join(ROWS), help=f"some rows only, of {', '.join(ROWS)} (default all)"
    )
    args = r.parse(parser)
    rows = {row.strip() for row in args.only.split(",") if row.strip()}
    if unknown := rows - set(ROWS):
        parser.error(f"--only: no row {', '.join(sorted(unknown))}; rows are {', '.join(ROWS)}")
    work = args.workdir
    catalog = write_catalog(work)
    folders = [
        *args.variant,
        *([export(args.baseline, work / f"baseline-{args.baseline}")] if args.baseline else []),
    ]
    tiny = r.write_file(work / "tiny" / "tiny.txt", 42)
    log = work / "tiny-requests.log"
    env = r.clean_env(work)
    offline = {"HF_HUB_OFFLINE": "1"}  # help and list: a promise held, not a setting needed
    front = s3_front(tiny) if "s3" in rows else contextlib.nullcontext()
    with TinyServer(tiny, log) as server, front:
        saved = lambda d: str(d / tiny.path.name)  # noqa: E731
        gets = [
            r.Tool(
                "mdl get", lambda d: r.mdl("get", server.url, "-o", saved(d), "-q"), r.flat(tiny)
            )
        ]
        listing = ["list", "--catalog", str(catalog)]
        mine = [
            *(gets if "get" in rows else []),
            *(
                [r.Tool("mdl --help", lambda d: r.mdl("--help"), env=offline)]
                if "help" in rows
                else []
            ),
            *(
                [r.Tool("mdl list", lambda d: r.mdl(*listing), env=offline)]
                if "list" in rows
                else []
            ),
        ]
        if "s3" in rows:
            mine.append(s3_get(saved, tiny))
        if "probe" in rows:
            probe = ready_probe(work, server.url, env)
            mine += [
                r.Tool("mdl --version", lambda d: r.mdl("--version")),
                r.Tool("mdl verify --quick", lambda d: r.mdl(*probe), env=offline),
            ]
        minimal = r.Tool(
            "minimal app",
            lambda d: [r.PY, str(MINIMAL), "get", server.url, "-o", saved(d)],
            r.flat(tiny),
        )
        libraries = r.Tool(f"python -c '{IMPORTS}'", lambda d: [r.PY, "-c", IMPORTS])
        tools = [*mine, *r.variants_of(mine, folders)]
        if "get" in rows:
            tools += [minimal, libraries]
        if "s3" in rows and (aws := r.which("aws")):
            uri = f"s3://{BUCKET}/{tiny.path.name}"
            tools.append(r.Tool("aws s3 cp", lambda d: [aws, "s3", "cp", uri, saved(d), "--quiet"],
                                r.flat(tiny), env=S3_ENV))  # fmt: skip
        if "help" in rows and (hf := r.which("hf")):
            tools.append(r.Tool("hf --help", lambda d: [hf, "--help"], env=offline))
        runs = r.measure(tools, reps=args.reps, work=work, env=env, warmup=True, verify_first=True)
        print(r.side_by_side(runs))
        if "get" in rows:
            my_gets = [t.name for t in tools if t.name.startswith("mdl get")]
            print("\n".join(["", *ratio_lines(runs, my_gets)]))
            timed = [t for t in tools if t.name in my_gets] + [minimal]
            firsts = first_requests(timed, reps=args.reps, work=work, env=env, log=log)
            base = statistics.median(firsts["minimal app"] or [float("nan")])
            print("\nfirst request after exec (median over runs; target: mdl <= the minimal app)")
            for name, times in firsts.items():
                at = statistics.median(times) if times else float("nan")
                print(f"  {name:36} {at:.3f} s  ({at / base:.2f} x the minimal app's)")
        else:
            firsts = {}
    r.save_json(args, runs=runs, first_request=firsts)


if __name__ == "__main__":
    sys.exit(main())
