"""A reply whose headers pass the HTTP library's bound (h11 under httpcore2: 100 KiB) is a server
that answered (docs/transfers.md, "A link that drops and comes back"): at most 5 more tries, not a
link that is down for 2 minutes, said in words naming the URL, never h11's own."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import pytest
from clocks import FakeClock
from hostile import Answer, Phase, ScriptedServer, Seen
from runfixtures import mdl

from mdl.errors import ExitCode
from mdl.transfer.http import ANSWERED_RETRIES, RetryPolicy


@pytest.mark.parametrize("shape", ["many", "one"])
def test_reply_headers_past_the_bound_are_a_servers_answer_named_in_words(
    started: list[ScriptedServer], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shape: str
) -> None:
    clock = FakeClock()  # the tries' waits take no real time
    virtual = partial(RetryPolicy, clock=clock, sleep=clock.sleep, virtual=True, rng=lambda: 0.5)
    monkeypatch.setattr("mdl.download.session.RetryPolicy", virtual)
    junk = (
        {f"X-Junk-{i}": "a" * 50 for i in range(4000)}
        if shape == "many"
        else {"X-Big": "a" * 300_000}
    )

    def policy(index: int, seen: Seen, server: ScriptedServer) -> Answer:
        return Answer(200, junk, b"0123456789", close=True)

    server = ScriptedServer({"/f.bin": [Phase(b"0123456789")]}, policy=policy).start()
    started.append(server)
    url = server.url + "/f.bin"
    result = mdl("get", url, "-o", str(tmp_path / "f.bin"), "--no-progress")
    assert result.exit_code == ExitCode.NETWORK, result.stderr
    assert len(server.seen()) == 1 + ANSWERED_RETRIES
    error = next(line for line in result.stderr.splitlines() if "mdl: error:" in line)
    assert error.endswith(
        f"mdl: error: f.bin: the server's reply headers exceed 100 KiB ({url})"
        f" (gave up after {1 + ANSWERED_RETRIES} tries)"
    ), result.stderr
    assert "buffer" not in result.stderr
