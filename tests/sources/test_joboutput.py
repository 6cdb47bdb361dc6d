"""Job-output parsing, chunked base64, inline checks and writes, and the plain-http rule (no
network).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest

from mdl.errors import ExitCode, IntegrityError, JobOutputError, MdlError, UsageError
from mdl.progress import NullProgress
from mdl.sources import joboutput
from mdl.sources.joboutput import (
    InlineCheck,
    InlineFile,
    UrlFile,
    check_inline,
    check_url,
    iter_base64,
    parse_job_output,
    write_inline,
)
from mdl.transfer.hosts import is_local_host


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def inline(name: str, data: bytes, **extra: Any) -> dict[str, Any]:
    return {
        "type": "file_data",
        "filename": name,
        "data": b64(data),
        "content_type": "x/y",
        **extra,
    }


def redirect(
    name: str, url: str = "https://cdn.example.com/x?X-Amz-Signature=abc", **extra: Any
) -> dict[str, Any]:
    return {"type": "redirect", "filename": name, "url": url, **extra}


# -- shapes
# ------------------------------------------------------------------------------------------------

ONE = inline("a.bin", b"xyz", size=3)
TWO = [inline("a.bin", b"xyz"), redirect("b.bin", size=10)]


@pytest.mark.parametrize(
    ("doc", "names", "wheres"),
    [
        (ONE, ["a.bin"], ["job.json"]),
        (TWO, ["a.bin", "b.bin"], ["job.json[0]", "job.json[1]"]),
        ({"files": TWO}, ["a.bin", "b.bin"], ["job.json.files[0]", "job.json.files[1]"]),
        ({"outputs": TWO}, ["a.bin", "b.bin"], ["job.json.outputs[0]", "job.json.outputs[1]"]),
        ({"results": [ONE]}, ["a.bin"], ["job.json.results[0]"]),
        ({"id": "j1", "status": "COMPLETED", "output": ONE}, ["a.bin"], ["job.json.output"]),
        (
            {"id": "j1", "status": "COMPLETED", "output": TWO},
            ["a.bin", "b.bin"],
            ["job.json.output[0]", "job.json.output[1]"],
        ),
        (
            {"id": "j1", "status": "completed", "output": {"files": TWO}},
            ["a.bin", "b.bin"],
            ["job.json.output.files[0]", "job.json.output.files[1]"],
        ),
        ({"status": "Completed", "files": [ONE]}, ["a.bin"], ["job.json.files[0]"]),
        ({"id": "j1", "output": {"outputs": [ONE]}}, ["a.bin"], ["job.json.output.outputs[0]"]),
    ],
)
def test_every_shape_is_understood(doc: Any, names: list[str], wheres: list[str]) -> None:
    found = parse_job_output(json.dumps(doc), where="job.json")
    assert [f.filename for f in found] == names
    assert [f.where for f in found] == wheres
    assert isinstance(found[0], InlineFile) and found[0].data == b64(b"xyz")
    if len(found) > 1:
        assert isinstance(found[1], UrlFile) and found[1].size == 10 and found[1].url is not None


def test_a_byte_order_mark_is_ignored() -> None:
    assert parse_job_output("\ufeff" + json.dumps(ONE), where="job.json")[0].filename == "a.bin"


def test_sha256_is_kept_lower_case() -> None:
    digest = hashlib.sha256(b"xyz").hexdigest()
    found = parse_job_output(json.dumps([inline("a", b"xyz", sha256=digest.upper())]), where="j")
    assert found[0].sha256 == digest


@pytest.mark.parametrize(
    ("doc", "needle"),
    [
        (
            {"id": "abc123", "status": "FAILED", "error": "CUDA out of memory"},
            "job abc123 is FAILED: CUDA out of memory",
        ),
        (
            {"id": "abc123", "status": "FAILED", "output": None, "error": {"message": "boom"}},
            "job abc123 is FAILED: boom",
        ),
        ({"id": 7, "status": "CANCELLED"}, "job 7 is CANCELLED"),
        (
            {"status": "TIMED_OUT", "error": "line 1\nline 2\x1b[31m"},
            "the job is TIMED_OUT: line 1 line 2[31m",
        ),
        (
            {"id": "abc", "status": "COMPLETED", "output": None},
            "job abc completed without an output",
        ),
        ({"id": "abc", "status": "COMPLETED"}, "job abc completed without an output"),
        ({"id": "abc", "status": 3, "output": ONE}, "job.json.status: expected a string"),
    ],
)
def test_unfinished_or_failed_jobs_are_refused(doc: Any, needle: str) -> None:
    with pytest.raises(JobOutputError) as info:
        parse_job_output(json.dumps(doc), where="job.json")
    assert needle in str(info.value)
    assert "\n" not in str(info.value) and "\x1b" not in str(info.value)
    assert info.value.exit_code == ExitCode.USAGE


@pytest.mark.parametrize("status", ["IN_QUEUE", "IN_PROGRESS", "in_progress"])
def test_a_pending_job_says_to_wait(status: str) -> None:
    with pytest.raises(JobOutputError) as info:
        parse_job_output(json.dumps({"id": "abc", "status": status}), where="job.json")
    assert f"job abc is {status}" in str(info.value)
    assert info.value.hint is not None and "wait" in info.value.hint


def test_a_huge_error_text_is_shortened() -> None:
    with pytest.raises(JobOutputError) as info:
        parse_job_output(json.dumps({"status": "FAILED", "error": "x" * 10_000}), where="j")
    assert len(str(info.value)) < 400


@pytest.mark.parametrize(
    ("doc", "needle"),
    [
        ([], "job.json: the job output lists no files"),
        ({"files": []}, "job.json.files: the job output lists no files"),
        ("just a string", "expected a JSON object or list, got str"),
        ({"foo": 1}, "keys found: foo"),
        ([1], "job.json[0]: expected an object"),
        (
            [{"type": "ftp", "filename": "a"}],
            "job.json[0].type: expected 'file_data' or 'redirect'",
        ),
        ([{"type": "file_data", "data": "eHl6"}], "job.json[0].filename: missing"),
        (
            [{"type": "file_data", "filename": 3, "data": "eHl6"}],
            "job.json[0].filename: missing or not a string",
        ),
        ([inline("a", b"x", size=-1)], "job.json[0].size"),
        ([inline("a", b"x", size=True)], "job.json[0].size"),
        ([inline("a", b"x", size="3")], "job.json[0].size"),
        ([inline("a", b"x", sha256="abc")], "job.json[0].sha256: expected 64 hex digits"),
        ([{"type": "file_data", "filename": "a"}], "job.json[0].data: missing"),
        ([{"type": "file_data", "filename": "a", "data": 12}], "job.json[0].data: missing"),
        ([redirect("a", url="file:///etc/passwd")], "job.json[0].url: expected an http(s) URL"),
        ([redirect("a", url="ftp://x/y")], "job.json[0].url: expected an http(s) URL"),
        ([redirect("a", url="https://x/a\nb")], "job.json[0].url: contains control characters"),
        (
            [redirect("a", url="http://cdn.example.com/a")],
            "job.json[0].url: plain http:// is only allowed",
        ),
        (
            [inline("a.bin", b"x"), inline("a.bin", b"y")],
            "job.json[1].filename: 'a.bin' is also the file name of job.json[0]",
        ),
        (
            [inline("A.bin", b"x"), redirect("a.BIN")],
            "job.json[1].filename: 'a.BIN' is also the file name",
        ),
        (
            [inline("\u00e9.bin", b"x"), inline("e\u0301.bin", b"y")],
            "is also the file name of job.json[0]",
        ),
    ],
)
def test_broken_job_output_names_the_culprit(doc: Any, needle: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_job_output(json.dumps(doc), where="job.json")
    assert needle in str(info.value)
    assert info.value.exit_code == ExitCode.USAGE


def test_invalid_json_says_where() -> None:
    with pytest.raises(JobOutputError, match=r"job.json: not valid JSON \(line 1, column 2"):
        parse_job_output("{nope", where="job.json")


@pytest.mark.parametrize(
    "text", ["[" * 100_000 + "]" * 100_000, '{"type": "file_data", "size": ' + "1" * 5000 + "}"]
)
def test_json_python_cannot_hold_is_bad_input_not_a_crash(text: str) -> None:
    with pytest.raises(JobOutputError, match=r"job\.json: not usable JSON"):
        parse_job_output(text, where="job.json")


def test_hostile_file_names_are_refused_with_the_descriptor_named() -> None:
    with pytest.raises(UsageError) as info:
        parse_job_output(
            json.dumps({"files": [inline("ok.bin", b"x"), inline("..\\x", b"y")]}), where="job.json"
        )
    assert str(info.value).startswith(
        "job.json.files[1].filename: must be a relative path inside the folder, got '..\\\\x'"
    )


# -- chunked base64
# ----------------------------------------------------------------------------------------


@pytest.fixture
def tiny_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Decode 8 characters at a time, so every test crosses many chunk boundaries."""
    monkeypatch.setattr(joboutput, "B64_CHUNK", 8)


def decode(text: str) -> bytes:
    return b"".join(iter_base64(text, where="j[0]"))


@pytest.mark.parametrize("size", [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 30, 31, 32, 100])
def test_chunked_decoding_matches_the_standard_library(tiny_chunks: None, size: int) -> None:
    data = bytes(range(size))
    assert decode(b64(data)) == data


def test_mime_wrapped_base64_is_accepted(tiny_chunks: None) -> None:
    data = bytes(range(200))
    wrapped = base64.encodebytes(data).decode()  # a newline every 76 characters
    assert "\n" in wrapped
    assert decode(wrapped) == data
    assert decode(" \t" + b64(data)[:5] + "\r\n" + b64(data)[5:] + "\n\n") == data


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("%%%", "not valid base64"),
        ("eHl6e", "incorrect padding"),
        ("eHl", "incorrect padding"),
        ("eA=", "incorrect padding"),
        ("eA===", "not valid base64"),
        ("eA==eA==", "not valid base64"),  # padding inside one chunk
        ("eHl6eA==eHl6", "data after the '=' padding"),  # padding at a chunk boundary, then more
        ("eHl6-_==", "not valid base64"),  # the URL-safe alphabet is another encoding
        ("eHl6\u00e9HI=", "non-ASCII"),
        ("eHl6\x00HI=", "not valid base64"),
    ],
)
def test_bad_base64_is_refused(tiny_chunks: None, text: str, needle: str) -> None:
    with pytest.raises(JobOutputError) as info:
        decode(text)
    assert str(info.value).startswith("j[0].data: ")
    assert needle in str(info.value)
    assert info.value.exit_code == ExitCode.USAGE


def test_check_inline_reports_size_and_sha256() -> None:
    data = b"trained lora\n"
    digest = hashlib.sha256(data).hexdigest()
    item = InlineFile("a.bin", b64(data), len(data), digest, "j[0]")
    assert check_inline(item) == InlineCheck(len(data), digest)
    assert check_inline(item, expected_sha256=digest) == InlineCheck(len(data), digest)


@pytest.mark.parametrize(
    ("size", "sha256", "expected", "needle"),
    [
        (4, None, None, "j[0]: the job output says 4 bytes, its data decodes to 3"),
        (None, "0" * 64, None, "j[0]: sha256 mismatch: the job output says " + "0" * 64),
        (None, None, "1" * 64, "j[0]: sha256 mismatch: --sha256 says " + "1" * 64),
    ],
)
def test_check_inline_mismatch_is_integrity(
    size: int | None, sha256: str | None, expected: str | None, needle: str
) -> None:
    item = InlineFile("a.bin", b64(b"xyz"), size, sha256, "j[0]")
    with pytest.raises(IntegrityError) as info:
        check_inline(item, expected_sha256=expected)
    assert needle in str(info.value)
    assert info.value.exit_code == ExitCode.INTEGRITY


# -- writing
# -----------------------------------------------------------------------------------------------


def test_write_inline_is_atomic_and_leaves_no_temp(tmp_path: Path, tiny_chunks: None) -> None:
    data = bytes(range(256)) * 3
    item = InlineFile("a.bin", b64(data), None, None, "j[0]")
    target = tmp_path / "new" / "a.bin"
    write_inline(item, target, root=tmp_path, check=check_inline(item), progress=NullProgress())
    assert target.read_bytes() == data
    assert sorted(p.name for p in target.parent.iterdir()) == ["a.bin"]
    old = os.umask(0o022)
    try:
        write_inline(item, target, root=tmp_path, check=check_inline(item), progress=NullProgress())
    finally:
        os.umask(old)
    assert target.stat().st_mode & 0o777 == 0o644, "as open() would create it, not mkstemp's 0600"


class _Interrupting(NullProgress):
    """Ctrl-C after the first chunk was written."""

    def advance(self, key: str, nbytes: int) -> None:
        raise KeyboardInterrupt


def test_an_interrupted_write_leaves_nothing(tmp_path: Path, tiny_chunks: None) -> None:
    item = InlineFile("a.bin", b64(bytes(100)), None, None, "j[0]")
    (tmp_path / "a.bin").write_bytes(b"old")
    with pytest.raises(KeyboardInterrupt):
        write_inline(
            item,
            tmp_path / "a.bin",
            root=tmp_path,
            check=check_inline(item),
            progress=_Interrupting(),
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin"]
    assert (tmp_path / "a.bin").read_bytes() == b"old", (
        "the old file is untouched until the new one is whole"
    )


def test_bytes_that_decode_otherwise_than_checked_are_not_installed(tmp_path: Path) -> None:
    """What is installed is hashed as it is written: a second decoding unlike the checked one
    stays out.
    """
    item = InlineFile("a.bin", b64(b"new"), None, None, "j[0]")
    (tmp_path / "a.bin").write_bytes(b"old")
    checked_other = InlineCheck(3, hashlib.sha256(b"NEW").hexdigest())
    with pytest.raises(IntegrityError, match="decoded differently"):
        write_inline(
            item, tmp_path / "a.bin", root=tmp_path, check=checked_other, progress=NullProgress()
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin"]
    assert (tmp_path / "a.bin").read_bytes() == b"old"


def test_write_inline_into_an_unwritable_place_is_exit_7(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_bytes(b"")
    item = InlineFile("a.bin", b64(b"x"), None, None, "j[0]")
    with pytest.raises(MdlError) as info:
        write_inline(
            item,
            blocker / "a.bin",
            root=tmp_path,
            check=check_inline(item),
            progress=NullProgress(),
        )
    assert info.value.exit_code == ExitCode.LOCAL
    assert str(info.value).startswith("j[0]: cannot write")


# -- plain http only where it cannot leave the machine or the local network
# ------------------------------


@pytest.mark.parametrize(
    "host",
    [
        "localhost",
        "LOCALHOST",
        "api.localhost",
        "127.0.0.1",
        "127.8.9.10",
        "[::1]",
        "10.1.2.3",
        "172.16.0.1",
        "172.31.255.255",
        "192.168.1.20",
        "169.254.10.1",
        "[fd12:3456::1]",
        "[fe80::1]",
        "[::ffff:192.168.0.1]",
        "minio",
        "minio.",
        "nas.local",
        "storage.internal",
        "box.lan",
        "printer.home.arpa",
    ],
)
def test_local_hosts_may_use_plain_http(host: str) -> None:
    assert is_local_host(host)
    check_url(f"http://{host}:9000/bucket/a.bin?X-Amz-Signature=s", where="w")


@pytest.mark.parametrize(
    "host",
    [
        "example.com",
        "cdn.example.com",
        "8.8.8.8",
        "172.32.0.1",
        "100.64.0.1",
        "[2001:db8::1]",
        "127.0.0.1.nip.io",
    ],
)
def test_public_hosts_need_https(host: str) -> None:
    assert not is_local_host(host)
    check_url(f"https://{host}/a.bin", where="w")
    with pytest.raises(UsageError) as info:
        check_url(f"http://{host}/a.bin?X-Amz-Signature=SECRET", where="job.json[0].url")
    message = str(info.value)
    assert message.startswith("job.json[0].url: plain http:// is only allowed")
    assert "use https://" in message
    assert "SECRET" not in message


@pytest.mark.parametrize(
    "url", ["https:///nohost", "http://", "https://[::1/x", "https://h:99999/x", "https://h:p/x"]
)
def test_urls_without_a_host_are_refused(url: str) -> None:
    with pytest.raises(UsageError):
        check_url(url, where="w")
