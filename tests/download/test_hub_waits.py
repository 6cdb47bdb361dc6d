"""The Hub's rate limits end to end, against the loopback Hub: a 429 or 503 whose RateLimit header
says "wait t" holds every Hub request of the run until then (one gate, shared), costs no try, and a
wait past the maximum fails the file at once (exit 5) naming it; Retry-After keeps working; the
report says how long the run waited. Real waits here are 1-1.5 s; assertions are request counts,
their order and lower bounds, never how fast the machine is."""

from __future__ import annotations

import json
import socket
import threading
import time
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from hostile import RawServer
from runfixtures import HANG, mdl, use_catalog, wait_for
from servers import Fault, HubServer, make_data

from mdl.catalog.load import parse_catalog
from mdl.catalog.settings import Settings, build_settings
from mdl.download.puller import PullSession, pull_models
from mdl.errors import InterruptedByUserError
from mdl.progress import NullProgress
from mdl.setting import Overrides

WEIGHTS = make_data(120_000, seed=7)
CONFIG = b'{"model_type": "bert"}\n'
RESOLVE = "/org/tiny/resolve/"
CATALOG = '[models.tiny]\nrepo = "org/tiny"\n'
POLICY = '"fixed window";"resolvers";q=1000;w=300'


def rate_limited(wait: int, *, status: int = 429, times: int | None = 1, **match: Any) -> Fault:
    """The Hub's refusal as it sends it: RateLimit and RateLimit-Policy, no Retry-After."""
    headers = {"RateLimit": f'"resolvers";r=0;t={wait}', "RateLimit-Policy": POLICY}
    body = b"You have exceeded our rate limit for resolvers"
    return Fault("status", status=status, body=body, headers=headers, times=times, **match)


@pytest.fixture
def tiny(hub: HubServer) -> HubServer:
    hub.add_repo("org/tiny", {"config.json": CONFIG, "model.safetensors": WEIGHTS})
    return hub


def settings_for(hub: HubServer, dest: Path, retries: int = 5, **flags: Any) -> Settings:
    environ = {"HF_ENDPOINT": hub.url, "MDL_RETRIES": str(retries)}
    return build_settings(Overrides(**flags), environ=environ, dest=dest)


def refusals(hub: HubServer) -> list[Any]:
    return [r for r in hub.log.records() if r.status in (429, 503)]


@pytest.mark.slow
@pytest.mark.parametrize("status", [429, 503])
def test_a_pull_waits_out_the_rate_limit_without_spending_a_try(
    tiny: HubServer, tmp_path: Path, status: int
) -> None:
    """Two refusals with "wait 1 s" and no retries allowed at all: the pull still succeeds."""
    tiny.faults.add(rate_limited(1, status=status, times=2, path_prefix=RESOLVE))
    settings = settings_for(tiny, tmp_path / "models", retries=0, jobs=2)
    report = pull_models(parse_catalog(CATALOG).models, settings, progress=NullProgress())
    assert report.ok, [f.error for f in report.files]
    assert {f.path: f.action for f in report.files} == {
        "config.json": "downloaded",
        "model.safetensors": "downloaded",
    }
    assert all(f.retries == () for f in report.files)  # no failed try counted
    assert len(refusals(tiny)) == 2
    assert report.hub_wait_seconds is not None and report.hub_wait_seconds >= 1.0
    assert report.to_json()["hub_wait_seconds"] == report.hub_wait_seconds
    assert (tmp_path / "models" / "tiny" / "model.safetensors").read_bytes() == WEIGHTS


@pytest.mark.slow
def test_the_listing_waits_on_the_same_gate(tiny: HubServer, tmp_path: Path) -> None:
    tiny.faults.add(rate_limited(1, path_prefix="/api/"))
    settings = settings_for(tiny, tmp_path / "models", retries=0)
    report = pull_models(parse_catalog(CATALOG).models, settings, progress=NullProgress())
    assert report.ok, [f.error for f in report.files]
    (refused,) = refusals(tiny)
    after = [r for r in tiny.log.records() if r.time > refused.time]
    assert after and all(r.time >= refused.time + 1.0 - 0.05 for r in after)


@pytest.mark.slow
def test_connections_share_one_wait(tiny: HubServer, tmp_path: Path) -> None:
    """One connection refused for 1.5 s: a second one that asks the Hub meanwhile (another path,
    never refused itself) waits too, so the Hub sees nothing until the window is over."""
    tiny.faults.add(rate_limited(2, path_prefix=RESOLVE))
    session = PullSession(settings_for(tiny, tmp_path / "models"), progress=NullProgress())
    hub = session.hub
    assert hub is not None
    answers: dict[str, object] = {}

    def first() -> None:
        answers["meta"] = hub.file_metadata(
            "org/tiny", "config.json", repo_type="model", revision="main", what="one"
        )

    try:
        one = threading.Thread(target=first)
        one.start()
        wait_for(lambda: session.owned.gate.waits == 1, what="the gate closed by the refusal")
        commit = hub.commit_of("org/tiny", repo_type="model", revision="main", what="two")
        one.join(HANG)
    finally:
        session.owned.close()
    assert commit == tiny.repo("org/tiny").sha and "meta" in answers
    (refused,) = refusals(tiny)
    later = [r for r in tiny.log.records() if r.time > refused.time]
    # the retry (a first byte's GET) and the other connection's
    assert {(r.method, r.range) for r in later} == {("GET", "bytes=0-0"), ("GET", None)}
    assert all(r.time >= refused.time + 2.0 - 0.05 for r in later)
    assert session.owned.hub_wait_seconds >= 2.0


def test_a_wait_past_the_maximum_is_exit_5_at_once(
    tiny: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_catalog(tmp_path, monkeypatch, CATALOG, endpoint=tiny.url)
    tiny.faults.add(rate_limited(900, times=None, path_prefix=RESOLVE))
    started = time.monotonic()
    result = mdl("pull", "tiny", "--json", "--no-progress")
    assert time.monotonic() - started < HANG  # a safety net, not a measure of speed
    assert result.exit_code == 5, result.stderr
    doc = json.loads(result.stdout)
    errors = [f["error"] for f in doc["files"]]
    assert errors and all(
        "the Hub asks to wait 900 s; mdl waits at most 600 s" in (e or "") for e in errors
    )
    # each file asked once: no retry, no wait
    asked = [r for r in tiny.log.records() if RESOLVE in r.path]
    assert len(asked) == len(refusals(tiny)) == len(errors)


@pytest.mark.slow
def test_json_and_log_say_how_long_the_run_waited(
    tiny: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_catalog(tmp_path, monkeypatch, CATALOG, endpoint=tiny.url)
    tiny.faults.add(rate_limited(1, status=503, path_prefix=RESOLVE))
    result = mdl("pull", "tiny", "--json", "--no-progress")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["hub_wait_seconds"] >= 1.0
    log = (tmp_path / "mdl.log").read_text()
    assert "the Hub answered HTTP 503 and asks to wait 1 s (RateLimit)" in log
    assert "waited 1" in log and "in all on the Hub's rate limits" in log
    # a run that never waited says 0
    again = mdl("get", "hf://org/tiny", "-d", str(tmp_path / "copy"), "--json", "--no-progress")
    assert again.exit_code == 0, again.stderr
    assert json.loads(again.stdout)["hub_wait_seconds"] == 0.0


@pytest.mark.slow
def test_retry_after_still_works_and_feeds_the_gate(tiny: HubServer, tmp_path: Path) -> None:
    tiny.faults.add(Fault.http_error(429, retry_after=1, path_prefix=RESOLVE))
    settings = settings_for(tiny, tmp_path / "models", jobs=1)
    report = pull_models(parse_catalog(CATALOG).models, settings, progress=NullProgress())
    assert report.ok, [f.error for f in report.files]
    # as before: a try spent, the wait honoured
    assert sum(len(f.retries) for f in report.files) == 1
    (refused,) = refusals(tiny)
    later = [r for r in tiny.log.records() if r.time > refused.time]
    assert later and all(r.time >= refused.time + 1.0 - 0.05 for r in later)
    assert report.hub_wait_seconds is not None and report.hub_wait_seconds >= 1.0


def test_ctrl_c_ends_the_wait_at_once(tiny: HubServer, tmp_path: Path) -> None:
    """A stated wait of almost the maximum: Ctrl-C (the session's abort) ends every wait on it."""
    tiny.faults.add(rate_limited(599, path_prefix=RESOLVE))
    session = PullSession(settings_for(tiny, tmp_path / "models"), progress=NullProgress())
    hub = session.hub
    assert hub is not None
    ended: dict[str, BaseException] = {}

    def ask(what: str) -> None:
        try:
            if what == "refused":
                hub.file_metadata(
                    "org/tiny", "config.json", repo_type="model", revision="main", what=what
                )
            else:
                hub.commit_of("org/tiny", repo_type="model", revision="main", what=what)
        except BaseException as exc:  # kept for the assertion below
            ended[what] = exc

    threads = [threading.Thread(target=ask, args=("refused",))]
    try:
        threads[0].start()
        wait_for(lambda: session.owned.gate.waits == 1, what="the gate closed by the refusal")
        threads.append(threading.Thread(target=ask, args=("waiting",)))
        threads[1].start()
        session.owned.abort()
        for thread in threads:
            thread.join(HANG)
    finally:
        session.owned.close()
    assert {what: type(exc) for what, exc in ended.items()} == {
        "refused": InterruptedByUserError,
        "waiting": InterruptedByUserError,
    }
    assert len(tiny.log.records()) == 1  # the refusal alone: nothing asked while closed


class CountingHub(RawServer):
    """A Hub that answers every request 200 with ``RateLimit: "api";r={remaining};t=2`` and notes
    when each arrived (on this process's monotonic clock, the gate's)."""

    def __init__(self, remaining: int) -> None:
        super().__init__()
        self.remaining = remaining
        self.arrivals: list[float] = []

    def answer(self, conn: socket.socket) -> None:
        with conn:
            while self.read_head(conn) is not None:
                self.arrivals.append(time.monotonic())
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n"
                    + f'RateLimit: "api";r={self.remaining};t=2\r\n\r\n'.encode()
                    + b"{}"
                )


@pytest.mark.slow
@pytest.mark.parametrize(("remaining", "paced"), [(1, True), (500, False)])
def test_few_requests_left_slow_the_run_down(tmp_path: Path, remaining: int, paced: bool) -> None:
    """1 request left for 2 s: the next one waits a 1 s slot; plenty left: none waits."""
    with CountingHub(remaining) as raw:
        environ = {"HF_ENDPOINT": raw.url}
        settings = build_settings(Overrides(), environ=environ, dest=tmp_path / "models")
        with closing(PullSession(settings, progress=NullProgress())) as session:
            for _ in range(2):
                assert session.owned.client.get(f"{raw.url}/api/models/org/tiny").status_code == 200
            waited = session.owned.hub_wait_seconds
    first, second = raw.arrivals
    if paced:
        assert second - first >= 1.0 and waited >= 1.0
    else:
        assert waited == 0.0
