"""Another tenant of a shared bucket writes anything under an object's leases (moto): every case
ends as documented within a bound, and one machine at most holds the lease after."""

from __future__ import annotations

import json

import pytest
from s3server import S3, aws_environ, s3, s3_server  # noqa: F401

from mdl.buckets._s3write import S3Writer
from mdl.buckets.lease import TERM, GaveUp, lease_body, look, take, wait_for
from mdl.buckets.names import Generation
from mdl.wait import Wait

PREFIX = "s3://mirror/.mdl/leases/t/w.bin/"
OBJECT = "s3://mirror/t/w.bin"
LEASE = Generation.of("s3://mirror/.mdl/", OBJECT)
# key under the object's leases, its body, what a look says
CASES = {
    "a number past 30 digits is no generation": ("9" * 31, lease_body("x"), "none"),
    "30 nines is no generation": ("9" * 30, b"9", "none"),
    "past the last number is no generation": ("100", lease_body("x"), "none"),
    "a leading zero is no generation": ("01", lease_body("x"), "none"),
    "a negative name is none": ("-1", lease_body("x"), "none"),
    "a folder marker is none": ("1/", b"", "none"),
    "a key below a number is none": ("1/x", lease_body("x"), "none"),
    "done as a float": ("1", json.dumps({"holder": "x", "done": 1e308}).encode(), "live"),
    "done as a huge int": ("1", b'{"holder": "x", "done": 1' + b"0" * 4000 + b"}", "foreign"),
    "done as a bool": ("1", json.dumps({"holder": "x", "done": True}).encode(), "live"),
    "deep JSON": ("1", b"[" * 4000, "foreign"),
    "a body past the limit": ("1", b"{" + b" " * 5000 + b"}", "foreign"),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(CASES))
def test_anything_a_tenant_writes_under_a_lease_ends_within_a_bound(s3: S3, case: str) -> None:  # noqa: F811
    key, body, state = CASES[case]
    client = s3.client()
    client.create_bucket(Bucket="mirror")
    client.put_object(Bucket="mirror", Key=PREFIX.removeprefix("s3://mirror/") + key, Body=body)
    writer = S3Writer(s3.endpoint)
    assert look(writer, LEASE).state == state
    clock = iter(range(0, 10_000, 10))  # this machine's clock: 10 s a look, no real wait
    waited = wait_for(
        writer,
        OBJECT,
        LEASE,
        size=100,
        wait=Wait(clock=lambda: float(next(clock))),
        poll=lambda n: 0.0,
    )
    # a live lease claiming no progress is given up on after a few terms; the others are free
    assert isinstance(waited, GaveUp) if state == "live" else waited == "free"
    held = take(writer, LEASE, holder="me")
    assert (held is None) is (state == "live")
    assert take(writer, LEASE, holder="other") is None  # one holder at most
    assert next(clock) <= 4 * TERM + 20
