"""The sources' shared fixtures: one real distribution registry per test session (per xdist
worker), for every oci:// test module that needs one without auth (each pushes its own
repositories; tests/registry.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from registry import HAVE_REGISTRY, NEEDS_REGISTRY, DistributionRegistry, distribution


@pytest.fixture(scope="session")
def plain_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DistributionRegistry]:
    if not HAVE_REGISTRY:
        pytest.skip(NEEDS_REGISTRY.kwargs["reason"])
    with distribution(tmp_path_factory.mktemp("registry")) as started:
        yield started
