"""``python -m mdl`` for bench/fanout.py's ``plant`` variant, each file of the model given a range
trust: the blake3 of each of its parts (``mdl.transfer.ranges.part_size``), what a lock's part
hashes give a ``--locked`` pull, read from the JSON file named first (``{path: {"size", "part",
"digests": [hex]}}``, written by the bench from the files it serves). It stands in for the lock's
part hashes (issue 70) until ``mdl lock`` records them where the bench's lock is made.

    python bench/trusted_mdl.py HASHES.json pull … --fill-mirror
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import mdl.download._fetch as fetch
from mdl.__main__ import main
from mdl.transfer.ranges import Digests


def trusting(path: Path) -> None:
    """Every job for a file ``path`` names gets its range trust (a job given one keeps it)."""
    known: dict[str, Any] = json.loads(path.read_text())
    real = fetch.transfer_job

    def job(session: Any, remote: Any, *args: Any, **more: Any) -> Any:
        found = known.get(remote.path)
        if found is not None and more.get("trust") is None:
            digests = [bytes.fromhex(d) for d in found["digests"]]
            more["trust"] = Digests.fixed("lock", found["size"], found["part"], digests)
        return real(session, remote, *args, **more)

    fetch.transfer_job = job


if __name__ == "__main__":
    trusting(Path(sys.argv.pop(1)))
    main()
