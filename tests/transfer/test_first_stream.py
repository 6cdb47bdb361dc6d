"""Issue 38, round trips and interrupts: the probe's open-ended answer streams on into the pieces
whose answers have not begun (engine rule 19), and resume records are cheap, frequent and tied to
the boot they are good for."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from runfixtures import HANG, mdl, transfer_job, wait_for
from servers import CdnServer, Fault, make_data

from mdl.transfer._state import DownloadState
from mdl.transfer.resume import load_state
from mdl.transfer.scheduling import Piece

MiB = 1 << 20


def get(url: str, out: Path, *extra: str) -> tuple[int, str]:
    result = mdl("get", url, "-o", str(out), "--no-progress", "--connections", "4", *extra)
    return result.exit_code, result.stderr


def ranged_starts(cdn: CdnServer) -> list[int]:
    return [
        int(r.range.removeprefix("bytes=").split("-")[0]) for r in cdn.log.records(method="GET")[1:]
    ]


@pytest.mark.slow
@pytest.mark.realtime
def test_the_first_answer_reads_on_while_the_other_answers_are_on_their_way(
    cdn: CdnServer, tmp_path: Path
) -> None:
    """Every answer after the probe's waits until the probe's open-ended answer has been sent whole
    and its last bytes are on the client's disk: events, not a race against the clock), so the
    pieces it read are not fetched again (their answers are dropped) and the bytes are the file's.
    """
    data = make_data(48 * MiB, seed=3801)
    url = cdn.add_file("/f.bin", data)
    out = tmp_path / "f.bin"
    tail = data[-MiB:]

    def tail_on_disk() -> bool:
        for path in [out, *(tmp_path / ".mdl").rglob("*.part")]:
            try:
                with path.open("rb") as file:
                    file.seek(len(data) - MiB)
                    if file.read(MiB) == tail:
                        return True
            except OSError:
                continue
        return False

    def after_the_probe() -> None:
        wait_for(
            lambda: any(r.complete for r in cdn.log.records(method="GET")[:1]),
            what="the probe's answer sent",
        )
        wait_for(tail_on_disk, what="the probe's last bytes read")

    cdn.faults.add(Fault.call(after_the_probe, path_prefix="/f.bin", skip=1, times=3))
    code, stderr = get(url, out, "--timeout", str(HANG))  # the held answers are late on purpose
    assert code == 0, stderr
    assert out.read_bytes() == data
    probe, *later = cdn.log.records(method="GET")
    assert probe.range == "bytes=0-" and later, [r.range for r in cdn.log.records(method="GET")]
    assert sum(r.bytes_sent for r in later if r.complete) == 0, (
        "no piece the probe's answer read came again whole"
    )
    assert not list((tmp_path / ".mdl").rglob("*.part")), "no partial left behind"


@pytest.mark.slow
def test_a_piece_partly_read_on_into_is_continued_after_a_compare(
    cdn: CdnServer, tmp_path: Path
) -> None:
    """The probe's answer is throttled: it reads into the next piece only a little before that
    piece's answer begins; the file is right and the join is compared (nothing of the piece is asked
    for twice but the bytes the first answer took)."""
    data = make_data(48 * MiB, seed=3802)
    url = cdn.add_file("/f.bin", data)
    cdn.throttle_bps = 12 * MiB
    out = tmp_path / "f.bin"
    code, stderr = get(url, out)
    assert code == 0, stderr
    assert out.read_bytes() == data
    starts = ranged_starts(cdn)
    assert starts and min(starts) > 0


def test_carry_moves_only_pieces_no_answer_has_begun(tmp_path: Path) -> None:
    """The one rule, on the layout: the first piece takes the next pieces' bytes until an answer for
    one begins, a piece taken whole leaves the layout, and the pieces still tile the file."""
    job = transfer_job(tmp_path, "http://127.0.0.1:9/f.bin", size=40 * MiB)
    pieces = [
        Piece(0, 10 * MiB, asked=40 * MiB),
        Piece(10 * MiB, 20 * MiB),
        Piece(20 * MiB, 30 * MiB),
    ]
    pieces.append(Piece(30 * MiB, 40 * MiB))
    state = DownloadState(job, -1, pieces, None)
    first, second, third, fourth = pieces
    assert state.carry(first, 12 * MiB) == 12 * MiB and second.start == 12 * MiB
    assert (
        state.carry(first, 21 * MiB) == 21 * MiB
        and second not in state.pieces
        and third.start == 21 * MiB
    )
    assert state.begin(third) == 21 * MiB
    assert state.carry(first, 25 * MiB) == 21 * MiB, (
        "an answer for the third piece began: it is its own"
    )
    assert [(p.start, p.end) for p in state.pieces] == [
        (0, 21 * MiB),
        (21 * MiB, 30 * MiB),
        (30 * MiB, 40 * MiB),
    ]
    fourth.done = 1
    assert state.carry(third, 35 * MiB) == 30 * MiB, "a piece with bytes of its own is never taken"


# -- resume records: cheap while running, durable at exit, tied to the boot
# ------------------------------------


def test_a_record_saved_without_a_flush_is_not_trusted_after_a_restart(
    cdn: CdnServer, tmp_path: Path
) -> None:
    data = make_data(3 * MiB, seed=3803)
    url = cdn.add_file("/f.bin", data)
    job = transfer_job(tmp_path, url, data)
    job.part_path.parent.mkdir(parents=True)
    job.part_path.write_bytes(data[: 2 * MiB] + bytes(MiB))
    fd = os.open(job.part_path, os.O_RDWR)
    state = DownloadState(job, fd, [Piece(0, len(data), done=2 * MiB)], None)
    try:
        state.record.save()  # cheap: marked with this boot
        record = json.loads(job.state_path.read_text())
        if "boot" not in record:
            pytest.skip("no boot id on this system: every record is saved durable")
        assert load_state(job) is not None, "this boot's record is trusted"
        state.record.save()
        record = json.loads(job.state_path.read_text())
        job.state_path.write_text(json.dumps({**record, "boot": "another-boot"}))
        assert load_state(job) is None, (
            "a cheap record of another boot may claim bytes the crash lost"
        )
        assert not job.part_path.exists(), "its partial goes with it"
        job.part_path.write_bytes(data[: 2 * MiB] + bytes(MiB))
        state.record.save(durable=True)  # an exit's: the bytes flushed first, no boot mark
        assert "boot" not in json.loads(job.state_path.read_text())
        assert load_state(job) is not None
    finally:
        os.close(fd)


@pytest.mark.parametrize(
    ("size", "every"), [(48 * MiB, 8 * MiB), (1 << 30, (1 << 30) // 50), (1 << 40, 32 * MiB)]
)
def test_a_record_is_due_every_two_percent_of_the_file_or_its_interval(
    tmp_path: Path, size: int, every: int
) -> None:
    """A kill -9 loses at most what arrived since the last record: < 5% of the file at any moment
    (aria2c's control file does it), with a floor (a tiny file is not saved per chunk) and a
    ceiling."""
    state = DownloadState(
        transfer_job(tmp_path, "http://127.0.0.1:9/f.bin", size=size), -1, [Piece(0, size)], None
    )
    assert state.record.every == every
    assert not state.record.due(60.0)
    state.fetched = every - 1
    assert not state.record.due(60.0)
    state.fetched = every
    assert state.record.due(60.0)
    state.fetched = 0
    state.record.last_save -= 0.25
    assert state.record.due(0.2) and not state.record.due(1.0)
