"""``--layout hf-cache``: what mdl writes there is found, offline, by huggingface_hub itself (run
in a subprocess).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from planted import KINDS, kind_at, plant
from runfixtures import mdl
from servers import HubServer, git_blob_sha1, make_data

from mdl.catalog.settings import build_settings, hf_hub_cache
from mdl.errors import ExitCode, MdlError
from mdl.setting import Overrides
from mdl.store.layout import Layout, parse_hub_source
from mdl.store.store import Store

WEIGHTS = make_data(3_000_000, seed=21)
CONFIG = b'{"model_type": "bert"}\n'
VOCAB = b"[PAD]\n[UNK]\n" * 40
LORA = make_data(50_000, seed=22)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "hf-cache"


@pytest.fixture
def env(hub: HubServer, tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch) -> HubServer:
    hub.add_repo(
        "org/tiny",
        {
            "config.json": CONFIG,
            "model.safetensors": WEIGHTS,
            "nested/vocab.txt": VOCAB,
            "README.md": b"# t\n",
        },
    )
    hub.add_repo("other/vae", {"ae.safetensors": LORA})
    lora = hub.cdn.add_file("/loras/style.safetensors", LORA)
    (tmp_path / "catalog.toml").write_text(
        textwrap.dedent(f"""
            [models.tiny]
            repo = "org/tiny"
            include = ["*.json", "*.safetensors", "*.txt"]

            [[models.combo.files]]
            repo = "org/tiny"
            path = "config.json"

            [[models.combo.files]]
            repo = "other/vae"
            path = "ae.safetensors"
            as = "vae/ae.safetensors"

            [[models.combo.files]]
            url = "{lora}"
            sha256 = "{sha256(LORA)}"
            """)
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("MDL_DEST", str(tmp_path / "models"))
    monkeypatch.setenv("MDL_LOG_FILE", str(tmp_path / "mdl.log"))
    return hub


def run_hf(code: str, *, offline: bool = True) -> subprocess.CompletedProcess[str]:
    """Run huggingface_hub in a fresh interpreter (its settings are frozen at import) with this
    test's env.
    """
    environ = dict(os.environ)
    if offline:
        environ["HF_HUB_OFFLINE"] = "1"
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.mark.slow
def test_snapshot_in_hf_cache_loads_offline_through_huggingface_hub(
    env: HubServer, cache: Path
) -> None:
    result = mdl("pull", "tiny", "--layout", "hf-cache", "--json")
    assert result.exit_code == 0, result.stderr
    commit = env.repo("org/tiny").sha
    snapshot = cache / "models--org--tiny" / "snapshots" / commit
    doc = json.loads(result.stdout)
    assert {f["dest"] for f in doc["files"]} == {
        str(snapshot / p) for p in ("config.json", "model.safetensors", "nested/vocab.txt")
    }
    # The layout itself: blobs named by ETag (sha256 for LFS, git blob id otherwise), relative
    # links, refs/main.
    assert (cache / "models--org--tiny" / "refs" / "main").read_text() == commit
    weights_link = snapshot / "model.safetensors"
    assert weights_link.is_symlink() and not os.path.isabs(os.readlink(weights_link))
    assert (
        weights_link.resolve()
        == (cache / "models--org--tiny" / "blobs" / sha256(WEIGHTS)).resolve()
    )
    assert (snapshot / "config.json").resolve().name == git_blob_sha1(CONFIG)
    assert not (cache / ".mdl").exists(), "scan_cache_dir would warn about a stray folder"
    assert not (Path("models") / "tiny").exists(), "nothing in the plain layout"

    requests_before = len(env.log) + len(env.cdn.log)
    out = run_hf(f"""
        import json
        from huggingface_hub import hf_hub_download, scan_cache_dir, snapshot_download, try_to_load_from_cache
        folder = snapshot_download("org/tiny", local_files_only=True)
        weights = hf_hub_download("org/tiny", "model.safetensors")  # HF_HUB_OFFLINE=1
        vocab = hf_hub_download("org/tiny", "nested/vocab.txt", revision="{commit}")
        info = scan_cache_dir()
        repo = next(iter(info.repos))
        print(json.dumps({{
            "folder": folder, "weights": weights, "vocab": vocab,
            "cached": try_to_load_from_cache("org/tiny", "config.json"),
            "warnings": [str(w) for w in info.warnings],
            "repos": [r.repo_id for r in info.repos], "files": repo.nb_files,
            "refs": sorted(ref for rev in repo.revisions for ref in rev.refs),
            "size": repo.size_on_disk,
        }}))
        """)
    found = json.loads(out.stdout)
    assert found["folder"] == str(snapshot)
    assert Path(found["weights"]).read_bytes() == WEIGHTS
    assert Path(found["vocab"]).read_bytes() == VOCAB
    assert Path(found["cached"]).read_bytes() == CONFIG
    assert found["warnings"] == []
    assert found["repos"] == ["org/tiny"] and found["files"] == 3 and found["refs"] == ["main"]
    assert found["size"] == len(WEIGHTS) + len(CONFIG) + len(VOCAB)
    hf_cli = Path(sys.executable).parent / "hf"
    # the `hf` command huggingface_hub installs: `hf cache ls` lists what mdl wrote
    if hf_cli.exists():
        listed = subprocess.run(
            [str(hf_cli), "cache", "ls"],
            env={**os.environ, "HF_HUB_OFFLINE": "1"},
            capture_output=True,
            text=True,
        )
        assert listed.returncode == 0 and "org/tiny" in listed.stdout, listed.stdout + listed.stderr
        assert "warning" not in (listed.stdout + listed.stderr).lower()
    assert len(env.log) + len(env.cdn.log) == requests_before, "offline loading made no request"


def test_list_verify_clean_understand_the_cache(env: HubServer, cache: Path) -> None:
    assert mdl("pull", "tiny", "--layout", "hf-cache").exit_code == 0
    listed = json.loads(mdl("list", "--layout", "hf-cache", "--json").stdout)
    assert {m["name"]: m["status"] for m in listed["models"]}["tiny"] == "installed"
    assert json.loads(mdl("list", "--json").stdout)["models"][0]["status"] == "missing", (
        "plain layout: not there"
    )
    shown = json.loads(mdl("show", "tiny", "--layout", "hf-cache", "--json").stdout)["models"][0]
    assert all("/snapshots/" in f["dest"] and f["state"] == "installed" for f in shown["files"])
    verified = mdl("verify", "tiny", "--layout", "hf-cache", "--json")
    assert verified.exit_code == 0, verified.stderr
    assert {f["action"] for f in json.loads(verified.stdout)["files"]} == {"verified"}

    commit = env.repo("org/tiny").sha
    link = cache / "models--org--tiny" / "snapshots" / commit / "config.json"
    link.unlink()
    assert (
        json.loads(mdl("list", "--layout", "hf-cache", "--json").stdout)["models"][0]["status"]
        == "partial"
    )
    broken = mdl("verify", "tiny", "--layout", "hf-cache")
    assert broken.exit_code == 4 and "config.json" in broken.stderr, (
        "the file programs open is missing"
    )
    assert "snapshot entry" in broken.stderr and "mdl pull tiny" in broken.stderr
    env.cdn.log.clear()
    repaired = mdl("pull", "tiny", "--layout", "hf-cache", "--json")
    assert repaired.exit_code == 0
    assert link.read_bytes() == CONFIG and env.cdn.log.body_bytes() == 0, (
        "relinked, not downloaded again"
    )

    blob = cache / "models--org--tiny" / "blobs" / sha256(WEIGHTS)
    # same size, other bytes: only a re-hash can tell
    blob.write_bytes(make_data(len(WEIGHTS), seed=99))
    corrupt = mdl("verify", "tiny", "--layout", "hf-cache", "--json")
    assert corrupt.exit_code == 6
    assert "model.safetensors" in json.dumps(json.loads(corrupt.stdout))

    # mdl's name
    partial, _ = Store(cache, state_dir=cache / ".locks" / "mdl").part_paths("tiny", "leftover.bin")
    partial.write_bytes(b"x" * 10)
    cleaned = mdl("clean", "--layout", "hf-cache", "--json")
    assert cleaned.exit_code == 0 and not partial.exists()


@pytest.mark.slow
def test_catalog_setting_and_mixed_sources(env: HubServer, tmp_path: Path, cache: Path) -> None:
    catalog = tmp_path / "catalog.toml"
    catalog.write_text('[settings]\nlayout = "hf-cache"\n' + catalog.read_text())
    result = mdl("pull", "combo", "--json")
    assert result.exit_code == 0, result.stderr
    dests = {f["path"]: Path(f["dest"]) for f in json.loads(result.stdout)["files"]}
    vae_commit = env.repo("other/vae").sha
    # A Hub file goes to its own repo's cache folder under its repo path ("as" renames only in the
    # plain layout).
    assert (
        dests["vae/ae.safetensors"]
        == cache / "models--other--vae" / "snapshots" / vae_commit / "ae.safetensors"
    )
    assert dests["vae/ae.safetensors"].read_bytes() == LORA
    # A direct URL has no place in the Hub cache: it keeps the plain layout.
    assert dests["style.safetensors"] == tmp_path / "models" / "combo" / "style.safetensors"
    assert dests["style.safetensors"].read_bytes() == LORA
    assert json.loads(mdl("list", "--json").stdout)["models"][1]["status"] == "installed"
    assert mdl("verify", "combo").exit_code == 0
    run_hf(
        'from huggingface_hub import hf_hub_download; open(hf_hub_download("other/vae",'
        ' "ae.safetensors"), "rb")'
    )


@pytest.mark.slow
def test_blob_already_in_the_cache_from_huggingface_hub_is_adopted(
    env: HubServer, cache: Path
) -> None:
    run_hf(
        """
        from huggingface_hub import snapshot_download
        snapshot_download("org/tiny", allow_patterns=["*.json", "*.safetensors", "*.txt"])
        """,
        offline=False,
    )
    env.cdn.log.clear()
    result = mdl("pull", "tiny", "--layout", "hf-cache", "--json")
    assert result.exit_code == 0, result.stderr
    assert {f["action"] for f in json.loads(result.stdout)["files"]} == {"skipped"}
    assert env.cdn.log.body_bytes() == 0, "checked by hash, not downloaded again"


@pytest.mark.slow
def test_a_blob_locked_by_huggingface_hub_is_waited_for(env: HubServer, cache: Path) -> None:
    from filelock import FileLock

    lock = FileLock(cache / ".locks" / "models--org--tiny" / f"{git_blob_sha1(CONFIG)}.lock")
    with lock:
        result = mdl("pull", "tiny", "--layout", "hf-cache", "--lock-timeout", "0.5")
    assert result.exit_code == 7
    # How the wait shows while it lasts is the display's (progress.waiting); the failure says it
    # waited.
    assert "config.json" in result.stderr and "(waited 0.5s)" in result.stderr


def test_offline_pull_needs_no_network_and_names_what_is_missing(
    env: HubServer, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for layout in ("plain", "hf-cache"):
        assert mdl("pull", "tiny", "--layout", layout).exit_code == 0
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    if True:
        before = len(env.log) + len(env.cdn.log)
        for layout in ("plain", "hf-cache"):
            result = mdl("pull", "tiny", "--layout", layout, "--json")
            assert result.exit_code == 0, result.stderr
            assert {f["action"] for f in json.loads(result.stdout)["files"]} == {"skipped"}
        assert len(env.log) + len(env.cdn.log) == before, "HF_HUB_OFFLINE=1: no request at all"
        commit = env.repo("org/tiny").sha
        (cache / "models--org--tiny" / "blobs" / sha256(WEIGHTS)).unlink()
        (Path("models") / "tiny" / "config.json").unlink()
        for layout, missing in (("hf-cache", "model.safetensors"), ("plain", "config.json")):
            result = mdl("pull", "tiny", "--layout", layout)
            assert result.exit_code == 5
            assert f"tiny/{missing}" in result.stderr and "HF_HUB_OFFLINE" in result.stderr
        never = mdl("pull", "combo", "--layout", "hf-cache")
        assert never.exit_code == 5 and "combo" in never.stderr
        assert len(env.log) + len(env.cdn.log) == before
        assert (cache / "models--org--tiny" / "snapshots" / commit / "config.json").exists()


def test_a_file_its_record_lost_is_missing_where_programs_open_it(
    env: HubServer, cache: Path
) -> None:
    """The listing names the file (its sha256 places it), its record does not: verify's
    "missing" names its snapshot entry, not the repo's folder."""
    assert mdl("pull", "tiny", "--layout", "hf-cache").exit_code == 0
    store = Store(cache, state_dir=cache / ".locks" / "mdl")
    store.drop_from_record("tiny", ("model.safetensors",))
    (cache / "models--org--tiny" / "blobs" / sha256(WEIGHTS)).unlink()
    result = mdl("verify", "tiny", "--layout", "hf-cache", "--json")
    assert result.exit_code == 4, result.output
    (found,) = [f for f in json.loads(result.stdout)["files"] if f["action"] == "missing"]
    entry = cache / "models--org--tiny" / "snapshots" / env.repo("org/tiny").sha
    assert found["dest"] == str(entry / "model.safetensors"), found
    assert f"tiny/model.safetensors: missing ({entry / 'model.safetensors'})" in result.stderr


def test_cache_location_matches_huggingface_hub(tmp_path: Path) -> None:
    cases = [
        {"HF_HUB_CACHE": str(tmp_path / "a")},
        {"HUGGINGFACE_HUB_CACHE": str(tmp_path / "b")},
        {"HF_HOME": str(tmp_path / "c")},
        {"XDG_CACHE_HOME": str(tmp_path / "d")},
        {"HF_HOME": str(tmp_path / "e"), "HF_HUB_CACHE": str(tmp_path / "f")},
    ]
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("HF_", "HUGGINGFACE_", "XDG_CACHE"))
    }
    for case in cases:
        theirs = subprocess.run(
            [
                sys.executable,
                "-c",
                "from huggingface_hub import constants; print(constants.HF_HUB_CACHE)",
            ],
            env={**base, **case},
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        assert hf_hub_cache({**base, **case}) == Path(theirs), case


def test_layout_setting_is_validated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "catalog.toml").write_text(
        '[settings]\nlayout = "flat"\n[models.a]\nrepo = "o/a"\n'
    )
    bad = mdl("list")
    assert bad.exit_code == 2 and "settings.layout" in bad.stderr
    (tmp_path / "catalog.toml").write_text('[models.a]\nrepo = "o/a"\n')
    flag = mdl("list", "--layout", "nope")
    # a Literal option: Typer names the choices
    assert flag.exit_code == 2 and "'--layout'" in flag.stderr
    assert "'nope' is not one of 'plain', 'hf-cache'" in flag.stderr
    monkeypatch.setenv("MDL_LAYOUT", "flat")
    env_var = mdl("list")
    assert (
        env_var.exit_code == 2 and "$MDL_LAYOUT: expected one of plain, hf-cache" in env_var.stderr
    )
    monkeypatch.setenv("MDL_LAYOUT", "hf-cache")
    settings = build_settings(environ=dict(os.environ), dest=tmp_path)
    assert settings.layout == "hf-cache" and settings.hf_cache == hf_hub_cache(os.environ)


def test_placement_refuses_what_cannot_be_placed(tmp_path: Path) -> None:
    settings = build_settings(
        environ={"HF_HUB_CACHE": str(tmp_path)},
        dest=tmp_path / "d",
        flags=Overrides(layout="hf-cache"),
    )
    layout = Layout(settings)
    good = layout.place(
        "m", "a.bin", source=f"hf://o/r@{'a' * 40}/a.bin", sha256="b" * 64, git_oid=None
    )
    assert good.final == tmp_path / "models--o--r" / "blobs" / ("b" * 64)
    # what the Hub failed to say is its reply's fault (exit 5), a hostile path is refused (exit 2)
    no_commit = "m/a.bin: the Hub did not name the commit of o/r"
    refused = [
        ("hf://o/r/a.bin", "b" * 64, ExitCode.NETWORK, no_commit),
        ("hf://o/r@../../x/a.bin", "b" * 64, ExitCode.NETWORK, no_commit),
        (f"hf://o/r@{'a' * 40}/../../evil", "b" * 64, ExitCode.USAGE, "m/a.bin: path in o/r"),
        (
            f"hf://o/r@{'a' * 40}/a.bin",
            "../../../evil",
            ExitCode.NETWORK,
            f"m/a.bin: the Hub named no sha256 or git blob id for hf://o/r@{'a' * 40}/a.bin",
        ),
    ]
    for source, sha, code, message in refused:
        with pytest.raises(MdlError) as info:
            layout.place("m", "a.bin", source=source, sha256=sha, git_oid=None)
        assert info.value.exit_code == code and info.value.message.startswith(message), info.value
    url = layout.place("m", "a.bin", source="https://cdn.example/a.bin", sha256=None, git_oid=None)
    assert url.final == tmp_path / "d" / "m" / "a.bin" and url.link is None
    ds = parse_hub_source(f"hf://datasets/o/r@{'c' * 40}/x/y.json")
    assert ds is not None and (ds.repo_type, ds.repo, ds.path) == ("dataset", "o/r", "x/y.json")
    assert parse_hub_source("https://x/y") is None


@pytest.mark.slow
def test_offline_pull_adopts_what_huggingface_hub_cached(
    env: HubServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_hf(
        """
        from huggingface_hub import hf_hub_download, snapshot_download
        snapshot_download("org/tiny")
        hf_hub_download("other/vae", "ae.safetensors")
        """,
        offline=False,
    )
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    before = len(env.log) + len(env.cdn.log)
    result = mdl("pull", "tiny", "--layout", "hf-cache", "--json")
    assert result.exit_code == 0, result.stderr
    files = json.loads(result.stdout)["files"]
    assert sorted(f["path"] for f in files) == [
        "config.json",
        "model.safetensors",
        "nested/vocab.txt",
    ]
    assert {f["sha256"] for f in files} == {sha256(CONFIG), sha256(WEIGHTS), sha256(VOCAB)}, (
        "hashed, then trusted"
    )
    combo = mdl("pull", "combo", "--layout", "hf-cache")
    assert combo.exit_code == 5, "the direct URL was never fetched"
    assert "combo/style.safetensors" in combo.stderr
    # The adopted file is only checked (hashed, its bar says so), never fetched or failed.
    assert [
        line
        for line in combo.stderr.splitlines()
        if "vae/ae.safetensors" in line and "checking" not in line
    ] == []
    assert len(env.log) + len(env.cdn.log) == before
    assert mdl("verify", "tiny", "--layout", "hf-cache").exit_code == 0


@pytest.mark.slow
def test_dataset_at_a_tag_lands_where_huggingface_hub_looks(
    env: HubServer, tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env.add_repo(
        "org/ds", {"data/train.jsonl": b'{"x": 1}\n', "README.md": b"# ds\n"}, repo_type="dataset"
    )
    catalog = tmp_path / "catalog.toml"
    catalog.write_text('[models.ds]\nrepo = "org/ds"\nrepo_type = "dataset"\n')
    result = mdl("pull", "ds", "--layout", "hf-cache", "--json")
    assert result.exit_code == 0, result.stderr
    commit = env.repo("org/ds", "dataset").sha
    assert (cache / "datasets--org--ds" / "refs" / "main").read_text() == commit
    run_hf("""
        from huggingface_hub import hf_hub_download, snapshot_download
        folder = snapshot_download("org/ds", repo_type="dataset", local_files_only=True)
        assert open(folder + "/data/train.jsonl", "rb").read() == b'{"x": 1}\\n'
        assert open(hf_hub_download("org/ds", "README.md", repo_type="dataset"), "rb").read() == b"# ds\\n"
        """)
    # Pinned to the commit itself: no ref to write, and huggingface_hub finds it by that commit.
    catalog.write_text(
        f'[models.ds]\nrepo = "org/ds"\nrepo_type = "dataset"\nrevision = "{commit}"\n'
    )
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache2"))
    assert mdl("pull", "ds", "--layout", "hf-cache").exit_code == 0
    assert not (tmp_path / "cache2" / "datasets--org--ds" / "refs").exists()
    run_hf(f"""
        from huggingface_hub import snapshot_download
        snapshot_download("org/ds", repo_type="dataset", revision="{commit}", local_files_only=True)
        """)


def test_one_blob_wanted_twice_in_one_run_does_not_wait_on_itself(
    env: HubServer, tmp_path: Path, cache: Path
) -> None:
    same = make_data(200_000, seed=23)
    env.add_repo(
        "org/ckpt",
        {f"checkpoint-{n}/config.json": CONFIG for n in (1, 2, 3)} | {"w.safetensors": same},
    )
    (tmp_path / "catalog.toml").write_text(
        '[models.a]\nrepo = "org/ckpt"\n[models.b]\nrepo = "org/ckpt"\n'
        '[[models.c.files]]\nrepo = "org/ckpt"\npath = "w.safetensors"\n'
        '[[models.c.files]]\nrepo = "org/ckpt"\npath = "w.safetensors"\nas = "copy/w.safetensors"\n'
    )
    for jobs in ("1", "4"):
        result = mdl(
            "pull",
            "a",
            "b",
            "c",
            "--layout",
            "hf-cache",
            "--jobs",
            jobs,
            "--lock-timeout",
            "5",
            "--json",
        )
        assert result.exit_code == 0, result.stderr
        assert len(json.loads(result.stdout)["files"]) == 10
    assert (
        json.loads(mdl("list", "--layout", "hf-cache", "--json").stdout)["models"][0]["status"]
        == "installed"
    )


def test_a_snapshot_link_that_cannot_be_made_is_exit_7(env: HubServer, cache: Path) -> None:
    commit = env.repo("org/tiny").sha
    blocker = cache / "models--org--tiny" / "snapshots" / commit
    blocker.parent.mkdir(parents=True)
    blocker.write_bytes(b"not a folder")  # where the snapshot folder must go
    result = mdl("pull", "tiny", "--layout", "hf-cache")
    assert result.exit_code == 7
    # Found before any byte is fetched (item 13): the snapshot entry's folder cannot be created.
    assert "cannot be saved at" in result.stderr and "is a file, not a folder" in result.stderr
    assert not env.cdn.log.records(method="GET"), "nothing was fetched"
    assert "Traceback" not in result.stderr


# -- the cache stays usable (issue 27): whenever `pull` (online or offline) or `verify` finds a
# model whole and verified there, refs/<revision> names its commit afterwards (a garbage, missing or
# stale ref is rewritten atomically) and huggingface_hub's own offline read finds the snapshot; a
# ref that is a folder or a FIFO is exit 7 naming the ref.


def ref_of(cache: Path) -> Path:
    return cache / "models--org--tiny" / "refs" / "main"


def damage(ref: Path, how: str) -> None:
    if how == "garbage":
        ref.write_bytes(b"\x00not a commit\xff\n")
    elif how == "missing":
        ref.unlink()
    elif how == "stale":
        ref.write_text("0" * 40)
    # the commit and a newline: huggingface_hub reads "<commit>\n" verbatim, finds no snapshot
    elif how == "newline":
        ref.write_text(ref.read_text() + "\n")
    else:  # pragma: no cover
        raise AssertionError(how)


def huggingface_hub_reads_it_offline(commit: str) -> None:
    out = run_hf("""
        from huggingface_hub import snapshot_download
        print(snapshot_download("org/tiny", local_files_only=True))
        """)
    assert out.stdout.strip().endswith(commit)


@pytest.fixture
def pulled(env: HubServer, cache: Path) -> str:
    result = mdl("pull", "tiny", "--layout", "hf-cache")
    assert result.exit_code == 0, result.stderr
    commit = env.repo("org/tiny").sha
    assert ref_of(cache).read_text() == commit
    return commit


@pytest.mark.slow
@pytest.mark.parametrize("how", ["garbage", "missing", "stale", "newline"])
@pytest.mark.parametrize("command", ["offline-pull", "online-pull", "verify"])
def test_a_damaged_ref_is_rewritten_when_the_model_is_found_whole(
    pulled: str, cache: Path, monkeypatch: pytest.MonkeyPatch, how: str, command: str
) -> None:
    damage(ref_of(cache), how)
    if command == "offline-pull":
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    args = ["verify", "tiny"] if command == "verify" else ["pull", "tiny"]
    result = mdl(*args, "--layout", "hf-cache")
    assert result.exit_code == 0, result.stderr
    assert ref_of(cache).read_text() == pulled  # no newline: huggingface_hub reads it verbatim
    assert not [p for p in ref_of(cache).parent.iterdir() if p.name != "main"], (
        "no temp file left beside the ref"
    )
    huggingface_hub_reads_it_offline(pulled)


@pytest.mark.slow
@pytest.mark.parametrize("command", ["offline-pull", "online-pull", "verify"])
@pytest.mark.parametrize("kind", ["folder", "fifo", "socket"])
def test_a_ref_that_is_not_a_file_is_exit_7_naming_the_ref(
    pulled: str, cache: Path, monkeypatch: pytest.MonkeyPatch, command: str, kind: str
) -> None:
    ref = ref_of(cache)
    ref.unlink()
    plant(ref, kind)  # a folder gets keep.txt inside
    if command == "offline-pull":
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    args = ["verify", "tiny"] if command == "verify" else ["pull", "tiny"]
    result = mdl(*args, "--layout", "hf-cache")
    assert result.exit_code == 7, result.stderr
    assert f"ref {ref} is {KINDS[kind]}" in result.stderr and "Traceback" not in result.stderr
    assert kind_at(ref) == kind  # left as it was


@pytest.mark.slow
def test_a_repaired_ref_is_left_alone_and_a_lost_refs_folder_comes_back(
    pulled: str, cache: Path
) -> None:
    """After the repair, a second offline pull changes nothing and huggingface_hub still reads
    the snapshot.
    """
    damage(ref_of(cache), "garbage")
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        assert mdl("pull", "tiny", "--layout", "hf-cache").exit_code == 0
        before = ref_of(cache).stat().st_mtime_ns
        assert mdl("pull", "tiny", "--layout", "hf-cache").exit_code == 0
        assert ref_of(cache).stat().st_mtime_ns == before  # a right ref is not rewritten
    finally:
        del os.environ["HF_HUB_OFFLINE"]
    huggingface_hub_reads_it_offline(pulled)
    shutil.rmtree(cache / "models--org--tiny" / "refs")
    assert mdl("verify", "tiny", "--layout", "hf-cache").exit_code == 0
    huggingface_hub_reads_it_offline(pulled)


def test_offline_a_cached_file_of_another_commit_is_not_expected_of_the_records(
    tmp_path: Path,
) -> None:
    """refs/main moved on since mdl's get (another tool fetched a later commit): offline, the
    later commit's files are not made part of the version the record holds."""
    from mdl.catalog.specs import ModelSpec
    from mdl.store.expected import ExpectedFile
    from mdl.store.layout import adopt_cached
    from mdl.store.records import FileRecord, ModelRecord

    first, later = "a" * 40, "b" * 40
    repo = tmp_path / "models--org--x"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(later)
    blob = repo / "blobs" / ("c" * 64)
    blob.parent.mkdir()
    blob.write_bytes(b"shard")
    for commit, name in ((first, "config.json"), (later, "config.json"), (later, "shard.bin")):
        (repo / "snapshots" / commit).mkdir(parents=True, exist_ok=True)
        (repo / "snapshots" / commit / name).symlink_to(blob)
    entry = FileRecord("config.json", 5, "c" * 64, 1, "hf://org/x@" + first, commit=first)
    record = ModelRecord(
        "models--org--x",
        "main",
        first,
        {"config.json": entry},
        expected={"config.json": ExpectedFile("config.json", 5, "c" * 64)},
    )
    adopted = adopt_cached(ModelSpec("models--org--x", repo="org/x"), record, tmp_path)
    assert adopted is not None and adopted.expected is not None
    assert sorted(adopted.expected) == ["config.json"]  # not the later commit's shard


def test_a_plans_files_look_at_each_folder_on_their_way_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The link check before a file is placed looks at each folder below the root once a run,
    however many files share it (a 300-file repo: not a walk from the root per file)."""
    settings = build_settings(
        environ={"HF_HUB_CACHE": str(tmp_path)},
        dest=tmp_path / "d",
        flags=Overrides(layout="hf-cache"),
    )
    commit = "a" * 40
    for folder in ("blobs", f"snapshots/{commit}/sub"):
        (tmp_path / "models--o--r" / folder).mkdir(parents=True)
    layout = Layout(settings)
    looked: list[str] = []
    real = os.lstat
    monkeypatch.setattr(
        os, "lstat", lambda path, *a, **k: looked.append(str(path)) or real(path, *a, **k)
    )
    for n in range(50):
        sha = hashlib.sha256(str(n).encode()).hexdigest()
        layout.place(
            "m", f"sub/{n}.bin", source=f"hf://o/r@{commit}/sub/{n}.bin", sha256=sha, git_oid=None
        )
    folders = [
        p for p in looked if not p.startswith(str(tmp_path / "models--o--r" / "blobs") + "/")
    ]
    assert len(folders) == len(set(folders)) <= 5, folders
