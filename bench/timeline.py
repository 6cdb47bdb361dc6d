"""When a command sends each request, from the latency proxy's log: start-up, reaction, and the tail
after the last.

    # in one terminal: the servers and the proxy
    python bench/pull.py --serve --only presigned@300
    # in another: URL through the delayed CDN
    python bench/timeline.py [--reps 3] -- mdl get 'URL' -o /tmp/x -q
    python bench/timeline.py -- aria2c -x8 -s8 -q -d /tmp -o x 'URL'
    python bench/timeline.py -- mdl get URL -o /tmp/x -q -- python bench/minimal_get.py get URL -o y

For each run it prints the wall time, when the first request reached the proxy (what the command
spent before it asked anything: its start-up), how long after the first answer's release the next
request came (its reaction to the first answer's headers), and how long the run went on after the
last request's release (the transfer and what follows it: hashing, syncing, exit). Several commands,
each after its own ``--``, run in alternating rounds, and their medians are shown side by side, the
first request's time also as a ratio to the last command's (above: mdl's start-up against the
minimal Typer + httpx2 app's). The proxy's log lines are "arrival release route conn fwd|dropped
request...", times in seconds since the epoch (bench/latency.py; bench/startup.py's tiny server
writes the same). Only loopback servers are involved; each command is run as given.
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path


def requests_between(log: Path, start: float, end: float) -> list[tuple[float, float]]:
    """(arrival, release) of every request the proxy forwarded between ``start`` and ``end``, by
    arrival.
    """
    found = []
    for line in log.read_text().splitlines():
        fields = line.split()
        if len(fields) >= 5 and fields[4] == "fwd" and start <= float(fields[0]) <= end:
            found.append((float(fields[0]), float(fields[1])))
    return sorted(found)


def commands_of(words: list[str]) -> list[list[str]]:
    """The commands after ``--``, each after its own ``--`` (a leading ``--`` is optional)."""
    found: list[list[str]] = [[]]
    for word in words:
        if word == "--":
            found.append([])
        else:
            found[-1].append(word)
    return [command for command in found if command]


def run_once(command: list[str], log: Path) -> tuple[float, float, float, float, int] | None:
    """(wall, first request, reaction, tail, requests) of one run; None: no request reached the
    proxy."""
    started = time.time()
    subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    ended = time.time()
    time.sleep(0.2)  # the proxy writes a request's line at its release
    seen = requests_between(log, started, ended)
    if not seen:
        return None
    first_arrival, first_release = seen[0]
    later = [arrival for arrival, _ in seen[1:]]
    reaction = (later[0] - first_release) if later else float("nan")
    tail = ended - max(release for _, release in seen)
    return ended - started, first_arrival - started, reaction, tail, len(seen)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--log", type=Path, default=Path("/tmp/mdl-bench/proxy.log"), help="the proxy's log"
    )
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND ... [-- COMMAND ...]")
    args = parser.parse_args(argv)
    commands = commands_of(args.command)
    if not commands:
        parser.error("give the command after --")
    rows: dict[int, list[tuple[float, float, float, float]]] = {i: [] for i in range(len(commands))}
    for rep in range(args.reps):
        # alternating, the first rotating: drift and caches favour no command
        order = list(range(len(commands)))
        order = order[rep % len(order) :] + order[: rep % len(order)]
        for i in order:
            label = f"run {rep + 1}" + (f" of command {i + 1}" if len(commands) > 1 else "")
            got = run_once(commands[i], args.log)
            if got is None:
                sys.stderr.write(
                    f"{label}: no request reached the proxy (is the URL the delayed one?)\n"
                )
                continue
            wall, first, reaction, tail, count = got
            rows[i].append((wall, first, reaction, tail))
            print(
                f"{label}: wall {wall:.3f} s; first request at {first:.3f} s; next"
                f" {reaction:+.3f} s after the first answer's release; {count} requests;"
                f" {tail:.3f} s from the last release to exit"
            )
    firsts = {i: statistics.median(row[1] for row in found) for i, found in rows.items() if found}
    last = firsts.get(len(commands) - 1)
    for i, found in rows.items():
        if not found:
            continue
        medians = [statistics.median(column) for column in zip(*found, strict=True)]
        against = (
            f" ({medians[1] / last:.2f} x the last command's)"
            if last and len(commands) > 1 and i < len(commands) - 1
            else ""
        )
        name = f"command {i + 1} ({shlex.join(commands[i])[:60]})" if len(commands) > 1 else ""
        print(
            f"median{' of ' + name if name else ''}: wall {medians[0]:.3f} s; first request at"
            f" {medians[1]:.3f} s{against}; reaction {medians[2]:+.3f} s; after the last release"
            f" {medians[3]:.3f} s"
        )
    return 0 if all(rows.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
