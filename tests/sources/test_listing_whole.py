"""Issue 37, class C and B: a Hub listing has a bound on the whole (entries, bytes, time), never
leaves its repo and commit, and one duplicate-path rule refuses a listing that names one file twice,
for every consumer (pull, get, lock, resolve): exit 5 naming the path, before any byte is fetched.

Every Hub here is a scripted loopback server (tests/hostile.py `HostileHub`); the endless one stops
by itself because mdl stops asking.
"""

from __future__ import annotations

import base64
import itertools
import json
import time
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hostile import HostileHub
from hypothesis import given
from hypothesis import strategies as st
from runfixtures import mdl, use_catalog
from servers import Exchange

from mdl.errors import ExitCode, HubReplyError
from mdl.sources import hub as hub_module
from mdl.sources.hub import Hub, ListingLimits
from mdl.sources.resolve import listing_clash
from mdl.transfer.http import RetryPolicy

CATALOG = """
[models.good]
repo = "org/good"

[models.other]
repo = "org/other"
"""
NO_RETRY = RetryPolicy(retries=0, sleep=lambda s: None)
PAGE = 1000  # generated entries a page of the endless listing holds


@pytest.fixture
def hostile() -> Iterator[HostileHub]:
    server = HostileHub(page_size=1).start()
    server.add_repo("org/good", {"config.json": b'{"a": 1}', "weights.bin": b"w" * 5000})
    server.add_repo("org/other", {"evil.bin": b"e" * 100, "z.json": b"{}"})
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def env(hostile: HostileHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    use_catalog(tmp_path, monkeypatch, CATALOG, endpoint=hostile.url)
    monkeypatch.setenv("MDL_RETRIES", "0")
    return tmp_path / "models"


def fetched(hub: HostileHub) -> int:
    """Requests for file bytes (the Hub's resolve URLs and the CDN): none may be made for a
    refused listing.
    """
    return len([r for r in hub.log.records() if "/resolve/" in r.url_path]) + len(
        hub.cdn.log.records()
    )


def endless(hub: HostileHub, *, delay: float = 0.0, path_bytes: int = 0) -> None:
    """Make org/good's listing never end: every page holds PAGE new files and links to one more
    page.
    """
    sha = hub.repo("org/good").sha
    pages = itertools.count(10**6)

    def link(honest: str | None) -> str:
        cursor = base64.urlsafe_b64encode(str(next(pages)).encode()).decode()
        return (
            f"{hub.url}/api/models/org/good/tree/{sha}?recursive=true&expand=false&cursor={cursor}"
        )

    numbers = itertools.count()

    def rewrite(ex: Exchange, doc: Any) -> Any:
        if "/tree/" not in ex.path:
            return doc
        time.sleep(delay)
        pad = "p" * path_bytes
        return [
            {"type": "file", "path": f"d/{pad}{next(numbers)}.bin", "size": 1, "oid": "0" * 40}
            for _ in range(PAGE)
        ]

    hub.next_link = link
    hub.rewrite_json = rewrite


# -- a listing that never ends stops at its bound on the whole
# ------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(
    ("limits", "said"),
    [
        (ListingLimits(files=5 * PAGE), f"holds more than {5 * PAGE} entries"),
        (ListingLimits(bytes=1 << 20), "is more than 1 MiB"),
        (ListingLimits(seconds=1.0), "took more than 1 s"),
    ],
    ids=["entries", "bytes", "time"],
)
def test_an_endless_listing_stops_at_its_bound_exit_5_naming_the_hub(
    hostile: HostileHub,
    env: Path,
    monkeypatch: pytest.MonkeyPatch,
    limits: ListingLimits,
    said: str,
) -> None:
    endless(
        hostile,
        delay=0.2 if limits.seconds < 10 else 0.0,
        path_bytes=600 if limits.bytes < 2 << 20 else 0,
    )
    monkeypatch.setattr(hub_module, "LISTING_LIMITS", limits)
    result = mdl("pull", "good")
    assert result.exit_code == ExitCode.NETWORK == 5, result.output
    assert f"the listing of org/good from the Hub at {hostile.url} {said}" in result.stderr
    assert "internal error" not in result.stderr
    pages = hostile.log.records(path_prefix="/api/models/org/good/tree/")
    # it stopped asking: the server never has to (how many pages fit in a second is the machine's)
    assert (1 if limits.seconds < 10 else 2) <= len(pages) <= 12, len(pages)
    assert fetched(hostile) == 0
    assert not (env / "good").exists()


def test_the_default_bounds_are_far_above_a_real_repo_and_bounded() -> None:
    limits = hub_module.LISTING_LIMITS
    # the Hub advises under 100k files a repo
    assert limits.files >= 200_000 and limits.bytes >= 256 << 20
    assert (
        limits.files <= 1_000_000
        and limits.bytes <= 1 << 30
        and limits.seconds <= 3600
        and limits.pages <= 10_000
    )


def test_a_listing_within_its_bounds_is_whole(hostile: HostileHub) -> None:
    hub = Hub(hostile.url, None, retry=NO_RETRY)
    try:
        commit = hub.commit_of("org/good", repo_type="model", revision="main", what="m")
        files = hub.list_files(
            "org/good", repo_type="model", commit=commit, what="m", limits=ListingLimits(files=2)
        )
    finally:
        hub.close()
    assert [f.path for f in files] == ["config.json", "weights.bin"]


# -- a next page never leaves the repo and commit
# ------------------------------------------------------------


def _elsewhere(hub: HostileHub, kind: str) -> str:
    good, other = hub.repo("org/good"), hub.repo("org/other")
    if kind == "another repo":
        return f"{hub.url}/api/models/org/other/tree/{other.sha}?recursive=true&expand=false&cursor=MQ=="
    if kind == "another commit":
        old = good.sha
        # main moves on; the old commit stays listable
        hub.commit("org/good", {"evil.bin": b"e" * 100})
        return f"{hub.url}/api/models/org/good/tree/{old}?recursive=true&expand=false&cursor=MQ=="
    if kind == "a dataset of the same name":
        return f"{hub.url}/api/datasets/org/good/tree/{good.sha}?recursive=true&expand=false&cursor=MQ=="
    return (
        f"{hub.url}/api/models/org/good/tree/{good.sha}/../../../other/tree/{other.sha}?cursor=MQ=="
    )


@pytest.mark.parametrize(
    "kind", ["another repo", "another commit", "a dataset of the same name", "dot segments"]
)
def test_a_next_page_into_another_listing_is_refused_and_nothing_of_it_is_merged(
    hostile: HostileHub, env: Path, kind: str
) -> None:
    target = _elsewhere(hostile, kind)
    hostile.next_link = lambda honest: target if honest and "/org/good/" in honest else honest
    result = mdl("pull", "good")
    assert result.exit_code == ExitCode.NETWORK == 5, result.output
    assert (
        "good: hostile listing" in result.stderr
        and "its next page is another listing" in result.stderr
    )
    assert "/org/other/tree/" not in "".join(r.url_path for r in hostile.log.records()), (
        "it was never asked"
    )
    assert fetched(hostile) == 0
    assert not (env / "good").exists()
    resolved = mdl("resolve", "good", "--json")
    assert resolved.exit_code == 5 and "evil.bin" not in resolved.stdout


def test_the_honest_next_page_is_followed(hostile: HostileHub, env: Path) -> None:
    result = mdl("pull", "good")
    assert result.exit_code == 0, result.output
    assert len(hostile.log.records(path_prefix="/api/models/org/good/tree/")) == 2


same_origin_paths = st.sampled_from(
    [
        "/api/models/org/m/tree/" + "a" * 40,
        "/api/models/org%2Fm/tree/" + "a" * 40,
        "/api/models/org/x/tree/" + "a" * 40,
        "/api/models/org/m/tree/" + "b" * 40,
        "/api/datasets/org/m/tree/" + "a" * 40,
        "/api/models/org/m/tree/" + "a" * 40 + "/sub",
        "/api/models/org/m/tree/main",
        "/api/models/org/m/../x/tree/" + "a" * 40,
    ]
)


@given(path=same_origin_paths, query=st.text(max_size=20), relative=st.booleans())
def test_any_same_origin_next_link_is_this_listing_or_refused(
    path: str, query: str, relative: bool
) -> None:
    from urllib.parse import unquote, urlsplit

    from mdl.sources._hubreplies import next_page_url

    first = "http://127.0.0.1:9/api/models/org/m/tree/" + "a" * 40 + "?recursive=true&expand=false"
    link = f"{path}?{query}" if relative else f"http://127.0.0.1:9{path}?{query}"
    try:
        target = next_page_url(link, current=first, first=first, what="m")
    except HubReplyError as exc:
        assert exc.exit_code == 5 and "hostile listing" in exc.message
        return
    assert target is not None and unquote(urlsplit(target).path) == urlsplit(first).path


# -- one duplicate-path rule for every listing consumer
# -------------------------------------------------------


def twice(path: str, *, as_: str | None = None) -> Any:
    """A rewrite of org/good's listing (one page) that names ``path`` once more (as ``as_``:
    another spelling).
    """

    def apply(ex: Exchange, doc: Any) -> Any:
        if "/org/good/tree/" not in ex.path or not isinstance(doc, list):
            return doc
        entry = next((e for e in doc if e.get("path") == path), None)
        return [*doc, {**entry, "path": as_ or path}] if entry is not None else doc

    return apply


COMMANDS = {
    "pull": ("pull", "good"),
    "get": ("get", "hf://org/good", "-d", "{tmp}/out"),
    "lock": ("lock", "good"),
    "resolve": ("resolve", "good", "--json"),
}


@pytest.mark.slow
@pytest.mark.parametrize("command", list(COMMANDS))
@pytest.mark.parametrize(
    ("path", "as_", "said"),
    [
        ("weights.bin", None, "names 'weights.bin' twice"),
        ("config.json", None, "names 'config.json' twice"),
    ],
    ids=["lfs-size file", "small file"],
)
def test_a_listing_that_names_one_file_twice_is_exit_5_before_any_byte(
    hostile: HostileHub,
    env: Path,
    tmp_path: Path,
    command: str,
    path: str,
    as_: str | None,
    said: str,
) -> None:
    hostile.page_size = 1000  # one page: the duplicate is in the same answer
    hostile.rewrite_json = twice(path, as_=as_)
    args = [arg.replace("{tmp}", str(tmp_path)) for arg in COMMANDS[command]]
    result = mdl(*args)
    assert result.exit_code == ExitCode.NETWORK == 5, result.output
    assert f"the listing of org/good {said}" in result.stderr
    assert "before anything was fetched" in result.stderr
    assert fetched(hostile) == 0
    assert not (env / "good").exists() and not (tmp_path / "out").exists()
    assert not (tmp_path / "catalog.lock").exists()
    if command == "pull":  # and nothing says it is there afterwards
        listed = mdl("list", "--json")
        assert json.loads(listed.stdout)["models"][0]["status"] != "installed"
        assert mdl("verify", "good").exit_code != 0


def test_names_that_differ_in_case_or_unicode_form_are_two_files() -> None:
    """As on the Hub and on Linux: only ``get`` refuses them, for its own folders (exit 2,
    tests/download).
    """
    composed, decomposed = "caf\u00e9.bin", unicodedata.normalize("NFD", "caf\u00e9.bin")
    assert composed != decomposed
    assert listing_clash(["a.bin", composed, decomposed, "README.md", "readme.md"]) is None


@given(st.lists(st.text(st.characters(codec="utf-8"), min_size=1, max_size=6), max_size=8))
def test_listing_clash_refuses_exactly_the_lists_that_are_not_distinct_files(
    paths: list[str],
) -> None:
    from mdl.paths import path_clash

    problem = listing_clash(paths)
    distinct = len(set(paths)) == len(paths) and path_clash(paths) is None
    assert (problem is None) == distinct, (paths, problem)
