"""A sharded model signature (model_signing's ``shards``) is a trusted hash for each shard: a pull
checks each as it lands, so a byte flipped on the wire costs one shard, in each digest algorithm
model_signing shards with (SHA-256, BLAKE2b). Shards that do not tile the file, or a signature of
whole files, give no ranges; with part hashes beside the lock too, the signer's shards are used."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from servers import HubServer, make_data
from signkeys import key_pair, library_sign, write_files

from mdl import api, partsize
from mdl.download._signed import signed_ranges
from mdl.lockfile.parts import parts_beside, read_parts
from mdl.report import FileOutcome, RunReport
from mdl.signing.statement import SignedFile

MiB = 1 << 20
WEIGHTS = make_data(6 * MiB + 4_321, seed=72)
FILES = {"config.json": b'{"model_type": "bert"}\n', "model.safetensors": WEIGHTS}


def signed_world(hub: HubServer, catalog: Path, tmp_path: Path, algorithm: str, shard: int) -> None:
    private, public = key_pair(tmp_path / "keys")
    folder = write_files(tmp_path / "upstream", FILES)
    signature = library_sign(folder, private, method="shards", algorithm=algorithm, shard=shard)
    hub.add_repo("org/tiny", {**FILES, "model.sig": signature})
    catalog.write_text(
        f'[models.tiny]\nrepo = "org/tiny"\n\n[models.tiny.signature]\nkey = "{public}"\n'
    )


def weights(report: RunReport) -> FileOutcome:
    return next(f for f in report.files if f.path == "model.safetensors")


# (model_signing 1.1 signs BLAKE3 as whole files, whatever the serialisation asked: no shards)
@pytest.mark.parametrize("algorithm", ["sha256", "blake2"])
def test_a_flipped_byte_costs_one_shard_of_a_sharded_signature(
    world: Path, hub: HubServer, tmp_path: Path, algorithm: str
) -> None:
    signed_world(hub, world, tmp_path, algorithm, MiB)
    hub.cdn.flips.append([4 * MiB + 3, 1])
    report = api.pull("tiny", catalog=world)
    assert report.ok, report.files
    assert (tmp_path / "models" / "tiny" / "model.safetensors").read_bytes() == WEIGHTS
    said = weights(report).warnings
    assert any("1 range(s) failed their signature hash" in w for w in said), said
    sent = hub.cdn.log.body_bytes(path_prefix="/")
    assert len(WEIGHTS) < sent <= len(WEIGHTS) + 2 * MiB, "the file and a shard, not twice"


def test_the_signers_shards_win_over_the_part_hashes_beside_the_lock(
    world: Path, hub: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    signed_world(hub, world, tmp_path, "sha256", 2 * MiB)
    monkeypatch.setattr(partsize, "PART", MiB)
    machine = tmp_path / "machine-1"
    assert api.lock(catalog=world, all=True, dest=machine).ok
    assert api.pull("tiny", catalog=world, dest=machine).ok
    assert api.lock(catalog=world, all=True, dest=machine).parts_changed
    sha = hashlib.sha256(WEIGHTS).hexdigest()
    assert read_parts(parts_beside(world.with_suffix(".lock")))[sha].part == MiB
    hub.cdn.log.clear()
    hub.cdn.flips.append([4 * MiB + 3, 1])
    report = api.pull("tiny", catalog=world, dest=tmp_path / "machine-2", frozen=True)
    assert report.ok, report.files
    said = weights(report).warnings
    assert any("1 range(s) failed their signature hash" in w for w in said), said
    sent = hub.cdn.log.body_bytes(path_prefix="/")
    assert len(WEIGHTS) + MiB < sent <= len(WEIGHTS) + 2 * MiB + 1, "a 2 MiB shard came again"


def test_only_shards_that_tile_the_file_are_ranges() -> None:
    digest = hashlib.sha256(b"x").hexdigest()
    tiled = SignedFile("w", "sha256", ((0, 5, digest), (5, 9, digest)), sharded=True)
    trust = signed_ranges(tiled, 9)
    assert trust is not None and trust.kind == "signature" and trust.algorithm == "sha256"
    assert list(trust.spans) == [(0, 5), (5, 9)] and trust.digests[0] == bytes.fromhex(digest)
    assert signed_ranges(tiled, 10) is None, "another size: they do not tile it"
    assert signed_ranges(tiled, None) is None
    gap = SignedFile("w", "sha256", ((0, 5, digest), (6, 9, digest)), sharded=True)
    assert signed_ranges(gap, 9) is None
    assert signed_ranges(SignedFile("w", "sha256", ((5, 9, digest),), sharded=True), 9) is None
    assert signed_ranges(SignedFile("w", "sha256", ((0, 9, "zz"),), sharded=True), 9) is None
    assert signed_ranges(SignedFile("w", "md5", ((0, 9, digest),), sharded=True), 9) is None
    whole = SignedFile("w", "sha256", ((0, None, digest),))
    assert signed_ranges(whole, 9) is None, "one digest of the whole file: no ranges"
