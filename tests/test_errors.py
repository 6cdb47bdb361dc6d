"""The one rule for a full disk (mdl.errors.disk_error), which every local write goes through."""

from __future__ import annotations

import errno
import gc

import pytest

from mdl.errors import (
    CatalogError,
    ExitCode,
    LocalFSError,
    NetworkError,
    NoSpaceError,
    disk_error,
    error_for_exit_code,
    kind_words,
)
from mdl.redact import LINE_LIMIT, Secrets, safe_text


@pytest.mark.parametrize("number", [errno.ENOSPC, errno.EDQUOT])
def test_a_full_disk_or_quota_is_no_space(number: int) -> None:
    error = disk_error(OSError(number, "full"), full="no space left in /d", other="cannot write")
    assert isinstance(error, NoSpaceError) and error.message == "no space left in /d"
    assert error.exit_code == ExitCode.LOCAL


@pytest.mark.parametrize("number", [errno.EACCES, errno.EROFS, errno.EIO])
def test_any_other_failure_is_a_local_error_in_its_own_words(number: int) -> None:
    error = disk_error(OSError(number, "no"), full="no space", other="cannot write /d: no")
    assert type(error) is LocalFSError and error.message == "cannot write /d: no"
    assert error.exit_code == ExitCode.LOCAL


def test_an_exit_code_only_a_class_deeper_down_has_is_found_at_any_depth() -> None:
    """A new exit code's class under NetworkError (not straight under MdlError) is still the one a
    recorded failure is raised again as, not an internal error (exit 1)."""

    class DeepError(NetworkError, kind="deep_test", code=97, words="deep"):  # type: ignore[arg-type]
        pass

    try:
        assert error_for_exit_code(97) is DeepError
        assert kind_words("deep_test") == "deep"
        assert error_for_exit_code(ExitCode.NETWORK) is NetworkError  # the nearest still wins
    finally:
        del DeepError
        gc.collect()  # (__subclasses__ holds it weakly: no later test sees it)


def test_a_line_of_any_length_is_bounded_at_the_sink_never_through_a_secret() -> None:
    secret = "Zq9Lm3Xv8Tr2Wp7Kd4HbN6cY1sF5gJ0e"  # an API key, no token shape a pattern knows
    secrets = Secrets([secret])
    for at in range(LINE_LIMIT - 40, LINE_LIMIT + 8):  # the secret across the cut, every way
        line = NetworkError("x" * at + "/" + secret + "/" + "a" * 5_000 + ": URL too long").message
        shown = safe_text(line, secrets=secrets)
        assert len(shown) <= LINE_LIMIT + 1 and shown.startswith("xxx")
        assert not any(secret[k : k + 8] in shown for k in range(len(secret) - 7)), at


def test_a_message_is_one_line_whatever_a_name_in_it_holds() -> None:
    forged = "a\n2026-11-30T00:00:00Z [1] pulled 1 model"
    assert "\n" not in NetworkError(f"{forged}: cannot read").message
    listed = CatalogError("c.toml: 2 problems\n  c.toml:1: x\n  c.toml:2: y")
    assert listed.message.count("\n") == 2  # a catalog's problems, one a line
