"""Issue 24, examples: links planted in mdl's own folders and in model folders are never followed.

`<dest>/.mdl/` (and `partial`, `locks`, `records` in it), a model folder, and in the Hugging Face
cache `.locks/…` and `models--o--n/{blobs,snapshots,refs}`, are made symlinks to folders outside the
destination that hold canary files — some named as mdl names its own files, so no name filter can
save them. Whatever mdl does (refuse with exit 2 naming the link, or work without following it), it
never exits 1, never shows a traceback, and every file outside is left byte for byte as it was, with
no file added or removed.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from planted import no_hang, snapshot
from runfixtures import HANG, mdl
from servers import HubServer, git_blob_sha1, make_data
from typer.testing import Result

from mdl.store.store import Store

CONFIG = b'{"model_type": "bert"}\n'
WEIGHTS = make_data(300_000, seed=24)
VOCAB = b"[PAD]\n[UNK]\n"
FILES = {"config.json": CONFIG, "model.safetensors": WEIGHTS, "nested/vocab.txt": VOCAB}
CATALOG = '[models.tiny]\nrepo = "org/tiny"\n'


def mdl_names() -> list[str]:
    """The names mdl gives its own files for model `tiny` (and for a `get` of config.json)."""
    store = Store(Path("/nowhere"))
    names = [
        "tiny.json",
        "tiny.record.lock",
        "backup.tmp",
        "disk.part",
        "db.lock",
        "x.part",
        "x.part.json",
    ]
    for model, path in [("tiny", p) for p in FILES] + [("", "config.json")]:
        part, state = store.part_paths(model, path)
        names += [part.name, state.name, f"{state.name}.tmp", store.lock_path(model, path).name]
    return names


def make_outside(root: Path) -> Path:
    """A folder outside the destination full of canaries, in the shapes mdl's own folders have."""
    outside = root / "outside"
    sha = hashlib.sha256(WEIGHTS).hexdigest()
    top = [
        *mdl_names(),
        "config.json",
        "model.safetensors",
        "main",
        git_blob_sha1(CONFIG),
        sha,
        f"{sha}.lock",
    ]
    for sub in ("", "partial", "locks", "records", "model", "model/nested", "blobs", "refs"):
        (outside / sub).mkdir(parents=True, exist_ok=True)
        for name in top:
            (outside / sub / name).write_bytes(b"canary " + f"{sub}/{name}".encode())
    return outside


class World:
    """A destination, an outside folder of canaries, a catalog and the Hub it names."""

    def __init__(self, root: Path, hub: HubServer) -> None:
        self.root = root
        self.hub = hub
        self.dest = root / "dest"
        self.cache = root / "hf-cache"
        self.catalog = root / "catalog.toml"
        self.catalog.write_text(CATALOG)
        self.outside = make_outside(root)
        self.dest.mkdir()

    def link(self, rel: str, target: str = "", *, under: Path | None = None) -> Path:
        """Make `<dest>/<rel>` (or `<under>/<rel>`) a link to `outside/<target>`; its parents are
        real folders.
        """
        link = (under or self.dest) / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(self.outside / target if target else self.outside)
        return link

    def mdl(self, *args: str) -> Result:
        """Run one command in-process; a watchdog releases FIFOs and then interrupts it if it
        hangs.
        """
        if args[0] == "get":  # get takes neither --catalog nor --dest: it fetches into -d DIR
            common = ["-d", str(self.dest), "--no-progress"]
        else:
            common = ["--catalog", str(self.catalog), "--dest", str(self.dest), "--no-progress"]
        with no_hang(self.dest, HANG, f"mdl {' '.join(args)}"):
            return mdl(*args, *common)


def text_of(result: Result) -> str:
    crash = (
        ""
        if result.exception is None or isinstance(result.exception, SystemExit)
        else repr(result.exception)
    )
    return result.stdout + result.stderr + crash


def check(result: Result, *links: Path) -> str:
    """Exit 0 or 2 (a refusal naming one of the links), never 1, never a traceback."""
    shown = text_of(result)
    assert "Traceback" not in shown and "internal error" not in shown.lower(), shown
    assert result.exit_code in (0, 2), f"exit {result.exit_code}\n{shown}"
    if result.exit_code == 2:
        assert any(str(link) in shown for link in links), f"exit 2 must name the link\n{shown}"
    return shown


@pytest.fixture
def world(hub: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    hub.add_repo("org/tiny", FILES)
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setenv("MDL_LOG_FILE", str(tmp_path / "mdl.log"))
    yield World(tmp_path, hub)


# -- clean
# ---------------------------------------------------------------------------------------------------


def test_clean_never_deletes_through_linked_partial_and_locks(world: World) -> None:
    (world.dest / ".mdl").mkdir()
    links = (world.link(".mdl/partial", "partial"), world.link(".mdl/locks", "locks"))
    before = snapshot(world.outside)
    shown = check(world.mdl("clean"), *links)
    assert snapshot(world.outside) == before, "clean deleted or touched files behind a link"
    assert all(name not in shown for name in ("backup.tmp", "disk.part", "db.lock")), shown


def test_clean_dry_run_lists_nothing_behind_links(world: World) -> None:
    (world.dest / ".mdl").mkdir()
    links = (world.link(".mdl/partial", "partial"), world.link(".mdl/locks", "locks"))
    before = snapshot(world.outside)
    shown = check(world.mdl("clean", "--dry-run"), *links)
    assert "would remove" not in shown, shown
    assert all(name not in shown for name in mdl_names()), shown
    as_json = world.mdl("clean", "--dry-run", "--json")
    check(as_json, *links)
    listed = json.loads(as_json.stdout).get("files") or []
    assert listed == [], f"--dry-run lists files behind a link: {listed}"
    assert snapshot(world.outside) == before


@pytest.mark.parametrize("target", ["disk.part", "partial", "nowhere.part"])
def test_clean_removes_at_most_a_planted_link_never_its_target(world: World, target: str) -> None:
    """`.mdl/partial` is real; links in it named like mdl's partials point at an outside file,
    folder, nothing.
    """
    part, state = Store(world.dest).part_paths("tiny", "model.safetensors")
    links = [world.link(f".mdl/partial/{p.name}", target) for p in (part, state)]
    links.append(world.link(".mdl/partial/x.part", target))
    before = snapshot(world.outside)
    check(world.mdl("clean"), *links)
    assert snapshot(world.outside) == before


# -- pull into a destination with links where mdl keeps its state
# ------------------------------------------


@pytest.mark.parametrize("sub", ["records", "partial", "locks"])
def test_pull_never_writes_through_a_linked_state_folder(world: World, sub: str) -> None:
    (world.dest / ".mdl").mkdir()
    link = world.link(f".mdl/{sub}", sub)
    before = snapshot(world.outside)
    result = world.mdl("pull", "tiny")
    check(result, link)
    assert snapshot(world.outside) == before, f"pull wrote through .mdl/{sub}"


@pytest.mark.parametrize(
    "command", [("pull", "tiny"), ("clean",), ("clean", "--dry-run"), ("verify", "tiny")]
)
def test_a_linked_dot_mdl_is_never_followed(world: World, command: tuple[str, ...]) -> None:
    link = world.link(".mdl")
    before = snapshot(world.outside)
    result = world.mdl(*command)
    # nothing pulled yet: "missing" is the answer
    if command[0] == "verify" and result.exit_code == 4:
        assert "Traceback" not in text_of(result)
    else:
        check(result, link)
    assert snapshot(world.outside) == before
    # it worked without the link: files in the real folder
    if command[0] == "pull" and result.exit_code == 0:
        assert (world.dest / "tiny" / "config.json").read_bytes() == CONFIG


@pytest.mark.slow
@pytest.mark.parametrize("target", ["locks", "db.lock", "nowhere.lock"])
@pytest.mark.parametrize(
    ("command", "model", "path"),
    [
        (("pull", "tiny"), "tiny", "config.json"),
        (("get", "hf://org/tiny/config.json"), "", "config.json"),
    ],
)
def test_a_link_where_a_lock_file_goes_is_never_followed(
    world: World, target: str, command: tuple[str, ...], model: str, path: str
) -> None:
    """`.mdl/locks` is real; the lock file of one file (and the record lock) is a link to a
    folder, a file, nothing.
    """
    store = Store(world.dest)
    links = [world.link(f".mdl/locks/{store.lock_path(model, path).name}", target)]
    if model:
        links.append(world.link(".mdl/locks/tiny.record.lock", target))
    before = snapshot(world.outside)
    check(world.mdl(*command), *links)
    assert snapshot(world.outside) == before


@pytest.mark.slow
@pytest.mark.parametrize(
    "rel",
    [
        ".mdl/records/tiny.json",
        ".mdl/partial/{part}",
        ".mdl/partial/{state}",
        ".mdl/locks/{lock}",
        ".mdl/locks/tiny.record.lock",
    ],
)
@pytest.mark.parametrize(
    "command", [("pull", "tiny"), ("verify", "tiny"), ("clean",), ("clean", "--dry-run")]
)
def test_a_fifo_where_mdl_keeps_its_state_never_hangs_a_command(
    world: World, rel: str, command: tuple[str, ...]
) -> None:
    store = Store(world.dest)
    part, state = store.part_paths("tiny", "model.safetensors")
    fifo = world.dest / rel.format(
        part=part.name, state=state.name, lock=store.lock_path("tiny", "config.json").name
    )
    fifo.parent.mkdir(parents=True)
    os.mkfifo(fifo)
    before = snapshot(world.outside)
    result = world.mdl(*command)  # the watchdog fails the test if it hangs
    shown = text_of(result)
    assert result.exit_code not in (1, 130) and "Traceback" not in shown, shown
    # 6: a damaged record
    assert result.exit_code in (0, 2, 4, 6, 7), f"exit {result.exit_code}\n{shown}"
    assert snapshot(world.outside) == before


@pytest.mark.slow
@pytest.mark.parametrize(
    ("rel", "command", "pulled_first"),
    [
        ("config.json", ("get", "hf://org/tiny/config.json"), False),
        ("config.json", ("get", "hf://org/tiny/config.json"), True),
        ("tiny/config.json", ("pull", "tiny"), True),
        ("tiny/config.json", ("verify", "tiny"), True),
        ("tiny/model.safetensors", ("pull", "tiny"), False),
    ],
)
def test_a_fifo_where_a_file_goes_never_hangs_a_command(
    world: World, rel: str, command: tuple[str, ...], pulled_first: bool
) -> None:
    if pulled_first:
        assert world.mdl("pull", "tiny").exit_code == 0
        (world.dest / rel).unlink(missing_ok=True)
    (world.dest / rel).parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(world.dest / rel)
    result = world.mdl(*command)  # the watchdog fails the test if it hangs
    shown = text_of(result)
    assert result.exit_code in (0, 2, 4, 6, 7) and "Traceback" not in shown, (
        f"exit {result.exit_code}\n{shown}"
    )


# -- model folders
# -------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(
    ("rel", "target"),
    [
        ("tiny", "model"),
        ("tiny/nested", "model/nested"),
        ("tiny/config.json", "config.json"),
        ("tiny/model.safetensors", "model.safetensors"),
        ("tiny/nested/vocab.txt", "nowhere"),
    ],
)
def test_pull_never_writes_through_a_link_in_the_model_folder(
    world: World, rel: str, target: str
) -> None:
    link = world.link(rel, target)
    before = snapshot(world.outside)
    result = world.mdl("pull", "tiny")
    check(result, link)
    assert snapshot(world.outside) == before, f"pull wrote through {rel}"
    if result.exit_code == 0:  # it replaced the link: the real file is in the real model folder now
        for path, data in FILES.items():
            final = world.dest / "tiny" / path
            assert not final.is_symlink() and final.read_bytes() == data
            assert final.resolve().is_relative_to(world.dest.resolve())


def test_a_link_planted_after_a_pull_is_never_followed_by_verify_or_a_forced_pull(
    world: World,
) -> None:
    assert world.mdl("pull", "tiny").exit_code == 0
    (world.dest / "tiny" / "config.json").unlink()
    link = world.link("tiny/config.json", "config.json")
    before = snapshot(world.outside)
    verify = world.mdl("verify", "tiny")
    assert verify.exit_code != 1 and "Traceback" not in text_of(verify), text_of(verify)
    check(world.mdl("pull", "tiny", "--force"), link)
    assert snapshot(world.outside) == before


# -- the Hugging Face cache
# ------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(
    "rel",
    [
        "models--org--tiny/blobs",
        "models--org--tiny/snapshots",
        "models--org--tiny/refs",
        "models--org--tiny",
        ".locks/mdl",
        ".locks/mdl/partial",
        ".locks/mdl/records",
        ".locks/mdl/locks",
        ".locks/models--org--tiny",
    ],
)
@pytest.mark.parametrize("command", [("pull", "tiny"), ("clean",)])
def test_hf_cache_folders_mdl_manages_are_never_written_through(
    world: World, rel: str, command: tuple[str, ...]
) -> None:
    target = {
        "blobs": "blobs",
        "refs": "refs",
        "partial": "partial",
        "records": "records",
        "locks": "locks",
    }
    link = world.link(rel, target.get(rel.rsplit("/", 1)[-1], ""), under=world.cache)
    before = snapshot(world.outside)
    result = world.mdl(*command, "--layout", "hf-cache")
    check(result, link)
    assert snapshot(world.outside) == before, f"{' '.join(command)} wrote through {rel}"


@pytest.mark.slow
@pytest.mark.parametrize(
    "rel",
    [
        ".locks/models--org--tiny/{sha}.lock",
        ".locks/mdl/locks/{lock}",
        ".locks/mdl/records/tiny.json",
        ".locks/mdl/partial/{part}",
        "models--org--tiny/blobs/{sha}",
        "models--org--tiny/refs/main",
        "models--org--tiny/snapshots/{commit}/config.json",
    ],
)
@pytest.mark.parametrize("target", ["db.lock", "nowhere"])
def test_hf_cache_entries_mdl_manages_are_never_written_through(
    world: World, rel: str, target: str
) -> None:
    """The cache's folders are real; one entry mdl writes (a lock, record, partial, blob, ref,
    link) is a link.
    """
    store = Store(world.cache, state_dir=world.cache / ".locks" / "mdl")
    names = {
        "sha": hashlib.sha256(WEIGHTS).hexdigest(),
        "lock": store.lock_path("tiny", "model.safetensors").name,
        "part": store.part_paths("tiny", "model.safetensors")[0].name,
        "commit": world.hub.repo("org/tiny").head.sha,
    }
    link = world.link(rel.format(**names), target, under=world.cache)
    before = snapshot(world.outside)
    result = world.mdl("pull", "tiny", "--layout", "hf-cache")
    check(result, link)
    assert snapshot(world.outside) == before, f"pull wrote through {rel}"


@pytest.mark.parametrize(
    ("layout", "moved"),
    [
        ("plain", "tiny"),
        ("plain", "tiny/nested"),
        ("hf-cache", "models--org--tiny"),
        ("hf-cache", "models--org--tiny/blobs"),
        ("hf-cache", "models--org--tiny/snapshots"),
        ("hf-cache", "models--org--tiny/snapshots/{commit}"),
        ("hf-cache", "models--org--tiny/snapshots/{commit}/nested"),
    ],
)
def test_a_folder_moved_out_and_linked_back_is_refused_by_every_command(
    world: World, layout: str, moved: str
) -> None:
    """A folder a pull filled, moved out of the destination (or cache) and a link left in its
    place: every command refuses it alike, exit 2 naming the link and nothing on stdout (none reads
    through it, as a forced pull never did, nor calls the files missing)."""
    assert world.mdl("pull", "tiny", "--layout", layout).exit_code == 0
    root = world.dest if layout == "plain" else world.cache
    folder = root / moved.format(commit=world.hub.repo("org/tiny").head.sha)
    away = world.root / "away"
    shutil.move(folder, away)
    folder.symlink_to(away)
    before = snapshot(away)
    for command in (("pull", "tiny"), ("verify", "tiny"), ("list",), ("pull", "tiny", "--force")):
        result = world.mdl(*command, "--layout", layout)
        said = f"{folder} is a symbolic link; mdl never follows links inside {root}"
        assert result.exit_code == 2 and said in result.stderr, (command, text_of(result))
        assert result.stdout == "", (command, result.stdout)
    with pytest.MonkeyPatch.context() as offline:  # offline too: a link, not "must be fetched"
        offline.setenv("HF_HUB_OFFLINE", "1")
        result = world.mdl("pull", "tiny", "--layout", layout)
    assert result.exit_code == 2 and said in result.stderr, text_of(result)
    assert snapshot(away) == before and folder.is_symlink()
