"""Issue 90: a plain pull's first request goes out while the rest loads (mdl.download.earlyhub),
as a get's does, and only when a catalog the pull checked before and the environment leave that
request known; the pull takes its answer only when it would have sent those very bytes."""

from __future__ import annotations

import contextlib
import importlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import httpx2
import pytest
from hypothesis import given
from hypothesis import strategies as st
from runfixtures import wait_for
from servers import HeadRecorder, HubServer

from mdl import api
from mdl.download.earlyhub import hub_token_path, planned_get, planned_pull
from mdl.errors import MdlError
from mdl.lockfile.remembered import load_catalog
from mdl.paths import is_http_url
from mdl.transfer import early

COMMIT = "ab" * 20


pytestmark = pytest.mark.usefixtures("fresh_early")


@pytest.fixture
def missing() -> Iterator[HeadRecorder]:
    """A 'Hub' that answers that the repo is not there: the pull ends at its first request."""
    body = b'{"error":"Repository not found"}'
    server = HeadRecorder(
        b"HTTP/1.1 404 Not Found\r\nX-Error-Code: RepoNotFound\r\nContent-Length: %d\r\n"
        b"Connection: close\r\n\r\n%s" % (len(body), body)
    )
    yield server
    server.close()


def write_catalog(folder: Path, text: str, *, checked: bool = True) -> Path:
    """The catalog ``text`` at ``folder``/catalog.toml, checked once as a pull checks it (and so
    remembered) when ``checked`` and the pull takes it."""
    path = folder / "catalog.toml"
    path.write_text(text)
    if checked:
        with contextlib.suppress(MdlError):
            load_catalog(path)
    return path


@pytest.mark.parametrize(
    "text",
    [
        '[models.m]\nrepo = "org/tiny"\n',
        '[settings]\ndest = "models"\n\n[models.m]\nrepo = "org/tiny"\ninclude = ["*.json"]\n',
        '[models.m]\nrepo = "org/data.set"\nrepo_type = "dataset"\nrevision = "v1.0"\n',
        '[models.m]\nfiles = [{ repo = "org/tiny", path = "w.bin" }]\n',
        '[models.m]\nfiles = [{ repo = "org/tiny", path = "sub/w 1.bin", revision = "dev",'
        f' sha256 = "{"cd" * 32}", size = 7, as = "x.bin" }}]\n',
    ],
)
def test_the_request_sent_early_is_the_pull_s_first_byte_for_byte(
    tmp_path: Path, missing: HeadRecorder, text: str
) -> None:
    path = write_catalog(tmp_path, text, checked=False)
    with contextlib.suppress(MdlError):  # (the repo is missing: the first request is all there is)
        api.pull("m", catalog=path, dest=tmp_path / "d", environ={"HF_ENDPOINT": missing.origin})
    # the pull checked the catalog: the next one's first request is known
    planned = planned_pull(["m"], path, {"HF_ENDPOINT": missing.origin, "HOME": str(tmp_path)})
    assert planned is not None and planned.sent is not None
    assert missing.heads[0] == planned.sent


def test_a_pull_answers_from_its_early_request_and_asks_nothing_again(
    tmp_path: Path, hub: HubServer
) -> None:
    hub.add_repo("org/tiny", {"config.json": b"{}", "w.bin": b"weights"})
    path = write_catalog(tmp_path, '[models.tiny]\nrepo = "org/tiny"\n')
    early.begin(planned_pull(["tiny"], path, {"HF_ENDPOINT": hub.url, "HOME": str(tmp_path)}))
    asked = "/api/models/org/tiny/revision/main"
    # out before the pull began
    wait_for(lambda: len(hub.log.records(path_prefix=asked)) == 1, what="the early request")
    api.pull("tiny", catalog=path, dest=tmp_path / "d", environ={"HF_ENDPOINT": hub.url})
    assert (tmp_path / "d" / "tiny" / "w.bin").read_bytes() == b"weights"
    assert len(hub.log.records(path_prefix=asked)) == 1
    assert not early.pending()


ENTRY = '[models.m]\nrepo = "org/tiny"\n'
HUB = "http://hub.internal:8080"  # (a private network's: plain http goes there)


@pytest.mark.parametrize(
    ("names", "text", "environ", "expected"),
    [
        (["m"], ENTRY, {}, "sent"),
        (["m", "n"], ENTRY + '[models.n]\nrepo = "org/other"\n', {}, None),  # two models
        ([], ENTRY, {}, None),  # --all
        (["n"], ENTRY, {}, None),  # not in the catalog
        (["m"], ENTRY + "[models.n]\nrepo = 5\n", {}, None),  # the pull refuses the catalog
        (["m"], "version = 2\n" + ENTRY, {}, None),
        (["m"], ENTRY + 'revision = " "\n', {}, None),
        (["m"], '[models.m]\nfiles = [{ repo = "org/tiny", path = "/etc/w.bin" }]\n', {}, None),
        (["m"], "[settings]\njobs = 0\n" + ENTRY, {}, None),
        (["m"], '[settings]\nmirrors = ["https://m.example/{model}/{path}"]\n' + ENTRY, {}, None),
        (["m"], "[settings]\nfill_mirror = true\n" + ENTRY, {}, None),
        (["m"], ENTRY + f'revision = "{COMMIT}"\n', {}, None),  # a commit: no revision asked
        (["m"], '[models.m]\noci = "registry.example/m:1"\n', {}, None),
        (["m"], '[models.m]\nfiles = [{ url = "http://cdn.example/w.bin" }]\n', {}, None),
        (
            ["m"],
            '[models.m]\nfiles = [{ repo = "o/t", path = "a" }, { repo = "o/t", path = "b" }]\n',
            {},
            None,
        ),
        (["m"], ENTRY, {"MDL_JOBS": "4"}, None),  # a setting the pull may refuse
        (["m"], ENTRY, {"HF_HUB_OFFLINE": "1"}, None),
        (["m"], ENTRY, {"HTTPS_PROXY": "http://p:3128"}, None),
        (["m"], ENTRY, {"HF_ENDPOINT": HUB + "\r"}, None),  # refused by the pull, not cleaned
        (["m"], ENTRY, {"HF_ENDPOINT": " " + HUB}, None),
        (["m"], ENTRY, {"HF_ENDPOINT": "http://hub.example:0"}, None),
        (["m"], ENTRY, {"SSL_CERT_FILE": "~nosuchuser/ca.pem"}, None),  # (not there: not raised)
        (["m"], ENTRY, {"SSL_CERT_FILE": "/dev/null"}, None),  # not a bundle: the pull refuses it
        (["m"], ENTRY, {"SSL_CERT_DIR": "/dev/null"}, None),
        (["m"], '[settings]\nlayout = "hf-cache"\n' + ENTRY, {}, None),  # its cache decides
        (["m"], ENTRY, {"HUGGING_FACE_HUB_TOKEN": "hf_x"}, "connected"),
        (["m"], ENTRY, {"HF_OIDC_RESOURCE": "r"}, "connected"),
        (["m"], ENTRY, {"HF_ENDPOINT": "https://hub.example"}, "connected"),  # TLS: httpx2's
        (["m"], ENTRY, {"HF_TOKEN": "hf_x"}, "connected"),  # the token's request is the pull's
        (["m"], ENTRY, {"HF_HOME": "~nosuchuser/hf"}, "sent"),  # (no token there: not raised)
        (["m"], ENTRY, {"HUGGINGFACE_CO_STAGING": "1"}, "connected"),
    ],
)
def test_nothing_goes_out_early_unless_the_first_request_is_known(
    tmp_path: Path, names: list[str], text: str, environ: dict[str, str], expected: str | None
) -> None:
    path = write_catalog(tmp_path, text)
    given = {"HF_ENDPOINT": HUB, "HOME": str(tmp_path), **environ}
    planned = planned_pull(names, path, given)
    found = None if planned is None else "connected" if planned.sent is None else "sent"
    assert found == expected


def test_only_a_catalog_a_pull_checked_and_a_folder_to_pull_into_send_early(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    environ = {"HF_ENDPOINT": HUB, "HOME": str(tmp_path)}
    path = write_catalog(tmp_path, ENTRY, checked=False)
    assert planned_pull(["m"], path, environ) is None  # never checked: its first pull asks
    load_catalog(path)
    planned = planned_pull(["m"], path, environ)
    assert planned is not None and planned.sent is not None
    assert planned.sent.startswith(b"GET /api/models/org/tiny/revision/main HTTP/1.1\r\n")
    (tmp_path / "file").write_bytes(b"")
    assert planned_pull(["m"], path, environ, dest=tmp_path / "file") is None  # refused first
    assert planned_pull(["m"], path, environ, all_models=True) is None  # `pull m --all`: refused
    assert planned_pull(["m"], path, environ, dest=tmp_path / "file" / "d") is None  # its parent
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "file").write_bytes(b"")  # [settings] dest: from the catalog's folder
    inside = write_catalog(tmp_path / "sub", '[settings]\ndest = "file"\n' + ENTRY)
    assert planned_pull(["m"], inside, environ) is None
    assert planned_pull(["m"], inside, environ, dest=tmp_path / "sub") is not None
    monkeypatch.chdir(tmp_path / "sub")  # --dest: from the folder the pull is run in
    assert planned_pull(["m"], inside, environ, dest=Path("file")) is None
    assert planned_pull(["m"], inside, environ, dest=Path("new")) is not None
    # a folder the pull refuses (settings.shown_folder): nothing sent for it either
    for odd in ("a\nb", "fa\u200cx"):
        assert planned_pull(["m"], inside, environ, dest=Path(odd)) is None
    odd = tmp_path / os.fsdecode(b"caf\xe9")  # a catalog whose path is not text: nothing sent
    odd.mkdir()
    assert planned_pull(["m"], write_catalog(odd, ENTRY), environ) is None
    assert not early.pending()
    (tmp_path / "gone").mkdir()
    monkeypatch.chdir(tmp_path / "gone")
    (tmp_path / "gone").rmdir()  # a folder deleted under the run: the pull says so
    assert planned_pull(["m"], None, environ) is None
    assert planned_pull(["m"], tmp_path / ("c" * 300), environ) is None  # a name too long


def test_the_catalog_s_endpoint_is_asked_unless_hf_endpoint_names_another(tmp_path: Path) -> None:
    path = write_catalog(tmp_path, '[settings]\nendpoint = "http://mirror.example/"\n' + ENTRY)
    planned = planned_pull(["m"], path, {"HOME": str(tmp_path)})
    assert planned is not None and planned.origin == ("http", "mirror.example", 80)
    planned = planned_pull(["m"], path, {"HOME": str(tmp_path), "HF_ENDPOINT": HUB})
    assert planned is not None and planned.origin == ("http", "hub.internal", 8080)


@pytest.mark.parametrize(
    "moved",
    [
        {},
        {"XDG_CACHE_HOME": "{tmp}/xdg"},
        {"XDG_CACHE_HOME": ""},  # (set: as given, the folder it is run in)
        {"HF_HOME": "{tmp}/hf"},
        {"HF_HOME": ""},
        {"HF_HOME": "$MDL_TEST_PLACE/hf", "MDL_TEST_PLACE": "{tmp}"},
        {"HF_HOME": "~/hf"},
        {"HF_TOKEN_PATH": "{tmp}/t/token"},
    ],
)
def test_a_token_file_where_huggingface_hub_reads_it_leaves_the_request_to_the_pull(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    reloaded_constants: Callable[[], ModuleType],
    moved: dict[str, str],
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    for name, value in moved.items():
        monkeypatch.setenv(name, value.format(tmp=tmp_path))
    for name in {"HF_HOME", "XDG_CACHE_HOME", "HF_TOKEN_PATH"} - set(moved):
        monkeypatch.delenv(name, raising=False)
    path = write_catalog(tmp_path, ENTRY)
    environ = {**os.environ, "HF_ENDPOINT": HUB}
    environ.pop("MDL_TEST_PLACE", None)  # (routed: an mdl variable; expanded from the process's)
    planned = planned_pull(["m"], path, environ)
    assert planned is not None and planned.sent is not None
    token = Path(reloaded_constants().HF_TOKEN_PATH)  # where huggingface_hub reads it here
    assert str(token) == hub_token_path(environ)
    token.parent.mkdir(parents=True, exist_ok=True)
    token.write_text("hf_x\n")
    planned = planned_pull(["m"], path, environ)
    assert planned is not None and planned.sent is None  # connected only
    (tmp_path / "catalog.lock").write_text("version = 1\n")  # its pins decide what is asked
    assert planned_pull(["m"], path, environ) is None


def test_a_token_file_that_cannot_be_looked_at_leaves_the_request_to_the_pull(
    tmp_path: Path,
) -> None:
    path = write_catalog(tmp_path, ENTRY)
    (tmp_path / "hf").write_bytes(b"")  # HF_HOME a file: the library says why, with the pull
    environ = {"HF_ENDPOINT": HUB, "HOME": str(tmp_path), "HF_HOME": str(tmp_path / "hf")}
    planned = planned_pull(["m"], path, environ)
    assert planned is not None and planned.sent is None


@pytest.fixture
def reloaded_constants() -> Iterator[Callable[[], ModuleType]]:
    """huggingface_hub.constants read again from this test's environment; as it was, after."""
    from huggingface_hub import constants

    kept = dict(vars(constants))
    yield lambda: importlib.reload(constants)
    vars(constants).update(kept)  # (what every module read from it before)


@given(
    endpoint=st.text(max_size=40)
    | st.builds("http://h:{}/{}".format, st.text(max_size=6), st.text(max_size=6))
)
def test_any_endpoint_is_asked_as_the_pull_would_or_not_at_all(folder: Path, endpoint: str) -> None:
    path, environ = load_catalog(folder / "catalog.toml").path, {"HOME": "/nonexistent"}
    assert planned_pull(["m"], path, environ) is not None  # (checked in this test's home)
    planned = planned_pull(["m"], path, {**environ, "HF_ENDPOINT": endpoint})
    if planned is None:
        return
    asked = endpoint or "https://huggingface.co"  # (an empty variable: not set)
    url = httpx2.URL(asked.rstrip("/"))  # the pull's: checked, then as httpx2 asks it
    port = url.port or (443 if url.scheme == "https" else 80)
    assert is_http_url(asked) and planned.origin == (url.scheme, url.host, port)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    found = tmp_path_factory.mktemp("catalogs")
    write_catalog(found, ENTRY, checked=False)
    return found


@pytest.mark.parametrize(
    "source",
    [
        "hf://org/tiny/w.bin",
        "hf://org/tiny@v1.0/sub/w.bin",
        "hf://datasets/org/data.set/x.json",
        "hf://org/tiny",
        "hf://spaces/org/app@dev",
    ],
)
def test_a_get_of_hf_sends_early_what_it_asks_first_byte_for_byte(
    tmp_path: Path, missing: HeadRecorder, source: str
) -> None:
    with contextlib.suppress(MdlError):  # (the repo is missing: the first request is all there is)
        api.get(source, directory=tmp_path / "d", environ={"HF_ENDPOINT": missing.origin})
    environ = {"HF_ENDPOINT": missing.origin, "HOME": str(tmp_path)}
    planned = planned_get([source], None, tmp_path / "d", environ)
    assert planned is not None and planned.sent is not None
    assert missing.heads[0] == planned.sent


def test_a_get_of_a_hub_file_answers_from_its_early_request(tmp_path: Path, hub: HubServer) -> None:
    hub.add_repo("org/tiny", {"config.json": b"{}", "w.bin": b"weights"})
    environ = {"HF_ENDPOINT": hub.url, "HOME": str(tmp_path)}
    early.begin(planned_get(["hf://org/tiny/w.bin"], None, tmp_path / "d", environ))
    asked = "/org/tiny/resolve/main/w.bin"
    wait_for(lambda: len(hub.log.records(path_prefix=asked)) == 1, what="the early request")
    api.get("hf://org/tiny/w.bin", directory=tmp_path / "d", environ={"HF_ENDPOINT": hub.url})
    assert (tmp_path / "d" / "w.bin").read_bytes() == b"weights"
    first = hub.log.records(path_prefix=asked)[0]
    assert first.headers["range"] == "bytes=0-0"  # its metadata: asked once, early
    assert [r.headers.get("range") for r in hub.log.records(path_prefix=asked)].count(
        "bytes=0-0"
    ) == 1
    assert not early.pending()


@pytest.mark.parametrize(
    ("source", "why"),
    [
        ("hf://org/tiny/w.bin", ""),
        ("hf://org/tiny", ""),  # a repo: its revision
        ("hf://org/tiny/w.bin hf://org/tiny/x", "two sources"),
        (f"hf://org/tiny@{COMMIT}", "a commit: its listing first"),
        ("hf://org/../w.bin", "refused by the get"),
        ("hf://org/tiny/../w.bin", "refused by the get"),
        ("hf://org/tiny/w.bin.", "a name the get refuses"),
        ("hf://org/tiny/nul.txt", "a name the get refuses"),
        ("hf://org/tiny/.mdl/w.bin", "mdl's own folder"),
        ("https://example.com/w.bin", "a URL's own (mdl.transfer.early)"),
    ],
)
def test_a_get_of_hf_sends_nothing_early_unless_its_first_request_is_known(
    tmp_path: Path, source: str, why: str
) -> None:
    environ = {"HF_ENDPOINT": HUB, "HOME": str(tmp_path)}
    planned = planned_get(source.split(), None, tmp_path / "d", environ)
    assert (planned is None) == bool(why)


def test_a_get_of_hf_asks_early_wherever_the_get_would_ask_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    environ = {"HF_ENDPOINT": HUB, "HOME": str(tmp_path)}
    d = tmp_path / "d"
    (d / "sub").mkdir(parents=True)
    (d / "sub" / "w.bin").write_bytes(b"mine")  # there: the get asks which version it is first
    assert planned_get(["hf://org/tiny/sub/w.bin"], None, d, environ) is not None
    (d / "a").write_bytes(b"")  # a file where its folder goes: refused before anything is asked
    assert planned_get(["hf://org/tiny/a/w.bin"], None, d, environ) is None
    assert planned_get(["hf://org/tiny"], None, d / "a", environ) is None
    assert planned_get(["hf://org/tiny/w.bin"], None, d / "a" / "sub", environ) is None
    assert planned_get(["hf://org/tiny/w.bin"], d / "x.bin", None, environ) is None  # -o: first
    assert planned_get(["hf://org/tiny/w.bin"], None, d, environ, sha256="zz") is None  # the same
    tls = planned_get(["hf://org/tiny"], None, d, {**environ, "HF_ENDPOINT": "https://h.example"})
    assert tls is not None and tls.sent is None
    token = planned_get(["hf://org/tiny"], None, d, {**environ, "HF_TOKEN": "hf_x"})
    assert token is not None and token.sent is None
    public = planned_get(["hf://org/tiny"], None, d, {**environ, "HF_ENDPOINT": "http://h.example"})
    assert public is not None and public.sent is None  # plain http off this network: nothing sent
    (d / "gone").mkdir()
    monkeypatch.chdir(d / "gone")
    (d / "gone").rmdir()  # a folder deleted under the run: the get says so
    assert planned_get(["hf://org/tiny/w.bin"], None, None, environ) is None
