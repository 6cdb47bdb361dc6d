"""Where a file's streams fetch, as a table of transitions without HTTP: each row is a state of the
file's ``Target`` (reached by the events a stream sends it), one event, and the state it leaves
with what the stream was told. The end-to-end behaviour (one ask per file, one more per expiry,
a fresh target's refusal final) is tests/transfer/test_resolve_once.py's."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from runfixtures import transfer_job

from mdl.errors import NetworkError
from mdl.transfer._target import Resolve, Target

HUB = "https://hub.test/org/m/resolve/main/f.bin"  # the resolve URL
HOP = "https://hub.test/api/resolve-cache/f.bin"  # a redirect within the Hub: not the target yet
CDN = "https://cdn.test/blobs/f?gen=1"
CDN2 = "https://cdn.test/blobs/f?gen=2"
LAPSED = "https://cdn.test/blobs/f?gen=3&Expires=1"  # its query says it expired in 1970
PROBED = "https://files.test/f.bin"  # a direct file's final URL, found by this run's probe
FAILURE = NetworkError("the Hub said 503")

State = tuple[Target, Resolve | None]


def hub(tmp_path: Path) -> State:
    target = Target(transfer_job(tmp_path, HUB, b"x", renewable=True))
    target.start(HUB, shared=True)
    return target, None


def asked(state: State) -> State:
    target, _ = state
    _, ask, mine = target.aim(None)
    assert mine
    return target, ask


def sent(url: str, state: State) -> State:
    target, ask = state
    assert ask is not None
    target.reached(ask, url, final=False)
    return target, ask


def refused(state: State) -> State:
    target, ask = state
    assert target.relocate(target.url, probed=False, locate=unused)
    return target, ask


def failed(state: State) -> State:
    target, ask = state
    target.unanswered(ask, FAILURE)
    return target, ask


def unused() -> str:
    raise AssertionError("a Hub file's target is never located")


def steps(*each: Callable[[State], State]) -> Callable[[Path], State]:
    def reach(tmp_path: Path) -> State:
        state = hub(tmp_path)
        for step in each:
            state = step(state)
        return state

    return reach


STATES: dict[str, Callable[[Path], State]] = {
    "unasked": hub,
    "asking": steps(asked),
    "failed": steps(asked, failed),
    "known": steps(asked, lambda s: sent(CDN, s)),
    "known, lapsed": steps(asked, lambda s: sent(LAPSED, s)),
    "expired": steps(asked, lambda s: sent(CDN, s), refused),
    "renewing": steps(asked, lambda s: sent(CDN, s), refused, asked),
    "renewed": steps(asked, lambda s: sent(CDN, s), refused, asked, lambda s: sent(CDN2, s)),
    # the fresh target says it expired too: this clock is ahead, no query is believed after it
    "undated": steps(asked, lambda s: sent(CDN, s), refused, asked, lambda s: sent(LAPSED, s)),
}


def told_by_aim(target: Target, failed: Resolve | None, ask: Resolve | None) -> str:
    url, got, mine = target.aim(failed)
    if got is None:
        return f"go {url}"
    assert got is not ask or not mine, "asked again with an ask already made"
    return "ask" if mine else "wait"


EVENTS: dict[str, Callable[[Target, Resolve | None], object]] = {
    "aim": lambda t, a: told_by_aim(t, None, a),
    # the stream that raised the ask's failure aims again
    "aim after its failure": lambda t, a: told_by_aim(t, a, a),
    "redirected within the Hub": lambda t, a: t.reached(a, HOP, final=False) if a else None,
    "redirected to the CDN": lambda t, a: t.reached(a, CDN2, final=False) if a else None,
    "answered by the Hub itself": lambda t, a: t.reached(a, HUB, final=True) if a else None,
    "a further hop answered": lambda t, a: t.reached(a, CDN2, final=True) if a else None,
    "ask failed": lambda t, a: t.unanswered(a, FAILURE),
    "ask ended": lambda t, a: t.unanswered(a, None),
    "range answered": lambda t, a: t.answered(t.url, t.url),
    "refused as expired": lambda t, a: t.relocate(t.url, probed=False, locate=unused),
    "an old target refused": lambda t, a: t.relocate(CDN, probed=False, locate=unused),
}

# state, event -> phase after, url after, what the stream was told
ROWS = [
    ("unasked", "aim", "ASKING", HUB, "ask"),
    ("asking", "aim", "ASKING", HUB, "wait"),
    ("asking", "redirected within the Hub", "ASKING", HUB, None),
    ("asking", "redirected to the CDN", "KNOWN", CDN2, None),
    ("asking", "answered by the Hub itself", "KNOWN", HUB, None),
    ("asking", "ask failed", "UNASKED", HUB, None),
    ("asking", "ask ended", "UNASKED", HUB, None),
    ("asking", "refused as expired", "EXPIRED", HUB, True),
    ("failed", "aim", "UNASKED", HUB, "wait"),
    ("failed", "aim after its failure", "ASKING", HUB, "ask"),
    ("failed", "ask ended", "UNASKED", HUB, None),
    ("known", "aim", "KNOWN", CDN, f"go {CDN}"),
    ("known", "a further hop answered", "KNOWN", CDN2, None),
    ("known", "redirected to the CDN", "KNOWN", CDN, None),
    ("known", "range answered", "KNOWN", CDN, None),
    ("known", "refused as expired", "EXPIRED", HUB, True),
    ("known, lapsed", "aim", "RENEWING", HUB, "ask"),
    ("known, lapsed", "refused as expired", "EXPIRED", HUB, True),
    ("expired", "aim", "RENEWING", HUB, "ask"),
    ("expired", "an old target refused", "EXPIRED", HUB, True),
    ("renewing", "aim", "RENEWING", HUB, "wait"),
    ("renewing", "redirected to the CDN", "RENEWED", CDN2, None),
    ("renewing", "ask failed", "EXPIRED", HUB, None),
    ("renewing", "ask ended", "EXPIRED", HUB, None),
    ("renewed", "aim", "RENEWED", CDN2, f"go {CDN2}"),
    ("renewed", "a further hop answered", "RENEWED", CDN2, None),
    ("renewed", "range answered", "KNOWN", CDN2, None),
    ("renewed", "refused as expired", "RENEWED", CDN2, False),
    ("undated", "aim", "RENEWED", LAPSED, f"go {LAPSED}"),
    ("undated", "range answered", "KNOWN", LAPSED, None),
]


@pytest.mark.parametrize(("state", "event", "phase", "url", "told"), ROWS)
def test_a_shared_target_moves_as_the_table_says(
    tmp_path: Path, state: str, event: str, phase: str, url: str, told: object
) -> None:
    target, ask = STATES[state](tmp_path)
    assert EVENTS[event](target, ask) == told
    assert (target.phase.name, target.url) == (phase, url)


def test_every_state_and_event_is_in_the_table() -> None:
    assert {row[0] for row in ROWS} == set(STATES)
    assert {row[1] for row in ROWS} == set(EVENTS)


def test_an_undated_target_stays_undated_and_its_query_is_not_believed(tmp_path: Path) -> None:
    target, _ = STATES["undated"](tmp_path)
    target.answered(LAPSED, LAPSED)
    assert not target.dated
    assert target.aim(None) == (LAPSED, None, False)
    dated, _ = STATES["known, lapsed"](tmp_path)
    assert dated.dated


def test_the_streams_waiting_for_a_failed_ask_are_woken_with_its_error(tmp_path: Path) -> None:
    target, ask = STATES["asking"](tmp_path)
    assert ask is not None
    _, waited, mine = target.aim(None)
    assert waited is ask and not mine and not ask.is_set()
    target.unanswered(ask, FAILURE)
    assert ask.is_set() and ask.error is FAILURE
    # ended once: a later word on it changes nothing
    target.unanswered(ask, None)
    target.reached(ask, CDN, final=False)
    assert (ask.error, target.phase.name, target.url) == (FAILURE, "UNASKED", HUB)


def test_a_direct_files_target_follows_its_redirect_and_is_located_again_once(
    tmp_path: Path,
) -> None:
    target = Target(transfer_job(tmp_path, HUB, b"x"))
    target.start(HUB, shared=False)
    assert target.aim(None) == (HUB, None, False)
    target.answered(HUB, CDN)
    assert target.aim(None) == (CDN, None, False)
    located = Target(transfer_job(tmp_path, HUB, b"x", located=PROBED))
    located.start(PROBED, shared=False)
    asked: list[str] = []

    def locate() -> str:
        asked.append(PROBED)
        return CDN

    assert located.relocate(PROBED, probed=True, locate=locate)
    assert located.url == CDN
    # another stream refused the same URL meanwhile: it goes where the first one located
    assert located.relocate(PROBED, probed=True, locate=locate)
    # the next attempt's streams begin at the probe's URL again: refused, it is not located twice
    located.start(PROBED, shared=False)
    assert not located.relocate(PROBED, probed=True, locate=locate)
    assert asked == [PROBED]


def test_a_direct_hub_file_refused_goes_back_to_the_resolve_url(tmp_path: Path) -> None:
    target = Target(transfer_job(tmp_path, HUB, b"x", renewable=True))
    target.start(HUB, shared=False)
    target.answered(HUB, CDN)
    assert target.relocate(CDN, probed=False, locate=unused)
    assert target.aim(None) == (HUB, None, False)
    assert target.job.retries.causes == ("signed URL refused (HTTP 403), resolved it again",)


def test_the_other_streams_are_answered_while_one_locates_the_probed_url(tmp_path: Path) -> None:
    """Locating a probed URL again is a request: the streams still fetching (each answer and each
    aim takes the target's lock) are not held up by it, and a second refused stream waits for
    where the first one located, never locating twice."""
    located = Target(transfer_job(tmp_path, HUB, b"x", located=PROBED))
    located.start(PROBED, shared=False)
    inside, release = threading.Event(), threading.Event()
    asked: list[str] = []

    def locate() -> str:
        asked.append(PROBED)
        inside.set()
        assert release.wait(30)
        return CDN

    first = threading.Thread(
        target=located.relocate, args=(PROBED,), kwargs={"probed": True, "locate": locate}
    )
    first.start()
    assert inside.wait(30)
    # meanwhile another stream's range is answered and it aims again, at once
    assert located.lock.acquire(timeout=5)
    located.lock.release()
    located.answered(PROBED, PROBED)
    assert located.aim(None) == (PROBED, None, False)
    second: list[bool] = []
    waiting = threading.Thread(
        target=lambda: second.append(located.relocate(PROBED, probed=True, locate=locate))
    )
    waiting.start()
    release.set()
    first.join(30)
    waiting.join(30)
    assert second == [True] and located.url == CDN and asked == [PROBED]
