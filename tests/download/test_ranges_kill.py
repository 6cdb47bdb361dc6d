"""A pull with the lock's part hashes, killed with SIGKILL mid-file, then run again: the ranges its
record kept that still verify are kept, and a byte damaged on disk meanwhile costs its range alone
(`--json` says the trust and the range fetched again)."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from runfixtures import HANG, wait_for
from servers import HubServer, hold_after, make_data
from zygote import Forked, forked_mdl, shared

from mdl.lockfile.parts import PartHashes, parts_beside, write_parts
from mdl.transfer import ranges

MiB = 1 << 20
WEIGHTS = make_data(12 * MiB + 345, seed=73)


@pytest.fixture
def processes() -> Iterator[list[Forked]]:
    started: list[Forked] = []
    yield started
    for process in started:  # a failed test leaves none behind
        if process.poll() is None:
            process.kill()
            process.wait()


def pull(catalog: Path, dest: Path, env: dict[str, str]) -> Forked:
    """``mdl pull`` forked from the worker's zygote (tests/zygote.py): a kill -9 is mdl's own."""
    argv = ["pull", "--all", "--frozen", "--json", "--no-progress"]
    argv += ["--catalog", str(catalog), "--dest", str(dest)]
    return shared().spawn(argv, env=env, cwd=Path.cwd())


def test_a_pull_killed_then_run_again_keeps_the_ranges_that_verify(
    hub: HubServer, tmp_path: Path, processes: list[Forked], request: pytest.FixtureRequest
) -> None:
    hub.add_repo("org/m", {"model.safetensors": WEIGHTS})
    env = {**os.environ, "HF_ENDPOINT": hub.url, "MDL_LOG_FILE": str(tmp_path / "mdl.log")}
    catalog = tmp_path / "catalog.toml"
    catalog.write_text('[models.m]\nrepo = "org/m"\n')
    done = subprocess.run(
        [forked_mdl(), "lock", "--all", "-q", "--catalog", str(catalog)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    # the part hashes a machine that installed it would write (1 MiB parts: kept per file)
    digests = tuple(ranges.digest(WEIGHTS[s : s + MiB]) for s in range(0, len(WEIGHTS), MiB))
    sha = hashlib.sha256(WEIGHTS).hexdigest()
    write_parts(
        parts_beside(catalog.with_suffix(".lock")), {sha: PartHashes(len(WEIGHTS), MiB, digests)}
    )
    dest = tmp_path / "dest"
    # Each answer (a 4 MiB piece) held at 3.5 MiB until the kill: killed on the way, however busy
    # the machine. (Throttled instead, a second left between three ranges on disk and the file's
    # end: a busy machine's kill could come after it.)
    held = hold_after(hub.cdn, 3 * MiB + MiB // 2)
    request.addfinalizer(held.set)
    processes.append(first := pull(catalog, dest, env))
    kept: list[tuple[int, int]] = []

    def ranges_on_disk() -> bool:  # as its resume record says (what the next run resumes on)
        for record in dest.rglob("*.part.json"):
            try:
                pieces = json.loads(record.read_text())["pieces"]
            except (OSError, ValueError, KeyError):
                continue
            kept[:] = [(s, s + d) for s, _, d in pieces if d]
        return kept[:1] != [] and kept[0][0] == 0 and kept[0][1] >= 3 * MiB

    wait_for(ranges_on_disk, what="three ranges on disk")
    first.send_signal(signal.SIGKILL)
    first.wait(HANG)
    # the dead run's answers stay held till the test ends: nothing more is counted as sent to
    # sockets no one reads (released, the kernel took a part's rest for them)
    hub.cdn.faults.clear()
    (part,) = dest.rglob("*.part")
    with part.open("r+b") as opened:  # a byte of the first range damaged while no mdl ran
        opened.seek(100)
        opened.write(bytes([WEIGHTS[100] ^ 1]))
    hub.cdn.log.clear()
    processes.append(again := pull(catalog, dest, env))
    out, err = (told.decode() for told in again.communicate(timeout=HANG))
    assert again.returncode == 0, err
    assert (dest / "m" / "model.safetensors").read_bytes() == WEIGHTS
    (line,) = json.loads(out)["files"]
    assert (line["range_trust"], line["ranges_refetched"]) == ("lock", 1), line
    assert line["verified"] is True
    whole = sum(max(0, e // MiB - -(-s // MiB)) * MiB for s, e in kept)  # whole ranges kept
    assert whole >= 3 * MiB
    sent = hub.cdn.log.body_bytes()
    assert sent <= len(WEIGHTS) - whole + MiB + 64 * 1024, (sent, kept)
    assert "1 range(s) failed their lock hash" in err
