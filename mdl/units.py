"""Human-readable sizes and durations (decimal units, as rich and most download tools print them)."""

from __future__ import annotations

import math

_SIZE_UNITS = ("kB", "MB", "GB", "TB", "PB", "EB")


def human_size(n: int | None) -> str:
    """A byte count in decimal units as rich shows them ("512 B", "1.2 MB"); "?" when unknown."""
    if n is None:
        return "?"
    if abs(n) < 1000:
        return f"{n} B"
    value = float(n)
    for unit in _SIZE_UNITS:
        value /= 1000
        # Pick the unit by the rounded value, so 999_960 reads "1.0 MB" rather than "1000.0 kB".
        if abs(round(value, 1)) < 1000 or unit == _SIZE_UNITS[-1]:
            break
    return f"{value:.1f} {unit}"


def human_duration(seconds: float) -> str:
    """A duration for humans: "0.3s", "4s", "42s", "2m05s", "1h02m", "3d04h"; "?" when not finite."""
    if not math.isfinite(seconds):
        return "?"
    seconds = max(seconds, 0.0)
    if seconds < 10:
        return f"{seconds:.1f}".removesuffix(".0") + "s"
    whole = round(seconds)
    if whole < 60:
        return f"{whole}s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours:02d}h"
