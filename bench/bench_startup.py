"""Start-up time: `mdl --help` and `mdl list` (40 models) for this tree and a baseline commit, beside `hf --help`.

    python bench/bench_startup.py                     # this tree only, and hf --help
    python bench/bench_startup.py --baseline 220b516  # also the tree at that commit (checked out to a temp folder)
    python bench/bench_startup.py --runs 30 --json out.json

Each command runs once to warm the page cache, then --runs times; the median and the fastest run are reported.
Nothing touches the network: `mdl list` is offline by contract and `hf --help` parses flags only.
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

ROOT = Path(__file__).resolve().parent.parent


def write_catalog(folder: Path, models: int = 40) -> Path:
    """A catalog of `models` entries, half snapshots and half explicit file lists, as a real project has."""
    lines = ["version = 1", "", "[settings]", 'dest = "models"', ""]
    for i in range(models):
        lines.append(f"[models.model-{i:02d}]")
        lines.append(f'description = "model number {i}"')
        lines.append('tags = ["bench", "nlp"]')
        if i % 2:
            lines.append(f'repo = "org/repo-{i}"')
            lines.append('include = ["*.json", "*.safetensors"]')
        else:
            lines.append("files = [")
            lines.append(f'  {{ repo = "org/weights-{i}", path = "model.safetensors" }},')
            lines.append(f'  {{ url = "https://cdn.example.com/{i}/vocab.txt", sha256 = "{"ab" * 32}", size = 1000 }},')
            lines.append("]")
        lines.append("")
    path = folder / "catalog.toml"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def checkout(rev: str, folder: Path) -> Path:
    """The mdl package as it was at `rev`, in a folder of its own (no worktree bookkeeping left behind)."""
    folder.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "archive", rev, "mdl"], cwd=ROOT, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return folder


def time_command(argv: list[str], *, env: dict[str, str], cwd: Path, runs: int) -> dict[str, float]:
    """Median and fastest wall time of `argv` over `runs` runs (after one warm-up run)."""
    subprocess.run(argv, env=env, cwd=cwd, capture_output=True, check=True)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(argv, env=env, cwd=cwd, capture_output=True, check=True)
        times.append(time.perf_counter() - start)
    return {"median": statistics.median(times), "min": min(times)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", help="a git revision to compare with (e.g. the previous commit)")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--json", type=Path, help="write the raw numbers here")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="mdl-startup-") as tmp:
        work = Path(tmp)
        catalog = write_catalog(work)
        trees = {"this tree": ROOT}
        if args.baseline:
            trees[f"baseline {args.baseline}"] = checkout(args.baseline, work / "baseline")
        base_env = {k: v for k, v in os.environ.items() if not k.startswith(("MDL_", "HF_"))}
        base_env.update({"HOME": str(work), "MDL_LOG_FILE": str(work / "mdl.log"), "HF_HUB_OFFLINE": "1"})
        # Bytecode cached as an installed package has it (pip compiles), for mdl and hf alike.
        base_env.pop("PYTHONDONTWRITEBYTECODE", None)
        base_env["PYTHONPYCACHEPREFIX"] = str(work / "pycache")
        results: dict[str, dict[str, float]] = {}
        for label, tree in trees.items():
            env = {**base_env, "PYTHONPATH": str(tree)}
            mdl = [sys.executable, "-m", "mdl"]
            results[f"{label}: mdl --help"] = time_command([*mdl, "--help"], env=env, cwd=work, runs=args.runs)
            results[f"{label}: mdl list (40 models)"] = time_command(
                [*mdl, "list", "--catalog", str(catalog)], env=env, cwd=work, runs=args.runs
            )
        hf = shutil.which("hf", path=str(Path(sys.executable).parent)) or shutil.which("hf")
        if hf:
            results["hf --help"] = time_command([hf, "--help"], env=base_env, cwd=work, runs=args.runs)

    width = max(map(len, results))
    print(f"{'command':{width}}  median   fastest")
    for name, r in results.items():
        print(f"{name:{width}}  {r['median'] * 1000:5.0f} ms  {r['min'] * 1000:5.0f} ms")
    here_help = results["this tree: mdl --help"]["median"]
    if "hf --help" in results:
        print(f"mdl --help / hf --help: {here_help / results['hf --help']['median']:.2f}")
    if args.baseline:
        for what in ("mdl --help", "mdl list (40 models)"):
            now, then = results[f"this tree: {what}"]["median"], results[f"baseline {args.baseline}: {what}"]["median"]
            print(f"{what}: this tree / baseline = {now / then:.2f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
