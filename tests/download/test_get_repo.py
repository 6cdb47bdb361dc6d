"""`mdl get hf://owner/name[@rev]`: whole repos and folders as `hf download --local-dir` fetches
them.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from profiles import examples
from runfixtures import mdl as run_mdl
from servers import Fault, HubServer, make_data

import mdl
from mdl.catalog.edit import parse_source
from mdl.errors import UsageError
from mdl.paths import HF_URI_FORMS, parse_hf_uri

WEIGHTS = make_data(200_000, seed=3)  # LFS (".safetensors"): the Hub names its sha256
TINY = {
    "config.json": b'{"a": 1}',
    "model.safetensors": WEIGHTS,
    "tokenizer/vocab.txt": b"a\nb\n",
    "tokenizer/merges.txt": b"ab\n",
    "README.md": b"# tiny\n",
}


def files_in(folder: Path) -> list[str]:
    """Every file under ``folder``, relative, sorted (hidden ones included; folders and get's own
    record in ``.mdl/`` left out)."""
    if not folder.exists():
        return []
    found = (p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    return sorted(p for p in found if not p.startswith(".mdl/"))


@pytest.fixture
def env(hub: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> HubServer:
    hub.add_repo("org/tiny", TINY)
    hub.add_repo(
        "org/ds",
        {"data/train.parquet": b"PAR1train", "data/test.parquet": b"PAR1test"},
        repo_type="dataset",
    )
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setenv("MDL_LOG_FILE", str(tmp_path / "mdl.log"))
    monkeypatch.chdir(tmp_path)
    return hub


def body_gets(hub: HubServer) -> int:
    """File bodies fetched (the Hub's resolve GETs and the CDN's blob GETs), HEADs and API calls
    left out.
    """
    return len(hub.log.records(method="GET", path_prefix="/org/")) + len(
        hub.cdn.log.records(method="GET")
    )


# -- whole repos
# -------------------------------------------------------------------------------------------


def test_a_whole_repo_lands_in_dir_with_its_folders_and_stdout_names_the_folder(
    env: HubServer, tmp_path: Path
) -> None:
    result = run_mdl("get", "hf://org/tiny", "-d", "out")
    assert result.exit_code == 0, result.stderr
    out = tmp_path / "out"
    assert files_in(out) == sorted(TINY), "every file, in its folder"
    for path, data in TINY.items():
        assert (out / path).read_bytes() == data
    assert result.stdout.splitlines() == [str(out)], "the folder once, as hf download prints it"
    assert env.log.records(method="HEAD") == [], "the listing named every file: no HEAD per file"
    listed = run_mdl("get", "hf://org/tiny", "-d", "out", "--json")  # --json still lists every file
    assert sorted(f["dest"] for f in json.loads(listed.stdout)["files"]) == [
        str(out / p) for p in sorted(TINY)
    ]


def test_a_whole_repo_beside_one_file_prints_the_folder_once_and_the_file(
    env: HubServer, tmp_path: Path
) -> None:
    result = run_mdl(
        "get", "hf://org/tiny", "hf://datasets/org/ds/data/test.parquet", "-d", "out", "-q"
    )
    assert result.exit_code == 0, result.stderr
    out = tmp_path / "out"
    assert result.stdout.splitlines() == [str(out), str(out / "data" / "test.parquet")]


def test_a_whole_repo_with_a_failed_file_prints_no_folder(env: HubServer, tmp_path: Path) -> None:
    env.cdn.faults.add(Fault.http_error(404, times=None))  # the LFS weights cannot be had
    result = run_mdl("get", "hf://org/tiny", "-d", "out")
    assert result.exit_code == 4, result.stderr
    assert result.stdout == "", "a folder on stdout means every file of the repo is there"


def test_a_second_run_skips_everything_and_fetches_no_body(env: HubServer, tmp_path: Path) -> None:
    assert run_mdl("get", "hf://org/tiny", "-d", "out").exit_code == 0
    fetched = body_gets(env)
    again = run_mdl("get", "hf://org/tiny", "-d", "out", "--json")
    assert again.exit_code == 0, again.stderr
    doc = json.loads(again.stdout)
    assert {f["action"] for f in doc["files"]} == {"skipped"}
    assert sorted(f["path"] for f in doc["files"]) == sorted(TINY)
    assert body_gets(env) == fetched


def test_the_default_folder_is_the_current_one(env: HubServer, tmp_path: Path) -> None:
    result = run_mdl("get", "hf://org/tiny", "--include", "tokenizer/*")
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "tokenizer" / "vocab.txt").read_bytes() == b"a\nb\n"


def test_include_and_exclude_follow_hf_download_patterns(env: HubServer, tmp_path: Path) -> None:
    result = run_mdl(
        "get",
        "hf://org/tiny",
        "-d",
        "out",
        "--include",
        "*.json",
        "--include",
        "tokenizer/*",
        "--exclude",
        "*merges*",
    )
    assert result.exit_code == 0, result.stderr
    assert files_in(tmp_path / "out") == ["config.json", "tokenizer/vocab.txt"]
    assert env.cdn.log.records() == [], "the weights were never fetched"


def test_filters_that_leave_nothing_are_exit_4(env: HubServer, tmp_path: Path) -> None:
    result = run_mdl("get", "hf://org/tiny", "-d", "out", "--include", "*.gguf")
    assert result.exit_code == 4
    assert "*.gguf" in result.stderr
    assert not (tmp_path / "out").exists()


def test_a_revision_gets_that_commit(env: HubServer, tmp_path: Path) -> None:
    old = env.repo("org/tiny").branches["main"]
    env.create_tag("org/tiny", "v1")
    env.commit("org/tiny", {"config.json": b'{"a": 2}', "added.txt": b"new"})
    for rev, folder in (("v1", "tag"), (old, "sha")):
        result = run_mdl(
            "get", f"hf://org/tiny@{rev}", "-d", folder, "--include", "*.json", "--include", "*.txt"
        )
        assert result.exit_code == 0, result.stderr
        assert (tmp_path / folder / "config.json").read_bytes() == b'{"a": 1}'
        assert not (tmp_path / folder / "added.txt").exists()
    head = run_mdl(
        "get", "hf://org/tiny", "-d", "head", "--include", "*.json", "--include", "*.txt"
    )
    assert head.exit_code == 0, head.stderr
    assert (tmp_path / "head" / "config.json").read_bytes() == b'{"a": 2}'
    assert (tmp_path / "head" / "added.txt").read_bytes() == b"new"


def test_a_dataset_repo(env: HubServer, tmp_path: Path) -> None:
    result = run_mdl("get", "hf://datasets/org/ds", "-d", "ds", "--exclude", "*test*")
    assert result.exit_code == 0, result.stderr
    assert files_in(tmp_path / "ds") == ["data/train.parquet"]
    assert result.stdout.splitlines() == [str(tmp_path / "ds")]


def test_the_python_api_takes_the_same_filters(env: HubServer, tmp_path: Path) -> None:
    report = mdl.get(
        "hf://org/tiny", directory=tmp_path / "api", include="tokenizer/*", exclude=["*merges*"]
    )
    assert report.ok
    assert files_in(tmp_path / "api") == ["tokenizer/vocab.txt"]
    assert [f.path for f in report.files] == ["tokenizer/vocab.txt"]


# -- single files keep their folder
# ------------------------------------------------------------------------


def test_a_single_file_keeps_its_folder_and_o_names_it(env: HubServer, tmp_path: Path) -> None:
    result = run_mdl("get", "hf://datasets/org/ds/data/train.parquet", "-d", "ds")
    assert result.exit_code == 0, result.stderr
    assert files_in(tmp_path / "ds") == ["data/train.parquet"]
    assert result.stdout.splitlines() == [str(tmp_path / "ds" / "data" / "train.parquet")]
    named = run_mdl("get", "hf://datasets/org/ds/data/train.parquet", "-o", "train.bin")
    assert named.exit_code == 0, named.stderr
    assert (tmp_path / "train.bin").read_bytes() == b"PAR1train"


def test_a_file_where_a_folder_must_be_is_refused_before_anything_is_fetched(
    env: HubServer, tmp_path: Path
) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "tokenizer").write_bytes(b"mine")
    result = run_mdl("get", "hf://org/tiny", "-d", "out")
    assert result.exit_code == 7, result.stderr
    assert "tokenizer" in result.stderr
    assert files_in(tmp_path / "out") == ["tokenizer"]
    assert body_gets(env) == 0


# -- hostile listings and names
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("evil", ["../evil.txt", "a/../../x", "/abs"])
def test_a_listing_path_that_climbs_out_is_exit_5_and_nothing_is_written(
    env: HubServer, tmp_path: Path, evil: str
) -> None:
    env.add_repo("org/evil", {"ok.txt": b"ok", evil: b"pwned"}, allow_unsafe_paths=True)
    (tmp_path / "out").mkdir()
    result = run_mdl("get", "hf://org/evil", "-d", "out")
    assert result.exit_code == 5, result.stderr
    assert "the listing of org/evil" in result.stderr
    assert files_in(tmp_path) == ["mdl.log"]
    assert body_gets(env) == 0


@pytest.mark.parametrize("odd", [".mdl/records/x.json", "src/aux.py", "a/b:c"])
def test_a_listed_name_get_cannot_save_is_exit_2_with_an_exclude_hint(
    env: HubServer, tmp_path: Path, odd: str
) -> None:
    env.add_repo("org/odd", {"ok.txt": b"ok", odd: b"odd"})
    result = run_mdl("get", "hf://org/odd", "-d", "out")
    assert result.exit_code == 2, result.stderr
    assert f"--exclude '{odd}'" in result.stderr
    assert not (tmp_path / "out").exists()
    kept = run_mdl("get", "hf://org/odd", "-d", "out", "--exclude", odd)
    assert kept.exit_code == 0, kept.stderr
    assert files_in(tmp_path / "out") == ["ok.txt"]


def test_two_names_that_differ_only_in_case_are_refused(env: HubServer, tmp_path: Path) -> None:
    env.add_repo("org/cases", {"README.md": b"a", "readme.md": b"b"})
    result = run_mdl("get", "hf://org/cases", "-d", "out")
    assert result.exit_code == 2
    assert "would both be saved as" in result.stderr
    assert (
        "they differ only in case or Unicode form (one file on macOS and Windows)" in result.stderr
    )
    assert not (tmp_path / "out").exists()


# -- usage errors
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["hf://just-a-name", "hf://", "hf://org/tiny@", "hf://-org/x"])
def test_a_bad_uri_names_the_accepted_forms_and_survives_redaction(
    env: HubServer, bad: str
) -> None:
    result = run_mdl("get", bad)
    assert result.exit_code == 2
    assert "REDACTED" not in result.stderr
    for form in (
        "hf://owner/name,",
        "hf://owner/name@revision",
        "hf://owner/name/path",
        "hf://datasets/owner/name/",
    ):
        assert form in result.stderr, result.stderr


def test_add_says_the_same_forms(env: HubServer) -> None:
    result = run_mdl("add", "x", "hf://just-a-name")
    assert result.exit_code == 2
    assert "hf://owner/name@revision" in result.stderr and "REDACTED" not in result.stderr


@pytest.mark.parametrize("flag", ["--include", "--exclude"])
def test_filters_without_a_whole_repo_are_refused_naming_the_flag(
    env: HubServer, tmp_path: Path, flag: str
) -> None:
    url = env.cdn.add_file("/files/x.bin", b"x")
    for source in (url, "hf://org/tiny/config.json"):
        result = run_mdl("get", source, flag, "*.json")
        assert result.exit_code == 2
        assert flag in result.stderr
    assert files_in(tmp_path) == ["mdl.log"]
    with pytest.raises(UsageError, match="include"):
        mdl.get(url, include=["*"])


def test_o_and_sha256_do_not_fit_a_whole_repo(env: HubServer, tmp_path: Path) -> None:
    o = run_mdl("get", "hf://org/tiny", "-o", "x")
    assert o.exit_code == 2 and "-d DIR" in o.stderr
    sha = run_mdl("get", "hf://org/tiny", "--sha256", "ab" * 32)
    assert sha.exit_code == 2 and "whole repo" in sha.stderr
    assert env.log.records() == [], "refused before the Hub was asked"


def test_offline_a_whole_repo_is_a_usage_error_naming_it(
    env: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    result = run_mdl("get", "hf://org/tiny", "-d", "out")
    assert result.exit_code == 2
    assert "HF_HUB_OFFLINE" in result.stderr and "hf://org/tiny" in result.stderr
    assert env.log.records() == []


def test_offline_a_folder_answers_only_the_revision_it_holds(
    env: HubServer, tmp_path: Path
) -> None:
    """Offline, the folder's record answers a repo or a file at the revision (branch, tag or
    commit) a get saved it at, never at another: a whole repo is exit 2, a file exit 5, each
    naming the revision asked for."""
    env.create_tag("org/tiny", "v1.0")
    env.create_branch("org/tiny", "dev")
    dev = env.commit("org/tiny", {"config.json": b'{"dev": true}'}, branch="dev")
    saved = run_mdl("get", "hf://org/tiny@dev", "-d", "out")
    assert saved.exit_code == 0, saved.stderr
    offline = {"HF_HUB_OFFLINE": "1"}
    for revision in ("dev", dev):
        same = run_mdl("get", f"hf://org/tiny@{revision}/config.json", "-d", "out", env=offline)
        assert same.exit_code == 0, same.stderr
    whole = run_mdl("get", "hf://org/tiny@v1.0", "-d", "out", env=offline)
    assert whole.exit_code == 2 and "@v1.0" in whole.stderr, whole.stderr
    for other in ("hf://org/tiny/config.json", "hf://org/tiny@v1.0/config.json"):
        one = run_mdl("get", other, "-d", "out", env=offline)
        assert one.exit_code == 5 and other in one.stderr, one.stderr
    assert (tmp_path / "out" / "config.json").read_bytes() == b'{"dev": true}'
    run_mdl("get", "hf://org/tiny", "-d", "out")  # main now: its files, the same ones at main
    main = run_mdl("get", "hf://org/tiny", "-d", "out", env=offline)
    assert main.exit_code == 0, main.stderr


# -- the one parser
# ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("hf://org/tiny", ("model", "org/tiny", None, None)),
        ("hf://org/tiny/", ("model", "org/tiny", None, None)),
        ("hf://models/org/tiny@v1", ("model", "org/tiny", "v1", None)),
        (
            "hf://datasets/org/ds/data/train.parquet",
            ("dataset", "org/ds", None, "data/train.parquet"),
        ),
        ("hf://spaces/org/app@refs/pr/3/app.py", ("space", "org/app", "refs/pr/3", "app.py")),
    ],
)
def test_get_and_add_read_hf_uris_alike(
    text: str, want: tuple[str, str, str | None, str | None]
) -> None:
    uri = parse_hf_uri(text)
    assert (uri.repo_type, uri.repo, uri.revision, uri.path) == want
    added = parse_source(text)
    assert (added.repo_type, added.repo, added.revision, added.path) == want


@settings(max_examples=examples(200), deadline=None)
@given(st.text(max_size=60))
def test_any_hf_text_parses_or_is_a_usage_error(tail: str) -> None:
    text = "hf://" + tail
    try:
        uri = parse_hf_uri(text)
    except UsageError as exc:
        assert exc.exit_code == 2
        return
    assert uri.path is None or (not uri.path.startswith("/") and ".." not in uri.path.split("/"))


def test_the_forms_have_nothing_the_redaction_eats() -> None:
    from mdl.redact import redact_text

    assert redact_text(HF_URI_FORMS) == HF_URI_FORMS


def test_listing_order_and_sha256_match_the_hub(env: HubServer, tmp_path: Path) -> None:
    report = mdl.get("hf://org/tiny", directory=tmp_path / "o", include=["*.safetensors"])
    (only,) = report.files
    assert only.sha256 == hashlib.sha256(WEIGHTS).hexdigest()


def test_a_link_planted_where_a_repo_folder_goes_is_never_written_through(
    env: HubServer, tmp_path: Path
) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "out" / "data").symlink_to(tmp_path / "elsewhere")
    result = run_mdl("get", "hf://datasets/org/ds", "-d", "out")
    assert result.exit_code == 2, result.stderr
    assert "symbolic link" in result.stderr
    assert files_in(tmp_path / "elsewhere") == []
