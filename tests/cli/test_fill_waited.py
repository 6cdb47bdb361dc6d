"""A run's "waited" is the wall time in which its files waited on another machine filling the
fleet's mirror, never the sum of its files' waits: two files that wait on two leases at once count
that time once. The leases here are another machine's, held by the test until both files are seen
waiting (their ``waiting`` events), then released: the objects made, the leases removed."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from runfixtures import HANG, wait_for
from serveproc import isolated
from servers import HubServer, make_data
from zygote import forked_mdl

from mdl.buckets.names import Generation, namespace
from mdl.buckets.registry import STORES
from mdl.download.session import TERM_VARIABLE

pytestmark = pytest.mark.slow

FILES = {"a.safetensors": make_data(300_001, seed=71), "b.safetensors": make_data(300_003, seed=72)}


def _writer() -> Any:
    return STORES["file"].writer(endpoint=None, secrets=None)


def _events(path: Path) -> list[dict[str, Any]]:
    text = path.read_text(errors="replace") if path.exists() else ""
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_two_files_waiting_at_once_count_their_time_once(hub: HubServer, tmp_path: Path) -> None:
    hub.add_repo("org/tiny", FILES, lfs_threshold=1000)
    shared = tmp_path / "shared"
    shared.mkdir()
    template = f"file://{shared}/{{model}}/{{path}}"
    catalog = tmp_path / "catalog.toml"
    catalog.write_text(
        f'[settings]\nmirrors = ["{template}"]\nfill_mirror = true\n\n'
        '[models.tiny]\nrepo = "org/tiny"\n'
    )
    root = namespace(template)
    assert root is not None
    leases = {}
    for name in FILES:  # another machine holds each file's lease (for longer than the test)
        uri = f"file://{shared}/tiny/{name}"
        assert _writer().create(Generation.of(root, uri).uri, b'{"holder": "other:1:x"}')
        leases[name] = uri
    env = {**isolated(tmp_path, catalog), "HF_ENDPOINT": hub.url, TERM_VARIABLE: "3600"}
    err = tmp_path / "events.jsonl"
    command = [forked_mdl(), "pull", "tiny", "--jobs", "4", "--json",
               "--progress", "json"]  # fmt: skip
    with err.open("wb") as stderr:
        child = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=stderr)
    try:

        def waiting() -> set[str]:
            return {e["label"] for e in _events(err) if e["event"] == "waiting"}

        labels = {f"tiny/{name}" for name in FILES}
        wait_for(lambda: waiting() == labels or child.poll() is not None, what="both waits")
        assert waiting() == labels, err.read_text()
        for name, uri in leases.items():  # the other machine is done: each object, then its lease
            local = tmp_path / f"other-{name}"
            local.write_bytes(FILES[name])
            sha = hashlib.sha256(FILES[name]).hexdigest()
            assert _writer().upload(uri, local, size=len(FILES[name]), sha256=sha,
                                    root=f"file://{shared}/")  # fmt: skip
            (shared / ".mdl" / "leases" / "tiny" / name / "1").unlink()
        out, _ = child.communicate(timeout=HANG)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == 0, err.read_text()
    files = {f["path"]: f for f in json.loads(out)["files"]}
    assert all(files[name]["fill"] == "read" for name in FILES), files
    each = [files[name]["waited"] for name in FILES]
    summary = _events(err)[-1]["summary"]
    waited, seconds = summary["waited"], summary["seconds"]
    # both waited at once: the run's wait holds each file's, and is less than their sum
    assert max(each) <= waited < sum(each), (each, waited)
    assert waited <= seconds, (waited, seconds)  # by the clock the summary's own seconds are on
    assert summary["text"].count("(waited ") == 1, summary["text"]
