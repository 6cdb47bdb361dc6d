"""A trusted hash for every range: what a `mdl pull --frozen` costs with the lock's part hashes
(``catalog.lock.parts``) beside the lock and without them, and what one flipped byte on the wire
costs, against another tree's mdl (the commit before: no part hashes at all).

    python bench/ranges.py [--size-mib 512] [--reps 3] [--variant DIR]... [--workdir DIR]

One model of one safetensors file on the Hub stand-in (tests/servers.py: its CDN sends files
with ``sendfile``), locked by ``mdl lock`` after a pull on a first machine (as a user makes the
part hashes), then pulled into a fresh folder per run, the rows alternating:

- ``parts``: this tree, the parts file beside the lock (each range checked as it lands);
- ``whole``: this tree, the parts file moved away (whole-file checks only: the hot path);
- ``whole [DIR]``: each ``--variant``'s mdl, same lock, no parts file.

Per row: the median CPU-seconds (user+sys of the pull process, ``wait4``), wall seconds, and the CDN's body bytes of a clean run and of a run whose CDN flips one byte in the middle
of the file once (as a ratio to the file's size; a pull that fails on it is run once more, as the
next cron run would, and counted). The ratios are to ``whole``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import runner as r
from servers import HubServer, make_data  # tests/servers.py

REPO = "bench/ranges"
PATH = "model.safetensors"


def run(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """CPU-seconds and wall seconds of a pull (no peak RSS: a child's counts the bench's own
    pages from before its exec); one that fails (exit 6: the
    whole file's hash did not match) is run once more, as cron's next run would, and counted."""
    cpu = wall = 0.0
    for _ in range(2):
        began = time.monotonic()
        proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _, status, usage = os.wait4(proc.pid, 0)
        wall += time.monotonic() - began
        cpu += usage.ru_utime + usage.ru_stime
        code = os.waitstatus_to_exitcode(status)
        if code == 0:
            return cpu, wall
        err = proc.stderr.read().decode() if proc.stderr else ""
        print(f"  (exit {code}, run again: {err.strip().splitlines()[0][:160]})", file=sys.stderr)
    raise SystemExit(f"{' '.join(argv[:4])}… failed twice")


def place(parts: Path, aside: Path, *, here: bool) -> None:
    """The parts file beside the lock (``here``) or moved aside."""
    if here and aside.is_file():
        aside.rename(parts)
    elif not here and parts.is_file():
        parts.rename(aside)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    r.add_common(parser, reps=3)
    parser.add_argument("--size-mib", type=int, default=512)
    args = r.parse(parser)
    work: Path = args.workdir
    size = args.size_mib << 20
    data = make_data(size, seed=70)
    catalog = work / "catalog.toml"
    catalog.write_text(f'[models.m]\nrepo = "{REPO}"\n')
    parts = catalog.with_suffix(".lock.parts")
    with HubServer() as hub:
        hub.add_repo(REPO, {PATH: data, "config.json": b"{}"})
        env = r.clean_env(work, HF_ENDPOINT=hub.url)
        first = ["--catalog", str(catalog), "--dest", str(work / "first"), "-q"]
        for step in (["lock", "--all", "-q", "--catalog", str(catalog)], ["pull", "--all", *first]):
            subprocess.run(r.mdl(*step), env=env, check=True)
        lock = ["lock", "--all", "-q", "--catalog", str(catalog), "--dest", str(work / "first")]
        subprocess.run(r.mdl(*lock), env=env, check=True)
        assert parts.is_file(), "mdl lock wrote no part hashes"
        rows = {"parts": (env, True), "whole": (env, False)}
        for tree in args.variant:
            other = dict(env, PYTHONPATH=os.pathsep.join([str(tree), env["PYTHONPATH"]]))
            rows[f"whole [{tree.name}]"] = (other, False)
        found: dict[str, dict[str, list[float]]] = {k: {} for k in rows}
        for rep in range(args.reps):
            for name, (row_env, with_parts) in rows.items():
                for flip in (False, True):
                    place(parts, work / "parts.aside", here=with_parts)
                    dest = work / f"run-{rep}"
                    shutil.rmtree(dest, ignore_errors=True)
                    hub.cdn.log.clear()
                    hub.cdn.flips[:] = [[size // 2 + 17, 1]] if flip else []
                    argv = r.mdl("pull", "--all", "--frozen", "-q", "--catalog", str(catalog))
                    cpu, wall = run([*argv, "--dest", str(dest)], row_env)
                    sent = hub.cdn.log.body_bytes() / size
                    key = "flip" if flip else "clean"
                    for what, value in ((f"{key} cpu", cpu), (f"{key} wall", wall)):
                        found[name].setdefault(what, []).append(value)
                    found[name].setdefault(f"{key} bytes", []).append(sent)
            print(f"rep {rep + 1}/{args.reps} done", file=sys.stderr)
        place(parts, work / "parts.aside", here=True)
    report(found, size)


def report(found: dict[str, dict[str, list[float]]], size: int) -> None:
    base = {k: statistics.median(v) for k, v in found["whole"].items()}
    print(f"file: {size >> 20} MiB; medians; ratios to 'whole' (this tree, no part hashes)")
    head = "row", "cpu s", "cpu ×", "wall s", "bytes/file", "flip: bytes/file"
    print("| " + " | ".join(head) + " |\n|" + "---|" * len(head))
    for name, values in found.items():
        med = {k: statistics.median(v) for k, v in values.items()}
        cells = (
            name,
            f"{med['clean cpu']:.2f}",
            f"{med['clean cpu'] / base['clean cpu']:.2f}",
            f"{med['clean wall']:.2f}",
            f"{med['clean bytes']:.3f}",
            f"{med['flip bytes']:.3f}",
        )
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
