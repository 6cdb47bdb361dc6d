"""Numeric settings (counts, seconds) read by one parser from every spelling (flag, $MDL_*, the
catalog): ASCII digits only, within the table's bounds; a value it accepts is one every clock, wait
and timeout downstream can take."""

from __future__ import annotations

import math
import socket
import threading
import time
from pathlib import Path

import httpx2
import pytest
from hypothesis import given
from hypothesis import strategies as st
from runfixtures import mdl, use_catalog

from mdl.catalog.settings import build_settings, parse_number
from mdl.errors import UsageError
from mdl.setting import SETTINGS, Overrides

NUMERIC = [s for s in SETTINGS if s.kind in ("count", "seconds")]
FLAGGED = [s for s in NUMERIC if s.flag and s.name in Overrides._fields]


def usable(seconds: float) -> None:
    """What the engine does with a wait: a deadline on the monotonic clock (3 x --timeout for a
    whole reply), a thread's timed wait, a socket's timeout and httpx2's: none may overflow."""
    deadline = time.monotonic() + 3 * seconds
    assert math.isfinite(deadline)
    lock = threading.Lock()
    # free: at once, but the timeout is converted (and would overflow)
    assert lock.acquire(timeout=3 * seconds)
    lock.release()
    with socket.socket() as sock:
        sock.settimeout(3 * seconds)
    httpx2.Timeout(seconds, read=3 * seconds)


numbers = st.one_of(
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.floats(min_value=0, max_value=1e400).map(lambda f: f"{f:e}"),
    st.text(alphabet="0123456789٠١٢٣٤٥٦٧٨٩_.eE+- ", min_size=1, max_size=12),
)


@pytest.mark.parametrize("setting", NUMERIC, ids=lambda s: s.name)
@given(text=numbers)
def test_any_number_is_accepted_and_usable_or_refused_naming_the_setting(
    setting: object, text: str
) -> None:
    from mdl.setting import Setting

    assert isinstance(setting, Setting)
    environ = {setting.env: text}
    try:
        value = getattr(build_settings(environ=environ, dest=Path("/tmp")), setting.name)
    except UsageError as exc:
        assert exc.exit_code == 2
        assert f"${setting.env}" in exc.message
        return
    assert text.isascii(), "digits 0-9 only"
    if setting.kind == "count":
        assert isinstance(value, int) and setting.bounds[0] <= value <= setting.bounds[1]
    else:
        usable(value)


@pytest.mark.parametrize(
    "text", ["١٦", "1_6", "１６", "16.0", "0x10", "1e1", "nan", "inf", "", " "]
)
def test_a_count_is_ascii_digits_only(text: str) -> None:
    with pytest.raises(UsageError, match=r"\$MDL_CONNECTIONS: expected a whole number"):
        build_settings(environ={"MDL_CONNECTIONS": text or "x" + text}, dest=Path("/tmp"))


@pytest.mark.parametrize("setting", FLAGGED, ids=lambda s: s.name)
def test_a_flag_and_the_api_are_held_to_the_same_bounds(setting: object) -> None:
    from mdl.setting import Setting

    assert isinstance(setting, Setting)
    huge = 10**12
    with pytest.raises(UsageError, match=setting.flag):
        build_settings(Overrides(**{setting.name: huge}), environ={}, dest=Path("/tmp"))
    with pytest.raises(UsageError, match=setting.flag):
        parse_number(setting, "1e300", where=setting.flag)


@pytest.mark.parametrize(
    ("args", "env", "said"),
    [
        (["--timeout", "1e10"], {}, "'--timeout': must be at most 86400 seconds, got '1e10'"),
        ([], {"MDL_TIMEOUT": "1e10"}, "$MDL_TIMEOUT: must be at most 86400 seconds"),
        ([], {"MDL_STALL_TIMEOUT": "1e300"}, "$MDL_STALL_TIMEOUT: must be at most 86400 seconds"),
        (
            ["--connections", "١٦"],
            {},
            "'--connections': expected a whole number (digits 0-9), got '١٦'",
        ),
        (
            [],
            {"MDL_CONNECTIONS": "1_6"},
            "$MDL_CONNECTIONS: expected a whole number (digits 0-9), got '1_6'",
        ),
    ],
)
def test_a_huge_or_non_ascii_number_is_exit_2_before_any_request(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], env: dict[str, str], said: str
) -> None:
    monkeypatch.chdir(tmp_path)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    # port 9: nothing would answer; nothing is asked
    result = mdl("get", "http://127.0.0.1:9/w.bin", *args)
    assert result.exit_code == 2, result.stderr
    assert said in result.stderr
    assert "Traceback" not in result.stderr


def test_a_huge_timeout_in_the_catalog_is_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    use_catalog(tmp_path, monkeypatch, "[settings]\ntimeout = 1e10\n\n[models]\n")
    result = mdl("pull", "--all")
    assert result.exit_code == 2, result.stderr
    assert "timeout: must be at most 86400 seconds, got 10000000000.0" in result.stderr


@pytest.mark.parametrize("setting", NUMERIC, ids=lambda s: s.name)
@given(
    value=st.one_of(st.integers(), st.integers(min_value=10**300, max_value=10**400), st.floats())
)
def test_any_number_from_the_api_is_accepted_and_usable_or_refused(
    setting: object, value: float
) -> None:
    """A number from the API (or the catalog's TOML) takes the same path as text: never an
    OverflowError.
    """
    try:
        number = parse_number(setting, value, where="x")  # type: ignore[arg-type]
    except UsageError:
        return
    usable(float(number))


@pytest.mark.parametrize("key", ["timeout", "stall_timeout", "lock_timeout"])
def test_a_huge_whole_number_in_the_catalog_is_exit_2(
    key: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    use_catalog(tmp_path, monkeypatch, f"[settings]\n{key} = 1{'0' * 400}\n\n[models]\n")
    result = mdl("pull", "--all")
    assert result.exit_code == 2, result.stderr
    assert (
        f"{key}: must be at most" in result.stderr and "got a 1329-bit number" in result.stderr
    ), result.stderr
