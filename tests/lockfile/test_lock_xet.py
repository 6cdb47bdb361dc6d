"""catalog.lock's ``xet``: a Hub file's Xet hash, written when known and read strictly, so a locked
pull fetches it by chunk without a listing; a lock written before the field stays valid."""

from __future__ import annotations

from functools import partial

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mdl.catalog.specs import ModelSpec
from mdl.errors import CatalogError
from mdl.lockfile.checked import locked_from_resolved
from mdl.lockfile.io import dump_lock, parse_lock
from mdl.lockfile.model import Lock, LockedFile, LockedModel, resolved_from_locked
from mdl.redact import Secrets
from mdl.sources.huburls import hub_file_url, xet_token_url
from mdl.sources.resolve import RemoteFile, ResolvedModel, XetRef

COMMIT = "a" * 40
SHA = "b" * 64
XET = "0123456789abcdef" * 4
ENDPOINT = "http://127.0.0.1:9"
SOURCE = f"hf://org/tiny@{COMMIT}/model.safetensors"
OLD_LOCK = f"""version = 1

[[model]]
name = "tiny"
fingerprint = "sha256:{"d" * 64}"
commit = "{COMMIT}"
files = [
  {{ path = "model.safetensors", size = 3, sha256 = "{SHA}", source = "{SOURCE}" }},
]
"""


def _lock(xet: str | None) -> Lock:
    files = (LockedFile("model.safetensors", 3, SHA, SOURCE, xet=xet),)
    return Lock(models={"tiny": LockedModel("tiny", "sha256:" + "d" * 64, None, COMMIT, files)})


def test_a_xet_hash_round_trips_on_the_files_line() -> None:
    text = dump_lock(_lock(XET))
    assert f'source = "{SOURCE}", xet = "{XET}" }}' in text
    assert parse_lock(text) == _lock(XET)
    assert dump_lock(parse_lock(text)) == text


def test_a_lock_written_before_xet_still_reads_and_writes_no_xet() -> None:
    lock = parse_lock(OLD_LOCK)
    assert lock.models["tiny"].files[0].xet is None
    assert "xet" not in dump_lock(lock)


@pytest.mark.parametrize("bad", ['"' + XET.upper() + '"', '"' + XET[:63] + '"', "12", "true", '""'])
def test_a_xet_that_is_not_a_xet_hash_is_refused_naming_its_key(bad: str) -> None:
    text = OLD_LOCK.replace(f'source = "{SOURCE}" }}', f'source = "{SOURCE}", xet = {bad} }}')
    with pytest.raises(CatalogError, match=r"^catalog.lock: model\[0\]\.files\[0\]\.xet: "):
        parse_lock(text)


@given(value=st.text(max_size=70))
def test_any_xet_text_is_read_exactly_when_it_is_a_hash(value: str) -> None:
    escaped = value.encode("unicode_escape").decode().replace('"', '\\"')
    text = OLD_LOCK.replace(f'source = "{SOURCE}" }}', f'source = "{SOURCE}", xet = "{escaped}" }}')
    valid = len(value) == 64 and set(value) <= set("0123456789abcdef")
    try:
        assert parse_lock(text).models["tiny"].files[0].xet == value and valid
    except CatalogError:
        assert not valid


def _resolved(xet: XetRef | None) -> ResolvedModel:
    remote = RemoteFile(
        model="tiny",
        path="model.safetensors",
        url="u",
        size=3,
        sha256=SHA,
        commit=COMMIT,
        source=SOURCE,
        hub=True,
        repo="org/tiny",
        xet=xet,
    )
    return ResolvedModel("tiny", "main", COMMIT, (remote,))


@pytest.mark.parametrize("xet", [XetRef(XET, "http://127.0.0.1:9/t"), None])
def test_mdl_lock_writes_the_listings_xet_hash_and_a_locked_pull_asks_its_token_at_the_pinned_commit(
    xet: XetRef | None,
) -> None:
    spec = ModelSpec(name="tiny", repo="org/tiny")
    locked = locked_from_resolved(spec, _resolved(xet), {})
    assert locked.files[0].xet == (XET if xet else None)
    again = resolved_from_locked(
        parse_lock(dump_lock(Lock(models={"tiny": locked}))).models["tiny"],
        file_url=partial(hub_file_url, ENDPOINT),
        token_url=partial(xet_token_url, ENDPOINT),
        spec=spec,
        environ={},
        secrets=Secrets(),
    )
    token_url = f"{ENDPOINT}/api/models/org/tiny/xet-read-token/{COMMIT}"
    assert again.files[0].xet == (XetRef(XET, token_url) if xet else None)
