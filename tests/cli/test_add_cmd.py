"""mdl add and mdl remove against the loopback Hub and CDN: the catalog edited in place, checked
upstream first, exit codes per failure with the file untouched, offline edits, and catalog.lock kept
in step."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from runfixtures import HANG, Meeting, mdl
from servers import TOKEN, CdnServer, Fault, HubServer, make_data
from zygote import forked_mdl

from mdl.catalog.load import lock_beside
from mdl.lockfile.io import read_lock, write_lock
from mdl.lockfile.model import Lock, LockedFile, LockedModel

WEIGHTS = make_data(300_000, seed=3)

HAND = """\
# Models for the render farm.   (hand-written; mdl add must keep every line)

[settings]
connections = 4   # the NAS is slow

# smoke test
[models.tiny]
repo = "org/tiny"  # public

# Z-Image Turbo, built with mdl add from three repos
[models.z]
files = [
  { repo = "org/diffusion", path = "z.gguf" },  # the transformer
]

# -- retired ------------------------------------------------------------------
# [models.old]
# repo = "org/old"
"""


@pytest.fixture
def world(hub: HubServer, catalog: Path) -> Path:
    hub.add_repo("org/tiny", {"config.json": b"{}", "model.safetensors": WEIGHTS})
    hub.add_repo("org/diffusion", {"z.gguf": WEIGHTS, "vae/ae.safetensors": b"vae" * 100})
    hub.add_repo("org/encoder", {"qwen.gguf": b"encoder" * 100})
    hub.add_repo("org/gated", {"w.bin": b"secret"}, gated=True)
    hub.add_repo("org/data", {"train.parquet": b"rows"}, repo_type="dataset")
    catalog.write_text(HAND)
    return catalog


def block_added(before: str, after: str) -> str:
    """The one contiguous run of lines ``after`` has that ``before`` has not; asserts nothing
    else changed.
    """
    a, b = before.splitlines(keepends=True), after.splitlines(keepends=True)
    head = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), len(a))
    tail = len(a) - head
    assert b[len(b) - tail :] == a[head:], "lines after the new entry changed"
    return "".join(b[head : len(b) - tail])


def test_add_a_repo_keeps_every_comment_and_pulls(world: Path, hub: HubServer) -> None:
    result = mdl("add", "enc", "hf://org/encoder", "--include", "*.gguf")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""  # an edit has no data to print
    assert f"added enc to {world}" in result.stderr
    # after the last model; the commented-out one stays last, where it was
    block = '\n[models.enc]\nrepo = "org/encoder"\ninclude = ["*.gguf"]\n'
    assert world.read_text() == HAND.replace("]\n\n# -- retired", "]\n" + block + "\n# -- retired")
    pulled = mdl("pull", "enc")
    assert pulled.exit_code == 0, pulled.stderr


def test_add_builds_a_multi_repo_model_one_file_at_a_time(world: Path, tmp_path: Path) -> None:
    assert (
        mdl(
            "add", "z", "hf://org/diffusion/vae/ae.safetensors", "--as", "vae/ae.safetensors"
        ).exit_code
        == 0
    )
    result = mdl("add", "z", "hf://org/encoder/qwen.gguf", "--json")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert (doc["ok"], doc["action"], doc["added"], doc["checked"]) == (
        True,
        "extended",
        ["qwen.gguf"],
        True,
    )
    added = block_added(HAND, world.read_text())
    assert (
        added
        == '  { repo = "org/diffusion", path = "vae/ae.safetensors", as = "vae/ae.safetensors" },\n'
        '  { repo = "org/encoder", path = "qwen.gguf" },\n'
    )
    pulled = mdl("pull", "z")
    assert pulled.exit_code == 0, pulled.stderr
    folder = tmp_path / "models" / "z"
    assert sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()) == [
        "qwen.gguf",
        "vae/ae.safetensors",
        "z.gguf",
    ]


def test_datasets_and_revisions_and_urls(world: Path, cdn: CdnServer) -> None:
    url = cdn.add_file("/loras/style.safetensors", b"lora" * 50)
    assert mdl("add", "data", "hf://datasets/org/data@main").exit_code == 0
    result = mdl("add", "lora", url, "--sha256", "A" * 64, "--no-check")
    assert result.exit_code == 0, result.stderr
    assert mdl("add", "lora2", url).exit_code == 0
    text = world.read_text()
    assert '[models.data]\nrepo = "org/data"\nrepo_type = "dataset"\n' in text
    assert f'files = [\n  {{ url = "{url}", sha256 = "{"a" * 64}" }},\n]\n' in text


@pytest.mark.parametrize(
    ("source", "code", "words"),
    [
        ("hf://org/nope", 4, "repository org/nope not found"),
        ("hf://org/tiny@v9", 4, "revision 'v9' not found"),
        ("hf://org/tiny/nope.bin", 4, "nope.bin not found"),
        ("hf://org/gated/w.bin", 3, "gated"),
    ],
)
def test_a_source_that_is_not_there_is_refused_and_nothing_written(
    world: Path, source: str, code: int, words: str
) -> None:
    before = world.stat()
    result = mdl("add", "new", source)
    assert result.exit_code == code, result.stderr
    assert words in result.stderr
    assert world.read_text() == HAND and world.stat().st_mtime_ns == before.st_mtime_ns


def test_an_include_that_matches_nothing_is_not_found(world: Path) -> None:
    result = mdl("add", "new", "hf://org/tiny", "--include", "*.gguf")
    assert result.exit_code == 4, result.stderr
    assert world.read_text() == HAND


def test_a_missing_url_is_4_and_a_hub_outage_is_5(
    world: Path, hub: HubServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = mdl("add", "new", f"{hub.cdn.url}/nowhere/x.bin")
    assert missing.exit_code == 4, missing.stderr
    monkeypatch.setenv("MDL_RETRIES", "0")
    hub.faults.add(Fault.http_error(503, retry_after=0, times=None, path_prefix="/api/"))
    outage = mdl("add", "new", "hf://org/tiny")
    assert outage.exit_code == 5, outage.stderr
    assert world.read_text() == HAND


def test_a_token_opens_a_gated_file(world: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    assert mdl("add", "g", "hf://org/gated/w.bin").exit_code == 0


def test_offline_add_asks_nothing(
    world: Path, hub: HubServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    hub.log.clear()
    result = mdl("add", "later", "hf://org/not-yet-there/x.bin", "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["checked"] is False
    assert len(hub.log) == 0
    assert 'files = [\n  { repo = "org/not-yet-there", path = "x.bin" },\n]\n' in world.read_text()


def test_contradictions_are_exit_2_naming_the_entry(world: Path) -> None:
    result = mdl("add", "tiny", "hf://org/encoder")
    assert result.exit_code == 2
    assert "models.tiny is already a whole-repo snapshot of org/tiny; pass --force" in result.stderr
    result = mdl("add", "z", "hf://org/encoder/qwen.gguf", "--as", "z.gguf")
    assert result.exit_code == 2
    assert "models.z.files[0] already saves to 'z.gguf'" in result.stderr
    assert world.read_text() == HAND
    assert mdl("add", "tiny", "hf://org/encoder", "--force").exit_code == 0
    assert '# smoke test\n[models.tiny]\nrepo = "org/encoder"\n\n# Z-Image' in world.read_text()


def test_the_same_add_twice_changes_nothing(world: Path) -> None:
    result = mdl("add", "tiny", "hf://org/tiny@main")
    assert result.exit_code == 0, result.stderr
    assert "already in" in result.stderr
    assert world.read_text() == HAND


def test_a_broken_catalog_is_reported_not_edited(world: Path) -> None:
    world.write_text(HAND + "[models.bad]\nrepo = 3\n")
    result = mdl("add", "new", "hf://org/tiny")
    assert result.exit_code == 2
    assert "models.bad.repo: must be a string" in result.stderr


def test_the_catalog_is_created_where_mdl_would_look(
    world: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MDL_CATALOG")
    here = tmp_path / "project"
    here.mkdir()
    monkeypatch.chdir(here)
    result = mdl("add", "tiny", "hf://org/tiny")
    assert result.exit_code == 0, result.stderr
    assert f"created {here / 'catalog.toml'}" in result.stderr
    text = (here / "catalog.toml").read_text()
    assert text.startswith("# catalog.toml: ") and text.endswith(
        '\n\n[models.tiny]\nrepo = "org/tiny"\n'
    )
    elsewhere = tmp_path / "new" / "dir" / "models.toml"
    assert mdl("add", "tiny", "hf://org/tiny", "--catalog", str(elsewhere)).exit_code == 0
    assert elsewhere.read_text() == text
    assert mdl("list", "--catalog", str(elsewhere)).exit_code == 0


def test_a_symlinked_catalog_stays_a_symlink_with_its_mode(world: Path, tmp_path: Path) -> None:
    link = tmp_path / "link.toml"
    link.symlink_to(world)
    world.chmod(0o640)
    assert mdl("add", "enc", "hf://org/encoder", "--catalog", str(link)).exit_code == 0
    assert link.is_symlink() and "[models.enc]" in world.read_text()
    assert os.stat(world).st_mode & 0o777 == 0o640


def test_remove_keeps_every_other_byte_and_says_did_you_mean(world: Path) -> None:
    result = mdl("remove", "tiny")
    assert result.exit_code == 0, result.stderr
    assert world.read_text() == HAND.replace(
        '# smoke test\n[models.tiny]\nrepo = "org/tiny"  # public\n\n', ""
    )
    unknown = mdl("remove", "zz")
    assert unknown.exit_code == 2
    assert "unknown model 'zz'" in unknown.stderr and "did you mean 'z'?" in unknown.stderr


def _lock_with(*names: str) -> Lock:
    source = "hf://org/tiny@" + "a" * 40 + "/config.json"
    models = {
        name: LockedModel(
            name,
            "sha256:" + "0" * 64,
            "main",
            "a" * 40,
            (LockedFile("config.json", 2, "b" * 64, source),),
        )
        for name in names
    }
    return Lock(models=models)


def test_remove_drops_the_model_from_the_lock(world: Path) -> None:
    lock_file = lock_beside(world)
    write_lock(lock_file, _lock_with("tiny", "z"))
    result = mdl("remove", "tiny", "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["lock"] == str(lock_file)
    lock = read_lock(lock_file)
    assert lock is not None and list(lock.models) == ["z"]


def test_offline_add_with_a_lock_says_to_lock_later(
    world: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lock_file = lock_beside(world)
    write_lock(lock_file, _lock_with("tiny"))
    before = lock_file.read_bytes()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    result = mdl("add", "enc", "hf://org/encoder")
    assert result.exit_code == 0, result.stderr
    assert "was not updated for enc (HF_HUB_OFFLINE is set); run 'mdl lock enc'" in result.stderr
    assert lock_file.read_bytes() == before


def test_a_sha256_the_hub_contradicts_is_an_integrity_error(world: Path, hub: HubServer) -> None:
    result = mdl("add", "w", "hf://org/tiny/model.safetensors", "--sha256", "0" * 64)
    assert result.exit_code == 6, result.stderr
    assert world.read_text() == HAND
    right = hub.repo("org/tiny").file("model.safetensors").sha256
    assert mdl("add", "w", "hf://org/tiny/model.safetensors", "--sha256", right).exit_code == 0


def test_remove_refuses_a_broken_lock_before_touching_the_catalog(world: Path) -> None:
    lock_beside(world).write_text("version = [\n")
    result = mdl("remove", "tiny")
    assert result.exit_code == 2
    assert world.read_text() == HAND


def test_add_locks_the_new_model_when_there_is_a_lock(world: Path) -> None:
    assert mdl("lock").exit_code == 0
    lock_file = lock_beside(world)
    before = read_lock(lock_file)
    assert before is not None and sorted(before.models) == ["tiny", "z"]
    result = mdl("add", "enc", "hf://org/encoder", "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["lock"] == str(lock_file)
    after = read_lock(lock_file)
    assert after is not None and sorted(after.models) == ["enc", "tiny", "z"]
    assert after.models["tiny"] == before.models["tiny"]  # the others as they were
    assert mdl("lock", "--check").exit_code == 0
    assert mdl("remove", "enc").exit_code == 0
    assert read_lock(lock_file) == before
    assert mdl("lock", "--check").exit_code == 0


def test_the_python_api_is_what_the_command_calls(world: Path, tmp_path: Path) -> None:
    import mdl

    change = mdl.add("enc", "hf://org/encoder", include=["*.gguf"], catalog=world)
    assert (change.action, change.checked, change.entry) == (
        "added",
        True,
        {"repo": "org/encoder", "include": ["*.gguf"]},
    )
    with pytest.raises(mdl.NotFoundError):
        mdl.add("nope", "hf://org/nope", catalog=world)
    other = tmp_path / "other.toml"
    offline = mdl.add("x", "hf://org/x/w.bin", catalog=other, environ={"HF_HUB_OFFLINE": "1"})
    assert (offline.created, offline.checked) == (True, False)
    assert mdl.remove("enc", catalog=world).action == "removed"
    assert world.read_text() == HAND
    with pytest.raises(mdl.UsageError, match="did you mean 'x'"):
        mdl.remove("xx", catalog=other)


def test_add_to_files_written_as_tables_of_an_array_keeps_every_comment(world: Path) -> None:
    tables = (
        "\n# the LoRA pack\n[[models.pack.files]]  # first LoRA\n"
        'repo = "org/diffusion"  # from the diffusion repo\npath = "z.gguf"\n# (more to come)\n'
    )
    world.write_text(HAND + tables)
    before = world.read_text()
    result = mdl("add", "pack", "hf://org/encoder/qwen.gguf")
    assert result.exit_code == 0, result.stderr
    assert (
        block_added(before, world.read_text())
        == '\n[[models.pack.files]]\nrepo = "org/encoder"\npath = "qwen.gguf"\n'
    )
    assert mdl("pull", "pack").exit_code == 0


@pytest.mark.slow
def test_two_adds_at_once_keep_both_entries_and_both_lock_entries(
    world: Path, hub: HubServer
) -> None:
    """Each add reads the catalog, checks its source upstream, then writes: the second write must
    not drop the first's entry. Two real processes; the Hub stand-in holds the first API request
    until the other run's has come, so both read first."""
    assert mdl("lock").exit_code == 0
    hub.faults.add(Fault.call(Meeting(), path_prefix="/api/", times=None))
    runs = [
        subprocess.Popen(
            [forked_mdl(), "add", name, source, "--no-progress"],
            env=dict(os.environ),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, source in (("enc", "hf://org/tiny"), ("data", "hf://datasets/org/data"))
    ]
    for run in runs:
        _, err = run.communicate(timeout=HANG)
        assert run.returncode == 0, err
    # every line of HAND kept; the two entries side by side
    added = block_added(HAND, world.read_text())
    assert "[models.enc]" in added and "[models.data]" in added
    lock = read_lock(lock_beside(world))
    assert lock is not None and sorted(lock.models) == ["data", "enc", "tiny", "z"]
    assert mdl("lock", "--check").exit_code == 0


def test_description_and_tags_on_an_entry_that_is_there_ask_nothing_and_keep_the_lock(
    world: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert mdl("lock").exit_code == 0
    lock_file = lock_beside(world)
    before = lock_file.read_bytes()
    # no Hub: a question upstream would fail (exit 5)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    result = mdl(
        "add",
        "tiny",
        "--description",
        "Tiny model for smoke tests",
        "--tag",
        "test",
        "--tag",
        "nlp",
    )
    assert result.exit_code == 0, result.stderr
    assert f"updated tiny in {world}" in result.stderr and "lock" not in result.stderr
    block = (
        '[models.tiny]\ndescription = "Tiny model for smoke tests"\ntags = ["test", "nlp"]\nrepo ='
        ' "org/tiny"'
    )
    assert world.read_text() == HAND.replace('[models.tiny]\nrepo = "org/tiny"', block)
    assert lock_file.read_bytes() == before  # description and tags are not what a lock pins
    doc = json.loads(mdl("add", "tiny", "--tag", "bert", "--tag", "test", "--json").stdout)
    assert doc["action"] == "updated" and doc["entry"]["tags"] == ["test", "nlp", "bert"]
    listed = mdl("list", "--tag", "bert")
    assert listed.exit_code == 0, listed.stderr
    assert "Tiny model for smoke tests" in listed.stdout
    again = mdl("add", "tiny", "--tag", "nlp")
    assert again.exit_code == 0 and "nothing changed" in again.stderr
    replaced = mdl("add", "tiny", "--tag", "smoke", "--force", "--json")
    assert json.loads(replaced.stdout)["entry"]["tags"] == ["smoke"]


def test_a_new_entry_with_description_and_tags(world: Path) -> None:
    result = mdl("add", "enc", "hf://org/encoder", "--description", "Qwen encoder", "--tag", "llm")
    assert result.exit_code == 0, result.stderr
    block = '\n[models.enc]\ndescription = "Qwen encoder"\ntags = ["llm"]\nrepo = "org/encoder"\n'
    assert world.read_text() == HAND.replace("]\n\n# -- retired", "]\n" + block + "\n# -- retired")
    new = mdl("add", "new", "--description", "no source")
    assert new.exit_code == 2 and "models.new is not in the catalog: give a SOURCE" in new.stderr
    bare = mdl("add", "tiny")
    assert bare.exit_code == 2 and "give at least one SOURCE" in bare.stderr
