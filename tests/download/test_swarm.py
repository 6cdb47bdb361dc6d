"""A swarm (issue 78): the machines of a fleet that want a file with a range trust share its
origin fetch part by part through the mirror, against a real shared folder and the Hub stand-in."""

from __future__ import annotations

import hashlib
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import rangetrust
from runfixtures import HANG, transfer_job
from servers import HubServer, make_data

from mdl import partsize
from mdl.buckets import names
from mdl.buckets.registry import STORES
from mdl.catalog.load import parse_catalog
from mdl.catalog.settings import build_settings
from mdl.catalog.specs import CatalogSettings
from mdl.download._parts import PartSet
from mdl.download._swarm import Swarm
from mdl.download.puller import pull_models
from mdl.progress import Progress
from mdl.report import RunReport
from mdl.setting import Overrides
from mdl.transfer.ranges import Digests
from mdl.wait import Wait

PART = 1 << 20
WEIGHTS = make_data(12 * PART + 5, seed=78)
SHA = hashlib.sha256(WEIGHTS).hexdigest()
CATALOG = """
[models.tiny]
repo = "org/tiny"
include = ["*.safetensors"]
"""


def trust_of(data: bytes, part: int = PART) -> Digests:
    return rangetrust.trust_of(data, part)


@pytest.fixture(autouse=True)
def small_parts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(partsize, "PART", PART)


@pytest.fixture
def trusted(monkeypatch: pytest.MonkeyPatch) -> None:
    rangetrust.give_trust(monkeypatch, WEIGHTS, PART)


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
    # what the origin sent is one copy of the file and what the machines say they fetched twice
    assert tiny.cdn.log.body_bytes() == len(WEIGHTS) + sum(o.duplicated for o in outcomes)


# --- one machine's picks against parts another machine publishes (a shared folder) ---


class Picks:
    """A ``Swarm`` of three 1 MiB parts on a shared folder, asked for parts as the engine's
    streams ask (``next``); ``put`` keeps what it writes from the others' parts."""

    def __init__(self, tmp_path: Path) -> None:
        self.data = make_data(3 * PART - 7, seed=781)
        self.job = transfer_job(tmp_path / "machine", "http://127.0.0.1:9/f.bin", self.data)
        self.writer = STORES["file"].writer(endpoint=None, secrets=None)
        folder = f"file://{tmp_path}/mirror/"
        parts = PartSet.of(self.writer, folder + names.NAMESPACE, folder + "m/f.bin", self.job)
        assert parts is not None and parts.count == 3 and parts.first.token is None
        self.parts = parts
        self.swarm = Swarm(
            parts,
            trust_of(self.data),
            self.job,
            holder="here:1:x",
            token="ab" * 16,
            wait=Wait(),
            there=lambda: None,
            readers=ThreadPoolExecutor(2),  # (idle once the test is done)
            term=3600,
        )
        self.have: set[int] = set()
        self.put: dict[int, bytes] = {}
        self.asked = 0  # the times ``next`` asked whether to stop

    def next(self, most: int = 40) -> int | None:
        """The part ``next`` hands this stream; stopped once it asked ``most`` times."""

        def stopped() -> bool:
            self.asked += 1
            return self.asked > most

        return self.swarm.next(self.have, self.put.__setitem__, stopped)

    def publish(self, index: int, data: bytes) -> None:
        """Another machine's part ``index`` at the version's own name."""
        assert self.writer.create(self.parts.uri(index + 1), data) is not None

    def bytes_of(self, index: int) -> bytes:
        return self.data[index * PART : (index + 1) * PART]


def test_a_part_published_by_another_after_the_look_is_read_not_claimed_again(
    tmp_path: Path,
) -> None:
    """Two parts claimed here; the third published by another machine since the last look. The
    next ask reads it from the mirror (checked) at the next look and hands out no more parts:
    it is neither claimed again and again nor fetched here."""
    picks = Picks(tmp_path)
    with picks.swarm:
        mine = {picks.next(), picks.next()}
        assert None not in mine and len(mine) == 2
        (theirs,) = {0, 1, 2} - mine
        picks.publish(theirs, picks.bytes_of(theirs))
        assert picks.next() is None
    assert picks.put == {theirs: picks.bytes_of(theirs)}
    assert picks.asked < 10, f"{picks.asked} turns of the stream's loop for one part"


def test_a_forged_part_refused_here_is_claimed_and_fetched_here(tmp_path: Path) -> None:
    """Two parts claimed here; wrong bytes of the right size at the third's name. The look
    refuses them by their hash (said once, naming the part); the next ask claims the part and
    hands it to this stream to fetch."""
    picks = Picks(tmp_path)
    with picks.swarm:
        mine = {picks.next(), picks.next()}
        (forged,) = {0, 1, 2} - mine
        wrong = bytes([picks.bytes_of(forged)[0] ^ 1]) + picks.bytes_of(forged)[1:]
        picks.publish(forged, wrong)
        assert picks.next() == forged
    assert picks.put == {}
    assert picks.swarm.state.refused == len(wrong)
    (said,) = picks.job.retries.causes
    assert picks.parts.uri(forged + 1) in said and "failed its lock hash" in said
