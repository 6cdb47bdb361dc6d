"""A key's signature verified with `cryptography` alone (mdl.signing.keyed): what model_signing's
own CLI signs gives the manifest the library gives, without loading model_signing; a signature
the check does not take whole (a flipped byte, another key, a statement signed by another key under
the user's key hint) is left to the library, which refuses it as before (IntegrityError, exit 6)."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import tempfile
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from profiles import examples
from signkeys import json_places, json_replaced, key_pair, official_sign

from mdl.errors import IntegrityError
from mdl.signing import library
from mdl.signing.keyed import PAYLOAD_TYPE, key_verified
from mdl.signing.library import verify_signature
from mdl.signing.statement import SignedManifest, Trust

WHAT = "model/model.sig"
FILES = {"config.json": b"{}", "weights/model.safetensors": b"w" * 100_000, "README.md": b"# m\n"}


def model_folder(root: Path) -> Path:
    folder = root / "model"
    for path, data in FILES.items():
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        (folder / path).write_bytes(data)
    return folder


def by_the_library(data: bytes, trust: Trust) -> object:
    library._library()
    with tempfile.TemporaryDirectory() as folder:
        return library._verified(data, trust, Path(folder), what=WHAT)


@pytest.fixture(scope="module")
def signed(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, Path, Path]:
    root = tmp_path_factory.mktemp("keyed")
    private, public = key_pair(root / "keys")
    return official_sign(model_folder(root), private), public, private


def test_the_official_signature_is_the_librarys_manifest(signed: tuple[bytes, Path, Path]) -> None:
    data, public, _ = signed
    fast = key_verified(data, Trust(key=public))
    assert fast is not None
    assert fast == by_the_library(data, Trust(key=public))
    assert verify_signature(data, Trust(key=public), what=WHAT) == fast


def test_it_loads_no_model_signing(signed: tuple[bytes, Path, Path], tmp_path: Path) -> None:
    data, public, _ = signed
    (tmp_path / "model.sig").write_bytes(data)
    code = (
        "import sys; from pathlib import Path\n"
        "from mdl.signing.library import verify_signature\n"
        "from mdl.signing.statement import Trust\n"
        f"verify_signature(Path({str(tmp_path / 'model.sig')!r}).read_bytes(),"
        f" Trust(key=Path({str(public)!r})), what='m')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in"
        " ('model_signing', 'sigstore', 'tuf', 'OpenSSL')))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_a_flipped_byte_is_the_librarys_refusal(signed: tuple[bytes, Path, Path]) -> None:
    data, public, _ = signed
    bundle = json.loads(data)
    sig = bytearray(base64.b64decode(bundle["dsseEnvelope"]["signatures"][0]["sig"]))
    sig[-1] ^= 1
    bundle["dsseEnvelope"]["signatures"][0]["sig"] = base64.b64encode(sig).decode()
    bad = json.dumps(bundle).encode()
    assert key_verified(bad, Trust(key=public)) is None
    with pytest.raises(IntegrityError, match=r"^model/model.sig: the signature does not verify"):
        verify_signature(bad, Trust(key=public), what=WHAT)


def test_another_key_is_refused(signed: tuple[bytes, Path, Path], tmp_path: Path) -> None:
    data, _, _ = signed
    _, other = key_pair(tmp_path / "other")
    assert key_verified(data, Trust(key=other)) is None
    with pytest.raises(IntegrityError, match=r"^model/model.sig: the signature does not verify"):
        verify_signature(data, Trust(key=other), what=WHAT)


def test_another_keys_signature_under_the_users_hint_is_refused(
    signed: tuple[bytes, Path, Path], tmp_path: Path
) -> None:
    """The hint is the bundle's word: the signature must be by the user's key."""
    data, public, _ = signed
    other, _ = key_pair(tmp_path / "other")
    theirs = json.loads(official_sign(model_folder(tmp_path), other))
    theirs["verificationMaterial"] = json.loads(data)["verificationMaterial"]
    forged = json.dumps(theirs).encode()
    assert key_verified(forged, Trust(key=public)) is None
    with pytest.raises(IntegrityError, match=r"^model/model.sig: the signature does not verify"):
        verify_signature(forged, Trust(key=public), what=WHAT)


def _reshaped(data: bytes, change: str) -> bytes:
    """The user's valid bundle, its signed payload untouched, with an unsigned part the library's
    bundle reader refuses."""
    bundle = json.loads(data)
    material, envelope = bundle["verificationMaterial"], bundle["dsseEnvelope"]
    if change == "utf-8 BOM":
        return b"\xef\xbb\xbf" + data
    if change == "UTF-16":
        return data.decode().encode("utf-16")
    if change == "lone surrogate":
        return data.rstrip()[:-1] + b', "x": "\xed\xa0\x80"}'
    if change == "unknown field":
        bundle["comment"] = "not a bundle field"
    elif change == "message signature too":
        bundle["messageSignature"] = {"signature": "AA=="}
    elif change == "certificate too":
        material["certificate"] = {"rawBytes": "AA=="}
    elif change == "a tlog entry":
        material["tlogEntries"] = [{"logIndex": "1"}]
    elif change == "a timestamp":
        material["timestampVerificationData"] = {"rfc3161Timestamps": 5}
    elif change == "key id a number":
        envelope["signatures"][0]["keyid"] = 5
    elif change == "unknown envelope field":
        envelope["note"] = 1
    return json.dumps(bundle).encode()


@pytest.mark.parametrize(
    "change",
    [
        "utf-8 BOM",
        "UTF-16",
        "lone surrogate",
        "unknown field",
        "message signature too",
        "certificate too",
        "a tlog entry",
        "a timestamp",
        "key id a number",
        "unknown envelope field",
    ],
)
def test_a_bundle_the_library_refuses_is_refused(
    signed: tuple[bytes, Path, Path], change: str
) -> None:
    """The signature over the statement is the user's key's, but the bundle around it is one
    model_signing refuses to read: the fast path does not take it either (the library refuses it,
    exit 6), whatever the unsigned parts say."""
    data, public, _ = signed
    bad = _reshaped(data, change)
    assert key_verified(bad, Trust(key=public)) is None
    with pytest.raises(IntegrityError, match=r"^model/model.sig: the signature does not verify"):
        verify_signature(bad, Trust(key=public), what=WHAT)


VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-2, 2)
    | st.sampled_from(["", "a", "./a", "a/", "../a", "sha256", "blake2", "files", "shards", "É"]),
    lambda inner: st.lists(inner, max_size=2) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=4,
)
KEYS = st.sampled_from(
    ["hint", "keyid", "tlogEntries", "ignore_paths", "shard_size", "x", "sha512"]
)


@cache
def genuine() -> tuple[bytes, Path, Path]:
    root = Path(tempfile.mkdtemp(prefix="mdl-keyed-"))
    private, public = key_pair(root / "keys")
    return official_sign(model_folder(root), private), private, public


def _resigned(bundle: dict[str, Any], statement: Any, private: Path) -> bytes:
    """``bundle`` with ``statement`` as its payload, signed with ``private`` as the signer does."""
    key = serialization.load_pem_private_key(private.read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    payload = json.dumps(statement).encode()
    pae = b"DSSEv1 %d %s %d " % (len(PAYLOAD_TYPE), PAYLOAD_TYPE.encode(), len(payload))
    envelope = bundle["dsseEnvelope"]
    envelope["payload"] = base64.b64encode(payload).decode()
    sig = key.sign(pae + payload, ec.ECDSA(hashes.SHA256()))
    envelope["signatures"][0]["sig"] = base64.b64encode(sig).decode()
    return json.dumps(bundle).encode()


def _changed(doc: Any, pick: int, value: Any, key: str | None) -> Any:
    """``doc`` with one place replaced by ``value`` (``key``: a key ``key`` added to one of its
    tables instead)."""
    places = json_places(doc)
    if key is None:
        return json_replaced(doc, places[pick % len(places)], value)
    tables = [p for p in places if isinstance(json_at(doc, p), dict)]
    place = tables[pick % len(tables)]
    return json_replaced(doc, place, {**json_at(doc, place), key: value})


def json_at(doc: Any, place: tuple[Any, ...]) -> Any:
    for step in place:
        doc = doc[step]
    return doc


@settings(max_examples=examples(300), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    pick=st.integers(min_value=0), value=VALUES, key=st.none() | KEYS, in_statement=st.booleans()
)
def test_what_the_fast_path_takes_the_library_takes_alike(
    pick: int, value: Any, key: str | None, in_statement: bool
) -> None:
    """Any change to a genuine bundle, or to the statement it signs (signed again with the user's
    key): what the fast path takes, model_signing takes, and reads as the same statement."""
    data, private, public = genuine()
    bundle = json.loads(data)
    if in_statement:
        statement = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
        changed = _resigned(bundle, _changed(statement, pick, value, key), private)
    else:
        changed = json.dumps(_changed(bundle, pick, value, key)).encode()
    fast = key_verified(changed, Trust(key=public))
    event("taken by the fast path" if fast is not None else "left to the library")
    if fast is None:
        return
    by_library = by_the_library(changed, Trust(key=public))
    assert isinstance(by_library, SignedManifest)
    assert (fast, fast.model_name, fast.ignore_paths) == (
        by_library,
        by_library.model_name,
        by_library.ignore_paths,
    )
