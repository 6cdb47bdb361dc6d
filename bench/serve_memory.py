"""``mdl serve`` under issue 75's two memory attacks: the serve process's peak resident bytes
(``VmHWM``) and its CPU-seconds, for this tree and each ``--variant`` (another tree's mdl) in one
run.

    python bench/serve_memory.py [--variant DIR]... [--reps 1] [--size-mib 96] [--gets 150]

Rows, per tree (a fresh ``mdl serve`` each, on the Hub stand-in's CDN, tests/servers.py):

- ``idle``: ``mdl serve m`` listening, nothing asked.
- ``headers``: 128 unsigned connections, each streaming 99 header lines of 64 KiB and never the
  blank line (http.server's own limits let 100 lines of 64 KiB through): peak RSS once every one
  sent it all or was closed; how many were refused.
- ``pull``: ``mdl serve m --pull`` of one ``--size-mib`` file with its part hashes beside the
  lock (mdl's part size up to 8 GiB: 16 MiB), the origin holding all but its first 3 parts, no reads; the
  rest then sent: peak RSS at the end.
- ``pull + gets``: the same, with ``--gets`` ranged GETs of 1 MiB at once (presigned, each on its
  own connection) within the 3 verified parts while the rest is held (release by range): peak
  RSS, and the CPU-seconds of the serve process for the GETs alone (/proc/PID/stat before/after).

The engine's ceiling is 250 MB RSS (design/engine.md). Issue 75 (2 cores, shared and busy, load
~20; 3 reps, medians; ``--variant`` the tree before the fix)::

    | tree           | idle | headers | pull | pull + gets | gets cpu s | refused |
    | this tree      | 47.1 |    49.0 | 68.2 |       126.6 |        2.3 |     128 |
    | before the fix | 47.1 |   844.2 | 75.7 |       423.5 |        3.2 |       0 |
    (MiB of VmHWM; refused: header-flood connections the endpoint closed)
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import threading
from pathlib import Path
from typing import Any

import runner as r  # (puts tests/ on sys.path)
from rss import HeaderFlood, cpu_seconds, peak_rss, ranged_gets, rss
from serveproc import ServeProcess, isolated, lock_with_parts, model_catalog
from servers import CdnServer, Fault, make_data

MiB = 1 << 20
PART = 16 * MiB  # mdl's part size for files up to 8 GiB
HELD_AFTER = 3  # parts the origin sends before it holds the rest


def tree_env(work: Path, catalog: Path, tree: Path | None) -> dict[str, str]:
    env = isolated(work, catalog)
    path = [str(tree or r.ROOT), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    return {**env, "PYTHONPATH": os.pathsep.join(path)}


def idle_and_headers(work: Path, tree: Path | None) -> dict[str, float]:
    catalog = model_catalog(work, {"x.bin": ("http://127.0.0.1:9/x.bin", b"x")})
    with ServeProcess(work / "serve", "m", env=tree_env(work, catalog, tree)) as serve:
        pid = serve.ready().process.pid
        idle = peak_rss(pid)
        with HeaderFlood(serve.url) as flood:
            peak = peak_rss(pid)
        serve.stop()
    return {"idle MiB": idle / MiB, "headers MiB": peak / MiB, "refused": flood.refused}


def pull(work: Path, tree: Path | None, data: bytes, gets: int) -> dict[str, float]:
    held = threading.Event()
    out: dict[str, float] = {}
    with CdnServer() as cdn:
        url = cdn.add_file("/w.bin", data)
        catalog = model_catalog(work, {"w.bin": (url, data)})
        env = tree_env(work, catalog, tree)
        lock_with_parts(env, {"w.bin": data}, part=PART)
        cdn.faults.add(
            Fault.stall(until=held, resume=True, path_prefix="/w.bin", skip=HELD_AFTER, times=None)
        )
        args = ("m", "--pull", "--wait", "300", "--connections", "1")
        with ServeProcess(work / "serve", *args, env=env) as serve:
            pid = serve.ready().process.pid
            if gets:
                s3 = serve.boto3()
                head, get = (
                    s3.generate_presigned_url(
                        how, Params={"Bucket": "mdl", "Key": "m/w.bin"}, ExpiresIn=3600
                    )
                    for how in ("head_object", "get_object")
                )
                pick = random.Random(75)
                spans = [pick.randrange(0, HELD_AFTER * PART - MiB) for _ in range(gets)]
                before = cpu_seconds(pid)
                bodies = ranged_gets(head, get, [(a, a + MiB - 1) for a in spans])
                out["gets cpu s"] = cpu_seconds(pid) - before
                assert all(b == data[a : a + MiB] for a, b in zip(spans, bodies, strict=True))
                out["gets peak MiB"] = peak_rss(pid) / MiB
                out["rss after gets MiB"] = rss(pid) / MiB
            held.set()
            serve.pulled()
            out["pull peak MiB"] = peak_rss(pid) / MiB
            assert serve.stop() == 0, serve.stderr
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    r.add_common(parser, reps=1)
    parser.add_argument("--size-mib", type=int, default=96)
    parser.add_argument("--gets", type=int, default=150)
    args = r.parse(parser)
    work: Path = args.workdir
    os.chdir(work)  # (``python -m mdl`` imports the mdl of its working folder first)
    data = make_data(args.size_mib * MiB, seed=75)
    trees: dict[str, Path | None] = {"this tree": None}
    trees.update({f"[{tree.name}]": tree.resolve() for tree in args.variant})
    found: dict[str, dict[str, list[float]]] = {name: {} for name in trees}
    for rep in range(args.reps):
        for index, (name, tree) in enumerate(trees.items()):
            rows: dict[str, Any] = {}
            for label, measure in (
                ("h", lambda w, t=tree: idle_and_headers(w, t)),
                ("p", lambda w, t=tree: pull(w, t, data, 0)),
                ("g", lambda w, t=tree: pull(w, t, data, args.gets)),
            ):
                folder = work / f"{rep}-{index}-{label}"
                folder.mkdir(parents=True, exist_ok=True)
                got = measure(folder)
                rows.update({(k if label != "g" else k.replace("pull", "pull+gets")): v
                             for k, v in got.items()})  # fmt: skip
            for key, value in rows.items():
                found[name].setdefault(key, []).append(value)
            print(f"rep {rep + 1}/{args.reps} {name}: {rows}", file=sys.stderr)
    report(found, args)


def report(found: dict[str, dict[str, list[float]]], args: argparse.Namespace) -> None:
    print(f"file: {args.size_mib} MiB, parts of {PART // MiB} MiB, {args.gets} GETs; medians of "
          f"{args.reps}; peak = VmHWM of the serve process")  # fmt: skip
    keys = sorted({k for values in found.values() for k in values})
    print("| tree | " + " | ".join(keys) + " |\n|" + "---|" * (len(keys) + 1))
    for name, values in found.items():
        cells = [f"{statistics.median(values[k]):.1f}" if k in values else "-" for k in keys]
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
