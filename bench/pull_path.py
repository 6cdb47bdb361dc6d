"""The road of one pull: which mdl modules a `mdl pull --all` runs code in (issue 26 counts them
before and after).

    python bench/pull_path.py                  # this tree python bench/pull_path.py --tree
    /other/checkout --list

The loopback Hub stand-in (with its CDN) holds one repo; the catalog has that repo and one direct
CDN URL. The pull runs in a child with every mdl module imported first, traced with sys.setprofile
and threading.setprofile: a module counts when one of its functions is called during the pull.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import runner as r
from servers import HubServer  # tests/servers.py

CHILD = """\
import importlib, json, pkgutil, sys, threading
import mdl
for info in pkgutil.walk_packages(mdl.__path__, "mdl."):
    if info.name != "mdl.__main__":
        importlib.import_module(info.name)
seen = set()
def profile(frame, event, arg):
    if event == "call" and (name := frame.f_globals.get("__name__", "")).startswith("mdl"):
        seen.add(name)
from mdl.cli.app import app
from mdl.cli.run import invoke
sys.argv = ["mdl", *sys.argv[2:]]
threading.setprofile(profile)
sys.setprofile(profile)
code = invoke(app)
sys.setprofile(None)
threading.setprofile(None)
open(OUT, "w").write(json.dumps({"code": code, "modules": sorted(seen)}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--tree",
        type=Path,
        default=r.ROOT,
        help="the checkout whose mdl/ is traced (default: this)",
    )
    parser.add_argument(
        "--list", action="store_true", help="print the modules, not only their count"
    )
    args = parser.parse_args()
    with HubServer() as hub, tempfile.TemporaryDirectory() as tmp:
        hub.add_repo(
            "org/tiny", {"config.json": b'{"a": 1}', "model.safetensors": os.urandom(300_000)}
        )
        url = hub.cdn.add_file("/direct/vocab.txt", b"a\nb\nc\n")
        folder = Path(tmp)
        catalog = folder / "catalog.toml"
        catalog.write_text(
            '[settings]\ndest = "models"\n\n[models.tiny]\nrepo = "org/tiny"\n\n'
            f'[models.direct]\nfiles = [{{ url = "{url}" }}]\n'
        )
        out = folder / "path.json"
        env = r.clean_env(folder, HF_ENDPOINT=hub.url, PYTHONPATH=str(args.tree))
        code = CHILD.replace("OUT", repr(str(out)))
        argv = [r.PY, "-c", code, "-", "--catalog", str(catalog), "pull", "--all", "--no-progress"]
        done = subprocess.run(
            argv, env=env, cwd=folder, capture_output=True, text=True, timeout=120
        )
        if done.returncode != 0 or not out.exists():
            sys.exit(f"the pull failed (exit {done.returncode}):\n{done.stderr}")
        result = json.loads(out.read_text())
    print(
        f"{len(result['modules'])} mdl modules run code during `mdl pull --all` (exit"
        f" {result['code']})"
    )
    if args.list:
        print("\n".join(result["modules"]))


if __name__ == "__main__":
    main()
