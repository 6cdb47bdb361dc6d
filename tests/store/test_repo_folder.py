"""mdl names a repo's hf-cache folder as huggingface_hub's ``repo_folder_name`` does, written out
(its module costs ~0.2 s to import): the same name for any repo id and type, and a repo id the
library refuses is a usage error (exit 2)."""

from __future__ import annotations

import pytest
from huggingface_hub.errors import HFValidationError
from huggingface_hub.file_download import repo_folder_name
from hypothesis import example, given
from hypothesis import strategies as st

from mdl.errors import ExitCode, UsageError
from mdl.store.layout import repo_folder


@given(
    repo=st.one_of(st.from_regex(r"\A([A-Za-z0-9][\w.-]{0,12}/)?[\w.-]{1,16}\Z"), st.text()),
    repo_type=st.one_of(st.sampled_from(["model", "dataset", "space"]), st.text(max_size=8)),
)
@example("org/a--b", "model")
@example("org/name", "dataset")
def test_a_repo_folder_is_named_as_huggingface_hub_names_it(repo: str, repo_type: str) -> None:
    try:
        expected: str | None = repo_folder_name(repo_id=repo, repo_type=repo_type)
    except HFValidationError:
        expected = None
    if expected is None:
        with pytest.raises(UsageError) as refused:
            repo_folder(repo, repo_type)
        assert refused.value.exit_code == ExitCode.USAGE
    else:
        assert repo_folder(repo, repo_type) == expected
