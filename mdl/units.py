"""Human-readable sizes, rates and durations: binary units (KiB, MiB, GiB; 1024-based), as curl
and aria2c print.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

_SIZE_UNITS = ("KiB", "MiB", "GiB", "TiB", "PiB", "EiB")


def human_size(n: int | float | None) -> str:
    """A byte count in binary units with 3 significant digits ("512 B", "52.4 MiB", "1.60 GiB");
    "?" if unknown.
    """
    if n is None:
        return "?"
    if abs(n) < 1024:
        return f"{int(n)} B"
    value = float(n)
    for unit in _SIZE_UNITS:  # noqa: B007 - the unit it stops at is shown
        value /= 1024
        # 1.60, 52.4, 600, 1023
        decimals = 2 if abs(round(value, 2)) < 10 else 1 if abs(round(value, 1)) < 100 else 0
        text = f"{value:.{decimals}f}"
        # the unit by the rounded value: 1_048_575 reads "1.00 MiB", not "1024 KiB"
        if abs(float(text)) < 1024:
            break
    return f"{text} {unit}"


def plural(n: int, word: str) -> str:
    """``1 file``, ``2 files``."""
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def first_few(names: Sequence[str], most: int = 5) -> str:
    """The first ``most`` of ``names``, then how many more: ``a, b, c and 4 more``."""
    more = f" and {len(names) - most} more" if len(names) > most else ""
    return ", ".join(names[:most]) + more


def human_rate(bytes_per_second: float | None) -> str:
    """A transfer rate: "20.0 MiB/s" (``--limit-rate 20M`` is 20 MiB/s); "?" when unknown."""
    if bytes_per_second is None or not math.isfinite(bytes_per_second):
        return "?"
    return f"{human_size(max(bytes_per_second, 0.0))}/s"


def human_clock(seconds: float | None) -> str:
    """A time left as a clock reads it: "0:07", "1:47", "1:02:03"; "?" when unknown."""
    if seconds is None or not math.isfinite(seconds):
        return "?"
    minutes, secs = divmod(max(math.ceil(seconds), 0), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def human_seconds(value: float) -> str:
    """A wait in seconds: "87 s", "2 s", "0.5 s"."""
    return f"{value:.0f} s" if value >= 10 or value == int(value) else f"{value:.1f} s"


def human_duration(seconds: float) -> str:
    """A duration for humans: "0.3s", "4s", "42s", "2m05s", "1h02m", "3d04h"; "?" when not
    finite.
    """
    if not math.isfinite(seconds):
        return "?"
    seconds = max(seconds, 0.0)
    if seconds < 10:
        return f"{seconds:.1f}".removesuffix(".0") + "s"
    value, unit, below = round(seconds), "s", ""  # the two largest units: "2m05s", "1h02m", "3d04h"
    for size, bigger in ((60, "m"), (60, "h"), (24, "d")):
        if value < size:
            break
        value, rest = divmod(value, size)
        unit, below = bigger, f"{rest:02d}{unit}"
    return f"{value}{unit}{below}"
