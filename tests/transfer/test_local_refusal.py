"""A request the HTTP library refuses to send (issue 50, D) is bad input said at once: never
retried, never called an error from a server, and its words (h11 quotes the header value) never
shown. A real loopback server sees nothing."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from servers import CdnServer, make_data

from mdl.catalog.headers import header_value_problem
from mdl.errors import ExitCode, UsageError
from mdl.transfer.http import Credentials, RetryPolicy, follow, make_client


@pytest.mark.parametrize("value", [" s3cr3t-v", "s3cr3t-v ", "s3cr3t-v\t"])
def test_a_header_the_library_refuses_is_exit_2_not_retried_and_nothing_is_sent(
    cdn: CdnServer, value: str
) -> None:
    url = cdn.add_file("/a.bin", make_data(100, seed=1))
    tries: list[int] = []

    def ask() -> None:
        tries.append(1)
        with (
            make_client(timeout=5, pool_size=2) as client,
            follow(client, url, credentials=Credentials(), headers={"X-Key": value}, what="a"),
        ):
            pass

    with pytest.raises(UsageError) as info:
        RetryPolicy(retries=3, sleep=lambda _: None).run(ask, what="a")
    assert info.value.exit_code == ExitCode.USAGE
    assert "nothing was sent" in info.value.message and "error from" not in info.value.message
    assert "s3cr3t" not in info.value.message
    assert tries == [1], "not retried"
    assert not cdn.log.records()


@given(st.text(alphabet=st.characters(codec="latin-1"), max_size=8))
def test_a_value_the_header_rule_accepts_is_one_the_library_sends(value: str) -> None:
    """The rule checked where a header is given (catalog, -H, the API, the variables) is the HTTP
    library's own: any value it accepts, the library builds into a request line without refusing it.
    """
    if header_value_problem(value) is not None or not value:
        return
    import h11

    h11.Request(method="GET", target="/", headers=[("Host", "h"), ("X-Key", value.encode("ascii"))])


def test_the_rule_refuses_what_the_library_refuses() -> None:
    import h11

    for value in (" v", "v ", "\tv", "v\t", "a\r\nb", "a\x00b"):
        assert header_value_problem(value) is not None
        with pytest.raises(h11.LocalProtocolError):
            h11.Request(
                method="GET", target="/", headers=[("Host", "h"), ("X-Key", value.encode("ascii"))]
            )
