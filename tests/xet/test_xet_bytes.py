"""The bytes a pull says it fetched are the bytes its sources sent: a Xet fetch cut short (a xorb
the CAS no longer has, after the other ranges came) that falls back to plain HTTP counts its xorb
bytes as well as the plain path's."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from runfixtures import mdl, use_catalog
from servers import Fault, make_data
from xetserver import XetHubServer

WEIGHTS = "model.safetensors"


def _end(stderr: str) -> dict[str, Any]:
    events = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    assert events[-1]["event"] == "end", events
    summary: dict[str, Any] = events[-1]["summary"]
    return summary


@pytest.mark.slow
def test_a_xet_fetch_that_falls_back_counts_its_xorb_bytes_too(
    xet_hub: XetHubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_catalog(tmp_path, monkeypatch, '[models.m]\nrepo = "org/m"\n', endpoint=xet_hub.url)
    parts = [make_data(512 << 10, seed=240 + i) for i in range(4)]
    whole = b"".join(parts)
    # one xorb per part (a repo of the parts first), the file's last term in a xorb of its own
    xet_hub.add_repo("org/parts", {f"p{i}.safetensors": p for i, p in enumerate(parts)})
    xet_hub.add_repo("org/m", {WEIGHTS: whole})
    last = "/xorb/default/" + xet_hub.xet_file("org/m", WEIGHTS).terms[-1].xorb
    xet_hub.cas.faults.add(Fault.http_error(404, path_prefix=last, times=None))
    result = mdl("pull", "m", "--connections", "1", "--progress", "json")
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "models" / "m" / WEIGHTS).read_bytes() == whole
    assert "fetching it over plain HTTP" in (tmp_path / "mdl.log").read_text()
    answered = [r for r in xet_hub.cas.log.records() if r.url_path.startswith("/xorb/")]
    xorbs = sum(r.bytes_sent for r in answered if r.status < 300)  # (not the 404s' text)
    assert xorbs > 0  # the other terms came by chunk first
    resolved = [r for r in xet_hub.log.records(method="GET") if "/resolve/" in r.url_path]
    plain = sum(r.bytes_sent for r in resolved if r.status == 200) + xet_hub.cdn.log.body_bytes()
    # the chunks that came, then the whole file over plain HTTP; no more than the servers sent
    assert xorbs + len(whole) <= _end(result.stderr)["bytes"] <= xorbs + plain
