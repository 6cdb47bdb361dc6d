"""Issue 37, property: hard links to outside files and other users' files planted at every place mdl
writes its state — lock files (its own and huggingface_hub's blob lock), partial downloads (beside a
resume record that matches), resume records, records and get.json, in `<dest>/.mdl/` and in the
Hugging Face cache (with a ref and a blob) — then any sequence of `pull` (both layouts), `get`,
`verify`, `clean` and `list`: no command exits 1, and every outside inode keeps its bytes, size and
mtime (another user's file too, looked at through a descriptor held across the commands).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from planted import snapshot
from profiles import examples
from runfixtures import mdl
from servers import HubServer, make_data
from typer.testing import Result

from mdl.store.store import Store

CONFIG = b'{"model_type": "bert"}\n'
WEIGHTS = make_data(300_000, seed=137)
FILES = {"config.json": CONFIG, "model.safetensors": WEIGHTS}
SHA = hashlib.sha256(WEIGHTS).hexdigest()
FOREIGN_UID = 12345
DOCUMENTED = {0, 2, 3, 4, 5, 6, 7}
T0 = 1_600_000_000_000_000_000


def _places() -> list[str]:
    """Where mdl keeps state, relative to the test folder: `dest/…` and `hf-cache/…`."""
    plain, cache = (
        Store(Path("dest")),
        Store(Path("hf-cache"), state_dir=Path("hf-cache/.locks/mdl")),
    )
    found = [
        "dest/.mdl/records/tiny.json",
        "dest/.mdl/get.json",
        "dest/.mdl/locks/tiny.record.lock",
    ]
    found += ["dest/.mdl/locks/.get.record.lock", "hf-cache/.locks/mdl/records/tiny.json"]
    found += [
        "hf-cache/.locks/mdl/locks/tiny.record.lock",
        f"hf-cache/.locks/models--org--tiny/{SHA}.lock",
    ]
    found += ["hf-cache/models--org--tiny/refs/main", f"hf-cache/models--org--tiny/blobs/{SHA}"]
    for store in (plain, cache):
        for model, path in [("tiny", p) for p in FILES] + (
            [("", "config.json"), ("", "w.bin")] if store is plain else []
        ):
            part, state = store.part_paths(model, path)
            found += [str(part), str(state), str(store.lock_path(model, path))]
    return found


PLACES = _places()
COMMANDS = ["pull", "pull-cache", "get-hub", "get-url", "verify", "clean", "clean-dry", "list"]


def resume_record(path: str) -> bytes:
    """A resume record matching what the Hub serves at `path` (any number of bytes claimed done)."""
    data = FILES.get(path.rsplit("-", 1)[-1].removesuffix(".part"), WEIGHTS)
    sha = hashlib.sha256(data).hexdigest()
    doc = {
        "version": 1,
        "source": "",
        "identity": {"size": len(data), "sha256": sha, "git_oid": None, "etag": None},
    }
    return json.dumps(
        {**doc, "validator": None, "pieces": [[0, len(data), len(data) // 2]]}
    ).encode()


class Place:
    def __init__(self, root: Path, hub: HubServer) -> None:
        self.root, self.hub = root, hub
        self.outside = root / "outside"
        self.outside.mkdir()
        (root / "dest").mkdir()
        self.catalog = root / "catalog.toml"
        self.catalog.write_text('[models.tiny]\nrepo = "org/tiny"\n')
        self.url = hub.cdn.add_file("/files/w.bin", WEIGHTS)
        # another user's files: fd, bytes, size, mtime
        self.held: list[tuple[int, bytes, int, int]] = []

    def plant(self, index: int, where: str, kind: str) -> None:
        target = self.root / where
        if target.exists() or target.is_symlink():
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        data = (
            WEIGHTS[: 1000 + index]
            if where.endswith(".part")
            else b"canary %d %s\n" % (index, where.encode())
        )
        if kind == "hardlink":
            outside = self.outside / f"canary-{index}"
            outside.write_bytes(data)
            os.utime(outside, ns=(T0, T0))
            os.link(outside, target)
        else:  # another user's file, one link: looked at through a descriptor after the commands
            target.write_bytes(data)
            os.chown(target, FOREIGN_UID, FOREIGN_UID)
            os.utime(target, ns=(T0, T0))
            fd = os.open(target, os.O_RDONLY)
            self.held.append((fd, data, len(data), T0))
        if where.endswith(".part") and not target.with_name(target.name + ".json").exists():
            # resumable, were it ours
            target.with_name(target.name + ".json").write_bytes(resume_record(target.name))

    def run(self, command: str) -> Result:
        dest, cat = (
            str(self.root / "dest"),
            ["--catalog", str(self.catalog), "--dest", str(self.root / "dest")],
        )
        args = {
            "pull": ["pull", "tiny", *cat, "--lock-timeout", "5"],
            "pull-cache": ["pull", "tiny", *cat, "--layout", "hf-cache", "--lock-timeout", "5"],
            "get-hub": ["get", "hf://org/tiny/config.json", "-d", dest],
            "get-url": ["get", self.url, "-d", dest],
            "verify": ["verify", "tiny", *cat],
            "clean": ["clean", *cat],
            "clean-dry": ["clean", "--dry-run", *cat],
            "list": ["list", *cat],
        }[command]
        return mdl(*args, "--no-progress")

    def close(self) -> None:
        for fd, *_ in self.held:
            os.close(fd)

    def foreign_unchanged(self) -> list[str]:
        changed = []
        for fd, data, size, mtime in self.held:
            found = os.fstat(fd)
            if (os.pread(fd, size + 1, 0), found.st_size, found.st_mtime_ns) != (data, size, mtime):
                changed.append(data.decode(errors="replace")[:40])
        return changed


@pytest.fixture
def hub_env(hub: HubServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[HubServer]:
    hub.add_repo("org/tiny", FILES)
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setenv("MDL_LOG_FILE", str(tmp_path / "mdl.log"))
    yield hub


KINDS = ["hardlink", "foreign"] if os.geteuid() == 0 else ["hardlink"]


@pytest.mark.slow
@settings(
    max_examples=examples(20),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    pulled_first=st.booleans(),
    plants=st.lists(
        st.tuples(st.sampled_from(PLACES), st.sampled_from(KINDS)), min_size=1, max_size=6
    ),
    commands=st.lists(st.sampled_from(COMMANDS), min_size=1, max_size=5),
)
def test_no_command_writes_through_state_mdl_did_not_make(
    hub_env: HubServer,
    monkeypatch: pytest.MonkeyPatch,
    pulled_first: bool,
    plants: list[tuple[str, str]],
    commands: list[str],
) -> None:
    with tempfile.TemporaryDirectory(prefix="mdl-foreign-") as folder:
        monkeypatch.setenv("HF_HUB_CACHE", str(Path(folder) / "hf-cache"))
        place = Place(Path(folder), hub_env)
        try:
            if pulled_first:
                for command in ("pull", "pull-cache", "get-url"):
                    first = place.run(command)
                    assert first.exit_code == 0, first.stdout + first.stderr
            for index, (where, kind) in enumerate(plants):
                place.plant(index, where, kind)
            before = snapshot(place.outside)
            for step, command in enumerate(commands):
                result = place.run(command)
                crash = (
                    ""
                    if result.exception is None or isinstance(result.exception, SystemExit)
                    else repr(result.exception)
                )
                shown = result.stdout + result.stderr + crash
                assert result.exit_code in DOCUMENTED and "Traceback" not in shown, (
                    f"{command}: {result.exit_code}\n{shown}"
                )
                after = snapshot(place.outside)
                changed = sorted(
                    k for k in before.keys() | after.keys() if before.get(k) != after.get(k)
                )
                assert not changed, f"step {step} ({command}) wrote through a hard link: {changed}"
                assert not place.foreign_unchanged(), (
                    f"step {step} ({command}) wrote another user's file"
                )
        finally:
            place.close()
