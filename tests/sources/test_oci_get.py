"""``mdl get oci://…`` against a real distribution registry: by tag and by digest, ModelPack and
oras annotations, an index, hostile manifests and a tampered blob."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from registry import NEEDS_REGISTRY, DistributionRegistry, distribution
from runfixtures import mdl
from servers import make_data

pytestmark = NEEDS_REGISTRY


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DistributionRegistry]:
    with distribution(tmp_path_factory.mktemp("registry")) as started:
        yield started


FILES = {
    "config.json": b'{"model_type": "tiny"}',
    "model.safetensors": make_data(3 << 20, seed=1),
    "sub/tokenizer.json": make_data(5000, seed=2),
}


def read_tree(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and ".mdl" not in p.relative_to(folder).parts
    }


def test_get_by_tag_and_by_digest(registry: DistributionRegistry, tmp_path: Path) -> None:
    digest = registry.push_model("team/tiny", "v1", FILES)
    by_tag = mdl("get", f"oci://{registry.host}/team/tiny:v1", "-d", str(tmp_path / "tag"))
    assert by_tag.exit_code == 0, by_tag.stderr
    assert read_tree(tmp_path / "tag") == FILES
    by_digest = mdl("get", f"oci://{registry.host}/team/tiny@{digest}", "-d", str(tmp_path / "dg"))
    assert by_digest.exit_code == 0, by_digest.stderr
    assert read_tree(tmp_path / "dg") == FILES
