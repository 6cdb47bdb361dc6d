"""Start-up time: `mdl --help` and `mdl list` (40 models) of this tree and of a baseline commit,
beside `hf --help`.

    python bench/startup.py                     # this tree only, and hf --help python
    bench/startup.py --baseline 220b516  # also the tree at that commit (exported to a temp folder)
    python bench/startup.py --runs 30 --variant /tmp/patched --json out.json

One untimed warm-up run of each command, then ``--runs`` alternating rounds; medians, ranges and
ratios to the first row. Nothing touches the network: `mdl list` is offline by contract and `hf
--help` parses flags only.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import runner as r


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


def export(rev: str, folder: Path) -> Path:
    """The mdl package as it was at ``rev``, in a folder of its own."""
    folder.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(
        ["git", "archive", rev, "mdl"], cwd=r.ROOT, capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    r.add_common(parser, reps=20)
    parser.add_argument("--runs", type=int, dest="reps", help="the same as --reps (default 20)")
    parser.add_argument(
        "--baseline", help="a git revision to compare with (e.g. the previous commit)"
    )
    args = r.parse(parser)
    work = args.workdir
    catalog = write_catalog(work)
    folders = [
        *args.variant,
        *([export(args.baseline, work / f"baseline-{args.baseline}")] if args.baseline else []),
    ]
    listing = ["list", "--catalog", str(catalog)]
    mine = [
        r.Tool("mdl --help", lambda d: r.mdl("--help")),
        r.Tool("mdl list", lambda d: r.mdl(*listing)),
    ]
    tools = [*mine, *r.variants_of(mine, folders)]
    if hf := r.which("hf"):
        tools.append(r.Tool("hf --help", lambda d: [hf, "--help"]))
    env = r.clean_env(work, HF_HUB_OFFLINE="1")
    runs = r.measure(tools, reps=args.reps, work=work, env=env, warmup=True, verify_first=False)
    print(r.side_by_side(runs))
    r.save_json(args, runs=runs)


if __name__ == "__main__":
    sys.exit(main())
