"""A partial download whose file changed upstream before the next run (docs/transfers.md, "A
resume the server does not honour"): its bytes are thrown away, and the outcome's reason and a
stderr line say so, as for a server that ignores the range: never "not downloaded yet"."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from runfixtures import mdl
from servers import CdnServer, Fault, make_data

from mdl.errors import ExitCode
from mdl.units import human_size

MiB = 1 << 20


def kept_bytes(dest: Path) -> int:
    """What the resume records under ``dest`` claim."""
    records = list((dest / ".mdl" / "partial").glob("*.part.json"))
    return sum(done for r in records for _, _, done in json.loads(r.read_text())["pieces"])


@pytest.mark.parametrize("change", ["size", "etag"])
def test_a_partial_of_a_file_changed_upstream_is_said_discarded(
    cdn: CdnServer, tmp_path: Path, change: str
) -> None:
    url = cdn.add_file("/f.bin", make_data(3 * MiB, seed=2503), etag='"v1"')
    cdn.faults.add(Fault.reset(after_bytes=MiB))
    dest = tmp_path / "out"
    first = mdl("get", url, "-d", str(dest), "--no-progress", env={"MDL_RETRIES": "0"})
    assert first.exit_code == ExitCode.NETWORK, first.stderr
    kept = kept_bytes(dest)
    assert kept > 0, first.stderr
    # the same ETag for another length, or another ETag for the same length
    data = make_data(2 * MiB if change == "size" else 3 * MiB, seed=2504)
    cdn.add_file("/f.bin", data, etag='"v1"' if change == "size" else '"v2"')
    second = mdl("get", url, "-d", str(dest), "--json", "--progress", "plain")
    assert second.exit_code == 0, second.stderr
    assert (dest / "f.bin").read_bytes() == data
    (outcome,) = json.loads(second.stdout)["files"]
    shown = human_size(kept)
    assert (outcome["action"], outcome["reason"]) == (
        "downloaded",
        f"the file changed upstream; the {shown} kept were discarded and the file downloaded again",
    )
    assert f"f.bin: the file changed upstream; the {shown} kept are discarded" in second.stderr
