"""Every wait before a retry is said, whatever its phase (docs/output.md): a direct URL's first
request refused with a long Retry-After (`get`'s probe, a `pull`'s plan), a link cut mid-download,
each a line of its own in every display but -q's, ``--no-progress`` and ``--progress json`` too.

The retries wait on a virtual clock (tests/clocks.py): a 120 s wait takes no real time.
"""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import pytest
from clocks import FakeClock
from runfixtures import mdl, use_catalog
from servers import CdnServer, Fault, make_data

from mdl.errors import ExitCode
from mdl.transfer.http import ANSWERED_RETRIES, RetryPolicy

DATA = make_data(300_000, seed=2502)
DISPLAYS = [["--no-progress"], ["--progress", "json"], ["--progress", "plain"]]


@pytest.fixture(autouse=True)
def virtual_clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    """The run's retries wait on a clock only their waits move."""
    clock = FakeClock()
    virtual = partial(RetryPolicy, clock=clock, sleep=clock.sleep, virtual=True, rng=lambda: 0.5)
    monkeypatch.setattr("mdl.download.session.RetryPolicy", virtual)
    return clock


def lines(stderr: str, display: list[str]) -> list[str]:
    """What stderr said on lines of their own: the messages of ``note`` events with --progress
    json, else the lines (without their time and pid)."""
    if "json" in display:
        events = [json.loads(line) for line in stderr.splitlines()]
        return [e["message"] for e in events if e["event"] == "note"]
    return [line.split("] ", 1)[-1] for line in stderr.splitlines()]


@pytest.mark.parametrize("command", ["get", "pull"])
@pytest.mark.parametrize("display", DISPLAYS, ids=" ".join)
def test_a_first_request_refused_with_a_long_retry_after_says_each_wait(
    cdn: CdnServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    command: str,
    display: list[str],
    virtual_clock: FakeClock,
) -> None:
    url = cdn.add_file("/f.bin", DATA)
    cdn.faults.add(Fault.http_error(429, retry_after=99_999_999, times=None))
    use_catalog(tmp_path, monkeypatch, f'[models.m]\nfiles = [{{ url = "{url}" }}]\n')
    args = ["get", url, "-o", str(tmp_path / "f.bin")] if command == "get" else ["pull", "m"]
    result = mdl(*args, *display)
    assert result.exit_code == ExitCode.NETWORK, result.stderr
    label = "f.bin" if command == "get" else "m/f.bin"
    said = [line for line in lines(result.stderr, display) if "retrying in" in line]
    assert said == [
        f"{label}: HTTP 429 from {url}: injected 429 error from the test server, retrying in"
        f" 120 s ({n}/{ANSWERED_RETRIES})"
        for n in range(1, ANSWERED_RETRIES + 1)
    ], result.stderr
    assert virtual_clock.now >= 100 + 120 * ANSWERED_RETRIES  # (the waits were waited)


def test_a_link_cut_mid_download_says_its_wait_with_no_progress_too(
    cdn: CdnServer, tmp_path: Path
) -> None:
    """(as a terminal's display and --progress json said it already)"""
    url = cdn.add_file("/f.bin", DATA)
    cdn.faults.add(Fault.reset(after_bytes=100_000))
    out = tmp_path / "f.bin"
    result = mdl("get", url, "-o", str(out), "--no-progress")
    assert result.exit_code == 0, result.stderr
    assert out.read_bytes() == DATA
    said = [line for line in lines(result.stderr, []) if "retrying in" in line]
    assert len(said) == 1 and said[0].startswith("f.bin: connection lost ("), result.stderr
