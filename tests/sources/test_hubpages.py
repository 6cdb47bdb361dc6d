"""Hub web URLs read as the hf:// they stand for: the shapes, the origin rule, and properties of the
parser (it takes whatever a user pastes)."""

from __future__ import annotations

from urllib.parse import quote, unquote

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from mdl.errors import MdlError, UsageError
from mdl.paths import parse_hf_uri
from mdl.sources.hubpages import hub_page_as_hf, hub_words

HUB = "https://huggingface.co"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (f"{HUB}/org/repo/blob/main/x.gguf", "hf://org/repo@main/x.gguf"),
        (f"{HUB}/org/repo/resolve/main/sub/x.gguf?download=true", "hf://org/repo@main/sub/x.gguf"),
        (f"{HUB}/org/repo/resolve/refs%2Fpr%2F1/x.bin", "hf://org/repo@refs/pr/1/x.bin"),
        (f"{HUB}/org/repo/blob/refs/pr/12/x.bin#L3", "hf://org/repo@refs/pr/12/x.bin"),
        (
            f"{HUB}/datasets/org/ds/resolve/v1.0/data/a%20b.parquet",
            "hf://datasets/org/ds@v1.0/data/a b.parquet",
        ),
        (f"{HUB}/spaces/org/app/blob/main/app.py", "hf://spaces/org/app@main/app.py"),
        (f"{HUB}/org/repo", "hf://org/repo"),
        (f"{HUB}/org/repo/", "hf://org/repo"),
        (f"{HUB}/org/repo/tree/dev", "hf://org/repo@dev"),
        # one origin
        ("https://HuggingFace.co:443/org/repo/blob/main/x.gguf", "hf://org/repo@main/x.gguf"),
        # not a Hub file or repo: left a plain URL
        ("https://example.com/org/repo/blob/main/x.gguf", None),  # another host
        ("http://huggingface.co/org/repo/blob/main/x.gguf", None),  # another scheme
        ("https://huggingface.co:8443/org/repo/blob/main/x.gguf", None),  # another port
        (f"{HUB}/docs/hub", None),
        (f"{HUB}/api/models/org/repo", None),
        (f"{HUB}/org/repo/raw/main/x.json", None),
        (f"{HUB}/org/repo/blob/main", None),  # no file
        (f"{HUB}/org/repo/blob/feature%2Fx/y.bin", None),  # a revision hf:// cannot name
        (f"{HUB}/org", None),
        ("hf://org/repo/x", None),
    ],
)
def test_hub_urls_and_others(url: str, expected: str | None) -> None:
    assert hub_page_as_hf(url, endpoint=HUB) == expected


def test_an_endpoint_with_a_path_is_the_prefix_of_its_urls() -> None:
    mirror = "http://127.0.0.1:8080/hf/"
    assert (
        hub_page_as_hf("http://127.0.0.1:8080/hf/org/r/blob/main/x", endpoint=mirror)
        == "hf://org/r@main/x"
    )
    assert hub_page_as_hf("http://127.0.0.1:8080/org/r/blob/main/x", endpoint=mirror) is None
    assert (
        hub_page_as_hf("http://127.0.0.1:8080/elsewhere/org/r/blob/main/x", endpoint=mirror) is None
    )


def test_a_huggingface_co_url_is_a_hub_file_whatever_the_endpoint() -> None:
    """Pasted from the browser with HF_ENDPOINT set to a mirror: the same Hub file, fetched from the
    mirror (as hf download would); only https://huggingface.co, not its look-alikes."""
    mirror = "http://127.0.0.1:8080/hf/"
    assert hub_page_as_hf(f"{HUB}/org/r/blob/main/x", endpoint=mirror) == "hf://org/r@main/x"
    assert (
        hub_page_as_hf(f"{HUB}/datasets/org/d/resolve/v1/a/b.parquet", endpoint=mirror)
        == "hf://datasets/org/d@v1/a/b.parquet"
    )
    assert hub_page_as_hf(f"{HUB}/org/r", endpoint=mirror) == "hf://org/r"
    assert hub_page_as_hf("http://huggingface.co/org/r/blob/main/x", endpoint=mirror) is None
    assert (
        hub_page_as_hf("https://huggingface.co.evil.example/org/r/blob/main/x", endpoint=mirror)
        is None
    )


@pytest.mark.parametrize(
    "page",
    [
        "org/repo/resolve/../x.bin",
        "org/repo/resolve/%2E%2E/x.bin",
        "org/repo/blob/%2e%2E/x.bin",
        "org/repo/resolve/.%2e/x.bin",
        "org/repo/resolve/%252E%252E/x.bin",  # decoded twice by a proxy: '..'
        "org/repo/resolve/./x.bin",
        "org/repo/resolve/%2E/x.bin",
        "org/repo/resolve/refs%2Fpr%2F../x.bin",
        "org/repo/resolve/a%2F..%2F..%2Fmain/x.bin",
        "org/repo/resolve/a%5C..%5Cmain/x.bin",
        "org/repo/tree/..",
        "org/repo/tree/%2E%2E",
    ],
)
@pytest.mark.parametrize("endpoint", [HUB, "http://127.0.0.1:8080/hf"])
def test_a_revision_a_url_path_folds_away_is_refused_naming_the_url(
    page: str, endpoint: str
) -> None:
    """'..' (any spelling) would be folded away on the way and the default branch fetched
    instead: exit 2.
    """
    url = f"{endpoint}/{page}?download=true"
    with pytest.raises(UsageError) as caught:
        hub_page_as_hf(url, endpoint=endpoint)
    assert caught.value.exit_code == 2
    assert caught.value.message.startswith(f"{url}: revision "), caught.value.message


@pytest.mark.parametrize(
    "text",
    [
        "hf://org/name@..",
        "hf://org/name@../x.bin",
        "hf://org/name@.",
        "hf://org/name@%2E%2E",
        "hf://org/name@%2e%2E/x.bin",
        "hf://org/name@.%2E",
        "hf://org/name@%252e%252e",
        "hf://org/name@refs/pr/..",
        "hf://org/name@refs/convert/.",
        "hf://org/name@a%2F..",
        "hf://datasets/org/name@%2E%2E",
        "hf://org/..",
        "hf://org/./x.bin",
    ],
)
def test_an_hf_uri_whose_revision_or_repo_folds_away_is_refused(text: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_hf_uri(text)
    assert caught.value.message.startswith(f"{text}: "), caught.value.message


@pytest.mark.parametrize(
    "revision", ["main", "v1.0", "refs/pr/1", "a..b", "...", ".x", "x.", "%", "%zz", "1.2.3"]
)
def test_revisions_that_are_names_are_kept_as_written(revision: str) -> None:
    assert parse_hf_uri(f"hf://org/name@{revision}/x.bin").revision == revision


def test_a_folder_page_is_refused_with_the_hf_uri_to_use() -> None:
    with pytest.raises(UsageError) as caught:
        hub_page_as_hf(f"{HUB}/org/repo/tree/main/sub/dir", endpoint=HUB)
    assert (
        caught.value.hint == "to fetch that folder, give hf://org/repo@main --include 'sub/dir/*'"
    )


owners = st.from_regex(r"[A-Za-z0-9][\w.-]{0,12}", fullmatch=True).filter(
    lambda o: (
        o not in ("datasets", "spaces", "api", "docs", "blog", "papers", "collections", "models")
        and o not in ("organizations", "settings")
    )
)
names = st.from_regex(r"[\w.-]{1,12}", fullmatch=True)
revisions = st.one_of(
    st.from_regex(r"[\w.-]{1,12}", fullmatch=True),
    st.from_regex(r"refs/(pr|convert)/[\w.-]{1,6}", fullmatch=True),
)
segments = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=8).filter(
    lambda s: "/" not in s and s not in (".", "..") and s.strip() == s
)


@given(
    kind=st.sampled_from(["", "datasets/", "spaces/"]),
    owner=owners,
    name=names,
    revision=revisions,
    path=st.lists(segments, min_size=1, max_size=3),
    verb=st.sampled_from(["blob", "resolve"]),
    encoded=st.booleans(),
)
def test_a_hub_file_url_round_trips_through_the_hf_parser(
    kind: str, owner: str, name: str, revision: str, path: list[str], verb: str, encoded: bool
) -> None:
    rev = quote(revision, safe="" if encoded else "/")
    url = f"{HUB}/{kind}{quote(owner)}/{quote(name)}/{verb}/{rev}/{'/'.join(quote(p, safe='') for p in path)}?x=1"
    # folded away on the way: another revision
    if any(seg in (".", "..") for seg in revision.split("/")):
        with pytest.raises(UsageError):
            hub_page_as_hf(url, endpoint=HUB)
        return
    text = hub_page_as_hf(url, endpoint=HUB)
    assert text is not None, url
    try:
        uri = parse_hf_uri(text)
    except MdlError:  # a name the one path rule refuses (the same as for an hf:// given as such)
        return
    assert (uri.repo_type, uri.repo, uri.revision, uri.path) == (
        {"": "model", "datasets/": "dataset", "spaces/": "space"}[kind],
        f"{owner}/{name}",
        revision,
        "/".join(path),
    )


@given(st.text(max_size=200), st.sampled_from([HUB, "http://127.0.0.1:9/hf", "https://h"]))
def test_any_text_gives_an_hf_uri_none_or_a_usage_error(text: str, endpoint: str) -> None:
    for candidate in (text, f"{endpoint}/{text}"):
        try:
            found = hub_page_as_hf(candidate, endpoint=endpoint)
        except UsageError:
            continue
        assert found is None or found.startswith("hf://")


revision_spellings = st.one_of(
    st.text(st.sampled_from(list("./%2eE5cCfF\\aé #?")), min_size=1, max_size=10),
    st.text(min_size=1, max_size=10),
)


# the first example imports huggingface_hub: no test depends on wall-clock speed
@settings(deadline=None)
@given(revision=revision_spellings, api=st.booleans())
@example(revision="..", api=True)
@example(revision=".", api=False)
@example(revision="..", api=False)
def test_a_revision_is_requested_as_itself_or_refused(revision: str, api: bool) -> None:
    """Through the client's own URL normaliser (httpx2 folds '.' and '..'): the path the server gets
    names exactly ``revision`` (one segment, decoded once), or the revision is refused (exit 2)
    before any URL is built."""
    import httpx2

    from mdl.sources.huburls import hub_api_url, hub_file_url

    endpoint = "http://127.0.0.1:9/hf"
    try:
        if api:
            url = hub_api_url(endpoint, "org/repo", "model", "revision", revision)
        else:
            url = hub_file_url(endpoint, "org/repo", "x.bin", "model", revision)
    except UsageError as exc:
        assert exc.exit_code == 2
        return
    path = httpx2.URL(url).raw_path.decode("ascii").split("?", 1)[0]
    prefix = "/hf/api/models/org/repo/revision/" if api else "/hf/org/repo/resolve/"
    assert path.startswith(prefix), (revision, url, path)
    segment = (
        path.removeprefix(prefix).removesuffix("/x.bin") if not api else path.removeprefix(prefix)
    )
    assert "/" not in segment and unquote(segment) == revision, (revision, url, path)


@pytest.mark.parametrize(
    ("words", "read"),
    [
        (["org/tiny", "config.json"], ["hf://org/tiny/config.json"]),
        (["org/tiny", "onnx/model.onnx"], ["hf://org/tiny/onnx/model.onnx"]),
        (["org/tiny", "org/other"], ["hf://org/tiny/org/other"]),  # hf's reading: a path in it
        (["hf://org/tiny", "hf://org/other"], ["hf://org/tiny", "hf://org/other"]),
        (["org/tiny", "./job.json"], ["hf://org/tiny", "./job.json"]),
        # the hf:// of a whole repo reads the same
        (["hf://org/tiny", "config.json"], ["hf://org/tiny/config.json"]),
        (["hf://datasets/org/c/", "a/b.csv"], ["hf://datasets/org/c/a/b.csv"]),
        (
            ["hf://org/tiny@v1", "x.json", "y.json"],
            ["hf://org/tiny@v1/x.json", "hf://org/tiny@v1/y.json"],
        ),
        (
            ["hf://org/tiny", "https://e.com/x", "a.json"],
            ["hf://org/tiny", "https://e.com/x", "a.json"],
        ),
        (["hf://org/tiny/config.json", "a.json"], ["hf://org/tiny/config.json", "a.json"]),
    ],
)
def test_words_after_a_repo_id_are_read_as_hf_download_reads_them(
    words: list[str], read: list[str]
) -> None:
    assert hub_words(words, revision=None, repo_type=None, note=lambda _: None) == read


@pytest.mark.parametrize(
    ("words", "revision", "read"),
    [
        (["hf://org/tiny@v1"], "v1", ["hf://org/tiny@v1"]),
        (["hf://org/tiny@refs/pr/1/a.json"], "refs/pr/1", ["hf://org/tiny@refs/pr/1/a.json"]),
        (["hf://org/tiny@v1", "a.json"], "v1", ["hf://org/tiny@v1/a.json"]),
        (["hf://org/tiny"], "v1", ["hf://org/tiny@v1"]),
    ],
)
def test_a_revision_said_twice_alike_is_taken(
    words: list[str], revision: str, read: list[str]
) -> None:
    assert hub_words(words, revision=revision, repo_type=None, note=lambda _: None) == read


@pytest.mark.parametrize(
    ("word", "revision"), [("hf://org/tiny@v1", "v2"), ("hf://org/tiny@refs/pr/1/x", "refs")]
)
def test_two_revisions_that_differ_are_refused_naming_both(word: str, revision: str) -> None:
    with pytest.raises(UsageError, match=f"names its revision, and --revision says {revision}$"):
        hub_words([word], revision=revision, repo_type=None, note=lambda _: None)
