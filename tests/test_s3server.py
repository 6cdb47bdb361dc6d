"""The S3 the tests run against keeps S3's one promise the swarm's accounting rests on: of
conditional writes to one key at once, one wins (moto checks, then stores: without the fixture's
lock two sends of one part both "made" it in 9 to 11 of 40 pairs tried; 20 pairs caught it in 5
runs of 6)."""

from __future__ import annotations

import threading

import botocore.exceptions
from runfixtures import HANG
from s3server import S3, s3, s3_server  # noqa: F401

PAIRS = 20
BODY = bytes(range(256)) * 4096 * 5  # 5 MiB: a swarm's part on S3


def test_of_two_conditional_writes_to_one_key_at_once_one_wins(s3: S3) -> None:  # noqa: F811
    s3.client().create_bucket(Bucket="atomic")
    clients = [s3.client(), s3.client()]
    won: list[list[bool]] = []
    for n in range(PAIRS):
        both = threading.Barrier(2)
        wins = [False, False]

        def put(i: int, key: str = f"k{n}") -> None:
            both.wait(HANG)
            try:
                clients[i].put_object(Bucket="atomic", Key=key, Body=BODY, IfNoneMatch="*")
                wins[i] = True
            except botocore.exceptions.ClientError:  # 412: the other's is there
                pass

        threads = [threading.Thread(target=put, args=(i,)) for i in (0, 1)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(HANG)
            assert not thread.is_alive(), "a conditional write hung"
        won.append(wins)
    assert all(sum(wins) == 1 for wins in won), won
