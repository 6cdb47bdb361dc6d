"""The ``hf download`` user's habits on ``mdl get`` and ``mdl pull`` (issue 88): a bare repo id is
fetched from the Hub (when no such local file is), hf's flags work as hf users mean them or name
mdl's spelling, a dataset asked for as a model is named, and a catalog command given a repo id says
the line that gets it; against the Hub stand-in."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from runfixtures import mdl
from servers import HubServer, make_data
from zygote import forked_mdl

from mdl.cli.app import EXAMPLES

CONFIG_V1, CONFIG_V2 = b'{"v": 1}', b'{"v": 2}'
WEIGHTS = make_data(300_000, seed=881)
ROWS = b"a,b\n1,2\n"


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[HubServer]:
    server = HubServer().start()
    server.add_repo("org/tiny", {"config.json": CONFIG_V1, "model.safetensors": WEIGHTS})
    server.create_tag("org/tiny", "v1")
    server.commit("org/tiny", {"config.json": CONFIG_V2})
    server.add_repo("org/corpus", {"data/train.csv": ROWS}, repo_type="dataset")
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    monkeypatch.chdir(tmp_path)
    try:
        yield server
    finally:
        server.stop()


def test_a_bare_repo_id_is_fetched_from_the_hub_and_said(hub: HubServer, tmp_path: Path) -> None:
    result = mdl("get", "org/tiny", "-d", "out")
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "out" / "config.json").read_bytes() == CONFIG_V2
    assert (tmp_path / "out" / "model.safetensors").read_bytes() == WEIGHTS
    assert "org/tiny: no such local file; fetching hf://org/tiny from the Hub" in result.stderr
    # one file of it, by its path, into --local-dir as hf names it
    one = mdl("get", "org/tiny/config.json", "--local-dir", "one")
    assert one.exit_code == 0, one.stderr
    assert (tmp_path / "one" / "config.json").read_bytes() == CONFIG_V2


def test_a_local_file_of_that_name_stays_a_job_output(hub: HubServer, tmp_path: Path) -> None:
    (tmp_path / "org").mkdir()
    (tmp_path / "org" / "tiny").write_text("not json")
    result = mdl("get", "org/tiny", "-d", "out")
    assert result.exit_code == 2, result.stderr
    assert "fetching" not in result.stderr and not (tmp_path / "out").exists()
    # the error says how it was read, and how to ask for the Hub's repo instead
    assert "read as a job output: a local file has that name" in result.stderr
    assert "give hf://org/tiny" in result.stderr


def test_revision_and_repo_type_work_as_hf_means_them(hub: HubServer, tmp_path: Path) -> None:
    tagged = mdl("get", "org/tiny", "--revision", "v1", "--include", "*.json", "-d", "v1")
    assert tagged.exit_code == 0, tagged.stderr
    assert [p.name for p in (tmp_path / "v1").iterdir() if p.is_file()] == ["config.json"]
    assert (tmp_path / "v1" / "config.json").read_bytes() == CONFIG_V1
    dataset = mdl("get", "org/corpus", "--repo-type", "dataset", "-d", "ds")
    assert dataset.exit_code == 0, dataset.stderr
    assert (tmp_path / "ds" / "data" / "train.csv").read_bytes() == ROWS


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["hf://org/tiny@main", "--revision", "v1"], "names its revision, and --revision says v1"),
        (["hf://datasets/org/corpus", "--repo-type", "model"], "is a dataset, and --repo-type"),
        (["org/tiny", "--repo-type", "checkpoint"], "expected model, dataset or space"),
        (["https://example.com/x.bin", "--revision", "v1"], "--revision is for Hub sources"),
    ],
)
def test_a_contradiction_is_exit_2_naming_both(hub: HubServer, args: list[str], said: str) -> None:
    result = mdl("get", *args, "-d", "out")
    assert result.exit_code == 2, result.stderr
    assert said in result.stderr


def test_a_dataset_asked_for_as_a_model_is_named(hub: HubServer) -> None:
    result = mdl("get", "hf://org/corpus", "-d", "out")
    assert result.exit_code == 4, result.stderr
    assert "is it a dataset? hf://datasets/org/corpus" in result.stderr
    # a repo that is neither keeps the plain answer
    missing = mdl("get", "hf://org/nothing", "-d", "out")
    assert missing.exit_code == 4 and "is it a dataset" not in missing.stderr


@pytest.mark.parametrize(
    ("flag", "spelling"), [("--token", "HF_TOKEN"), ("--cache-dir", "HF_HUB_CACHE")]
)
def test_hf_flags_mdl_spells_otherwise_name_its_spelling(
    hub: HubServer, flag: str, spelling: str
) -> None:
    result = mdl("get", "org/tiny", flag, "hf_secretvalue123")
    assert result.exit_code == 2, result.stderr
    assert spelling in result.stderr and "No such option" not in result.stderr
    assert "hf_secretvalue123" not in result.stderr.replace("HF_HUB_CACHE=hf_secretvalue123", "")


def test_a_token_on_the_command_line_is_refused_and_never_logged(
    hub: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "mdl.log"
    for spelled in (["--token", "my_proxy_secret_123"], ["--token=my_proxy_secret_123"]):
        args = ["get", "org/tiny", *spelled, "--log-file", str(log)]
        monkeypatch.setattr(sys, "argv", ["mdl", *args])  # what the log's command line says
        assert mdl(*args).exit_code == 2
    logged = log.read_text()
    assert logged.count(": get org/tiny --token") == 2  # the line was logged, its value hidden
    assert "my_proxy_secret_123" not in logged


def test_pull_of_a_repo_id_says_the_line_that_gets_it(
    hub: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    result = mdl("pull", "org/tiny")
    assert result.exit_code == 2, result.stderr
    assert "org/tiny: no catalog found; a Hub repo is fetched by: mdl get hf://org/tiny" in (
        result.stderr
    )
    assert "mdl add tiny hf://org/tiny && mdl pull tiny" in result.stderr
    (tmp_path / "catalog.toml").write_text('[models.other]\nrepo = "org/other"\n')
    named = mdl("pull", "org/tiny", "--catalog", "catalog.toml")
    assert named.exit_code == 2
    assert "org/tiny: no such catalog name; a Hub repo is fetched by: mdl get" in named.stderr


def test_help_leads_with_a_hub_repo() -> None:
    result = mdl("--help")
    assert result.exit_code == 0
    before_options = result.stdout.split("Options:")[0]
    assert "mdl get owner/name -d DIR" in before_options
    assert "hf://" in EXAMPLES["mdl"][0][0] or "/" in EXAMPLES["mdl"][0][0].split()[2]


def test_an_hf_flag_a_command_lacks_names_mdls_spelling_below_typers_words(tmp_path: Path) -> None:
    """A real process, as a shell runs it: Typer's "No such option" is not the last word."""
    done = subprocess.run(
        [forked_mdl(), "pull", "org/tiny", "--revision", "v1"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert done.returncode == 2
    assert "No such option: --revision" in done.stderr
    assert "hint: the model's: mdl add NAME hf://owner/name@REV" in done.stderr


@pytest.mark.parametrize(
    ("command", "option", "spelling"),
    [
        ("get", "-O", "saving under the URL's own name is the default"),
        ("get", "-C", "resuming is automatic"),
        ("get", "-c", "resuming is automatic"),
        ("get", "--continue", "resuming is automatic"),
        ("get", "-L", "redirects are always followed"),
        ("get", "-x", "aria2c's -x is --connections N; curl's -x (a proxy) is HTTPS_PROXY"),
        ("get", "-s", "curl's -s (silent) is -q"),
        ("add", "--local-dir", None),  # add takes no --dest
        ("get", "--retry", "--retry-max-time SECONDS"),
        ("get", "--revision", "hf://owner/name@REV (or get's --revision)"),
        ("get", "--max-workers", "--connections N"),
        ("pull", "--local-dir", "the models' folder is --dest DIR"),
        ("pull", "-d", "the models' folder is --dest DIR"),
        ("pull", "--include", "include = [...] in [models.NAME]"),
        ("pull", "--revision", 'revision = "REV" in [models.NAME]'),
        ("pull", "--token", "HF_TOKEN"),
        ("add", "--revision", "mdl add NAME hf://owner/name@REV"),
        ("add", "--repo-type", "mdl add NAME hf://datasets/owner/name"),
        ("pull", "-O", None),  # curl's habits are get's
        ("get", "--bogus", None),
    ],
)
def test_another_tools_flag_names_mdls_spelling_for_that_command(
    command: str, option: str, spelling: str | None
) -> None:
    """A habit from hf, curl, wget or aria2c: the hint says how this command spells it (a catalog
    command: as the catalog does; get: as get does); the real process prints it below Typer's
    words (the test above)."""
    from mdl.cli.translate import spelling_of

    said = spelling_of(option, command)
    assert said == spelling if spelling is None else spelling in (said or ""), said


def test_file_names_after_a_repo_id_are_its_files_as_hf_download_reads_them(
    hub: HubServer, tmp_path: Path
) -> None:
    result = mdl("get", "org/tiny", "config.json", "model.safetensors", "-d", "two")
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "two" / "config.json").read_bytes() == CONFIG_V2
    assert (tmp_path / "two" / "model.safetensors").read_bytes() == WEIGHTS
    assert (
        "config.json: a file of org/tiny; fetching hf://org/tiny/config.json from" in result.stderr
    )


def test_a_path_after_a_repo_id_is_its_file_as_hf_download_reads_it(
    hub: HubServer, tmp_path: Path
) -> None:
    # `hf download REPO onnx/model.onnx`: a path in the repo, not a second repo id (run twice: the
    # second time the first run's copy is a local file of that name)
    for _ in range(2):
        args = ("org/corpus", "data/train.csv", "--repo-type", "dataset", "--local-dir", ".")
        result = mdl("get", *args)
        assert result.exit_code == 0, result.stderr
        assert (tmp_path / "data" / "train.csv").read_bytes() == ROWS
        assert "data/train.csv: a file of org/corpus" in result.stderr
    (tmp_path / "job.json").write_text("{}")
    local = mdl("get", "org/tiny", "./job.json", "-d", "out")
    assert local.exit_code == 2, local.stderr  # ./ is a local file: here a job output, a bad one
    assert "job.json" in local.stderr and "a file of org/tiny" not in local.stderr


def test_the_same_line_run_again_where_the_last_run_saved_works(
    hub: HubServer, tmp_path: Path
) -> None:
    # `hf download REPO FILE --local-dir .` leaves ./config.json, and --local-dir REPO leaves the
    # folder REPO: neither is a job output the second time (nor after a Ctrl-C)
    for _ in range(2):
        here = mdl("get", "org/tiny", "config.json", "--local-dir", ".")
        assert here.exit_code == 0, here.stderr
        assert (tmp_path / "config.json").read_bytes() == CONFIG_V2
        named = mdl("get", "org/tiny", "--local-dir", "org/tiny")
        assert named.exit_code == 0, named.stderr
        assert (tmp_path / "org" / "tiny" / "model.safetensors").read_bytes() == WEIGHTS


@pytest.mark.parametrize("flag", ["--include", "--exclude"])
def test_hfs_patterns_after_one_flag_are_named_with_mdls_spelling(
    hub: HubServer, tmp_path: Path, flag: str
) -> None:
    result = mdl("get", "org/tiny", flag, "*.json", "*.safetensors", "-d", "out")
    assert result.exit_code == 2, result.stderr
    assert "*.safetensors: a pattern, not a file of org/tiny" in result.stderr
    assert "--include '*.json' --include '*.txt'" in result.stderr
    assert not (tmp_path / "out").exists()


def test_a_revision_said_both_ways_alike_is_taken(hub: HubServer, tmp_path: Path) -> None:
    # docs/coming-from-hf.md: hf://REPO@REV and --revision at once must agree; when they do, fine
    result = mdl("get", "hf://org/tiny@v1/config.json", "--revision", "v1", "-d", "out")
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "out" / "config.json").read_bytes() == CONFIG_V1


def test_file_names_after_an_hf_uri_of_a_repo_are_its_files(hub: HubServer, tmp_path: Path) -> None:
    dataset = mdl("get", "hf://datasets/org/corpus", "data/train.csv", "-d", "ds")
    assert dataset.exit_code == 0, dataset.stderr
    assert [p.name for p in (tmp_path / "ds").iterdir() if p.name != ".mdl"] == ["data"]
    assert (tmp_path / "ds" / "data" / "train.csv").read_bytes() == ROWS
    tagged = mdl("get", "hf://org/tiny@v1", "config.json", "-d", "v1")
    assert tagged.exit_code == 0, tagged.stderr
    assert (tmp_path / "v1" / "config.json").read_bytes() == CONFIG_V1
    assert not (tmp_path / "v1" / "model.safetensors").exists()


def test_the_same_hub_file_line_run_again_is_the_hubs_file(hub: HubServer, tmp_path: Path) -> None:
    """``mdl get org/tiny/config.json --local-dir org/tiny`` left org/tiny/config.json: run again,
    that local file is the one a get saved from that Hub file (its folder's record says so), so the
    line is the Hub's again, a no-op, as ``hf download`` repeats; a local file no get saved there
    stays a job output, and the error says how to ask for the Hub's file."""
    line = ("get", "org/tiny/config.json", "--local-dir", "org/tiny")
    assert mdl(*line).exit_code == 0
    again = mdl(*line, "--json")
    assert again.exit_code == 0, again.stderr
    assert "org/tiny/config.json: the file a get saved from the Hub; fetching" in again.stderr
    assert [f["action"] for f in json.loads(again.stdout)["files"]] == ["skipped"]
    (tmp_path / "org" / "other").mkdir()
    (tmp_path / "org" / "other" / "config.json").write_text('{"not": "a job output"}')
    result = mdl("get", "org/other/config.json", "-d", "x")
    assert result.exit_code == 2, result.stderr
    assert "give hf://org/other/config.json" in result.stderr


@pytest.mark.parametrize("name", ["HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"])
@pytest.mark.parametrize("token", ["hf_abc d\u00e9f", "hf_abc\u2019", "hf_a\x7fb"])
def test_a_token_no_header_can_carry_is_refused_naming_its_variable(
    hub: HubServer, name: str, token: str
) -> None:
    result = mdl("get", "org/tiny", "config.json", "-d", "out", env={name: token})
    assert result.exit_code == 2, result.stderr
    assert f"{name}: the Hub token must" in result.stderr
    assert token not in result.stdout + result.stderr


def test_a_token_no_header_can_carry_is_judged_only_when_the_hub_is_asked(hub: HubServer) -> None:
    """A stray character in the shell's HF_TOKEN breaks no download that never asks the Hub (a
    direct URL: the token is never sent there)."""
    url = hub.cdn.add_file("/files/config.json", b"{}")
    result = mdl("get", url, "-o", "config.json", env={"HF_TOKEN": "hf_abc\u2019"})
    assert result.exit_code == 0, result.stderr


def test_a_stored_token_file_mdl_cannot_use_is_named_even_for_a_public_repo(
    hub: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from huggingface_hub import constants

    # where huggingface_hub reads it (HF_TOKEN_PATH, read when it is imported), and the variable
    # too: a path is no secret, the error shows it
    token_path = tmp_path / "hf" / "token"
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(token_path))
    monkeypatch.setenv("HF_TOKEN_PATH", str(token_path))
    token_path.mkdir(parents=True)
    folder = mdl("get", "org/tiny", "config.json", "-d", "out")
    assert folder.exit_code == 7, folder.stderr
    assert f"{token_path}: the Hub token file: is a directory" in folder.stderr
    token_path.rmdir()
    for content, said in [
        (b"\xff\xfe\x00bad", "the Hub token file is not UTF-8 text"),
        ("hf_pasted\u2019\n".encode(), "the Hub token must be ASCII"),
    ]:
        token_path.write_bytes(content)
        result = mdl("get", "org/tiny", "config.json", "-d", "out")
        assert result.exit_code == 2, result.stderr
        assert f"{token_path}: {said}" in result.stderr
        assert "REDACTED" not in result.stderr and "pasted" not in result.stderr


def test_a_folder_of_the_repo_named_as_a_file_says_how_to_ask_for_its_files(
    hub: HubServer, tmp_path: Path
) -> None:
    """``hf download org/corpus data``: the Hub serves no file of a folder (404 EntryNotFound); the
    error says the folder's files are --include 'data/*' (a file's name with a suffix is just not
    found)."""
    folder = mdl("get", "org/corpus", "data", "--repo-type", "dataset", "-d", "out")
    assert folder.exit_code == 4, folder.stderr
    assert "data not found in org/corpus" in folder.stderr
    assert "a folder of the repo? its files are the repo's with --include 'data/*'" in folder.stderr
    named = mdl("get", "org/tiny", "nothing.json", "-d", "out")
    assert named.exit_code == 4 and "a folder of the repo" not in named.stderr
    assert mdl("get", "org/corpus", "--repo-type", "dataset", "--include", "data/*").exit_code == 0
