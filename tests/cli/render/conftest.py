"""Display tests share a clock the test moves by hand."""

from __future__ import annotations

import pytest
from clocks import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    """A fresh hand-moved clock."""
    return FakeClock()
