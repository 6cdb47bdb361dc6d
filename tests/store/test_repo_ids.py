"""mdl's repo id rule (``mdl.paths.repo_id_problem``) is huggingface_hub's ``validate_repo_id``,
written out so that reading catalog.lock (a readiness probe) never loads the HTTP stack that
importing it brings: the two agree on any id."""

from __future__ import annotations

from huggingface_hub.errors import HFValidationError
from huggingface_hub.utils import validate_repo_id  # type: ignore[attr-defined]
from hypothesis import example, given
from hypothesis import strategies as st

from mdl.paths import repo_id_problem


def refused(repo: str) -> bool:
    try:
        validate_repo_id(repo)
    except HFValidationError:
        return True
    return False


@given(
    st.one_of(
        st.from_regex(r"\A([\w.-]{0,100}/)?[\w.-]{0,100}(\.git)?\Z"),
        st.text(max_size=40),
        st.text(alphabet="a-._/ü1", max_size=12),
    )
)
@example("org/a--b")
@example("org/a..b")
@example("org/model.git")
@example("a/b/c")
@example("-org/name")
@example("org/name-")
@example("x" * 96)
@example("x" * 97)
@example("o" * 96 + "/" + "n" * 96)
@example("ünï/cödé")
@example("")
def test_mdl_refuses_the_repo_ids_huggingface_hub_refuses(repo: str) -> None:
    assert (repo_id_problem(repo) is not None) == refused(repo), repo
