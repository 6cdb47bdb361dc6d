"""An interrupted Xet pull resumes by chunk: SIGINT, SIGTERM or kill -9 while every term is in
flight keeps the chunks that arrived (written, then recorded), and the rerun fetches only the chunks
missing, each span from a reconstruction of its own bytes, a kept run inside a bigger xorb range
never fetched again. The interrupt is driven from the server: every xorb body stops after a set
share of its bytes, the test waits until the client's record claims them, then sends the signal (no
timing is assumed; the waits are safety nets)."""

from __future__ import annotations

import json
import os
import random
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from profiles import examples
from runfixtures import mdl_as_child, wait_for
from servers import Fault, make_data
from xetserver import XetFile, XetHubServer
from zygote import shared

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
    """``mdl pull m`` against ``hub``, in ``root``: interrupted as a subprocess, rerun here."""

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
        """Start a pull, wait until its record claims ``claimed`` bytes, send ``how``; the bytes
        claimed then.
        """
        # forked from the worker's zygote (tests/zygote.py): the signal is mdl's own
        child = shared().spawn(["pull", "m"], env=self.env, cwd=self.root)
        try:
            wait_for(
                lambda: _claimed(self.state) >= claimed,
                timeout=120,
                what=f"{claimed} bytes recorded",
            )
        finally:
            child.send_signal(how)
            _, stderr = child.communicate(timeout=120)
        if how != signal.SIGKILL:
            assert child.returncode == 130, stderr
        return _claimed(self.state)

    def rerun(self) -> None:
        """The pull again, in this process (what it fetches is the proof; the interrupt was a
        process's)."""
        result = mdl_as_child(["pull", "m", "--json"], env=self.env, cwd=self.root)
        assert result.exit_code == 0, result.stderr
        # said as a resume, in words true of it (not the plan's "not downloaded yet")
        (done,) = json.loads(result.stdout)["files"]
        assert done["action"] == "resumed" and done["reason"].endswith(" already downloaded"), done

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
    """A file whose terms point into one xorb per part (the parts are minted first, in another
    repo).
    """
    hub.add_repo("org/parts", {f"p{i}.safetensors": p for i, p in enumerate(parts)}, scheme="none")
    whole = b"".join(parts)
    hub.add_repo("org/m", {WEIGHTS: whole}, scheme="none")
    return whole, hub.xet_file("org/m", WEIGHTS)


def _resumed(hub: XetHubServer, pull: Pull, whole: bytes, xf: XetFile) -> int:
    """The rerun after the interrupt, without the pause: the right file, verified; the xorb bytes
    it fetched.
    """
    hub.cas.faults.clear()
    before = hub.cas.xorb_bytes()
    pull.rerun()
    assert pull.installed.read_bytes() == whole
    # no Xet hash mismatch
    assert "after reusing bytes on disk; fetching it again whole" not in pull.log()
    record = next((pull.root / "models" / ".mdl" / "xet").glob("*.json"))
    # recorded once the Xet file hash matched
    assert json.loads(record.read_text())["xet"] == xf.hash
    return hub.cas.xorb_bytes() - before


@pytest.mark.slow
@pytest.mark.parametrize(
    "how", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL], ids=lambda how: how.name
)
def test_an_interrupt_with_every_term_in_flight_keeps_what_arrived(
    hub: XetHubServer, tmp_path: Path, how: signal.Signals
) -> None:
    """Finding E: 16 streams for a file of fewer terms, each paused at 3/4 of its range: no term is
    finished, yet the rerun fetches well under half of the file."""
    whole, xf = _minted(hub, [make_data(2 * MiB, seed=60 + i) for i in range(8)])
    assert 8 <= len(xf.terms) <= 16
    total = hub.store.xorb_bytes(xf)
    hub.cas.faults.add(Fault.stall(3 * MiB // 2, None, path_prefix="/xorb/", times=None))
    pull = Pull(hub, tmp_path, connections=16)
    claimed = pull.interrupted(how, claimed=len(whole) // 2)
    assert claimed >= len(whole) // 2
    fetched = _resumed(hub, pull, whole, xf)
    # at most a chunk or two more per term
    assert fetched <= total - claimed + len(xf.terms) * 2 * 128 * 1024
    assert fetched <= total // 2


@pytest.mark.slow
@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL], ids=lambda how: how.name)
def test_two_big_chunk_ranges_cut_at_half_resume_from_half(
    hub: XetHubServer, tmp_path: Path, how: signal.Signals
) -> None:
    """Finding G: two 18 MiB terms, each fetched as two pieces, every piece paused at ~56 %: the
    rerun fetches only the spans after each piece's chunks on disk (kept chunks sit inside the xorb
    ranges of the first run: never again)."""
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


@pytest.mark.slow
def test_a_kept_chunk_changed_on_disk_is_fetched_again(hub: XetHubServer, tmp_path: Path) -> None:
    """The record is only a claim: every kept chunk is hashed from disk before it counts, and the
    Xet file hash is built from those hashes; a chunk changed since is fetched again, the file
    right."""
    whole, xf = _minted(hub, [make_data(2 * MiB, seed=80 + i) for i in range(4)])
    total = hub.store.xorb_bytes(xf)
    hub.cas.faults.add(Fault.stall(3 * MiB // 2, None, path_prefix="/xorb/", times=None))
    pull = Pull(hub, tmp_path, connections=16)
    claimed = pull.interrupted(signal.SIGINT, claimed=len(whole) // 2)
    (part,) = pull.state.glob("*.part")
    # one byte of the first chunk on disk, as another tool might leave it
    with part.open("r+b") as handle:
        handle.seek(10)
        byte = handle.read(1)
        handle.seek(10)
        handle.write(bytes([byte[0] ^ 0xFF]))
    fetched = _resumed(hub, pull, whole, xf)
    # that chunk's run (cut at it) and no more
    assert total - claimed < fetched <= total - claimed + 2 * MiB


# --- the record is only a claim: what is kept is what lies on disk as it says
# -----------------------------------------


@settings(max_examples=examples(400), deadline=None)
@given(
    terms=st.lists(st.lists(st.integers(1, 40), min_size=1, max_size=6), min_size=1, max_size=4),
    data=st.data(),
)
def test_a_resume_record_keeps_only_chunks_lying_on_disk_as_it_says(
    terms: list[list[int]], data: st.DataObject
) -> None:
    """Any record (true runs, runs moved, cut, of other terms, with wrong hashes or lengths) over
    any partial: every chunk kept hashes on disk as recorded, the kept runs lie in order inside
    their terms where their chunks can fit, and a record of only true runs over written chunks is
    kept whole."""
    from mdl.xet._hashing import chunk_hash
    from mdl.xet._partial import checked_runs
    from mdl.xet._plan import resume
    from mdl.xet._protocol import Reconstruction, Term
    from mdl.xet._reuse import Written

    xorbs = ["a" * 64, "b" * 64]
    rng = random.Random(data.draw(st.integers(0, 2**32)))
    layout: list[tuple[Term, int, list[bytes]]] = []  # each term, its offset, its chunks' bytes
    at = 0
    for i, sizes in enumerate(terms):
        xorb, start = xorbs[i % 2], data.draw(st.integers(0, 3))
        layout.append(
            (
                Term(xorb, start, start + len(sizes), sum(sizes)),
                at,
                [rng.randbytes(n) for n in sizes],
            )
        )
        at += sum(sizes)
    disk = bytearray(at)
    written: set[tuple[int, int]] = set()
    for i, (_, offset, chunks) in enumerate(layout):
        pos = offset
        for k, chunk in enumerate(chunks):
            state = data.draw(st.sampled_from(["written", "missing", "garbage"]))
            if state != "missing":
                disk[pos : pos + len(chunk)] = (
                    chunk if state == "written" else bytes(b ^ 1 for b in chunk)
                )
            if state == "written" or (state == "missing" and not any(chunk)):
                written.add((i, k))  # a missing chunk of zeros lies on disk all the same
            pos += len(chunk)

    def true_run(i: int, k: int, j: int) -> Written:
        term, offset, chunks = layout[i]
        at = offset + sum(len(c) for c in chunks[:k])
        return Written(
            term.xorb,
            term.start + k,
            term.start + j,
            at,
            tuple((chunk_hash(c), len(c)) for c in chunks[k:j]),
        )

    honest = data.draw(st.booleans())
    record: list[Written] = []
    for _ in range(data.draw(st.integers(0, 8))):
        i = data.draw(st.integers(0, len(layout) - 1))
        n = len(layout[i][2])
        k = data.draw(st.integers(0, n - 1))
        run = true_run(i, k, data.draw(st.integers(k + 1, n)))
        lie = (
            "none"
            if honest
            else data.draw(st.sampled_from(["none", "offset", "start", "hash", "size", "xorb"]))
        )
        if lie == "offset":
            run = Written(
                run.xorb,
                run.start,
                run.end,
                max(0, run.offset + data.draw(st.integers(-5, 5))),
                run.chunks,
            )
        elif lie == "start":
            shift = data.draw(st.integers(-2, 2))
            run = Written(
                run.xorb, max(0, run.start + shift), max(1, run.end + shift), run.offset, run.chunks
            )
            if run.end - run.start != len(run.chunks):
                continue
        elif lie == "hash":
            run = Written(
                run.xorb,
                run.start,
                run.end,
                run.offset,
                ((bytes(32), run.chunks[0][1]), *run.chunks[1:]),
            )
        elif lie == "size":
            run = Written(
                run.xorb,
                run.start,
                run.end,
                run.offset,
                ((run.chunks[0][0], run.chunks[0][1] + 1),),
            )
            if run.end - run.start != 1:
                continue
        elif lie == "xorb":
            run = Written(
                xorbs[xorbs.index(run.xorb) - 1], run.start, run.end, run.offset, run.chunks
            )
        record.append(run)
    with tempfile.TemporaryFile() as handle:
        handle.write(disk)
        handle.flush()
        # only what ``resume`` reads: the reconstruction and the partial on disk
        rec = Reconstruction(0, tuple(term for term, _, _ in layout), (), ())
        file = resume(rec, record, lambda run: checked_runs(handle.fileno(), run))
    assert not set(file.done) & set(file.kept)
    for i, (term, offset, _) in enumerate(layout):
        runs = [file.done[i]] if i in file.done else file.kept.get(i, [])
        chunk, pos = term.start, offset
        for run in runs:
            assert run.xorb == term.xorb and chunk <= run.start and pos <= run.offset
            assert run.start - chunk <= run.offset - pos <= (run.start - chunk) * 128 * 1024
            at = run.offset
            for digest, size in run.chunks:  # each kept chunk hashes on disk as recorded
                assert chunk_hash(bytes(disk[at : at + size])) == digest
                at += size
            chunk, pos = run.end, at
        assert chunk <= term.end and pos <= offset + term.length
        if i in file.done:
            assert (chunk, pos) == (term.end, offset + term.length)
    if honest:  # every true run over written chunks is kept (runs may overlap: the bytes, once)
        claimed = {
            (i, run.start - layout[i][0].start + k)
            for run in record
            for i in range(len(layout))
            if layout[i][0].xorb == run.xorb
            and layout[i][1] <= run.offset < layout[i][1] + layout[i][0].length
            for k in range(len(run.chunks))
        }
        kept = sum(
            run.length
            for runs in (
                [file.done[i]] if i in file.done else file.kept.get(i, [])
                for i in range(len(layout))
            )
            for run in runs
        )
        assert kept == sum(len(layout[i][2][k]) for i, k in claimed if (i, k) in written)
