"""Hypothesis over model.sig bundles: any change to a genuine bundle's fields (or any bytes at all)
is a verified statement equal to the genuine one, or IntegrityError (exit 6) / UsageError (exit 2);
never anything else."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from profiles import examples
from signkeys import key_pair, mutated_bundle, official_sign

from mdl.errors import IntegrityError, UsageError
from mdl.signing.library import verify_signature
from mdl.signing.statement import SignedManifest, Trust

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=3)
    ),
    max_leaves=8,
)


@cache
def genuine() -> tuple[bytes, Trust, SignedManifest]:
    import tempfile

    root = Path(tempfile.mkdtemp(prefix="mdl-bundle-"))
    private, public = key_pair(root / "keys")
    folder = root / "model"
    folder.mkdir()
    (folder / "weights.bin").write_bytes(b"w" * 4096)
    (folder / "config.json").write_bytes(b"{}")
    signature = official_sign(folder, private)
    trust = Trust(key=public)
    return signature, trust, verify_signature(signature, trust, what="m")


def _outcome(data: bytes, trust: Trust, original: SignedManifest) -> None:
    try:
        signed = verify_signature(data, trust, what="m/model.sig")
    except (IntegrityError, UsageError) as exc:
        assert exc.message.startswith("m/model.sig: ")
        return
    # whatever else changed, the statement is the one that was signed
    assert signed.files == original.files


@settings(max_examples=examples(150), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pick=st.integers(min_value=0), value=JSON)
def test_any_field_of_the_bundle_replaced(pick: int, value: Any) -> None:
    signature, trust, original = genuine()
    _outcome(mutated_bundle(signature, in_statement=False, pick=pick, value=value), trust, original)


@settings(max_examples=examples(100), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pick=st.integers(min_value=0), value=JSON)
def test_any_field_of_the_signed_statement_replaced(pick: int, value: Any) -> None:
    signature, trust, original = genuine()
    _outcome(mutated_bundle(signature, in_statement=True, pick=pick, value=value), trust, original)


@settings(max_examples=examples(100), deadline=None)
@given(data=st.binary(max_size=3000))
def test_any_bytes(data: bytes) -> None:
    _, trust, original = genuine()
    _outcome(data, trust, original)
