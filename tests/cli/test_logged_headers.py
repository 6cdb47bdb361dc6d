"""No spelling of a header flag reaches the log unmasked (issue 50, C): the logged command line
masks what Click parsed as -H values, whatever the spelling (``-qH V``, ``-vHV``, ``--header=V``,
...). The whole CLI runs; the log file is read."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from profiles import examples
from runfixtures import mdl

from mdl.cli.run import logged_argv

SECRET_NAMES = ("X-Api-Key", "Authorization", "Cookie", "Private-Token", "x-auth-token")
ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=+/."
VALUE = st.text(alphabet=ALPHABET, min_size=1, max_size=12)


def spelled(line: str, how: str, bundle: str) -> list[str]:
    """``line`` as one of the spellings Click takes for -H/--header (``bundle``: short switches
    before the H).
    """
    return {
        "separate": [f"-{bundle}H", line],
        "attached": [f"-{bundle}H{line}"],
        "long": ["--header", line],
        "long=": [f"--header={line}"],
    }[how]


def run_logged(tmp_path: Path, argv: list[str]) -> str:
    """``mdl ARGV`` as a process would run it (its sys.argv is what the log reads); the log
    file's text.
    """
    log = tmp_path / f"{uuid.uuid4().hex}.log"
    with mock.patch.object(sys, "argv", ["mdl", *argv]):
        result = mdl(*argv, env={"MDL_LOG_FILE": str(log)})
    # "-o -": refused in the command, after the line is logged
    assert result.exit_code == 2, result.output
    return log.read_text()


@settings(
    max_examples=examples(60),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    name=st.sampled_from(SECRET_NAMES),
    value=VALUE,
    how=st.sampled_from(["separate", "attached", "long", "long="]),
    bundle=st.sampled_from(["", "q", "v", "qv", "vq"]),
    spaces=st.sampled_from(["", " ", "  "]),
    before=st.booleans(),
)
def test_no_spelling_of_a_credential_header_reaches_the_log(
    tmp_path: Path, name: str, value: str, how: str, bundle: str, spaces: str, before: bool
) -> None:
    secret = f"S3cr{value}"
    header = spelled(f"{name}:{spaces}{secret}", how, bundle)
    args = (
        ["get", *header, "http://127.0.0.1:9/w.bin", "-o", "-"]
        if before
        else ["get", "-o", "-", *header]
    )
    text = run_logged(tmp_path, args)
    assert secret not in text
    assert f"{name}: " in text, "the header's name stays: the line says what was sent"


@pytest.mark.parametrize(
    ("argv", "parsed", "shown"),
    [
        (["-qH", "X-Api-Key: k3y"], "X-Api-Key: k3y", "-qH X-Api-Key: ***"),
        (["-qvHX-Api-Key: k3y"], "X-Api-Key: k3y", "-qvHX-Api-Key: ***"),
        (["-vHCookie:k3y"], "Cookie:k3y", "-vHCookie: ***"),
        (
            ["--header=Authorization: Bearer k3y"],
            "Authorization: Bearer k3y",
            "--header=Authorization: ***",
        ),
        # not a credential: kept for the log's reader
        (["-H", "X-Trace: t1"], "X-Trace: t1", "-H X-Trace: t1"),
        # maybe a token pasted alone
        (["-Hk3y-pasted-without-a-name"], "k3y-pasted-without-a-name", "-H***"),
    ],
)
def test_the_logged_command_line_masks_what_was_parsed(
    argv: list[str], parsed: str, shown: str
) -> None:
    assert " ".join(logged_argv(argv, headers=[parsed])) == shown


def test_bundled_short_flags_are_masked_in_a_real_run(tmp_path: Path) -> None:
    """The finding: -qH, -vH and -qvH put the value into the log in clear."""
    for bundle in ("q", "v", "qv"):
        text = run_logged(
            tmp_path,
            ["get", f"-{bundle}H", "X-Api-Key: k3y-0123", "-o", "-", "http://127.0.0.1:9/a"],
        )
        assert "k3y-0123" not in text
        assert f"-{bundle}H X-Api-Key: ***" in text
