"""A swarm (issue 78): the machines of a fleet that want a file with a range trust share its
origin fetch part by part through the mirror, against a real shared folder and the Hub stand-in."""

from __future__ import annotations

import hashlib
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import pytest
from runfixtures import HANG
from servers import HubServer, make_data

from mdl import partsize
from mdl.catalog.load import parse_catalog
from mdl.catalog.settings import CatalogSettings, build_settings
from mdl.download.puller import pull_models
from mdl.download.session import FileSources
from mdl.progress import Progress
from mdl.report import RunReport
from mdl.setting import Overrides
from mdl.transfer import ranges
from mdl.transfer.context import JobContext
from mdl.transfer.ranges import Digests

PART = 1 << 20
WEIGHTS = make_data(12 * PART + 5, seed=78)
SHA = hashlib.sha256(WEIGHTS).hexdigest()
CATALOG = """
[models.tiny]
repo = "org/tiny"
include = ["*.safetensors"]
"""


def trust_of(data: bytes, part: int = PART) -> Digests:
    digests = [ranges.digest(data[s : s + part]) for s in range(0, len(data), part)]
    return Digests.fixed("lock", len(data), part, digests)


@pytest.fixture(autouse=True)
def small_parts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(partsize, "PART", PART)


@pytest.fixture
def trusted(monkeypatch: pytest.MonkeyPatch) -> None:
    real = FileSources.beside.fget
    assert real is not None

    def with_trust(sources: FileSources) -> JobContext:
        return replace(real(sources), trust=trust_of(WEIGHTS))

    monkeypatch.setattr(FileSources, "beside", property(with_trust))


@pytest.fixture
def tiny(hub: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> HubServer:
    hub.add_repo("org/tiny", {"model.safetensors": WEIGHTS})
    monkeypatch.setenv("MDL_LOG_FILE", str(tmp_path / "mdl.log"))
    return hub


def pull(hub: HubServer, dest: Path, template: str) -> RunReport:
    environ = {"HF_ENDPOINT": hub.url}
    catalog = CatalogSettings(mirrors=(template,))
    settings = build_settings(
        Overrides(fill_mirror=True), environ=environ, dest=dest, catalog=catalog
    )
    return pull_models(parse_catalog(CATALOG).models, settings, progress=Progress())


def test_three_machines_share_the_origin_part_by_part(
    tiny: HubServer, tmp_path: Path, trusted: None, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    root = tmp_path / "shared"
    root.mkdir()
    template = f"file://{root}/{{model}}/{{path}}"
    tiny.cdn.throttle_bps = 4 * PART
    with ThreadPoolExecutor(3) as pool:
        runs = [pool.submit(pull, tiny, tmp_path / f"m{i}", template) for i in range(3)]
        reports = [run.result(timeout=HANG) for run in runs]
    for i, report in enumerate(reports):
        assert report.exit_code == 0, report.files
        assert (tmp_path / f"m{i}" / "tiny" / "model.safetensors").read_bytes() == WEIGHTS
    outcomes = [report.files[0] for report in reports]
    print(outcomes)
    assert (root / "tiny" / "model.safetensors").read_bytes() == WEIGHTS
    assert tiny.cdn.log.body_bytes() <= len(WEIGHTS) + 2 * PART
