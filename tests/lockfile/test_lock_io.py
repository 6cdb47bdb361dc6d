"""catalog.lock on disk: byte-identical round trips, and a strict reader for a file anyone can
edit.
"""

from __future__ import annotations

import string
import tomllib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from profiles import examples

from mdl.errors import CatalogError
from mdl.lockfile.checked import checked_model
from mdl.lockfile.io import dump_lock, parse_lock, write_lock
from mdl.lockfile.model import Lock, LockedFile, LockedModel

COMMIT = "a" * 40
SHA = "b" * 64


def _model(name: str = "tiny", *files: LockedFile) -> LockedModel:
    files = files or (
        LockedFile("config.json", 12, SHA, f"hf://owner/tiny@{COMMIT}/config.json", "c" * 40),
    )
    return LockedModel(name, "sha256:" + "d" * 64, "main", COMMIT, files)


def test_a_lock_round_trips_and_writes_the_same_bytes(tmp_path: Path) -> None:
    lock = Lock(
        models={
            "b-url": _model(
                "b-url", LockedFile("w.bin", 3, SHA, "https://cdn.example/w.bin?REDACTED")
            ),
            "a-hub": _model("a-hub"),
        }
    )
    text = dump_lock(lock)
    assert parse_lock(text) == Lock(models=dict(sorted(lock.models.items())))
    # sorted, whatever the input order
    assert text.index('name = "a-hub"') < text.index('name = "b-url"')
    target = tmp_path / "catalog.lock"
    assert write_lock(target, lock) is True
    before = target.stat().st_mtime_ns
    # unchanged: not even rewritten
    assert write_lock(target, parse_lock(target.read_text())) is False
    assert target.stat().st_mtime_ns == before
    assert target.read_text() == text


_names = st.text(
    alphabet=string.ascii_letters + string.digits + '-_. é"\\\x7f\x01', min_size=1, max_size=30
)
_model_names = st.from_regex(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,29}", fullmatch=True)


@settings(max_examples=examples(200), deadline=None)
@given(name=_model_names, size=st.integers(0, 2**63 - 1), revision=_names)
def test_any_name_and_size_survive_the_round_trip(name: str, size: int, revision: str) -> None:
    lock = Lock(
        models={
            name: LockedModel(
                name,
                "sha256:" + "e" * 64,
                revision,
                None,
                (LockedFile("a/b.bin", size, SHA, f"hf://o/r@{COMMIT}/b.bin", None, revision),),
            )
        }
    )
    text = dump_lock(lock)
    tomllib.loads(text)  # valid TOML whatever the characters
    assert parse_lock(text) == lock
    assert dump_lock(parse_lock(text)) == text


@pytest.mark.parametrize(
    ("edit", "names"),
    [
        (lambda t: t.replace("version = 1", "version = 2"), "newer"),
        (lambda t: t.replace(SHA, "B" * 64), "model[0].files[0].sha256"),
        (
            lambda t: t.replace('path = "config.json"', 'path = "../etc/passwd"'),
            "model[0].files[0].path",
        ),
        (lambda t: t.replace(f"@{COMMIT}", "@main"), "model[0].files[0].source"),
        (lambda t: t.replace("size = 12", 'size = "12"'), "model[0].files[0].size"),
        (lambda t: t.replace("size = 12", "size = -1"), "model[0].files[0].size"),
        (lambda t: t + "surprise = 1\n", "model[0].surprise"),
        (lambda t: t.replace('name = "tiny"', "name = 3"), "model[0].name"),
        (lambda t: t[: len(t) // 2], "invalid TOML"),
        # --frozen takes model names from the lock alone: a name is a folder under dest, as in the
        # catalog.
        (
            lambda t: t.replace('name = "tiny"', 'name = "../../evil"'),
            "model[0].name: model names use",
        ),
        (lambda t: t.replace('name = "tiny"', 'name = "a/b"'), "model[0].name"),
        (lambda t: t.replace('name = "tiny"', 'name = "ti\\u0000ny"'), "model[0].name"),
        (lambda t: t.replace('name = "tiny"', 'name = ".mdl"'), "model[0].name"),
        (
            lambda t: t.replace("hf://owner/tiny@", "hf://owner/a--b@"),
            "model[0].files[0].source: not a Hub repo id",
        ),
        (
            lambda t: t.replace("hf://owner/tiny@", "hf://..@"),
            "model[0].files[0].source: not a Hub repo id",
        ),
        (
            lambda t: t.replace(f"{COMMIT}/config.json", f"{COMMIT}/../../api/whoami"),
            "unsafe path in the repo",
        ),
        (lambda t: t.replace("version = 1", "version = true"), "version: must be 1, got True"),
        (lambda t: t.replace("version = 1", "version = 0"), "version: must be 1, got 0"),
        (lambda t: t.replace("version = 1", "version = 1.0"), "version: must be 1, got 1.0"),
        (
            lambda t: t.replace("version = 1", "version = 1\nsurprise = 1"),
            "surprise: Extra inputs are not permitted",
        ),
        (
            lambda t: t.replace(
                "  {",
                f'  {{ path = "config.json", size = 1, sha256 = "{SHA}", source = "https://h/x"'
                " },\n  {",
            ),
            "model[0].files: two files share a save path",
        ),
    ],
)
def test_a_bad_lock_names_the_file_and_the_key(edit: object, names: str) -> None:
    text = dump_lock(Lock(models={"tiny": _model()}))
    with pytest.raises(CatalogError) as caught:
        parse_lock(edit(text), source="x/catalog.lock")  # type: ignore[operator]
    assert caught.value.message.startswith("x/catalog.lock: ")
    assert names in caught.value.message
    assert caught.value.exit_code == 2


@settings(max_examples=examples(300), deadline=None)
@given(st.text(max_size=400))
def test_any_text_is_a_lock_or_a_catalog_error(text: str) -> None:
    try:
        parse_lock(text)
    except CatalogError:
        pass


def test_a_lock_entry_is_checked_as_it_is_built() -> None:
    """One model: what the reader refuses, the lock's maker (``checked_model``, which `mdl lock`
    builds every entry with) refuses too, so it is never written.
    """
    fp = "sha256:" + "d" * 64
    with pytest.raises(ValueError, match="unsafe save path"):
        checked_model("tiny", fp, None, None, (("../x", 1, SHA, "https://h/x", None, None, None),))
    with pytest.raises(ValueError, match="two files share a save path"):
        checked_model(
            "tiny",
            fp,
            None,
            None,
            (
                ("a", 1, SHA, "https://h/a", None, None, None),
                ("a", 2, SHA, "https://h/b", None, None, None),
            ),
        )
