"""What the run says of its waits on the Hub (issue 59 H): one short line for each refusal's wait,
for every display (``note``), and a total in the log whose count and seconds agree -- a refusal's
hold and the spacing of requests when few remain are each said for what they are. On a fake
clock."""

from __future__ import annotations

import logging

import pytest
from clocks import FakeClock

from mdl.transfer.ratelimit import HubGate

HUB = "http://127.0.0.1:9"
POLICY = '"fixed window";"resolvers";q=1000;w=300'


def gate_on_fake_clock(said: list[str], **kwargs: object) -> HubGate:
    clock = FakeClock()

    def sleep(seconds: float) -> bool:
        clock.now += seconds
        return False

    return HubGate(HUB, clock=clock, wait=sleep, note=said.append, **kwargs)  # type: ignore[arg-type]


def totals(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage() for r in caplog.records if "in all on the Hub's rate limits" in r.message
    ]


def test_a_refusal_is_one_short_line_naming_the_wait_and_the_policy() -> None:
    said: list[str] = []
    gate = gate_on_fake_clock(said)
    gate.observe(429, {"RateLimit": '"resolvers";r=0;t=87', "RateLimit-Policy": POLICY})
    gate.observe(429, {"RateLimit": '"resolvers";r=0;t=86'})  # another connection's: joined
    gate.enter()
    gate.observe(429, {"Retry-After": "0"})  # held the least, named by its status
    gate.enter()
    assert said == [
        "mdl: waiting 87 s: the Hub's rate limit (resolvers)",
        "mdl: waiting 1 s: the Hub's rate limit (HTTP 429)",
    ]


def test_the_total_of_pacing_alone_counts_no_refusal(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="mdl.http")
    gate = gate_on_fake_clock([], few=4)
    # 3 of 1000 left for 40 s: the next requests are spaced 10 s apart, never refused
    gate.observe(200, {"RateLimit": '"r";r=3;t=40', "RateLimit-Policy": '"r";q=1000;w=300'})
    for _ in range(3):
        gate.enter()
    gate.log_total()
    assert totals(caplog) == [
        "the run waited 30 s in all on the Hub's rate limits (requests spaced out: 30 s)"
    ]


def test_the_total_says_the_refusals_and_the_pacing_apart(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="mdl.http")
    gate = gate_on_fake_clock([], few=4)
    gate.observe(429, {"RateLimit": '"r";r=0;t=20'})
    gate.enter()
    gate.observe(503, {"RateLimit": '"r";r=0;t=2'})
    gate.enter()
    gate.observe(200, {"RateLimit": '"r";r=3;t=40', "RateLimit-Policy": '"r";q=1000;w=300'})
    for _ in range(3):
        gate.enter()
    gate.log_total()
    assert gate.waited == pytest.approx(52.0)
    assert totals(caplog) == [
        "the run waited 52 s in all on the Hub's rate limits (2 refusals: 22 s;"
        " requests spaced out: 30 s)"
    ]
