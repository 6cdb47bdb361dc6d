"""The token huggingface_hub stored (mdl.sources.hub.stored_token) is the one its ``get_token``
returns, whatever is there; with nothing anywhere, its module (huggingface_hub.utils) is not loaded
to say so (tests/cli/test_startup.py: a Hub pull's process)."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest
from huggingface_hub import constants, get_token
from huggingface_hub.errors import OIDCError

from mdl.errors import LocalFSError
from mdl.sources.hub import stored_token

TOKEN = "hf_" + "s" * 34


@pytest.fixture
def token_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where huggingface_hub reads the stored token (HF_TOKEN_PATH, read when it is imported)."""
    path = tmp_path / "hf" / "token"
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(path))
    for name in ("HF_OIDC_RESOURCE", "HF_OIDC_ID_TOKEN", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    return path


@pytest.mark.parametrize(
    "there",
    [
        "nothing",
        "a token file",
        "a token file of blanks",
        "a dangling link",
        "HF_TOKEN",
        "the old name",
        "Colab",
    ],
)
def test_the_stored_token_is_the_one_huggingface_hub_finds(
    token_file: Path, monkeypatch: pytest.MonkeyPatch, there: str
) -> None:
    token_file.parent.mkdir()
    if there == "a token file":
        token_file.write_text(f"{TOKEN}\n")
    elif there == "a token file of blanks":
        token_file.write_text(" \n")
    elif there == "a dangling link":
        token_file.symlink_to(token_file.parent / "gone")
    elif there == "HF_TOKEN":
        monkeypatch.setenv("HF_TOKEN", TOKEN)
    elif there == "the old name":
        monkeypatch.setenv("HUGGING_FACE_HUB_TOKEN", TOKEN)
    elif there == "Colab":  # (its kernel has google.colab loaded: the library is asked)
        monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    expected = get_token()
    assert (expected is not None) == (there in ("a token file", "HF_TOKEN", "the old name"))
    assert stored_token() == expected


@pytest.mark.parametrize("there", ["a file where its folder is", "a loop of links"])
def test_a_token_file_that_cannot_be_reached_is_said_as_the_library_finds_it(
    token_file: Path, monkeypatch: pytest.MonkeyPatch, there: str
) -> None:
    """Not "no token": a path the library cannot read but for its absence is named (exit 7),
    never passed over (a private repo would then fail as not found)."""
    if there == "a file where its folder is":
        token_file.parent.write_text("a file")
    else:
        token_file.parent.symlink_to(token_file.parent)
    with pytest.raises(OSError) as raised:
        get_token()
    with pytest.raises(LocalFSError) as said:
        stored_token()
    assert said.value.message.startswith(f"{token_file}: the Hub token file: ")
    assert raised.value.strerror and raised.value.strerror.lower() in said.value.message


def test_an_oidc_exchange_asked_for_is_the_library_s_to_make(
    token_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """HF_OIDC_RESOURCE with no file: huggingface_hub's exchange is tried (here it fails: no CI
    provider, no id token), never passed over as "no token"."""
    monkeypatch.setenv("HF_OIDC_RESOURCE", "models/org/name")
    with pytest.raises(OIDCError):
        get_token()
    with pytest.raises(OIDCError):
        stored_token()
