"""``mdl get -H 'Name: value'`` lines are untrusted input: whatever the text, a header that may be
sent or a one-line exit-2 error naming it, never showing its value; and the catalog's ``headers``
obey the same rule."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mdl.catalog.headers import HEADER_NAME_RE, MANAGED_HEADERS, check_headers, parse_header
from mdl.errors import ExitCode, UsageError
from mdl.redact import Secrets, safe_text

TOKEN_CHARS = "!#$%&'*+.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-"
NAMES = st.text(alphabet=TOKEN_CHARS, min_size=1, max_size=20).filter(
    lambda n: n.lower() not in MANAGED_HEADERS
)
# Printable ASCII (and tabs) with no blank at either end: what a value is once its OWS is dropped.
VALUES = (
    st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=60)
    .map(str.strip)
    .filter(bool)
)
LINES = st.one_of(
    st.text(max_size=40),
    st.builds(
        lambda n, sep, v: f"{n}{sep}{v}",
        st.text(max_size=12),
        st.sampled_from([":", ": ", " : ", ":\t"]),
        st.text(max_size=30),
    ),
)


@given(LINES)
def test_any_line_is_a_sendable_header_or_a_usage_error(line: str) -> None:
    try:
        name, value = parse_header(line)
    except UsageError as exc:
        assert exc.exit_code == ExitCode.USAGE
        assert "\n" not in exc.message and "\r" not in exc.message
        assert exc.message.startswith("--header")
        return
    assert re.fullmatch(HEADER_NAME_RE, name)
    assert name.lower() not in MANAGED_HEADERS
    assert value and value == value.strip(" \t")
    assert value.isascii()
    assert not re.search(r"[\x00-\x08\x0a-\x1f\x7f]", value), (
        "no CR, LF or other control character goes out"
    )


@given(NAMES, VALUES, st.sampled_from(["", " ", "  ", "\t"]))
def test_a_well_formed_line_reads_back_as_written(name: str, value: str, blanks: str) -> None:
    assert parse_header(f"{name}:{blanks}{value}{blanks}") == (name, value)


@given(NAMES, st.text(min_size=8, max_size=30).filter(lambda v: not v.isascii() or "\n" in v))
def test_a_refused_value_is_never_shown(name: str, value: str) -> None:
    secret = f"S3cr3t{value}"
    with pytest.raises(UsageError) as caught:
        parse_header(f"{name}: {secret}")
    assert secret.strip() not in str(caught.value.message)
    assert name in caught.value.message


def test_credential_values_are_registered_as_secrets() -> None:
    secrets = Secrets()
    check_headers(
        [
            ("Authorization", "Bearer tok-0123456789"),
            ("X-Api-Key", "k3y-abcdefgh"),
            ("X-Trace", "t-0123456789"),
        ],
        where="header",
        secrets=secrets,
    )
    assert "Bearer tok-0123456789" in secrets.known()
    assert "k3y-abcdefgh" in secrets.known()
    assert "t-0123456789" not in secrets.known(), (
        "a header that is no credential stays readable, as in the catalog"
    )
    assert "tok-0123456789" not in safe_text("the server said tok-0123456789", secrets=secrets)


@pytest.mark.parametrize("name", ["Range", "if-range", "Accept-Encoding", "Host"])
def test_headers_mdl_sets_itself_are_refused_in_the_catalog_too(name: str) -> None:
    from mdl.catalog.load import parse_catalog

    text = f'[models.m]\nfiles = [{{ url = "https://h/x", headers = {{ "{name}" = "v" }} }}]\n'
    with pytest.raises(UsageError, match="is a header mdl sets itself"):
        parse_catalog(text, source="c.toml")
