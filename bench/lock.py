"""Locked pull benchmark: a 300-file repo on the loopback Hub stand-in, pulled into a fresh destination by
``mdl pull`` without and with catalog.lock, and by ``huggingface_hub.snapshot_download`` pinned to the commit.

    python bench/lock.py [--reps 3] [--small 280] [--large 20] [--large-size 1048576] [--workdir DIR]

The Hub stand-in (tests/servers.py, with its own CDN for LFS files) runs in a child process so it shares no GIL
with the tools. Each tool runs as a subprocess with a fresh destination and a fresh HOME/HF_HOME; the order
rotates each round. Measured per run, at the server: Hub API requests (``/api/...`` and every ``HEAD``),
file downloads, seconds from spawn to the first file request answered ("first byte"), and seconds from spawn to
exit ("end"). Prints medians and the ratios to snapshot_download. Only 127.0.0.1 is ever contacted.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
REPO = "bench/three-hundred"


def serve(small: int, large: int, large_size: int) -> None:
    """The child process: build the repo, print its URL, commit and files, then answer ``log`` lines on stdin
    with the requests seen since the last ``log`` (JSON, one line)."""
    sys.path.insert(0, str(ROOT / "tests"))
    from servers import HubServer, make_data

    files: dict[str, bytes] = {f"configs/part-{i:04d}.json": b'{"part": %d}\n' % i * (1 + i % 40) for i in range(small)}
    files |= {f"shards/model-{i:05d}.safetensors": make_data(large_size, seed=i) for i in range(large)}
    with HubServer() as hub:
        repo = hub.add_repo(REPO, files)
        listing = [
            {"path": p, "size": f.size, "sha256": f.sha256, "oid": None if f.lfs else f.oid}
            for p, f in sorted(repo.head.files.items())
        ]
        print(json.dumps({"url": hub.url, "commit": repo.sha, "files": listing}), flush=True)
        for line in sys.stdin:
            if line.strip() != "log":
                continue
            seen = [
                {"method": r.method, "path": r.url_path, "time": r.time, "server": r.server}
                for r in [*hub.log, *hub.cdn.log]
            ]
            hub.log.clear()
            hub.cdn.log.clear()
            print(json.dumps(seen), flush=True)


def write_catalog(folder: Path, hello: dict[str, Any], *, locked: bool) -> Path:
    """``catalog.toml`` for the repo (and, when ``locked``, its catalog.lock), written with mdl.lockfile."""
    sys.path.insert(0, str(ROOT))
    from mdl.catalog import load_catalog, lock_beside
    from mdl.lockfile import Lock, LockedFile, LockedModel, fingerprint, write_lock
    from mdl.store import hub_source

    folder.mkdir(parents=True, exist_ok=True)
    catalog = folder / "catalog.toml"
    catalog.write_text(f'[models.big]\nrepo = "{REPO}"\n')
    if locked:
        spec = load_catalog(catalog).get("big")
        commit = hello["commit"]
        files = tuple(
            LockedFile(f["path"], f["size"], f["sha256"], hub_source(REPO, "model", commit, f["path"]), f["oid"])
            for f in hello["files"]
        )
        model = LockedModel("big", fingerprint(spec), "main", commit, files)
        write_lock(lock_beside(catalog), Lock(models={"big": model}))
    return catalog


def command(tool: str, catalog: Path, dest: Path, hello: dict[str, Any]) -> list[str]:
    """The command line of one run."""
    if tool.startswith("mdl"):
        return [sys.executable, "-m", "mdl", "pull", "big", "--catalog", str(catalog), "--dest", str(dest), "-q"]
    code = (
        "from huggingface_hub import snapshot_download; "
        f"snapshot_download({REPO!r}, revision={hello['commit']!r}, max_workers=8, local_dir={str(dest)!r}, "
        f"endpoint={hello['url']!r})"
    )
    return [sys.executable, "-c", code]


def run_once(
    tool: str, server: subprocess.Popen[str], catalogs: dict[str, Path], hello: dict[str, Any]
) -> dict[str, float]:
    """One run of one tool into a fresh destination: API requests, downloads, first byte and end (seconds)."""
    scratch = Path(tempfile.mkdtemp(prefix=f"mdl-bench-lock-{tool}-"))
    try:
        env = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": str(scratch / "home"),
            "HF_HOME": str(scratch / "hf"),
            "HF_ENDPOINT": hello["url"],
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "HF_HUB_DISABLE_PROGRESS_BARS": "1",
            "HF_HUB_DISABLE_XET": "1",
            "MDL_LOG_FILE": str(scratch / "mdl.log"),
            "PYTHONPATH": str(ROOT),
            "NO_PROXY": "127.0.0.1",
        }
        dest = scratch / "dest"
        started = time.time()
        done = subprocess.run(command(tool, catalogs[tool], dest, hello), env=env, capture_output=True, text=True)
        ended = time.time()
        if done.returncode != 0:
            raise SystemExit(f"{tool} failed ({done.returncode}):\n{done.stderr[-2000:]}")
        assert server.stdin is not None and server.stdout is not None
        server.stdin.write("log\n")
        server.stdin.flush()
        seen = json.loads(server.stdout.readline())
        api = [r for r in seen if r["server"] == "hub" and (r["path"].startswith("/api/") or r["method"] == "HEAD")]
        # File requests: a resolve at the Hub (small files are served there, LFS ones redirect) or a CDN GET.
        gets = [r for r in seen if r["method"] == "GET" and ("/resolve/" in r["path"] or r["server"] != "hub")]
        first = min((r["time"] for r in gets), default=ended)
        return {"api": len(api), "downloads": len(gets), "first": first - started, "end": ended - started}
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and print the table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--small", type=int, default=280, help="small (non-LFS) files, served by the Hub")
    parser.add_argument("--large", type=int, default=20, help="LFS files, redirected to the CDN")
    parser.add_argument("--large-size", type=int, default=1 << 20)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.small, args.large, args.large_size)
        return
    work = args.workdir or Path(tempfile.mkdtemp(prefix="mdl-bench-lock-"))
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve", "--small", str(args.small), "--large", str(args.large),
         "--large-size", str(args.large_size)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert server.stdout is not None
        hello = json.loads(server.stdout.readline())
        catalogs = {
            "mdl (no lock)": write_catalog(work / "unlocked", hello, locked=False),
            "mdl (locked)": write_catalog(work / "locked", hello, locked=True),
            "snapshot_download": work,
        }
        tools = list(catalogs)
        results: dict[str, list[dict[str, float]]] = {t: [] for t in tools}
        for rep in range(args.reps):
            order = tools[rep % len(tools) :] + tools[: rep % len(tools)]
            for tool in order:
                results[tool].append(run_once(tool, server, catalogs, hello))
        report(results, files=len(hello["files"]), reps=args.reps)
    finally:
        server.terminate()
        server.wait(timeout=10)


def report(results: dict[str, list[dict[str, float]]], *, files: int, reps: int) -> None:
    """Medians per tool, and ratios to snapshot_download."""
    med = {t: {k: statistics.median(r[k] for r in runs) for k in runs[0]} for t, runs in results.items()}
    base = med["snapshot_download"]
    print(f"{files}-file repo, fresh destination each run, median of {reps}")
    print(
        f"{'tool':20} {'API req':>8} {'file GETs':>9} {'first byte s':>13} {'end s':>8} {'first/hf':>9} {'end/hf':>8}"
    )
    for tool, m in med.items():
        print(
            f"{tool:20} {m['api']:8.0f} {m['downloads']:9.0f} {m['first']:13.2f} {m['end']:8.2f} "
            f"{m['first'] / base['first']:9.2f} {m['end'] / base['end']:8.2f}"
        )


if __name__ == "__main__":
    main()
