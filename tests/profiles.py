"""How many examples a property runs: its own number under the "full" profile (the gate), at most
the "dev" profile's few under ``--hypothesis-profile=dev`` or ``MDL_TESTS=fast`` (both registered in
tests/conftest.py). A property with a number of its own writes ``max_examples=examples(N)``."""

from __future__ import annotations

from hypothesis import settings

DEV_EXAMPLES = 10


def examples(most: int) -> int:
    """``most``, or under the dev profile (loaded before any test module is) its few."""
    return min(most, DEV_EXAMPLES) if settings.default == settings.get_profile("dev") else most
