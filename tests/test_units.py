"""Sizes, rates and durations as people read them: binary units (KiB, MiB, GiB), three
significant digits.
"""

from __future__ import annotations

import pytest

from mdl.units import human_clock, human_duration, human_rate, human_size

KiB, MiB, GiB = 1024, 1024**2, 1024**3


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (None, "?"),
        (0, "0 B"),
        (999, "999 B"),
        (1023, "1023 B"),
        (1024, "1.00 KiB"),
        (1536, "1.50 KiB"),
        (10 * KiB - 1, "10.0 KiB"),
        (300 * KiB, "300 KiB"),
        (MiB - 1, "1.00 MiB"),  # rounds up into the next unit, never "1024 KiB"
        (int(52.4 * MiB), "52.4 MiB"),  # the first 50 MiB of a big file show movement
        (600 * MiB, "600 MiB"),
        (int(1.6 * GiB), "1.60 GiB"),
        (16 * GiB, "16.0 GiB"),
        (3 * 1024**4, "3.00 TiB"),
    ],
)
def test_human_size_uses_binary_units_with_three_digits(n: int | None, text: str) -> None:
    assert human_size(n) == text


def test_first_fifty_mebibytes_of_a_big_file_show_movement() -> None:
    assert f"{human_size(50 * MiB)}/{human_size(int(1.6 * GiB))}" == "50.0 MiB/1.60 GiB"
    assert human_size(50 * MiB) != human_size(51 * MiB)


def test_rate_matches_limit_rate_units() -> None:
    assert human_rate(20 * MiB) == "20.0 MiB/s"  # --limit-rate 20M is 20 MiB/s, like curl
    assert human_rate(500 * KiB) == "500 KiB/s"
    assert human_rate(None) == "?"
    assert human_rate(-5) == "0 B/s"


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (None, "?"),
        (0, "0:00"),
        (6.2, "0:07"),
        (107, "1:47"),
        (3723, "1:02:03"),
        (float("inf"), "?"),
    ],
)
def test_human_clock(seconds: float | None, text: str) -> None:
    assert human_clock(seconds) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.3, "0.3s"),
        (4, "4s"),
        (9.96, "10s"),
        (42.4, "42s"),
        (125, "2m05s"),
        (3720, "1h02m"),
        (97200, "1d03h"),
    ],
)
def test_human_duration(seconds: float, text: str) -> None:
    assert human_duration(seconds) == text
    assert human_duration(float("inf")) == "?"
