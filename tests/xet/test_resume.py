"""An interrupted Xet pull resumes by chunk: SIGINT, SIGTERM or kill -9 while every term is in flight keeps the chunks
that arrived (written, then recorded), and the rerun fetches only the chunks missing, each span from a reconstruction
of its own bytes, a kept run inside a bigger xorb range never fetched again. The interrupt is driven from the server:
every xorb body stops after a set share of its bytes, the test waits until the client's record claims them, then
sends the signal (no timing is assumed; the waits are safety nets)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from runfixtures import wait_for
from servers import Fault, make_data
from xetserver import XetFile, XetHubServer

WEIGHTS = "model.safetensors"
MiB = 1 << 20


def _claimed(state: Path) -> int:
    """Bytes the Xet resume record under ``state`` says are on disk (0: none yet, or mid-write)."""
    for record in state.glob("*.part.json"):
        try:
            return sum(sum(run[5]) for run in json.loads(record.read_text())["terms"])
        except (OSError, ValueError, KeyError, TypeError):
            return 0
    return 0


class Pull:
    """``mdl pull m`` in a subprocess against ``hub``, in ``root``."""

    def __init__(self, hub: XetHubServer, root: Path, connections: int) -> None:
        (root / "catalog.toml").write_text('[models.m]\nrepo = "org/m"\n')
        self.root, self.state = root, root / "models" / ".mdl" / "partial"
        self.env = {
            **os.environ,
            "HF_ENDPOINT": hub.url,
            "MDL_CATALOG": str(root / "catalog.toml"),
            "MDL_DEST": str(root / "models"),
            "MDL_LOG_FILE": str(root / "mdl.log"),
            "MDL_LOG_LEVEL": "debug",
            "MDL_CONNECTIONS": str(connections),
            "MDL_STALL_TIMEOUT": "600",  # the server's pause is not a stall to retry
        }

    def interrupted(self, how: signal.Signals, *, claimed: int) -> int:
        """Start a pull, wait until its record claims ``claimed`` bytes, send ``how``; the bytes claimed then."""
        child = subprocess.Popen(
            [sys.executable, "-m", "mdl", "pull", "m"],
            env=self.env,
            cwd=self.root,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            wait_for(lambda: _claimed(self.state) >= claimed, timeout=120, what=f"{claimed} bytes recorded")
        finally:
            child.send_signal(how)
            _, stderr = child.communicate(timeout=120)
        if how != signal.SIGKILL:
            assert child.returncode == 130, stderr
        return _claimed(self.state)

    def rerun(self) -> None:
        result = subprocess.run(
            [sys.executable, "-m", "mdl", "pull", "m"],
            env=self.env,
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, result.stderr

    @property
    def installed(self) -> Path:
        return self.root / "models" / "m" / WEIGHTS

    def log(self) -> str:
        return (self.root / "mdl.log").read_text()


@pytest.fixture
def hub() -> Iterator[XetHubServer]:
    with XetHubServer() as server:
        yield server


def _minted(hub: XetHubServer, parts: list[bytes]) -> tuple[bytes, XetFile]:
    """A file whose terms point into one xorb per part (the parts are minted first, in another repo)."""
    hub.add_repo("org/parts", {f"p{i}.safetensors": p for i, p in enumerate(parts)}, scheme="none")
    whole = b"".join(parts)
    hub.add_repo("org/m", {WEIGHTS: whole}, scheme="none")
    return whole, hub.xet_file("org/m", WEIGHTS)


def _resumed(hub: XetHubServer, pull: Pull, whole: bytes, xf: XetFile) -> int:
    """The rerun after the interrupt, without the pause: the right file, verified; the xorb bytes it fetched."""
    hub.cas.faults.clear()
    before = hub.cas.xorb_bytes()
    pull.rerun()
    assert pull.installed.read_bytes() == whole
    assert "after reusing bytes on disk; fetching it again whole" not in pull.log()  # no Xet hash mismatch
    record = next((pull.root / "models" / ".mdl" / "xet").glob("*.json"))
    assert json.loads(record.read_text())["xet"] == xf.hash  # recorded once the Xet file hash matched
    return hub.cas.xorb_bytes() - before


@pytest.mark.parametrize("how", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL], ids=lambda how: how.name)
def test_an_interrupt_with_every_term_in_flight_keeps_what_arrived(
    hub: XetHubServer, tmp_path: Path, how: signal.Signals
) -> None:
    """Finding E: 16 streams for a file of fewer terms, each paused at 3/4 of its range: no term is finished, yet
    the rerun fetches well under half of the file."""
    whole, xf = _minted(hub, [make_data(2 * MiB, seed=60 + i) for i in range(8)])
    assert 8 <= len(xf.terms) <= 16
    total = hub.store.xorb_bytes(xf)
    hub.cas.faults.add(Fault.stall(3 * MiB // 2, None, path_prefix="/xorb/", times=None))
    pull = Pull(hub, tmp_path, connections=16)
    claimed = pull.interrupted(how, claimed=len(whole) // 2)
    assert claimed >= len(whole) // 2
    fetched = _resumed(hub, pull, whole, xf)
    assert fetched <= total - claimed + len(xf.terms) * 2 * 128 * 1024  # at most a chunk or two more per term
    assert fetched <= total // 2


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL], ids=lambda how: how.name)
def test_two_big_chunk_ranges_cut_at_half_resume_from_half(
    hub: XetHubServer, tmp_path: Path, how: signal.Signals
) -> None:
    """Finding G: two 18 MiB terms, each fetched as two pieces, every piece paused at ~56 %: the rerun fetches only
    the spans after each piece's chunks on disk (kept chunks sit inside the xorb ranges of the first run: never
    again)."""
    whole, xf = _minted(hub, [make_data(18 * MiB, seed=70), make_data(18 * MiB, seed=71)])
    assert len([t for t in xf.terms if t.length > 16 * MiB]) == 2
    total = hub.store.xorb_bytes(xf)
    hub.cas.faults.add(Fault.stall(5 * MiB, None, path_prefix="/xorb/", times=None))
    pull = Pull(hub, tmp_path, connections=5)
    claimed = pull.interrupted(how, claimed=15 * MiB)
    first = [r for r in hub.cas.xorb_records() if r.status == 206]
    assert len([r for r in first if r.bytes_sent >= 4 * MiB]) == 4  # each term came as two pieces
    fetched = _resumed(hub, pull, whole, xf)
    assert fetched <= total - claimed + 8 * 2 * 128 * 1024
    assert fetched <= total * 6 // 10


def test_a_kept_chunk_changed_on_disk_is_fetched_again(hub: XetHubServer, tmp_path: Path) -> None:
    """The record is only a claim: every kept chunk is hashed from disk before it counts, and the Xet file hash is
    built from those hashes; a chunk changed since is fetched again, the file right."""
    whole, xf = _minted(hub, [make_data(2 * MiB, seed=80 + i) for i in range(4)])
    total = hub.store.xorb_bytes(xf)
    hub.cas.faults.add(Fault.stall(3 * MiB // 2, None, path_prefix="/xorb/", times=None))
    pull = Pull(hub, tmp_path, connections=16)
    claimed = pull.interrupted(signal.SIGINT, claimed=len(whole) // 2)
    (part,) = pull.state.glob("*.part")
    with part.open("r+b") as handle:  # one byte of the first chunk on disk, as another tool might leave it
        handle.seek(10)
        byte = handle.read(1)
        handle.seek(10)
        handle.write(bytes([byte[0] ^ 0xFF]))
    fetched = _resumed(hub, pull, whole, xf)
    assert total - claimed < fetched <= total - claimed + 2 * MiB  # that chunk's run (cut at it) and no more
