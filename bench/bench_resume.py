"""Resume benchmark: `mdl get` of a big file killed with SIGKILL mid-way, then run again to the end.

Issue 23's target: the bytes that crossed the wire in both runs together stay within 1.2× the file (a kill -9
loses at most what arrived since the last resume-record save, and no range is asked for twice). The bytes are
counted from nginx's access log (body bytes per request), the file checked by its sha256.

    python bench/bench_resume.py [--size-mib 512] [--kill-after 1.0] [--reps 3]

Loopback only: a private nginx on 127.0.0.1 (``/capped/``: 40 MiB/s per connection, so a kill lands mid-way).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from nginx import Nginx, ensure_tools

MiB = 1024 * 1024


def body_bytes(log: Path) -> tuple[int, int]:
    """(body bytes, requests) nginx logged so far."""
    total = requests = 0
    for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
        fields = line.split()
        if len(fields) > 4 and fields[4].isdigit():
            total += int(fields[4])
            requests += 1
    return total, requests


def one_rep(nginx: Nginx, log: Path, name: str, digest: str, size: int, kill_after: float, work: Path) -> dict:
    out = work / "out"
    out.mkdir(parents=True, exist_ok=True)
    target = out / name
    target.unlink(missing_ok=True)
    partial = out / ".mdl"
    if partial.exists():
        subprocess.run(["rm", "-rf", str(partial)], check=True)
    log.write_text("")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MDL_", "HF_"))}
    env["HOME"] = str(work / "home")
    cmd = [sys.executable, "-m", "mdl", "get", f"{nginx.url}/capped/{name}", "-o", str(target), "-q"]
    first = subprocess.Popen(cmd, env=env)
    time.sleep(kill_after)
    first.send_signal(signal.SIGKILL)
    first.wait()
    killed_at, _ = body_bytes(log)
    second = subprocess.run(cmd, env=env, check=False)
    total, requests = body_bytes(log)
    ok = second.returncode == 0 and hashlib.sha256(target.read_bytes()).hexdigest() == digest
    return {"killed_at": killed_at, "total": total, "requests": requests, "ratio": total / size, "ok": ok}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=512)
    parser.add_argument("--kill-after", type=float, default=1.0, help="seconds before the SIGKILL")
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    tools = ensure_tools(("nginx",))
    with tempfile.TemporaryDirectory(prefix="mdl-resume-") as tmp:
        work = Path(tmp)
        data = work / "data"
        data.mkdir()
        name = "big.bin"
        size = args.size_mib * MiB
        blob = os.urandom(size)
        (data / name).write_bytes(blob)
        digest = hashlib.sha256(blob).hexdigest()
        del blob
        log = work / "access.log"
        with Nginx(tools["nginx"], data=data, prefix=work / "nginx", access_log=log) as nginx:
            reps = [
                one_rep(nginx, log, name, digest, size, args.kill_after, work / f"rep{i}") for i in range(args.reps)
            ]
    for i, rep in enumerate(reps, 1):
        print(
            f"rep {i}: killed after {rep['killed_at'] / MiB:.0f} MiB; both runs {rep['total'] / MiB:.0f} MiB "
            f"in {rep['requests']} requests = {rep['ratio']:.3f}x the file; verified: {rep['ok']}"
        )
    ratio = statistics.median(rep["ratio"] for rep in reps)
    met = ratio <= 1.2 and all(rep["ok"] for rep in reps)
    print(f"median: {ratio:.3f}x the file (target <= 1.2x): {'met' if met else 'MISSED'}")


if __name__ == "__main__":
    main()
