"""Partial downloads, resume records and lock files under ``<dest>/.mdl/`` never have a name
starting with "-" (``rm *``, ``ls *`` and other tools would read it as options), whatever the file
or model is called."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from runfixtures import mdl
from servers import Fault, HubServer, make_data

from mdl.catalog.specs import MAX_MODEL_NAME
from mdl.errors import ExitCode
from mdl.store.store import Store

DATA = make_data(2_000_000, seed=39)
MODELS = st.one_of(
    st.just(""),
    st.from_regex(rf"[A-Za-z0-9_-][A-Za-z0-9._-]{{0,{MAX_MODEL_NAME - 1}}}", fullmatch=True),
)
PATHS = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="/\x00"),
    min_size=1,
    max_size=80,
)


@given(model=MODELS, name=PATHS)
def test_no_name_mdl_keeps_under_dot_mdl_starts_with_a_dash(model: str, name: str) -> None:
    store = Store(Path("/nowhere"))
    part, state = store.part_paths(model, f"sub/{name}")
    for made in (part.name, state.name, store.lock_path(model, name).name):
        assert not made.startswith("-"), made
        assert len(made.encode()) + len(".json.4194304.0123abcd.tmp") <= 255, made


def test_a_model_named_normally_keeps_its_partial_names() -> None:
    """Older partials stay resumable: only names that would start with "-" changed."""
    part, _ = Store(Path("/d")).part_paths("tiny", "model.safetensors")
    assert part.name.startswith("tiny-") and part.name.endswith("-model.safetensors.part")


def test_a_get_of_a_dash_file_cut_short_leaves_no_dash_name_and_resumes(
    hub: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = hub.cdn.add_file("/files/-rf.bin", DATA, etag='"d1"')
    monkeypatch.setenv("MDL_LOG_FILE", str(tmp_path / "mdl.log"))
    monkeypatch.setenv("MDL_RETRIES", "0")
    hub.cdn.faults.add(Fault.reset(after_bytes=700_000, path_prefix="/files/", times=None))
    assert mdl("get", url, "-d", str(tmp_path / "D")).exit_code == ExitCode.NETWORK
    hub.cdn.faults.clear()
    state = tmp_path / "D" / ".mdl"
    names = [p.name for p in state.rglob("*")]
    assert any(n.endswith("-rf.bin.part") for n in names), names
    assert not [n for n in names if n.startswith("-")], names
    monkeypatch.delenv("MDL_RETRIES")
    result = mdl("get", url, "-d", str(tmp_path / "D"), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["files"][0]["action"] == "resumed"
    assert (tmp_path / "D" / "-rf.bin").read_bytes() == DATA
