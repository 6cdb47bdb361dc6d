"""mdl/buckets/versions.py: a version's id, its manifest written and read back. A manifest in a
mirror is outside bytes: whatever is there, it is read back as a manifest whose id is its own
files' (then written again to the same bytes), or as none."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st
from profiles import examples

from mdl.buckets import versions

hex64 = st.text("0123456789abcdef", min_size=64, max_size=64)
paths = st.from_regex(r"[A-Za-z0-9_.-]{1,12}(/[A-Za-z0-9_.-]{1,12}){0,2}", fullmatch=True)
rows = st.lists(
    st.builds(versions.ManifestFile, paths, st.integers(0, 2**40), hex64, st.just("hf://o/r@c/p")),
    min_size=1,
    max_size=6,
    unique_by=lambda f: f.path,
)


def made(files: list[versions.ManifestFile], signed: bool) -> versions.Manifest:
    signature = versions.ManifestFile("model.sig", 10, "a" * 64) if signed else None
    vid = versions.version_id((f.path, f.size, f.sha256) for f in files if f.path != "model.sig")
    kept = tuple(sorted((f for f in files if f.path != "model.sig"), key=lambda f: f.path))
    return versions.Manifest("llm", vid, kept, commit="c" * 40, signature=signature)


@settings(max_examples=examples(200), deadline=None)
@given(rows, st.booleans())
def test_a_manifest_reads_back_as_written(files: list[versions.ManifestFile], signed: bool) -> None:
    manifest = made(files, signed)
    assert versions.parse_manifest(manifest.to_bytes()) == manifest


@settings(max_examples=examples(300), deadline=None)
@given(
    st.binary(max_size=2048)
    | st.builds(
        lambda d: json.dumps(d).encode(),
        st.recursive(
            st.none() | st.integers() | st.text(max_size=8),
            lambda inner: (
                st.lists(inner, max_size=3)
                | st.dictionaries(st.text(max_size=8), inner, max_size=4)
            ),
            max_leaves=12,
        ),
    )
)
def test_no_bytes_read_back_as_a_manifest_of_other_files_than_its_id_says(data: bytes) -> None:
    found = versions.parse_manifest(data)
    if found is None:
        return
    sig = found.signature.path if found.signature is not None else None
    assert found.id == versions.version_id(
        ((f.path, f.size, f.sha256) for f in found.files), signature=sig
    )


@settings(max_examples=examples(200), deadline=None)
@given(rows, st.booleans(), st.integers(0, 63))
def test_a_manifest_whose_id_or_files_were_changed_is_none(
    files: list[versions.ManifestFile], signed: bool, at: int
) -> None:
    doc = json.loads(made(files, signed).to_bytes())
    flipped = "0" if doc["id"][at] != "0" else "1"
    doc["id"] = doc["id"][:at] + flipped + doc["id"][at + 1 :]
    assert versions.parse_manifest(json.dumps(doc).encode()) is None
    doc = json.loads(made(files, signed).to_bytes())
    doc["files"][0]["size"] += 1
    assert versions.parse_manifest(json.dumps(doc).encode()) is None


@settings(max_examples=examples(100), deadline=None)
@given(rows, st.booleans(), st.integers(0, 5))
def test_a_manifest_naming_a_file_twice_is_none(
    files: list[versions.ManifestFile], signed: bool, at: int
) -> None:
    """mdl names each file once: a copy of a signed manifest with one row twice (its id recomputed
    over them all, the signature still covering every file) is no manifest of mdl's."""
    doc = json.loads(made(files, signed).to_bytes())
    doc["files"].append(doc["files"][at % len(doc["files"])])
    rows = [(f["path"], f["size"], f["sha256"]) for f in doc["files"]]
    doc["id"] = versions.version_id(rows, signature="model.sig" if signed else None)
    assert versions.parse_manifest(json.dumps(doc).encode()) is None


def test_a_manifest_over_the_bound_is_none_unread() -> None:
    assert versions.parse_manifest(b" " * (versions.MAX_MANIFEST_BYTES + 1)) is None


def test_a_version_is_found_under_the_id_its_signed_copy_publishes() -> None:
    """A copy pulled signed never installs git's files, so its publish names the version without
    them: a lock pinning them finds it all the same (and the signature is never counted)."""
    pinned = [
        (".gitattributes", 5, "1" * 64),
        ("model.bin", 9, "2" * 64),
        ("model.sig", 3, "3" * 64),
    ]
    published = versions.version_id([("model.bin", 9, "2" * 64)], signature="model.sig")
    ids = versions.version_ids(pinned, signature="model.sig")
    assert ids[0] == versions.version_id(pinned, signature="model.sig") and published in ids
    assert versions.version_ids(pinned[1:], signature="model.sig") == (published,)
