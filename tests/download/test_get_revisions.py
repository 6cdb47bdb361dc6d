"""Whatever a revision is spelled as (in ``hf://…@REV``, or in a Hub page URL, percent-encoded or
not), ``get`` asks the Hub for exactly that revision (quoted whole in the URL path) or refuses it
with exit 2 naming the source; never another revision: ``..`` or ``%2E%2E`` folded away on the way
would have fetched the default branch."""

from __future__ import annotations

import re
import tempfile
from urllib.parse import quote, unquote

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from profiles import examples
from servers import HubServer

import mdl
from mdl.errors import MdlError, UsageError

REPO = "org/repo"
SHA = re.compile(r"[0-9a-f]{40}")
# The characters revision spellings that fold away are made of, and some a name holds.
ALPHABET = st.sampled_from(
    [".", "%", "2", "e", "E", "5", "c", "C", "F", "f", "/", "\\", "a", "m", "é", " ", "#", "@"]
)
spelled = st.text(ALPHABET, min_size=1, max_size=9)


@pytest.fixture
def world(hub: HubServer) -> HubServer:
    hub.add_repo(REPO, {"config.json": b"{}"})
    hub.create_branch(REPO, "v1")
    return hub


def asked_revisions(hub: HubServer) -> list[str]:
    """The revision of every request to the Hub API or resolve paths, as the server reads it (one
    segment, decoded once); a request of another shape (the repo's info: no revision at all) is
    there as itself."""
    asked: list[str] = []
    for record in hub.log.records():
        path = record.url_path.split("?", 1)[0]
        if m := re.fullmatch(rf"/api/models/{REPO}/revision/([^/]+)", path):
            asked.append(unquote(m.group(1)))
        elif m := re.fullmatch(rf"/api/models/{REPO}/tree/([0-9a-f]{{40}})", path):
            continue  # the listing at the commit the revision named
        # blob: a plain URL
        elif m := re.fullmatch(rf"/{REPO}/(?:resolve|blob)/([^/]+)/config\.json", path):
            asked.append(unquote(m.group(1)))
        else:
            asked.append(f"<{path}>")
    return asked


def check_get(hub: HubServer, source: str, revision: str) -> None:
    """The property, for one source that names ``revision``."""
    hub.log.clear()
    with tempfile.TemporaryDirectory() as folder:
        try:  # a file not found (4) is in the report: what was asked for is all that matters here
            mdl.get(source, directory=folder, environ={"HF_ENDPOINT": hub.url})
        except UsageError as exc:
            assert exc.exit_code == 2
            assert not hub.log.records(), "refused before the Hub was asked"
            return
        except MdlError:  # a whole repo at a revision not found (4)
            pass
    asked = asked_revisions(hub)
    assert asked, source
    assert all(one == revision or SHA.fullmatch(one) for one in asked), (source, revision, asked)


@settings(
    max_examples=examples(60),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(revision=spelled.filter(lambda r: "/" not in r), whole=st.booleans())
@example(revision="..", whole=True)
@example(revision="..", whole=False)
@example(revision="%2E%2E", whole=True)
@example(revision="%2e.", whole=True)
@example(revision="%252E%252E", whole=True)
@example(revision="v1", whole=True)
def test_an_hf_uri_asks_for_its_revision_or_is_refused(
    world: HubServer, revision: str, whole: bool
) -> None:
    source = f"hf://{REPO}@{revision}" + ("" if whole else "/config.json")
    check_get(world, source, revision)


@settings(
    max_examples=examples(60),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(revision=spelled, verb=st.sampled_from(["resolve", "blob", "tree"]), encode=st.booleans())
# hf:// cannot name it: the page's URL is fetched as written
@example(revision="2/2", verb="blob", encode=True)
@example(revision="..", verb="resolve", encode=False)
@example(revision="..", verb="tree", encode=True)
@example(revision="%2E%2E", verb="tree", encode=False)
@example(revision="refs/pr/..", verb="resolve", encode=False)
@example(revision="v1", verb="blob", encode=True)
def test_a_hub_page_url_asks_for_its_revision_or_is_refused(
    world: HubServer, revision: str, verb: str, encode: bool
) -> None:
    """``encode``: the revision percent-encoded whole (as huggingface_hub writes it), else only what
    a URL cannot hold as such (a '%' is written as itself when it starts no escape: a browser keeps
    it)."""
    if not encode and "/" in revision and not revision.startswith("refs/"):
        # written with its '/', the Hub reads a shorter revision and a path
        revision = revision.replace("/", "%2F")
    written = quote(revision, safe="") if encode else quote(revision, safe="/%.")
    page = f"{world.url}/{REPO}/{verb}/{written}" + ("" if verb == "tree" else "/config.json")
    check_get(world, page, unquote(written))


@pytest.mark.parametrize("revision", ["..", "%2E%2E", "refs/pr/..", "a//b"])
def test_a_catalog_revision_that_folds_away_is_a_catalog_error_naming_its_key(
    revision: str,
) -> None:
    from mdl.catalog.load import parse_catalog
    from mdl.errors import CatalogError

    for text, key in (
        (f'[models.m]\nrepo = "org/repo"\nrevision = "{revision}"\n', "models.m.revision"),
        (
            (
                '[models.f]\nfiles = [{ repo = "org/repo", path = "x.bin", revision ='
                f' "{revision}" }}]\n'
            ),
            "files[0]",
        ),
    ):
        with pytest.raises(CatalogError) as caught:
            parse_catalog(text)
        assert caught.value.exit_code == 2
        assert key in caught.value.message and "cannot be asked for" in caught.value.message, (
            caught.value.message
        )
