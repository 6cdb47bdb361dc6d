"""``pull --no-verify`` keeps bytes that fail the catalog's sha256, as commands.md says, and says
so: a warning naming both hashes, ``verified: false``, ``(unverified)`` in the summary; never
"verified" (transfers.md: only checked files are)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from runfixtures import mdl, use_catalog
from servers import CdnServer, make_data

DATA = make_data(300_001, seed=731)
PINNED = "c" * 64


def test_bytes_that_fail_the_pin_are_kept_said_and_never_verified(
    cdn: CdnServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = cdn.add_file("/m/model.bin", DATA)
    use_catalog(
        tmp_path, monkeypatch, f'[models.m]\nfiles = [{{ url = "{url}", sha256 = "{PINNED}" }}]\n'
    )
    result = mdl("pull", "m", "--no-verify", "--json")
    assert result.exit_code == 0, result.stderr
    [done] = json.loads(result.stdout)["files"]
    got = hashlib.sha256(DATA).hexdigest()
    assert (done["action"], done["verified"], done["sha256"]) == ("downloaded", False, got)
    assert f"sha256 {got}, not the {PINNED} pinned: kept (--no-verify)" in done["warning"]
    assert "mdl: warning: m/model.bin: sha256" in result.stderr
    assert (tmp_path / "models" / "m" / "model.bin").read_bytes() == DATA


def test_bytes_that_match_the_pin_are_verified_with_no_verify_too(
    cdn: CdnServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = cdn.add_file("/m/model.bin", DATA)
    pinned = hashlib.sha256(DATA).hexdigest()
    use_catalog(
        tmp_path, monkeypatch, f'[models.m]\nfiles = [{{ url = "{url}", sha256 = "{pinned}" }}]\n'
    )
    result = mdl("pull", "m", "--no-verify", "--json")
    assert result.exit_code == 0, result.stderr
    [done] = json.loads(result.stdout)["files"]
    assert (done["verified"], done["warning"]) == (True, None)
