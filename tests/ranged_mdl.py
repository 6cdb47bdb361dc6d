"""``python tests/ranged_mdl.py ARGS``: ``mdl ARGS`` whose pull puts a trusted hash for each range
on the jobs of the files ``$MDL_TEST_RANGES`` names: a JSON file ``{"<model>/<path>": {"part":
bytes, "digests": [blake3 hex, ...]}}`` (``range_table`` writes one), the part hashes a lock will
carry (kind ``lock``). The one seam: the pull's ``transfer_job``, where it makes each file's job;
everything else is the real mdl (a child process, as a loader's endpoint is).

For the tests and benchmarks of release by range (tests/endpoint/test_range_release.py,
bench/serve_standin.py) until ``mdl lock`` records the part hashes itself."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

ENV = "MDL_TEST_RANGES"


def range_table(path: Path, files: Mapping[str, bytes], *, part: int) -> Path:
    """Write the table of ``files`` (``<model>/<path>`` → the file's true bytes) at ``part`` bytes
    per range; returns ``path``."""
    from mdl.transfer.ranges import digest

    table = {
        key: {
            "part": part,
            "digests": [digest(data[s : s + part]).hex() for s in range(0, len(data), part)],
        }
        for key, data in files.items()
    }
    path.write_text(json.dumps(table))
    return path


def _install(table: Mapping[str, Any]) -> None:
    from mdl.download import _fetch
    from mdl.transfer.ranges import Digests

    made = _fetch.transfer_job

    def transfer_job(*args: Any, **more: Any) -> Any:
        job = made(*args, **more)
        remote = args[1]
        found = table.get(f"{remote.model}/{remote.path}")
        if found is None or remote.size is None:
            return job
        digests = [bytes.fromhex(d) for d in found["digests"]]
        trust = Digests.fixed("lock", remote.size, found["part"], digests)
        return replace(job, trust=trust)

    _fetch.transfer_job = transfer_job


if __name__ == "__main__":
    _install(json.loads(Path(os.environ[ENV]).read_text()))
    sys.argv[0] = "mdl"
    from mdl.__main__ import main

    main()
