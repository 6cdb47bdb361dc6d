"""Locked pulls: a 300-file repo on the Hub stand-in, pulled into a fresh folder by ``mdl pull``
without and with catalog.lock, and by ``huggingface_hub.snapshot_download`` pinned to the commit.

    python bench/lock.py [--reps 3] [--small 280] [--large 20] [--large-size 1048576] [--variant
    DIR]... [--workdir DIR]

Per run, at the server: Hub API requests (``/api/...`` and every ``HEAD``), file downloads, seconds
from the spawn to the first file request ("first byte") and to the exit ("end"); the order rotates
each round. Medians, and ratios to snapshot_download. The lock is made by ``mdl lock``, as a user
makes it.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time

import runner as r
from servers import HubServer, make_data  # tests/servers.py

REPO = "bench/three-hundred"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    r.add_common(parser, reps=3)
    parser.add_argument(
        "--small", type=int, default=280, help="small (non-LFS) files, served by the Hub"
    )
    parser.add_argument("--large", type=int, default=20, help="LFS files, redirected to the CDN")
    parser.add_argument("--large-size", type=int, default=1 << 20)
    args = r.parse(parser)
    work = args.workdir
    files = {
        f"configs/part-{i:04d}.json": b'{"part": %d}\n' % i * (1 + i % 40)
        for i in range(args.small)
    }
    files |= {
        f"shards/model-{i:05d}.safetensors": make_data(args.large_size, seed=i)
        for i in range(args.large)
    }
    with HubServer() as hub:
        commit = hub.add_repo(REPO, files).sha
        env = r.clean_env(work, HF_ENDPOINT=hub.url)
        for kind in ("unlocked", "locked"):
            (work / kind).mkdir(exist_ok=True)
            (work / kind / "catalog.toml").write_text(f'[models.big]\nrepo = "{REPO}"\n')
        lock = r.mdl("lock", "big", "-q", "--catalog", str(work / "locked" / "catalog.toml"))
        subprocess.run(lock, env=env, check=True)

        def pull(kind: str, name: str) -> r.Tool:
            argv = ["pull", "big", "-q", "--catalog", str(work / kind / "catalog.toml"), "--dest"]
            return r.Tool(name, lambda d: r.mdl(*argv, str(d)))

        code = (
            "import sys, huggingface_hub as h; h.snapshot_download(sys.argv[2],"
            " revision=sys.argv[3], "
        )
        code += "max_workers=8, local_dir=sys.argv[1])"
        mine = [pull("unlocked", "mdl (no lock)"), pull("locked", "mdl (locked)")]
        tools = [
            *mine,
            *r.variants_of(mine, args.variant),
            r.python("snapshot_download", code, REPO, commit),
        ]
        results: dict[str, list[dict[str, float]]] = {t.name: [] for t in tools}
        for _, tool in r.rotations(tools, args.reps):
            hub.log.clear()
            hub.cdn.log.clear()
            m = r.run_measured(
                tool.argv(work / "dest"), env={**env, **tool.env}, log=work / "logs" / "runs.log"
            )
            spawned = time.time() - m.sync - m.wall
            seen = [*hub.log.records(), *hub.cdn.log.records()]
            api = [
                x
                for x in seen
                if x.server == "hub" and (x.url_path.startswith("/api/") or x.method == "HEAD")
            ]
            gets = [
                x
                for x in seen
                if x.method == "GET" and ("/resolve/" in x.url_path or x.server != "hub")
            ]
            first = min((x.time for x in gets), default=spawned + m.wall) - spawned
            results[tool.name].append(
                {
                    "API req": len(api),
                    "file GETs": len(gets),
                    "first byte s": first,
                    "end s": m.wall,
                    "ok": m.ok,
                }
            )
            shutil.rmtree(work / "dest", ignore_errors=True)
    med = {
        t: {k: statistics.median(x[k] for x in runs) for k in runs[0]}
        for t, runs in results.items()
    }
    base = med["snapshot_download"]
    rows = [
        {
            "tool": t,
            **{
                k: f"{v:.2f}" if k.endswith(" s") else f"{v:.0f}" for k, v in m.items() if k != "ok"
            },
            "first/hf": f"{m['first byte s'] / base['first byte s']:.2f}",
            "end/hf": f"{m['end s'] / base['end s']:.2f}",
        }
        for t, m in med.items()
    ]
    print(f"\n{len(files)}-file repo, fresh destination each run, median of {args.reps}")
    print(r.table(rows, [(k, k) for k in rows[0]]))
    r.save_json(args, results=results)


if __name__ == "__main__":
    sys.exit(main())
