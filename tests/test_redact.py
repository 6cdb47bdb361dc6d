"""Tokens and URL signatures never reach output: signed queries, userinfo, hf_ tokens, bearer values."""

from __future__ import annotations

import pytest

from mdl.redact import REDACTED, is_signed_url, redact_text, redact_url

SECRET = "c0ffee1234deadbeef"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            f"https://s3.example/bucket/m.bin?X-Amz-Algorithm=AWS4&X-Amz-Signature={SECRET}&X-Amz-Expires=3600",
            f"https://s3.example/bucket/m.bin?{REDACTED}",
        ),
        (
            f"https://cdn.example/m.bin?Expires=1&Signature={SECRET}&Key-Pair-Id=K2",
            f"https://cdn.example/m.bin?{REDACTED}",
        ),
        (f"https://files.example/m.bin?token={SECRET}", f"https://files.example/m.bin?{REDACTED}"),
        (f"https://files.example/m.bin?x=1&TOKEN={SECRET}", f"https://files.example/m.bin?{REDACTED}"),
        (
            f"https://acct.blob.example/c/m.bin?sv=2024&se=2030&sig={SECRET}",
            f"https://acct.blob.example/c/m.bin?{REDACTED}",
        ),
        (
            f"https://storage.example/m.bin?X-Goog-Signature={SECRET}#frag",
            f"https://storage.example/m.bin?{REDACTED}#frag",
        ),
        (f"https://user:{SECRET}@host.example/a/b", "https://host.example/a/b"),
        (f"https://{SECRET}@host.example:8443/a?x=1", "https://host.example:8443/a?x=1"),
        (
            f"http://u:{SECRET}@host.example/a?access_token={SECRET}",
            f"http://host.example/a?{REDACTED}",
        ),
    ],
)
def test_signed_urls_lose_their_query_and_userinfo(url: str, expected: str) -> None:
    got = redact_url(url)
    assert got == expected
    assert SECRET not in got


@pytest.mark.parametrize(
    "url",
    [
        "https://huggingface.co/org/model/resolve/main/config.json",
        "https://cdn.example/files/model.bin?download=true&revision=main",
        "http://127.0.0.1:8080/a%20b.bin?x=1&y=2",
        "https://example.com/",
        "https://example.com/path#frag",
    ],
)
def test_unsigned_urls_are_untouched(url: str) -> None:
    assert redact_url(url) == url
    assert is_signed_url(url) is False


def test_is_signed_url() -> None:
    assert is_signed_url(f"https://x/y?X-Amz-Signature={SECRET}")
    assert is_signed_url("https://x/y?sig=")  # a blank value still marks a signed URL
    # Whole-query rule: any parameter whose name merely contains "sig" is enough (over-redacting is safe).
    assert is_signed_url("https://x/y?signature_version=2")
    assert not is_signed_url("https://x/y?download=true&revision=main")


def test_unparseable_url_is_fully_redacted() -> None:
    assert redact_url("http://[::1/broken") == REDACTED


@pytest.mark.parametrize(
    ("text", "leak"),
    [
        ("using token hf_AbCdEf0123456789xyz for the Hub", "hf_AbCdEf0123456789xyz"),
        ("Authorization: Bearer sk-verysecretvalue", "sk-verysecretvalue"),
        ("header bearer abc.def-ghi_jkl was refused", "abc.def-ghi_jkl"),
        ('{"Authorization": "Basic dXNlcjpwYXNz"}', "dXNlcjpwYXNz"),
        (f"GET https://cdn.example/x?X-Amz-Signature={SECRET} failed", SECRET),
    ],
)
def test_free_text_masks_tokens(text: str, leak: str) -> None:
    got = redact_text(text)
    assert leak not in got
    assert REDACTED in got


def test_free_text_drops_userinfo_from_urls() -> None:
    assert redact_text(f"redirect to https://u:{SECRET}@h.example/p now") == "redirect to https://h.example/p now"


def test_free_text_keeps_the_rest_readable() -> None:
    text = "HTTP 403 from https://cdn.example/blobs/abc?X-Amz-Signature=ff&gen=1 - Request has expired"
    assert redact_text(text) == f"HTTP 403 from https://cdn.example/blobs/abc?{REDACTED} - Request has expired"
    assert redact_text("hf_ alone and Bearer x are fine") == "hf_ alone and Bearer x are fine"
    assert redact_text("plain message, nothing to hide") == "plain message, nothing to hide"


def test_hub_token_keeps_its_prefix_only() -> None:
    assert redact_text("token hf_AbCdEf0123456789") == f"token hf_{REDACTED}"


def test_known_secrets_are_removed_anywhere() -> None:
    got = redact_text(f"server said: bad key {SECRET}!", secrets=(SECRET, "", "abc"))
    assert got == f"server said: bad key {REDACTED}!"
    # Very short "secrets" are ignored: replacing them would garble ordinary words.
    assert redact_text("abc def", secrets=("abc",)) == "abc def"


def test_printable_escapes_controls_and_invisible_characters() -> None:
    from mdl.redact import printable

    shown = printable("a\x1b]0;title\x07\x1b[2Jb\u202ec\u2028d\u200be\r\x85")
    assert not any(ch in shown for ch in "\x1b\x07\u202e\u2028\u200b\r\x85")
    assert shown.startswith("a\\x1b]0;title\\x07")
    assert printable("one\ntwo\tthree") == "one two three"
    assert printable("one\ntwo", multiline=True) == "one\ntwo"
    assert printable("x" * 300, limit=200) == "x" * 200 + "…"
    assert printable("plain ünïcode 🤖") == "plain ünïcode 🤖"
