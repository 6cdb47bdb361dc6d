"""A link that drops and comes back (issue 88), in real time: ``mdl get`` of one Hub file from the
project's Hub and CDN stand-ins (loopback, each connection capped) while, ``--at`` seconds after its
first GET from the CDN, the link goes down for ``--outage`` seconds: every open connection is cut and every new
request is reset, at the Hub and at the CDN. The run should end exit 0 with the file's bytes right,
the outage costing a wait, not a second command.

    python bench/link_drop.py [--size-mib 128] [--rate-mib 4] [--at 1.0] [--outage 20]
                              [--retries N] [--retry-max-time S]

``--retries 5`` is the old budget (a count of tries), to compare. One JSON line: exit code, wall
seconds, whether the bytes are right, what was asked.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from servers import CdnServer, HubServer, make_data  # noqa: E402

MiB = 1024 * 1024


class Outage:
    """Down from ``arm()`` for ``seconds`` of real time."""

    def __init__(self, seconds: float) -> None:
        self.seconds, self.since = seconds, None
        self.lock = threading.Lock()

    def arm(self) -> None:
        with self.lock:
            self.since = time.monotonic()

    def __call__(self) -> bool:
        with self.lock:
            return self.since is not None and time.monotonic() < self.since + self.seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=128)
    parser.add_argument("--rate-mib", type=float, default=4.0, help="per connection, MiB/s")
    parser.add_argument("--at", type=float, default=1.0, help="seconds after the first byte")
    parser.add_argument("--outage", type=float, default=20.0, help="seconds the link is down")
    parser.add_argument("--retries", type=int, default=None, help="MDL_RETRIES (default: unset)")
    parser.add_argument("--retry-max-time", type=float, default=None)
    parser.add_argument(
        "--log", type=Path, default=None, help="mdl's log file (default: none kept)"
    )
    args = parser.parse_args()
    data = make_data(args.size_mib * MiB, seed=88)
    cdn = CdnServer(throttle_bps=args.rate_mib * MiB).start()
    hub = HubServer(cdn=cdn).start()
    outage = Outage(args.outage)
    hub.link_down = hub.cdn.link_down = outage
    hub.add_repo("org/big", {"weights.bin": data})
    with tempfile.TemporaryDirectory(prefix="mdl-link-drop-") as work:
        log = args.log or Path(work) / "mdl.log"
        env = {**os.environ, "HF_ENDPOINT": hub.url, "MDL_LOG_FILE": str(log), "MDL_DEBUG": "1"}
        if args.retries is not None:
            env["MDL_RETRIES"] = str(args.retries)
        if args.retry_max_time is not None:
            env["MDL_RETRY_MAX_TIME"] = str(args.retry_max_time)
        argv = [sys.executable, "-m", "mdl", "get", "hf://org/big/weights.bin", "-d", work]
        started = time.monotonic()
        proc = subprocess.Popen(
            [*argv, "--progress", "plain"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        while not cdn.log.records(method="GET") and proc.poll() is None:
            time.sleep(0.01)  # the first bytes are on their way: the drop is mid-download
        time.sleep(args.at)
        outage.arm()
        hub.cdn.drop_connections()
        hub.drop_connections()
        _, stderr = proc.communicate()
        seconds = time.monotonic() - started
        target = Path(work) / "weights.bin"
        right = target.is_file() and hashlib.sha256(target.read_bytes()).digest() == (
            hashlib.sha256(data).digest()
        )
    hub.stop()
    cdn.stop()
    said = [line for line in stderr.decode(errors="replace").splitlines() if "retrying in" in line]
    print(
        json.dumps(
            {
                "exit": proc.returncode,
                "seconds": round(seconds, 1),
                "bytes_right": right,
                "retry_lines": len(said),
                "last_retry_line": said[-1][-160:] if said else None,
                **{k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            }
        )
    )
    return 0 if proc.returncode == 0 and right else 1


if __name__ == "__main__":
    sys.exit(main())
