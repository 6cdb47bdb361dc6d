"""One rule for names mdl did not choose (item 13), checked before any byte is fetched or written.

``mdl.paths.path_problem`` is the rule; ``path_clash`` finds an ``a`` file beside an ``a/b`` file;
the destination must be creatable. pull (listing names), get (inline and URL-derived names) and
unpack (entry names) all refuse the same names: too long for NAME_MAX with mdl's temp name, bidi
overrides, line separators, control characters.
"""

from __future__ import annotations

import base64
import json
import os
import zipfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from profiles import examples
from runfixtures import mdl
from servers import HubServer, make_data
from typer.testing import Result

from mdl.errors import ExitCode, UnsafePathError
from mdl.paths import (
    NAME_MAX,
    TEMP_NAME_OVERHEAD,
    path_clash,
    path_problem,
    safe_relative_path,
    temp_name,
)

WEIGHTS = make_data(200_000, seed=51)


def tree(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


# -- the rule, as properties
# -------------------------------------------------------------------------------

any_text = st.text(st.characters(codec=None, exclude_categories=()), max_size=300)
components = st.text(st.characters(codec=None, exclude_characters="/"), min_size=1, max_size=260)
paths = st.lists(components, min_size=1, max_size=4).map("/".join)


@given(st.one_of(any_text, paths))
def test_path_problem_never_raises(name: str) -> None:
    problem = path_problem(name)
    assert problem is None or (isinstance(problem, str) and problem)


@settings(max_examples=examples(300), suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(paths)
def test_an_accepted_name_and_its_temp_name_can_be_created(
    tmp_path_factory: pytest.TempPathFactory, name: str
) -> None:
    if path_problem(name) is not None:
        return
    assert safe_relative_path(name, where="x") == name, "the rule and the validator agree"
    root = tmp_path_factory.mktemp("names")
    target = root.joinpath(*name.split("/"))
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = target.with_name(temp_name(target.name))
    assert len(os.fsencode(temp.name)) <= NAME_MAX
    temp.write_bytes(b"x")
    temp.replace(target)
    assert target.read_bytes() == b"x"
    assert target.relative_to(root).as_posix() == name, "it landed where it said, inside the folder"


@given(st.lists(st.lists(st.sampled_from("ab"), min_size=1, max_size=3).map("/".join), max_size=6))
def test_names_without_a_clash_can_all_be_files(names: list[str]) -> None:
    clash = path_clash(names)
    if clash is not None:
        folder, inside = clash
        assert folder in names and inside in names and inside.startswith(folder + "/")
        return
    files = set(names)
    assert not any(
        "/".join(n.split("/")[:i]) in files for n in files for i in range(1, n.count("/") + 1)
    )


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("a" * 300, "longer than"),
        ("d/" + "é" * 120, "longer than"),
        ("evil\u202etxt.exe", "U+202E"),
        ("a\u2066b", "U+2066"),
        ("a\u200fb", "U+200F"),
        ("a\u2028b", "line or paragraph separator"),
        ("a\u2029b", "line or paragraph separator"),
        ("a\x00b", "control character"),
        ("a\nb", "control character"),
        ("a\\b", "backslash"),
        ("/abs", "absolute"),
        ("a/../b", "'..'"),
        ("a//b", "empty or '.'"),
        ("a/./b", "empty or '.'"),
        ("", "empty"),
        ("a\ud800", "not valid Unicode"),
    ],
)
def test_path_problem_names_the_reason(name: str, reason: str) -> None:
    problem = path_problem(name)
    assert problem is not None and reason in problem


def test_the_limit_leaves_room_for_the_temp_name() -> None:
    longest = "x" * (NAME_MAX - TEMP_NAME_OVERHEAD)
    assert path_problem(longest) is None
    assert path_problem(longest + "x") is not None
    assert len(temp_name(longest).encode()) == NAME_MAX
    assert temp_name("a") != temp_name("a"), "unique per call"


def test_path_clash_finds_a_file_that_is_also_a_folder() -> None:
    assert path_clash(["a", "a/b"]) == ("a", "a/b")
    assert path_clash(["x/a", "x/a/b/c", "y"]) == ("x/a", "x/a/b/c")
    assert path_clash(["a", "ab", "a.b", "b/a"]) is None
    assert path_clash(["README.md", "readme.md"]) is None, (
        "case is not folded (the Hub and Linux tell them apart)"
    )


# -- pull: listing names are refused before anything is fetched
# --------------------------------------------


@pytest.fixture
def hub_env(hub: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> HubServer:
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setenv("MDL_LOG_FILE", str(tmp_path / "mdl.log"))
    monkeypatch.chdir(tmp_path)
    return hub


def pull_repo(hub: HubServer, tmp_path: Path, files: dict[str, bytes]) -> Result:
    hub.add_repo("org/odd", files)
    hub.add_repo("org/fine", {"config.json": b"{}", "model.safetensors": WEIGHTS})
    (tmp_path / "catalog.toml").write_text(
        '[models.odd]\nrepo = "org/odd"\n\n[models.fine]\nrepo = "org/fine"\n'
    )
    hub.log.clear()
    hub.cdn.log.clear()
    return mdl("pull", "odd", "fine", "--dest", "models", "--json")


def fetched(hub: HubServer, repo: str) -> list[str]:
    """Paths of the file downloads (Hub resolve, which LFS files redirect from) for ``repo``."""
    return [r.url_path for r in hub.log.records(method="GET") if f"/{repo}/resolve/" in r.url_path]


@pytest.mark.parametrize(
    "bad",
    [
        "x" * 300 + ".json",
        "d/" + "é" * 120 + ".bin",
        "evil\u202etxt.json",
        "two\u2028lines.json",
        "a\u2066b.txt",
    ],
    ids=["300-chars", "long-component", "rlo", "line-sep", "isolate"],
)
def test_pull_refuses_a_model_with_an_unwritable_listing_name(
    hub_env: HubServer, tmp_path: Path, bad: str
) -> None:
    result = pull_repo(
        hub_env, tmp_path, {"config.json": b"{}", bad: b"data", "model.safetensors": WEIGHTS}
    )
    # Listing names are server bytes: a bad one is a bad reply (exit 5, like hubreplies' refusals),
    # not input.
    assert result.exit_code == ExitCode.NETWORK, result.output
    doc = json.loads(result.stdout)
    odd = [f for f in doc["files"] if f["model"] == "odd"]
    assert [f["action"] for f in odd] == ["failed"], "the whole model is refused"
    assert "org/odd" in odd[0]["error"]
    assert not fetched(hub_env, "org/odd") and not (tmp_path / "models" / "odd").exists(), (
        "nothing fetched"
    )
    fine = {f["path"]: f["action"] for f in doc["files"] if f["model"] == "fine"}
    assert fine == {"config.json": "downloaded", "model.safetensors": "downloaded"}, (
        "the other models go on"
    )


def test_pull_refuses_a_file_beside_a_folder_of_the_same_name(
    hub_env: HubServer, tmp_path: Path
) -> None:
    result = pull_repo(
        hub_env, tmp_path, {"a": b"file", "a/b": b"inside", "model.safetensors": WEIGHTS}
    )
    assert result.exit_code == ExitCode.NETWORK, result.output
    odd = [f for f in json.loads(result.stdout)["files"] if f["model"] == "odd"]
    assert len(odd) == 1 and "'a'" in odd[0]["error"] and "'a/b'" in odd[0]["error"]
    assert not fetched(hub_env, "org/odd") and not (tmp_path / "models" / "odd").exists()


def test_pull_refuses_catalog_save_paths_that_clash(hub_env: HubServer, tmp_path: Path) -> None:
    hub_env.add_repo("org/fine", {"config.json": b"{}", "model.safetensors": WEIGHTS})
    (tmp_path / "catalog.toml").write_text(
        "[models.mix]\nfiles = [\n"
        '  { repo = "org/fine", path = "config.json", as = "vae" },\n'
        '  { repo = "org/fine", path = "model.safetensors", as = "vae/model.safetensors" },\n]\n'
    )
    hub_env.log.clear()
    result = mdl("pull", "mix", "--dest", "models")
    # the user's own save paths: the catalog refuses
    assert result.exit_code == ExitCode.USAGE, result.output
    assert "'vae/model.safetensors'" in result.stderr and "'vae'" in result.stderr
    assert not fetched(hub_env, "org/fine") and not (tmp_path / "models" / "mix").exists()


def test_pull_refuses_a_destination_it_cannot_create_before_fetching(
    hub_env: HubServer, tmp_path: Path
) -> None:
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "odd").write_text("a file where the model folder must go")
    result = pull_repo(hub_env, tmp_path, {"config.json": b"{}", "model.safetensors": WEIGHTS})
    assert result.exit_code == ExitCode.LOCAL, result.output
    odd = [f for f in json.loads(result.stdout)["files"] if f["model"] == "odd"]
    assert len(odd) == 1 and "is a file, not a folder" in odd[0]["error"]
    assert not fetched(hub_env, "org/odd")


def test_catalog_model_names_are_at_most_200_characters(hub_env: HubServer, tmp_path: Path) -> None:
    hub_env.add_repo("org/fine", {"config.json": b"{}"})
    (tmp_path / "catalog.toml").write_text(f'[models.{"m" * 201}]\nrepo = "org/fine"\n')
    result = mdl("list")
    assert result.exit_code == ExitCode.USAGE and "200" in result.stderr, result.output
    (tmp_path / "catalog.toml").write_text(f'[models.{"m" * 200}]\nrepo = "org/fine"\n')
    assert mdl("pull", "m" * 200, "--dest", "models").exit_code == 0
    assert (tmp_path / "models" / ("m" * 200) / "config.json").read_bytes() == b"{}"


# -- get: inline and URL-derived names
# ---------------------------------------------------------------------


def inline(name: str, data: bytes = b"payload") -> dict[str, object]:
    return {
        "type": "file_data",
        "filename": name,
        "data": base64.b64encode(data).decode(),
        "size": len(data),
    }


BAD_GET_NAMES = ["n" * 250 + ".bin", "evil\u202etxt.bin", "two\u2028lines.bin"]


@pytest.mark.parametrize("name", BAD_GET_NAMES, ids=["250-bytes", "rlo", "line-sep"])
def test_get_refuses_an_inline_name_before_writing(
    hub_env: HubServer, tmp_path: Path, name: str
) -> None:
    (tmp_path / "job.json").write_text(json.dumps([inline("ok.bin"), inline(name)]))
    result = mdl("get", "job.json", "-d", "out")
    assert result.exit_code == ExitCode.USAGE, result.output
    assert "Traceback" not in result.output
    assert tree(tmp_path / "out") == [], "nothing written, not even the good file"


@pytest.mark.parametrize("name", BAD_GET_NAMES, ids=["250-bytes", "rlo", "line-sep"])
def test_get_refuses_a_url_name_before_fetching(
    hub_env: HubServer, tmp_path: Path, name: str
) -> None:
    from urllib.parse import quote

    hub_env.cdn.log.clear()
    result = mdl("get", f"{hub_env.cdn.url}/files/{quote(name)}", "-d", "out")
    assert result.exit_code == ExitCode.USAGE, result.output
    assert not hub_env.cdn.log.records(), "no request was sent"
    assert tree(tmp_path / "out") == []


def test_get_refuses_a_dash_o_name_that_leaves_no_room(hub_env: HubServer, tmp_path: Path) -> None:
    (tmp_path / "job.json").write_text(json.dumps([inline("ok.bin")]))
    result = mdl("get", "job.json", "-o", "n" * 240)
    assert result.exit_code == ExitCode.USAGE, result.output
    assert not (tmp_path / ("n" * 240)).exists()


def test_get_refuses_a_folder_it_cannot_create(hub_env: HubServer, tmp_path: Path) -> None:
    (tmp_path / "out").write_text("a file where the folder must go")
    hub_env.cdn.add_file("/files/w.bin", WEIGHTS)
    hub_env.cdn.log.clear()
    result = mdl("get", f"{hub_env.cdn.url}/files/w.bin", "-d", "out/sub")
    assert result.exit_code == ExitCode.LOCAL, result.output
    assert "is a file, not a folder" in result.stderr
    assert not hub_env.cdn.log.records(), "refused before any request"


# -- unpack: the same names, the same refusal
# ---------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["pkg/" + "n" * 252 + ".bin", "pkg/evil\u202etxt.bin", "pkg/two\u2028lines.bin"],
    ids=["256-bytes", "rlo", "line-sep"],
)
def test_unpack_refuses_the_same_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    monkeypatch.chdir(tmp_path)
    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("pkg/ok.txt", b"fine")
        zf.writestr(name, b"x")
    result = mdl("unpack", str(archive), "-d", "out")
    assert result.exit_code == ExitCode.USAGE, result.output
    assert tree(tmp_path / "out") == []


def test_pack_and_pull_and_get_share_one_rule() -> None:
    from mdl.paths import name_problem

    for bad in ("a" * 240, "x\u202ey", "x\u2028y", "a\u2069b"):
        assert path_problem(bad) is not None
        assert name_problem("pkg/" + bad) is not None
        with pytest.raises(UnsafePathError):
            safe_relative_path(bad, where="w")
