"""A first answer that names no size is the download's one stream (docs/transfers.md, "One version
per file"): a chunked or close-delimited 200, a 206 of ``bytes 0-N/*``, a coded 200. The file is
sent once: a one-time link (its second GET answered 410) downloads, with ``get`` and the engine's
own probe (``pull``'s) alike."""

from __future__ import annotations

import gzip
import hashlib
import threading
from pathlib import Path

import pytest
from hostile import Answer, FramedServer, Phase, ScriptedServer, Seen, chunked
from runfixtures import mdl, transfer_job
from servers import make_data

from mdl.progress import NullProgress
from mdl.transfer.engine import Engine
from mdl.transfer.http import RetryPolicy, make_client
from mdl.transfer.job import EngineConfig

MiB = 1 << 20
PATH = "/f.bin"
DATA = make_data(MiB + 3, seed=2501)
FRAMINGS = ["chunked", "close-delimited", "206-of-unknown-total", "gzip"]


def unsized(answer: Answer, framing: str) -> Answer:
    """``answer`` (the whole file, or a 206 of it from byte 0) framed so that its size is unsaid."""
    if framing == "chunked":
        return chunked(answer)
    if framing == "close-delimited":
        return Answer(answer.status, answer.headers, answer.body, sized=False)
    if framing == "206-of-unknown-total":
        end = len(answer.body) - 1
        return Answer(206, {**answer.headers, "Content-Range": f"bytes 0-{end}/*"}, answer.body)
    coded = gzip.compress(bytes(answer.body), mtime=0)
    return Answer(200, {**answer.headers, "Content-Encoding": "gzip"}, coded)


def one_time_link(started: list[ScriptedServer], framing: str) -> ScriptedServer:
    """A download link good for one GET (a later one is 410), its answer of no size."""

    def policy(index: int, seen: Seen, server: ScriptedServer) -> Answer:
        if index > 0:
            return Answer(410, body=b"gone\n")
        return unsized(server.reply(seen), framing)

    ranges = framing == "206-of-unknown-total"
    phase = Phase(DATA, etag='"v1"', ranges=ranges)
    server = FramedServer({PATH: [phase]}, policy=policy).start()
    started.append(server)
    return server


@pytest.mark.parametrize("framing", FRAMINGS)
def test_get_of_a_one_time_link_with_no_size_is_one_request(
    started: list[ScriptedServer], tmp_path: Path, framing: str
) -> None:
    server = one_time_link(started, framing)
    out = tmp_path / "out" / "f.bin"
    result = mdl("get", server.url + PATH, "-o", str(out), "--no-progress")
    asked = [(s.range, s.status) for s in server.seen()]
    assert result.exit_code == 0, (result.stderr, asked)
    assert out.read_bytes() == DATA
    assert asked == [("bytes=0-", 206 if framing == "206-of-unknown-total" else 200)]


@pytest.mark.parametrize("framing", FRAMINGS)
def test_the_engines_probe_of_a_file_of_no_size_is_its_one_stream(
    started: list[ScriptedServer], tmp_path: Path, framing: str
) -> None:
    """A pull's fetch of a direct URL it knows no size of: its probe's answer is read on."""
    server = one_time_link(started, framing)
    job = transfer_job(tmp_path, server.url + PATH)
    config = EngineConfig(connections=4, retry=RetryPolicy(retries=0))
    with make_client(pool_size=4, timeout=5) as client:
        engine = Engine(client, config, progress=NullProgress(), cancel=threading.Event())
        result = engine.fetch(job)
    assert [s.range for s in server.seen()] == ["bytes=0-"]
    assert job.final_path.read_bytes() == DATA
    assert (result.size, result.sha256) == (len(DATA), hashlib.sha256(DATA).hexdigest())
