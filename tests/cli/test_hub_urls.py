"""The habits users bring from the browser and hf: a Hub page URL is read as its hf:// (get, add), a
web page where a model file was asked is refused (exit 5), and the Hub's refusals are said once per
repo, in words that fit."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest
from runfixtures import mdl, use_catalog
from servers import TOKEN, CdnServer, HubServer, make_data
from terminal import unstamped

WEIGHTS = make_data(300_000, seed=7)  # LFS: the Hub's listing names its sha256
PAGE = b"<!DOCTYPE html><html><head><title>org/repo x.gguf</title></head><body>a page</body></html>"


@pytest.fixture
def world(hub: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> HubServer:
    hub.add_repo("org/repo", {"x.gguf": WEIGHTS, "config.json": b"{}"})
    hub.add_repo("org/gated", {f"{n}.gguf": make_data(1000, seed=n) for n in range(4)}, gated=True)
    hub.create_branch("org/repo", "refs/pr/1")
    use_catalog(tmp_path, monkeypatch, "# the models\n", endpoint=hub.url)
    monkeypatch.chdir(tmp_path)
    return hub


def notes(stderr: str) -> list[str]:
    return [line for line in unstamped(stderr) if "mdl: reading " in line]


def test_a_blob_url_of_the_hub_fetches_the_file_as_hf_does(
    world: HubServer, tmp_path: Path
) -> None:
    url = f"{world.url}/org/repo/blob/main/x.gguf"
    result = mdl("get", url, "-d", "out")
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "out" / "x.gguf").read_bytes() == WEIGHTS
    assert result.stdout.splitlines() == [str(tmp_path / "out" / "x.gguf")]
    assert notes(result.stderr) == [f"mdl: reading {url} as hf://org/repo@main/x.gguf"]
    assert not world.log.records(path_prefix="/org/repo/blob/"), (
        "the page itself was never asked for"
    )
    assert world.log.records(method="GET", path_prefix="/org/repo/resolve/main/x.gguf"), (
        "its metadata (sha256) was"
    )
    quiet = mdl("get", url, "-d", "again", "-q")
    assert quiet.exit_code == 0 and notes(quiet.stderr) == [], quiet.stderr


def test_a_resolve_url_with_a_query_and_an_encoded_pr_revision(
    world: HubServer, tmp_path: Path
) -> None:
    url = f"{world.url}/org/repo/resolve/refs%2Fpr%2F1/config.json?download=true"
    result = mdl("get", url, "-d", "out")
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "out" / "config.json").read_bytes() == b"{}"
    assert "as hf://org/repo@refs/pr/1/config.json" in result.stderr
    requested = [r.url_path for r in world.log.records(path_prefix="/org/repo/resolve/")]
    assert requested and all("download" not in path for path in requested), requested


def test_a_repo_page_gets_the_whole_repo_and_a_folder_page_says_what_to_use(
    world: HubServer, tmp_path: Path
) -> None:
    result = mdl("get", f"{world.url}/org/repo/tree/main", "-d", "out")
    assert result.exit_code == 0, result.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir() if p.is_file()) == [
        "config.json",
        "x.gguf",
    ]
    folder = mdl("get", f"{world.url}/org/repo/tree/main/sub", "-d", "out")
    assert folder.exit_code == 2
    assert "hf://org/repo@main --include 'sub/*'" in folder.stderr


@pytest.mark.parametrize("verb", ["blob", "resolve"])
def test_a_huggingface_co_url_is_fetched_from_the_mirror_hf_endpoint_names(
    world: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, verb: str
) -> None:
    """HF_ENDPOINT is a mirror (the loopback Hub) and the URL is pasted from the browser: the file
    comes from the mirror, as hf download would fetch it, and the note says where. Nothing may go to
    huggingface.co: https goes to a loopback port nothing listens on, so a try would fail the run.
    """
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("NO_PROXY", "")
    url = f"https://huggingface.co/org/repo/{verb}/main/x.gguf?download=true"
    result = mdl("get", url, "-d", "out")
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "out" / "x.gguf").read_bytes() == WEIGHTS
    assert notes(result.stderr) == [
        f"mdl: reading {url} as hf://org/repo@main/x.gguf (from the Hub at {world.url})"
    ]
    assert world.log.records(method="GET", path_prefix="/org/repo/resolve/main/x.gguf"), (
        "asked of the mirror"
    )
    whole = mdl("get", "https://huggingface.co/org/repo/tree/main", "-d", "whole")
    assert whole.exit_code == 0, whole.stderr
    assert (tmp_path / "whole" / "config.json").read_bytes() == b"{}"


def test_the_html_page_at_a_url_that_is_not_the_hub_is_refused_and_nothing_kept(
    world: HubServer, cdn: CdnServer, tmp_path: Path
) -> None:
    for url in (
        # another origin
        f"{world.url}/org/repo/blob/main/x.gguf?download=true".replace("127.0.0.1", "localhost"),
        cdn.add_file("/org/repo/blob/main/model.safetensors", PAGE, content_type="text/html"),
    ):
        result = mdl("get", url, "-d", "out")
        assert result.exit_code == 5, result.stderr
        assert "answered with a web page (text/html), not the file" in result.stderr
        assert (
            "hint: a Hub page URL (.../blob/...)? use its .../resolve/... URL, or hf://"
            in result.stderr
        )
        assert "download=true" in result.stderr or url.startswith(cdn.url)
        assert notes(result.stderr) == []
        out = tmp_path / "out"
        assert not out.exists() or [p for p in out.rglob("*") if p.is_file()] == [], (
            "nothing installed, no partial"
        )


def test_a_page_named_as_a_page_is_fetched_and_the_same_page_refused_in_a_pull(
    world: HubServer, cdn: CdnServer, tmp_path: Path
) -> None:
    readme = cdn.add_file("/docs/index.html", PAGE, content_type="text/html; charset=utf-8")
    assert mdl("get", readme, "-d", "out").exit_code == 0, (
        "an HTML file asked for as such is a file like any other"
    )
    weights = cdn.add_file("/m/model.ckpt", PAGE, content_type="text/html; charset=utf-8")
    (tmp_path / "catalog.toml").write_text(f'[models.w]\nfiles = [{{ url = "{weights}" }}]\n')
    pulled = mdl("pull", "w")
    assert pulled.exit_code == 5, pulled.stderr
    assert "web page" in pulled.stderr
    assert not (tmp_path / "models" / "w" / "model.ckpt").exists()


def test_a_page_saved_under_a_model_files_name_is_refused_too(
    cdn: CdnServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A download link names no file (civitai's /api/download/models/N): the name it is saved as
    (-o, the catalog's `as`) says a model file was asked for, and a login page is refused for it as
    for a URL named so."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MDL_DEST", str(tmp_path / "models"))
    login = cdn.add_file("/api/download/models/1234", PAGE, content_type="text/html")
    got = mdl("get", login, "-o", "style.safetensors")
    assert got.exit_code == 5, got.stderr
    assert "answered with a web page (text/html), not the file" in got.stderr
    assert not (tmp_path / "style.safetensors").exists()
    (tmp_path / "catalog.toml").write_text(
        f'[models.s]\nfiles = [{{ url = "{login}", as = "lora/style.gguf" }}]\n'
    )
    pulled = mdl("pull", "s")
    assert pulled.exit_code == 5, pulled.stderr
    assert not (tmp_path / "models" / "s" / "lora" / "style.gguf").exists()
    # saved as a page: a file like any other
    assert mdl("get", login, "-o", "page.html").exit_code == 0


def test_add_stores_a_hub_url_as_its_hub_file(world: HubServer, tmp_path: Path) -> None:
    url = f"{world.url}/org/repo/resolve/refs%2Fpr%2F1/x.gguf?download=true"
    result = mdl("add", "m", url)
    assert result.exit_code == 0, result.stderr
    assert "as hf://org/repo@refs/pr/1/x.gguf" in result.stderr
    entry = tomllib.loads((tmp_path / "catalog.toml").read_text())["models"]["m"]
    assert entry == {"files": [{"repo": "org/repo", "path": "x.gguf", "revision": "refs/pr/1"}]}
    repo = mdl("add", "whole", f"{world.url}/org/repo")
    assert repo.exit_code == 0, repo.stderr
    assert tomllib.loads((tmp_path / "catalog.toml").read_text())["models"]["whole"] == {
        "repo": "org/repo"
    }


def test_a_gated_resolve_url_gets_the_hubs_hint_not_the_headers_one(
    world: HubServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    world.valid_tokens.add("hf_noaccess0123456789")
    world.repo("org/gated").granted_tokens = {TOKEN}
    url = f"{world.url}/org/gated/resolve/main/0.gguf"
    monkeypatch.setenv("HF_TOKEN", "hf_noaccess0123456789")
    refused = mdl("get", url, "-d", "out")
    assert refused.exit_code == 3, refused.stderr
    assert "check the headers for this URL" not in refused.stderr
    assert "request it on the repo's Hub page" in refused.stderr, refused.stderr
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    granted = mdl("get", url, "-d", "out")
    assert granted.exit_code == 0, granted.stderr
    tokens = {r.authorization for r in world.log.records(path_prefix="/org/gated/")}
    assert tokens == {"Bearer hf_noaccess0123456789", f"Bearer {TOKEN}"}, (
        "the token went to the Hub, as for hf://"
    )
    assert all(r.authorization is None for r in world.cdn.log), "and never to the CDN"


def test_a_refused_token_is_said_to_be_refused(
    world: HubServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_TOKEN", "hf_wrong0123456789abcdef")
    result = mdl("get", "hf://org/repo/config.json", "-d", "out")
    assert result.exit_code == 3, result.stderr
    hint = next(line for line in unstamped(result.stderr) if line.startswith("  hint: "))
    assert "refused the token sent" in hint and "hf auth whoami" in hint, hint
    assert "set HF_TOKEN" not in hint


def test_a_gated_repo_is_said_once_for_all_its_files(world: HubServer) -> None:
    sources = [f"hf://org/gated/{n}.gguf" for n in range(4)]
    result = mdl("get", *sources, "hf://org/repo/config.json", "-d", "out")
    assert result.exit_code == 3
    errors = [line for line in unstamped(result.stderr) if line.startswith("mdl: error: ")]
    assert len(errors) == 1, result.stderr
    assert errors[0].startswith("mdl: error: org/gated/0.gguf: org/gated is gated")
    assert errors[0].endswith("(and 3 more files of org/gated)")
    assert result.stderr.count("  hint: ") == 1
    doc = json.loads(mdl("get", *sources, "-d", "out", "--json").stdout)
    assert [f["action"] for f in doc["files"]] == ["failed"] * 4, (
        "every file still fails in the JSON"
    )
    assert all("gated" in f["error"] for f in doc["files"])


def test_a_mirror_answering_a_web_page_is_passed_over_for_the_hub(
    world: HubServer, cdn: CdnServer, tmp_path: Path
) -> None:
    cdn.add_file("/mirror/m/x.gguf", PAGE, content_type="text/html")  # a proxy's login page, say
    (tmp_path / "catalog.toml").write_text(
        f'[settings]\nmirrors = ["{cdn.url}/mirror/{{model}}/{{path}}"]\n\n'
        '[models.m]\nfiles = [{ repo = "org/repo", path = "x.gguf" }]\n'
    )
    result = mdl("pull", "m")
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "models" / "m" / "x.gguf").read_bytes() == WEIGHTS
    assert "mdl: warning: " in result.stderr and "web page" in result.stderr, result.stderr


def test_the_summary_gives_a_web_page_as_the_reason(world: HubServer, cdn: CdnServer) -> None:
    page = cdn.add_file("/a/model.onnx", PAGE, content_type="application/xhtml+xml")
    result = mdl("get", page, "hf://org/repo/config.json", "-d", "out")
    assert result.exit_code == 5, result.stderr
    assert "1 file failed: model.onnx (a web page, not the file)" in result.stderr, result.stderr
