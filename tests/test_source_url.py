"""Issue 37: a record knows a file by its source, without secrets: ``source_url`` hides a signed query as
``redact_url`` does, yet two files behind one token (``?file=v1&token=T``, ``?file=v2&token=T``) stay two sources,
and one file presigned twice (new signature, new date) stays one; session ids in path parameters are secrets."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from mdl.redact import REDACTED, redact_url, source_url

TOKEN = "abcdefgh1234"


def test_two_files_behind_one_token_are_two_sources_and_show_no_token() -> None:
    one = source_url(f"http://h/download?file=v1&token={TOKEN}")
    two = source_url(f"http://h/download?file=v2&token={TOKEN}")
    assert one != two
    assert TOKEN not in one + two and "v1" not in one and "v2" not in two
    assert one.startswith(f"http://h/download?{REDACTED}#")


def test_one_file_presigned_twice_is_one_source() -> None:
    first = "https://b.s3.example/k/m.bin?X-Amz-Date=20261125T000000Z&X-Amz-Signature=aaaaaaaaaaaaaaaa"
    second = "https://b.s3.example/k/m.bin?X-Amz-Date=20261126T000000Z&X-Amz-Signature=bbbbbbbbbbbbbbbb"
    assert source_url(first) == source_url(second) == redact_url(first) == f"https://b.s3.example/k/m.bin?{REDACTED}"


def test_an_unsigned_url_is_its_own_source() -> None:
    assert source_url("http://h/a?x=1") == "http://h/a?x=1"
    assert source_url("http://user:pw@h/a") == "http://h/a"


@given(st.text("abcdefghijklmnop0123456789", min_size=8, max_size=24), st.text("xyz019", min_size=1, max_size=8))
def test_the_source_never_carries_the_secret(secret: str, public: str) -> None:
    shown = source_url(f"https://h/f?id={public}&sig={secret}")
    assert secret not in shown.partition("#")[0].replace(REDACTED, "")
    assert shown != source_url(f"https://h/f?id={public}0&sig={secret}")


def test_session_ids_are_secret_path_and_query_parameters() -> None:
    assert redact_url(f"http://h/dl;PHPSESSID={TOKEN}/model.bin") == f"http://h/dl;PHPSESSID={REDACTED}/model.bin"
    assert redact_url(f"http://h/dl?sid={TOKEN}") == f"http://h/dl?{REDACTED}"
    assert redact_url("http://h/inside?side=1") == "http://h/inside?side=1"
