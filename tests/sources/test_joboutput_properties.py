"""Serverless job-output JSON is untrusted input: whatever its text, parsing ends in a list of sound
file descriptors or a JobOutputError (exit 2); decoding ends in the bytes or exit 2/6; and ``mdl
get`` of it writes nothing outside the folder it was given."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from profiles import examples

from mdl import api
from mdl.errors import ExitCode, JobOutputError, MdlError
from mdl.paths import safe_file_name
from mdl.sources.joboutput import (
    InlineFile,
    UrlFile,
    check_expected_sha256,
    check_inline,
    parse_job_output,
)

FUZZ = settings(
    max_examples=examples(200), deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
PAYLOAD = b"lora weights \x00\xff" * 20
SHA = hashlib.sha256(PAYLOAD).hexdigest()
INLINE = {
    "type": "file_data",
    "filename": "lora.safetensors",
    "data": base64.b64encode(PAYLOAD).decode(),
    "size": len(PAYLOAD),
    "sha256": SHA,
    "content_type": "application/octet-stream",
}
REDIRECT = {
    "type": "redirect",
    "url": "https://bucket.example/x?X-Amz-Signature=abc",
    "filename": "big.bin",
    "size": 9,
}
SEEDS: list[Any] = [
    INLINE,
    [INLINE, {**INLINE, "filename": "b.bin"}],
    {"files": [INLINE, REDIRECT]},
    {"id": "job-1", "status": "COMPLETED", "output": [INLINE]},
    {"id": 7, "status": "IN_QUEUE", "error": {"message": "busy"}},
]
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(),
    st.text(max_size=16),
    st.sampled_from(
        [
            "file_data",
            "redirect",
            "../x",
            "a/b",
            "CON",
            "x\u202e.txt",
            "",
            "===",
            "QUJD",
            "QUJD\n",
            "QQ==QQ==",
            "http://127.0.0.1/x",
            "http://example.com/x",
            "https://[::1/x",
            SHA,
            SHA + "\n",
            SHA.upper(),
            "COMPLETED",
            "FAILED",
        ]
    ),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=10,
)
KEYS = st.sampled_from(
    [
        "type",
        "filename",
        "data",
        "url",
        "size",
        "sha256",
        "files",
        "output",
        "status",
        "id",
        "error",
    ]
)


@st.composite
def documents(draw: st.DrawFn) -> Any:
    """A seed with a few values replaced or keys dropped, at any depth; or any JSON value."""
    if draw(st.integers(min_value=0, max_value=4)) == 0:
        return draw(VALUES)
    doc = copy.deepcopy(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(min_value=0, max_value=3))):
        node: Any = doc
        while isinstance(node, dict | list) and node and draw(st.booleans()):
            child = node[
                draw(st.sampled_from(list(node) if isinstance(node, dict) else range(len(node))))
            ]
            if not isinstance(child, dict | list) or not child:
                break
            node = child
        if isinstance(node, dict):
            key = draw(st.one_of(KEYS, st.text(max_size=4)))
            if key in node and draw(st.booleans()):
                del node[key]
            else:
                node[key] = draw(VALUES)
        elif isinstance(node, list) and node:
            node[draw(st.integers(min_value=0, max_value=len(node) - 1))] = draw(VALUES)
    return doc


TEXTS = st.one_of(
    documents().map(json.dumps),
    st.text(max_size=80),
    st.sampled_from(
        ["", "\ufeff[]", "[" * 5000, '{"size": ' + "9" * 5000 + "}", "NaN", '{"a": 1e400}']
    ),
)


@FUZZ
@given(TEXTS)
def test_parsing_is_sound_descriptors_or_exit_2(text: str) -> None:
    try:
        found = parse_job_output(text, where="job.json")
    except MdlError as exc:
        assert isinstance(exc, JobOutputError) or exc.exit_code == ExitCode.USAGE, exc
        return
    assert found
    for item in found:
        assert safe_file_name(item.filename, where="x") == item.filename
        assert item.size is None or (type(item.size) is int and item.size >= 0)
        assert item.sha256 is None or (
            len(item.sha256) == 64 and set(item.sha256) <= set("0123456789abcdef")
        )
        if isinstance(item, UrlFile):
            assert item.url is not None and item.url.lower().startswith(("https://", "http://"))
        else:
            try:
                check_inline(item)
            except MdlError as exc:
                assert exc.exit_code in (ExitCode.USAGE, ExitCode.INTEGRITY), exc


@FUZZ
@given(documents())
def test_get_of_inline_job_output_writes_only_into_its_folder(doc: Any) -> None:
    text = json.dumps(doc)
    try:
        found = parse_job_output(text, where="job.json")
    except MdlError:
        found = []
    if any(not isinstance(item, InlineFile) for item in found):
        return  # links would be fetched: no test sends traffic beyond loopback
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        (root / "job.json").write_text(text)
        target = root / "out"
        try:
            api.get(str(root / "job.json"), directory=target, environ={})
        except MdlError as exc:
            assert exc.exit_code in (ExitCode.USAGE, ExitCode.INTEGRITY, ExitCode.LOCAL), exc
        outside = {p for p in root.rglob("*") if p != target and target not in p.parents}
        assert outside == {root / "job.json"}


@given(st.one_of(st.none(), st.text(max_size=70), st.just(SHA + "\n"), st.just(SHA.upper())))
def test_expected_sha256_is_64_hex_or_exit_2(value: str | None) -> None:
    try:
        checked = check_expected_sha256(value)
    except MdlError as exc:
        assert exc.exit_code == ExitCode.USAGE
        return
    assert checked is None or (len(checked) == 64 and set(checked) <= set("0123456789abcdef"))


def test_a_sha256_with_a_trailing_newline_is_refused() -> None:
    doc = {**INLINE, "sha256": SHA + "\n"}
    try:
        parse_job_output(json.dumps(doc), where="job.json")
    except JobOutputError as exc:
        assert "sha256" in exc.message
    else:
        raise AssertionError("accepted a sha256 with a newline")
