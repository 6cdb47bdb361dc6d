"""What an operator sees on ``mdl serve --pull``'s stderr (a pod's log): what ``mdl pull``'s would
say, said when the pull ends (not when the server stops) through pull's own rendering: each
warning once, then the summary of the bytes that really came from the origin (a range fetched
again counts) over the pull's own time, then ``pull done``. The origin here corrupts one range of
a file once, its validator unchanged: the whole-file hash fails, serve fetches the file again, and
it verifies."""

from __future__ import annotations

import json
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest
from runfixtures import HANG, wait_for
from serveproc import ServeProcess, isolated, model_catalog
from servers import CdnServer, Content, Exchange, make_data
from zygote import forked_mdl

from mdl.units import human_size

pytestmark = pytest.mark.slow

SIZE = 33 << 20  # past the split threshold (32 MiB): fetched as parallel ranges
ETAG = '"one-version"'  # the corrupt answer carries the file's own validator
PULL_DONE = "pull done; serving "


class OnceCorrupt(CdnServer):
    """An origin whose first answer that covers byte ``at`` of its files carries that byte flipped
    (a one-off corrupt range, as a CDN edge can send); every other answer is right."""

    def __init__(self, good: bytes, *, at: int) -> None:
        super().__init__()
        bad = bytearray(good)
        bad[at] ^= 0xFF
        self.bad, self.at = Content(bytes(bad)), at
        self.corrupted = threading.Event()
        self._once = threading.Lock()

    def _covers(self, header: str | None) -> bool:
        if header is None:
            return True
        first, _, last = header.removeprefix("bytes=").partition("-")
        return int(first or 0) <= self.at <= (int(last) if last else self.at)

    def route(self, ex: Exchange) -> None:
        if ex.method == "GET" and self._covers(ex.headers.get("Range")):
            with self._once:
                bad = not self.corrupted.is_set()
                self.corrupted.set()
            if bad:
                ex.send_content(self.bad, etag=ETAG)
                return
        super().route(ex)


def _serve_corrupt_once(tmp_path: Path, *extra: str) -> tuple[str, str, int]:
    """Serve a file whose origin corrupts one range once: stderr when the pull was said done (the
    server still up), stderr once stopped, and the bytes the origin sent."""
    good = make_data(SIZE, seed=61)
    with OnceCorrupt(good, at=SIZE - 4096) as cdn:
        url = cdn.add_file("/w.bin", good, etag=ETAG)
        env = isolated(tmp_path, model_catalog(tmp_path, {"w.bin": (url, good)}))
        with ServeProcess(tmp_path, "m", "--pull", *extra, env=env) as serve:
            serve.ready()
            wait_for(lambda: PULL_DONE in serve.stderr, what="serve to say its pull is done")
            said = serve.stderr
            assert cdn.corrupted.is_set()
            sent = cdn.log.body_bytes(path_prefix="/w")
            assert serve.stop() == 0, serve.stderr
            return said, serve.stderr, sent


def test_a_range_corrupt_once_is_one_warning_and_the_summary_counts_the_refetch_and_its_bytes(
    tmp_path: Path,
) -> None:
    said, stopped, sent = _serve_corrupt_once(tmp_path)
    lines = said.splitlines()
    warnings = [line for line in lines if "mdl: warning: " in line]
    assert len(warnings) == 1, said
    assert "m/w.bin: sha256 mismatch: expected" in warnings[0]
    assert warnings[0].endswith("; fetched it again")
    (summary,) = [line for line in lines if "] pulled " in line]
    # the refetch counted, and the bytes that really came: both tries' whole file (each try
    # read all of it before its hash was checked), no more than the origin sent
    assert "pulled 1 model (1 file: 1 fetched again)" in summary
    figure = summary.split("; ")[-1].partition(" in ")[0]
    assert sent >= 2 * SIZE and figure in {human_size(2 * SIZE), human_size(sent)}, summary
    # each said once, warning first, then the summary, then that the pull is done
    assert [i for i, line in enumerate(lines) if PULL_DONE in line] == [len(lines) - 1]
    assert lines.index(warnings[0]) < lines.index(summary)
    # stopping adds its own line only: nothing of the pull is said again
    assert stopped.startswith(said)
    (last,) = stopped[len(said) :].splitlines()
    assert "stopped serving http://127.0.0.1:" in last


def _events(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines()]


def test_its_events_say_the_warning_once_and_the_bytes_the_origin_sent(tmp_path: Path) -> None:
    said, stopped, sent = _serve_corrupt_once(tmp_path, "--progress", "json")
    events = _events(stopped)
    warned = [e for e in events if e["event"] == "warning"]
    assert len(warned) == 1 and "sha256 mismatch" in warned[0]["message"], warned
    # the display's account of each try (the first's error, if said, as pull's display says it),
    # the file finished last
    told = [e["event"] for e in events if e.get("path") == "w.bin" and e["event"] != "progress"]
    assert told[-1] == "finish" and told.count("finish") == 1, told
    # said when the pull ended: the warning and the pull's end were there before the stop
    assert warned[0] in _events(said)
    assert any(PULL_DONE in e.get("message", "") for e in _events(said))
    end = events[-1]
    assert end["event"] == "end" and end["exit_code"] == 0
    summary = end["summary"]
    assert 2 * SIZE <= summary["bytes"] <= sent
    assert summary["actions"] == {"downloaded": 1} and summary["failed"] == 0
    assert "1 fetched again" in summary["text"]


def _warnings(stderr: str) -> list[str]:
    """The ``mdl: warning:`` lines, without their stamps."""
    return [line.partition("] ")[2] for line in stderr.splitlines() if "] mdl: warning: " in line]


def test_it_says_each_warning_pull_says_once(tmp_path: Path) -> None:
    """A mirror that sends wrong bytes: pull warns and goes to the origin; serve --pull's stderr
    says the same warning, once."""
    data = make_data(1 << 20, seed=62)
    with CdnServer() as origin, CdnServer() as mirror:
        url = origin.add_file("/w.bin", data)
        mirror.add_file("/m/w.bin", data[:-1] + b"\0")
        flags = ("--mirror", mirror.url + "/{model}/{path}")
        pulled = tmp_path / "pull"
        pulled.mkdir()
        env = isolated(pulled, model_catalog(pulled, {"w.bin": (url, data)}))
        command = [forked_mdl(), "pull", "m", "--no-progress", *flags]
        pull = subprocess.run(command, env=env, capture_output=True, text=True, timeout=HANG)
        assert pull.returncode == 0, pull.stderr
        served = tmp_path / "serve"
        served.mkdir()
        env = isolated(served, model_catalog(served, {"w.bin": (url, data)}))
        with ServeProcess(served, "m", "--pull", *flags, env=env) as serve:
            serve.ready()
            wait_for(lambda: PULL_DONE in serve.stderr, what="serve to say its pull is done")
            said = serve.stderr
            assert serve.stop() == 0, serve.stderr
    warned = _warnings(pull.stderr)
    assert len(warned) == 1 and "mirror" in warned[0], pull.stderr
    assert _warnings(said) == warned, said
