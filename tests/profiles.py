"""How many examples a property runs, by Hypothesis profile (registered in tests/conftest.py):

- ``gate``, the README's command: a tenth of each property's own number (at least the dev few);
- ``soak``, every example of each property's own number (``MDL_HYPOTHESIS=soak python -m pytest -q``);
- ``dev``, the inner loop's few (``--hypothesis-profile=dev`` or ``MDL_TESTS=fast``).

A property with a number of its own writes ``max_examples=examples(N)``."""

from __future__ import annotations

from hypothesis import settings

DEV_EXAMPLES = 10
GATE_SHARE = 10  # the gate runs one example in ten of the soak run's
HYPOTHESIS_DEFAULT = 100  # Hypothesis' own number for a property that gives none


def examples(most: int) -> int:
    """``most`` in the soak run, a tenth of it in the gate, the dev profile's few in the inner loop
    (the profile is loaded before any test module is)."""
    if settings.default == settings.get_profile("soak"):
        return most
    few = min(most, DEV_EXAMPLES)
    return few if settings.default == settings.get_profile("dev") else max(most // GATE_SHARE, few)
