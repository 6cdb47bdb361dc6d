"""Issue 24: `<dest>/.mdl/` is mdl's own and nothing below `<dest>` is followed.

Symlinks (to folders and files outside `<dest>`, and dangling), FIFOs and foreign files are planted where mdl
keeps its state and where the model's files go; `pull`, `get`, `clean`, `verify` and `unpack --force` then run.
Whatever they decide (refuse with exit 2 naming the link, or work around it), nothing outside `<dest>` is written,
renamed or deleted, no command crashes (exit 1, a traceback) and none hangs on a FIFO.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

import pytest
from click.testing import Result
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from servers import HubServer
from typer.testing import CliRunner

from mdl.cli.app import app
from mdl.store import Store

CONFIG = b'{"model_type": "bert"}\n'
WEIGHTS = b"w" * 200_000
CATALOG = '[models.tiny]\nrepo = "org/tiny"\n'
HANG_SECONDS = 20


def mdl(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def snapshot(root: Path) -> dict[str, tuple[str, bytes | str | None]]:
    """Every entry below ``root`` (links not followed): its kind and content."""
    found: dict[str, tuple[str, bytes | str | None]] = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder) / name
            rel = str(path.relative_to(root))
            if path.is_symlink():
                found[rel] = ("link", os.readlink(path))
            elif path.is_dir():
                found[rel] = ("dir", None)
            elif path.is_fifo():
                found[rel] = ("fifo", None)
            else:
                found[rel] = ("file", path.read_bytes())
    return found


class Place:
    """A destination, an outside folder full of canaries, and a catalog, in one temporary folder."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.dest = root / "dest"
        self.outside = root / "outside"
        self.dest.mkdir()
        for sub in ("", "nested"):
            (self.outside / sub).mkdir(parents=True, exist_ok=True)
            for name in ("backup.tmp", "disk.part", "db.lock", "config.json", "tiny.json"):
                (self.outside / sub / name).write_bytes(b"canary " + name.encode())
        (root / "catalog.toml").write_text(CATALOG)
        self.archive = root / "pack.zip"
        with zipfile.ZipFile(self.archive, "w") as zf:
            zf.writestr("tiny/config.json", CONFIG)
            zf.writestr("notes/readme.txt", b"hello")

    def plant(self, where: str, kind: str) -> None:
        target = self.dest / where
        if target.is_symlink() or target.is_file() or target.is_fifo():
            target.unlink()
        elif target.is_dir():
            shutil.rmtree(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        if kind == "link-dir":
            target.symlink_to(self.outside)
        elif kind == "link-file":
            target.symlink_to(self.outside / "config.json")
        elif kind == "dangling":
            target.symlink_to(self.outside / "not-there")
        elif kind == "fifo":
            os.mkfifo(target)
        else:
            target.write_bytes(b"foreign bytes")

    def run(self, command: str) -> Result:
        common = ("--catalog", str(self.root / "catalog.toml"), "--dest", str(self.dest))
        args = {
            "pull": ("pull", "tiny", *common),
            "get": ("get", "hf://org/tiny/config.json", "-d", str(self.dest)),
            "clean": ("clean", *common),
            "clean-dry": ("clean", "--dry-run", *common),
            "verify": ("verify", "tiny", *common),
            "unpack": ("unpack", str(self.archive), "-d", str(self.dest), "--force"),
        }[command]
        return mdl(*args, "--json")


def _partial_names() -> list[str]:
    part, state = Store(Path("/d")).part_paths("tiny", "model.safetensors")
    return [f".mdl/partial/{part.name}", f".mdl/partial/{state.name}"]


PLACES = [
    ".mdl",
    ".mdl/partial",
    ".mdl/locks",
    ".mdl/records",
    ".mdl/records/tiny.json",
    *_partial_names(),
    "tiny",
    "tiny/config.json",
    "tiny/nested",
    "config.json",
    "notes",
]
KINDS = ["link-dir", "link-file", "dangling", "fifo", "foreign"]
COMMANDS = ["pull", "get", "clean", "clean-dry", "verify", "unpack"]


@pytest.fixture
def hub_env(hub: HubServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[HubServer]:
    hub.add_repo("org/tiny", {"config.json": CONFIG, "model.safetensors": WEIGHTS, "nested/vocab.txt": b"a\nb\n"})
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setenv("MDL_LOG_FILE", str(tmp_path / "mdl.log"))
    yield hub


class Hung(BaseException):
    """Raised by the alarm: not an OSError, so no handler of mdl's can take it for a filesystem error."""


def _alarm(signum: int, frame: FrameType | None) -> None:
    raise Hung(f"a command hung for {HANG_SECONDS}s (a FIFO read or a lock wait)")


def check(place: Place, commands: list[str]) -> None:
    before = snapshot(place.outside)
    previous = signal.signal(signal.SIGALRM, _alarm)
    try:
        for command in commands:
            signal.alarm(HANG_SECONDS)
            result = place.run(command)
            signal.alarm(0)
            if isinstance(result.exception, Hung):
                raise result.exception
            shown = result.output + (repr(result.exception) if result.exception else "")
            assert result.exit_code != 1, f"{command}: exit 1\n{shown}"
            assert "Traceback" not in shown and "internal error" not in shown, f"{command}: crashed\n{shown}"
            assert result.exit_code in (0, 2, 4, 5, 6, 7), f"{command}: exit {result.exit_code}\n{shown}"
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    assert snapshot(place.outside) == before, "something outside dest was written, renamed or deleted"


@pytest.mark.parametrize(
    ("where", "kind"),
    [
        (".mdl/partial", "link-dir"),
        (".mdl/locks", "link-dir"),
        (".mdl/records", "link-dir"),
        (".mdl", "link-dir"),
        ("tiny", "link-dir"),
        ("tiny/config.json", "link-file"),
        (_partial_names()[0], "link-file"),
        (_partial_names()[1], "fifo"),
        (".mdl/records/tiny.json", "fifo"),
        ("config.json", "fifo"),
    ],
)
def test_a_planted_entry_is_never_followed(hub_env: HubServer, tmp_path: Path, where: str, kind: str) -> None:
    place = Place(tmp_path)
    if where.startswith(".mdl/") and where.count("/") > 1:  # a file inside mdl's state: its folder is real
        (place.dest / where).parent.mkdir(parents=True)
    place.plant(where, kind)
    check(place, COMMANDS)


def test_clean_never_lists_or_removes_files_behind_links(hub_env: HubServer, tmp_path: Path) -> None:
    place = Place(tmp_path)
    (place.dest / ".mdl").mkdir()
    place.plant(".mdl/partial", "link-dir")
    place.plant(".mdl/locks", "link-dir")
    for args in (("--dry-run",), ()):
        result = mdl("clean", *args, "--dest", str(place.dest), "--catalog", str(tmp_path / "catalog.toml"))
        assert result.exit_code == 2, result.output
        assert ".mdl/partial" in result.output and "link" in result.output
        assert "backup.tmp" not in result.output and "disk.part" not in result.output
    assert sorted(p.name for p in place.outside.iterdir()) == [
        "backup.tmp",
        "config.json",
        "db.lock",
        "disk.part",
        "nested",
        "tiny.json",
    ]


def test_pull_never_writes_its_record_through_a_link(hub_env: HubServer, tmp_path: Path) -> None:
    place = Place(tmp_path)
    (place.dest / ".mdl").mkdir()
    place.plant(".mdl/records", "link-dir")
    before = snapshot(place.outside)
    result = place.run("pull")
    assert result.exit_code == 2, result.output
    assert ".mdl/records" in result.output
    assert snapshot(place.outside) == before


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    plants=st.lists(st.tuples(st.sampled_from(PLACES), st.sampled_from(KINDS)), min_size=1, max_size=4),
    commands=st.lists(st.sampled_from(COMMANDS), min_size=1, max_size=4),
)
def test_nothing_outside_dest_is_ever_touched(
    hub_env: HubServer, plants: list[tuple[str, str]], commands: list[str]
) -> None:
    with tempfile.TemporaryDirectory() as folder:
        place = Place(Path(folder))
        for where, kind in plants:
            ancestors = [place.dest.joinpath(*where.split("/")[:i]) for i in range(1, where.count("/") + 1)]
            if any(a.is_symlink() or (a.exists() and not a.is_dir()) for a in ancestors):
                continue  # a folder on its way is itself a planted entry: nothing to plant inside it
            (place.dest / where).parent.mkdir(parents=True, exist_ok=True)
            place.plant(where, kind)
        check(place, commands)


@pytest.mark.parametrize(
    "where", ["models--org--tiny/blobs", "models--org--tiny/snapshots", "models--org--tiny", ".locks/mdl/partial"]
)
def test_the_hf_cache_is_never_written_through_a_link(
    hub_env: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    place = Place(tmp_path)
    cache = tmp_path / "hf-cache"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    (cache / where).parent.mkdir(parents=True)
    (cache / where).symlink_to(place.outside)
    before = snapshot(place.outside)
    common = ("--catalog", str(tmp_path / "catalog.toml"), "--dest", str(place.dest), "--layout", "hf-cache")
    for args in (("pull", "tiny"), ("verify", "tiny"), ("clean",)):
        result = mdl(*args, *common)
        assert result.exit_code in (0, 2, 4), result.output
        assert "internal error" not in result.output
    assert mdl("pull", "tiny", *common).exit_code == 2
    assert snapshot(place.outside) == before
