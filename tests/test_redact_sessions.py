"""Issue 37: session ids are secrets like tokens: in a path parameter (`;PHPSESSID=…`) or a query
(`?sid=…`), redacted in every URL mdl shows or records; a word that only holds such a name (`side`)
is not one."""

from __future__ import annotations

from mdl.redact import REDACTED, redact_url

TOKEN = "abcdefgh1234"


def test_session_ids_are_secret_path_and_query_parameters() -> None:
    assert (
        redact_url(f"http://h/dl;PHPSESSID={TOKEN}/model.bin")
        == f"http://h/dl;PHPSESSID={REDACTED}/model.bin"
    )
    assert (
        redact_url(f"http://h/dl;sessid={TOKEN}/model.bin")
        == f"http://h/dl;sessid={REDACTED}/model.bin"
    )
    assert redact_url(f"http://h/dl?sid={TOKEN}") == f"http://h/dl?{REDACTED}"
    assert redact_url("http://h/inside?side=1") == "http://h/inside?side=1"
