"""Hypothesis over the model.sig a Hub serves, end to end: a pull is exit 0 with every installed
file as signed, or exit 6 (or 2) naming the signature or a file, with nothing unsigned at a final
path; never a traceback."""

from __future__ import annotations

import hashlib
import itertools
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from profiles import examples
from runfixtures import mdl
from servers import HubServer, make_data
from signkeys import key_pair, mutated_bundle, official_sign, write_files

FILES = {"config.json": b'{"a": 1}\n', "model.safetensors": make_data(70_000, seed=4)}
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)
_runs = itertools.count()


@pytest.fixture
def signed(hub: HubServer, tmp_path: Path) -> tuple[HubServer, Path, bytes, Path]:
    private, public = key_pair(tmp_path / "keys")
    signature = official_sign(write_files(tmp_path / "upstream", FILES), private)
    hub.add_repo("org/tiny", {**FILES, "model.sig": signature})
    catalog = tmp_path / "catalog.toml"
    catalog.write_text(
        f'[models.tiny]\nrepo = "org/tiny"\n\n[models.tiny.signature]\nkey = "{public}"\n'
    )
    return hub, catalog, signature, tmp_path


@settings(
    max_examples=examples(25),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(in_statement=st.booleans(), pick=st.integers(min_value=0), value=JSON)
def test_a_pull_of_any_changed_signature(
    signed: tuple[HubServer, Path, bytes, Path], in_statement: bool, pick: int, value: Any
) -> None:
    hub, catalog, signature, root = signed
    served = mutated_bundle(signature, in_statement=in_statement, pick=pick, value=value)
    hub.replace_file("org/tiny", "model.sig", served)
    dest = root / f"dest-{next(_runs)}"
    env = {"HF_ENDPOINT": hub.url, "MDL_CATALOG": str(catalog), "MDL_DEST": str(dest)}
    result = mdl("pull", "tiny", env=env)
    assert "Traceback" not in result.output
    folder = dest / "tiny"
    if result.exit_code == 0:
        for path, data in FILES.items():
            assert (folder / path).read_bytes() == data
        return
    assert result.exit_code in (2, 6), result.output
    assert "tiny/model.sig" in result.stderr
    for path in FILES:
        assert not (folder / path).exists()
    assert hashlib.sha256(served).hexdigest()  # the served bytes were what was judged


@pytest.mark.slow
def test_a_genuine_signature_of_another_statement_fails_every_file_by_name(
    signed: tuple[HubServer, Path, bytes, Path],
) -> None:
    hub, catalog, _, root = signed
    other = root / "other"
    other.mkdir()
    for path in FILES:
        (other / path).write_bytes(b"other bytes for " + path.encode())
    private = root / "keys" / "signer.pem"
    # the right key, another statement
    hub.replace_file("org/tiny", "model.sig", official_sign(other, private))
    result = mdl(
        "pull",
        "tiny",
        env={"HF_ENDPOINT": hub.url, "MDL_CATALOG": str(catalog), "MDL_DEST": str(root / "d")},
    )
    assert result.exit_code == 6, result.output
    for path in FILES:
        assert f"tiny/{path}" in result.stderr
        assert not (root / "d" / "tiny" / path).exists()
