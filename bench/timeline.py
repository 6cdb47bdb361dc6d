"""When a command sends each request, from the latency proxy's log: start-up, reaction, and the tail
after the last.

    python bench/pull.py --serve --only presigned@300          # in one terminal: the servers and
    the proxy python bench/timeline.py [--reps 3] -- mdl get 'URL' -o /tmp/x -q   # in another: URL
    through the delayed CDN python bench/timeline.py -- aria2c -x8 -s8 -q -d /tmp -o x 'URL'

For each run it prints the wall time, when the first request reached the proxy (what the command
spent before it asked anything: its start-up), how long after the first answer's release the next
request came (its reaction to the first answer's headers), and how long the run went on after the
last request's release (the transfer and what follows it: hashing, syncing, exit). The proxy's log
lines are "arrival release route conn fwd|dropped request...", times in seconds since the epoch
(bench/latency.py). Only loopback servers are involved; the command is run as given.
"""

from __future__ import annotations

import argparse
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--log", type=Path, default=Path("/tmp/mdl-bench/proxy.log"), help="the proxy's log"
    )
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND ...")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command after --")
    rows: list[tuple[float, float, float, float]] = []
    for rep in range(args.reps):
        started = time.time()
        subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        ended = time.time()
        time.sleep(0.2)  # the proxy writes a request's line at its release
        seen = requests_between(args.log, started, ended)
        if not seen:
            sys.stderr.write(
                f"run {rep + 1}: no request reached the proxy (is the URL the delayed one?)\n"
            )
            continue
        first_arrival, first_release = seen[0]
        later = [arrival for arrival, _ in seen[1:]]
        reaction = (later[0] - first_release) if later else float("nan")
        tail = ended - max(release for _, release in seen)
        rows.append((ended - started, first_arrival - started, reaction, tail))
        print(
            f"run {rep + 1}: wall {ended - started:.3f} s; first request at"
            f" {first_arrival - started:.3f} s; next {reaction:+.3f} s after the first answer's"
            f" release; {len(seen)} requests; {tail:.3f} s from the last release to exit"
        )
    if rows:
        medians = [statistics.median(column) for column in zip(*rows, strict=True)]
        print(
            f"median: wall {medians[0]:.3f} s; first request at {medians[1]:.3f} s; reaction"
            f" {medians[2]:+.3f} s; after the last release {medians[3]:.3f} s"
        )
    return 0 if rows else 1


if __name__ == "__main__":
    sys.exit(main())
