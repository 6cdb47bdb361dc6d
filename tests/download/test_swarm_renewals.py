"""A swarm's claim is renewed as often as its body says (every 3 s), and a reader judges it dead
only once two renewals were missed and a third is late (9 s), by its own clock: a slow renewal
or another machine's clock (a shared folder's mtime, an S3 store's date) never gets a live claim
taken over. Judged on a ``FakeClock``, each claim as a look found it (its age said, not waited
for); the bodies through a real shared folder."""

from __future__ import annotations

import itertools
import json
import tempfile
from dataclasses import replace
from pathlib import Path

import pytest
from clocks import FakeClock
from download.test_swarm_hostile import FORGER
from download.test_swarm_liveness import Parts, on_clock
from hypothesis import example, given, settings
from hypothesis import strategies as st

from mdl import partsize
from mdl.buckets.lease import TERM, Look, Renewing, lease_body, look, read_generation
from mdl.buckets.registry import STORES
from mdl.download._claims import SLACK, Claims, silence
from mdl.download._swarm import RENEW_EVERY

MiB = 1 << 20
OLDER = 20.0  # seconds: a claim whose body says no period, an older mdl's, judged dead after
SAID = 9.0  # seconds: one renewed every 3 s (two renewals missed, a third late)


@pytest.fixture
def small(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(partsize, "PART", MiB)


def claim(age: float = 0.0, every: float | None = RENEW_EVERY) -> Look:
    """A live claim as one look found it: last written ``age`` seconds ago by the store's clock."""
    return Look(1, "live", "d:1:x", FORGER, "file:///m/claim/1", "v1", age, every)


def test_a_claim_renewed_every_3_s_is_held_while_two_renewals_fail() -> None:
    """Finding 2: a holder's renewal is several requests, and one that is slow pushes the next
    back a period; two may fail (or be late) and the claim is still held; past three periods of
    silence it is taken over. A renewal seen starts its silence again."""
    assert (silence(TERM), silence(TERM, RENEW_EVERY)) == (OLDER, SAID)
    clock = FakeClock()
    claims = Claims(TERM, clock)
    assert not claims.over(0, claim())
    clock.now += 2 * RENEW_EVERY + SLACK  # two renewals failed, the third late
    assert not claims.over(0, claim()), "a live claim taken over with two renewals late"
    assert claims.due({0}) == set()
    assert not claims.over(0, replace(claim(), etag="v2"))  # renewed: held again from now
    clock.now += SAID - 0.5
    assert claims.due({0}) == set()
    clock.now += 1
    assert claims.due({0}) == {0} and claims.over(0, replace(claim(), etag="v2"))


@pytest.mark.parametrize("age", [0.0, 5.0, 12.0, OLDER])
def test_the_stores_clock_backdates_a_claim_by_a_period_at_most(age: float) -> None:
    """Finding 1: the store's age of a claim mixes another machine's clock (a shared folder's
    mtime set by the writer, an S3 store without a Date): it backdates a claim said renewed every
    3 s by that period at most, so a live claim skewed by seconds is held at the first look and
    taken over only once this machine saw it silent for the rest."""
    clock = FakeClock()
    claims = Claims(TERM, clock)
    assert not claims.over(0, claim(age)), f"a claim {age} s old by the store's clock taken over"
    clock.now += SAID - min(age, RENEW_EVERY) - 0.5
    assert claims.due({0}) == set()
    clock.now += 1
    assert claims.due({0}) == {0}


@pytest.mark.parametrize("every", [RENEW_EVERY, None])
def test_a_claim_older_than_an_older_bodys_silence_is_taken_over_at_the_first_look(
    every: float | None,
) -> None:
    """A dead machine's claim first seen long after its last write (past 20 s by the store's
    clock) is taken over at once, whatever its body says."""
    assert Claims(TERM, FakeClock()).over(0, claim(OLDER + 1, every))


def test_a_claim_is_renewed_at_least_as_often_as_its_body_says(tmp_path: Path, small: None) -> None:
    """Finding 3: one claim made as the first generation (``_first``), one taken over (``take``,
    a released claim there): each says in its body how often it is renewed, and its holder's
    renewals (``Renewing``) come at least that often, a renewal's slack inside the silence its
    readers judge it by, as made and after a renewal."""
    writer = STORES["file"].writer(endpoint=None, secrets=None)
    parts = Parts((writer, f"file://{tmp_path}/mirror/"), tmp_path)
    assert writer.create(parts.claim(1).uri, lease_body("d:1:x", FORGER, released=True))
    machine = on_clock(parts, "a", FakeClock())
    for index in (0, 1):  # no claim there (``_first``), a released one (``take``)
        lease, published = machine._take(index)
        assert lease is not None and not published and lease.number == index + 1
        for _ in range(2):  # as made, and after a renewal
            said = look(writer, parts.claim(index)).every
            assert said == RENEW_EVERY, "the body does not say how often it is renewed"
            every = Renewing(lease).every
            assert every <= said and every + SLACK <= silence(TERM, said), (every, said)
            lease.renew()
        lease.release()


@pytest.mark.parametrize(
    ("said", "every", "judged"),
    [
        (True, None, OLDER),
        (0, None, OLDER),
        (-1, None, OLDER),
        ("3", None, OLDER),
        (1e308, None, OLDER),
        (float("nan"), None, OLDER),
        (TERM, None, OLDER),
        (29.9, 29.9, OLDER),  # more seldom than a third of a term: judged as an older body
        (RENEW_EVERY, RENEW_EVERY, SAID),
    ],
)
def test_a_bodys_renewal_period_is_a_number_of_seconds_under_a_term(
    tmp_path: Path, said: object, every: float | None, judged: float
) -> None:
    """Finding 4: what a body says of its renewals counts only as a number of seconds above
    0 and under a term, never a boolean (``true`` is no 1 s); a claim is never judged dead
    sooner than three of its periods, nor later than an older body's silence."""
    writer = STORES["file"].writer(endpoint=None, secrets=None)
    uri = f"file://{tmp_path}/claim/1"
    body = {"holder": "d:1:x", "token": FORGER, "n": "0", "every": said}
    assert writer.create(uri, json.dumps(body).encode()) is not None
    found = read_generation(writer, uri, 1, term=TERM)
    assert found.state == "live" and found.every == every
    assert silence(TERM, found.every) == judged


BODY_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=5,
)


@settings(max_examples=60, deadline=None)
@given(said=BODY_VALUES)
@example(said=9.9)  # (held 29.7 s before: three periods, past an older body's 20 s)
def test_whatever_a_body_says_of_its_renewals_its_claim_is_judged_dead_no_later(
    said: object,
) -> None:
    """A co-tenant writes the body: whatever its ``every`` holds (any JSON value), a claim is
    judged dead after a period and the slack at least and never later than an older body's
    (20 s): what a body says only ever makes its own claim die sooner."""
    body = {"holder": "d:1:x", "token": FORGER, "n": "0", "every": said}
    with tempfile.TemporaryDirectory() as folder:
        writer = STORES["file"].writer(endpoint=None, secrets=None)
        uri = f"file://{folder}/claim/{next(_NUMBERS)}"
        assert writer.create(uri, json.dumps(body).encode()) is not None
        found = read_generation(writer, uri, 1, term=TERM)
    assert found.every is None or (type(found.every) is float and 0 < found.every < TERM)
    assert SLACK <= silence(TERM, found.every) <= silence(TERM) == OLDER


_NUMBERS = itertools.count(1)
