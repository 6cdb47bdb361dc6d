"""mdl writes huggingface_hub's resolve URL out (importing hf_hub_url's module costs ~0.2 s of every
Hub pull): for any repo id, path, revision, repo type and endpoint, the two agree, and a repo id the
library refuses is a usage error (exit 2)."""

from __future__ import annotations

import pytest
from huggingface_hub import hf_hub_url
from huggingface_hub.errors import HFValidationError
from hypothesis import assume, example, given
from hypothesis import strategies as st

from mdl.errors import ExitCode, UsageError
from mdl.paths import revision_problem
from mdl.sources.huburls import hub_file_url

REPO_IDS = st.one_of(
    st.from_regex(r"\A([A-Za-z0-9][\w.-]{0,12}/)?[\w.-]{1,16}\Z"), st.text(max_size=24)
)
ENDPOINTS = st.one_of(
    st.sampled_from(["https://huggingface.co", "http://127.0.0.1:8080", "https://hf.example/m/"]),
    st.text(max_size=24),
)


@given(
    repo=REPO_IDS,
    path=st.text(min_size=1, max_size=40),
    revision=st.text(min_size=1, max_size=24),
    repo_type=st.sampled_from(["model", "dataset", "space", "kernel"]),
    endpoint=ENDPOINTS,
)
@example("org/m", "d ir/ü #?%.x", "refs/pr/1", "dataset", "https://huggingface.co")
@example("org/a--b", "x", "main", "model", "https://huggingface.co")
def test_a_hub_file_url_is_hf_hub_urls(
    repo: str, path: str, revision: str, repo_type: str, endpoint: str
) -> None:
    assume(revision_problem(revision) is None)  # refused before any URL is made (exit 2)
    try:
        expected: str | None = hf_hub_url(
            repo, path, repo_type=repo_type, revision=revision, endpoint=endpoint
        )
    except HFValidationError:
        expected = None
    if expected is None:
        with pytest.raises(UsageError) as refused:
            hub_file_url(endpoint, repo, path, repo_type, revision)
        assert refused.value.exit_code == ExitCode.USAGE
    else:
        assert hub_file_url(endpoint, repo, path, repo_type, revision) == expected
