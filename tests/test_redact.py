"""Tokens and URL signatures never reach output: signed queries, userinfo, hf_ tokens, bearer
values.
"""

from __future__ import annotations

import json
from pathlib import Path

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
        (
            f"https://files.example/m.bin?x=1&TOKEN={SECRET}",
            f"https://files.example/m.bin?{REDACTED}",
        ),
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
    # Whole-query rule: any parameter whose name merely contains "sig" is enough (over-redacting is
    # safe).
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
    assert (
        redact_text(f"redirect to https://u:{SECRET}@h.example/p now")
        == "redirect to https://h.example/p now"
    )


def test_free_text_keeps_the_rest_readable() -> None:
    text = (
        "HTTP 403 from https://cdn.example/blobs/abc?X-Amz-Signature=ff&gen=1 - Request has expired"
    )
    assert (
        redact_text(text)
        == f"HTTP 403 from https://cdn.example/blobs/abc?{REDACTED} - Request has expired"
    )
    assert redact_text("hf_ alone and Bearer x are fine") == "hf_ alone and Bearer x are fine"
    assert redact_text("plain message, nothing to hide") == "plain message, nothing to hide"


def test_hub_token_keeps_its_prefix_only() -> None:
    assert redact_text("token hf_AbCdEf0123456789") == f"token hf_{REDACTED}"


def test_known_secrets_are_removed_anywhere() -> None:
    got = redact_text(f"server said: bad key {SECRET}!", secrets=Secrets((SECRET, "", "abc")))
    assert got == f"server said: bad key {REDACTED}!"
    # Very short "secrets" are ignored: replacing them would garble ordinary words.
    assert redact_text("abc def", secrets=Secrets(("abc",))) == "abc def"


def test_printable_escapes_controls_and_invisible_characters() -> None:
    from mdl.redact import printable

    shown = printable("a\x1b]0;title\x07\x1b[2Jb\u202ec\u2028d\u200be\r\x85")
    assert not any(ch in shown for ch in "\x1b\x07\u202e\u2028\u200b\r\x85")
    assert shown.startswith("a\\x1b]0;title\\x07")
    assert printable("one\ntwo\tthree") == "one two three"
    assert printable("one\ntwo", multiline=True) == "one\ntwo"
    assert printable("x" * 300, limit=200) == "x" * 200 + "…"
    assert printable("plain ünïcode 🤖") == "plain ünïcode 🤖"


# --- the whole-query rule, the registry, and the one function at every sink (issue 11, item 4)
# ----------------

from hypothesis import assume, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from profiles import examples  # noqa: E402

from mdl.redact import Secrets, is_secret_param, printable, safe_doc, safe_text  # noqa: E402


@pytest.mark.parametrize(
    "param",
    [
        "x-oss-signature",
        "OSSAccessKeyId",
        "q-signature",
        "q-sign-algorithm",
        "jwt",
        "Authorization",
        "X-Cos-Security-Token",
        "x-obs-date",
        "X-Goog-Date",
        "x-amz-date",
        "api_key",
        "client_secret",
        "sessionid",
        "password",
        "hdnts",
        "hmac",
        "Policy",
        "sig",
        "sv-credential",
    ],
)
def test_any_credential_like_parameter_redacts_the_whole_query(param: str) -> None:
    url = f"https://cdn.example/f.bin?a=1&{param}={SECRET}&b=2"
    assert is_secret_param(param)
    assert redact_url(url) == f"https://cdn.example/f.bin?{REDACTED}"
    assert SECRET not in redact_text(f"GET {url} failed")


@pytest.mark.parametrize(
    "param", ["download", "revision", "x", "expires", "response-content-type", "gen"]
)
def test_ordinary_parameters_keep_the_query(param: str) -> None:
    assert not is_secret_param(param)


def test_hub_token_needs_sixteen_characters_so_words_survive() -> None:
    assert redact_text("see hf_hub_download and hf_xet") == "see hf_hub_download and hf_xet"
    assert redact_text("hf_abcdefghij012345") == f"hf_{REDACTED}"  # 16 after the prefix
    assert redact_text("hf_abcdefghij01234") == "hf_abcdefghij01234"  # 15: not a token


def test_registered_secrets_are_removed_whatever_their_name() -> None:
    secrets = Secrets()
    secrets.add("civitai-0123456789")
    secrets.add("")  # ignored
    secrets.add(None)
    secrets.add("abc")  # too short to be told from words
    assert "civitai-0123456789" in secrets.known()
    assert (
        redact_text("server said: key civitai-0123456789 is bad", secrets=secrets)
        == f"server said: key {REDACTED} is bad"
    )
    assert safe_text("abc", secrets=secrets) == "abc"
    secrets = Secrets()  # the next run
    assert secrets.known() == ()
    assert redact_text("civitai-0123456789", secrets=secrets) == "civitai-0123456789"


def test_catalog_header_values_from_the_environment_are_registered() -> None:
    from mdl.catalog.headers import catalog_secrets
    from mdl.catalog.specs import Catalog, FileSpec, ModelSpec

    spec = FileSpec(
        key_path="models.m.files[0]",
        url="https://h.example/x",
        headers=(
            ("X-Civitai", "${CIVITAI_KEY}"),
            ("Accept", "application/json"),
            ("X-Api-Key", "literal-key-1"),
        ),
    )
    secrets = Secrets()
    catalog_secrets(
        Catalog(models=(ModelSpec("m", files=(spec,)),)),
        {"CIVITAI_KEY": "civ-value-42424242"},
        secrets,
    )
    assert "civ-value-42424242" in secrets.known()
    # a credential-like header name: secret even when literal
    assert "literal-key-1" in secrets.known()
    assert "application/json" not in secrets.known()  # an ordinary literal header stays readable


def test_safe_text_escapes_then_redacts_then_cuts() -> None:
    secrets = Secrets()
    secrets.add("s3cr3t-value-777")
    assert (
        safe_text("bad\x1b[2Jkey s3cr3t-value-777\nnext", secrets=secrets)
        == f"bad\\x1b[2Jkey {REDACTED} next"
    )
    assert safe_text("a\nb", multiline=True, secrets=secrets) == "a\nb"
    assert safe_text("s3cr3t-value-777 " + "x" * 50, limit=10, secrets=secrets) == f"{REDACTED} x…"


def test_safe_doc_cleans_the_text_of_a_json_document_and_keeps_its_data() -> None:
    from pathlib import PurePosixPath

    secrets = Secrets()
    secrets.add("tok-abcdef123456")
    secrets.add("important")  # a word of the destination path: data keeps it
    doc = {
        "ok": False,
        "files": [
            {
                "error": "HTTP 401: tok-abcdef123456\x07",
                "hint": ["server said important things"],
                "size": 3,
                "dest": PurePosixPath("/important/\x1bb\xad"),
                "url": "https://h.example/important/m.bin?X-Amz-Signature=tok-abcdef123456",
            }
        ],
        "n": None,
        "x": 1.5,
    }
    assert safe_doc(doc, secrets=secrets) == {
        "ok": False,
        "files": [
            {
                "error": f"HTTP 401: {REDACTED}\\x07",
                "hint": [f"server said {REDACTED} things"],  # text: every registered secret out
                "size": 3,
                "dest": "/important/\\x1bb\\xad",  # data: only made printable
                # a URL's credentials: structural
                "url": f"https://h.example/important/m.bin?{REDACTED}",
            }
        ],
        "n": None,
        "x": 1.5,
    }


def test_safe_doc_refuses_a_record_whose_document_is_its_to_json() -> None:
    """A file's outcome is a tuple: handed to a sink whole, its words would lose the keys that say
    which are text (its ``error`` only made printable, not cut at a secret). It is refused, as
    ``json.dumps`` refused it when it was a dataclass; its ``to_json()`` is the document."""
    from mdl.report import FileOutcome

    outcome = FileOutcome("m", "a.bin", None, None, None, "failed", error="401: tok-abcdef123456")
    secrets = Secrets()
    secrets.add("tok-abcdef123456")
    with pytest.raises(TypeError, match="FileOutcome is not a JSON document"):
        safe_doc({"files": [outcome]}, secrets=secrets)
    shown = safe_doc({"files": [outcome.to_json()]}, secrets=secrets)
    assert shown["files"][0]["error"] == f"401: {REDACTED}"


_CONTROL = set(map(chr, [*range(0x09), *range(0x0B, 0x20), *range(0x7F, 0xA0)])) | set(
    "\u202e\u2028\u2029"
)


@settings(max_examples=examples(300), deadline=None)
@given(st.text())
def test_printable_and_redaction_never_raise_and_leave_no_control_character(text: str) -> None:
    for multiline in (False, True):
        shown = safe_text(text, multiline=multiline)
        assert not _CONTROL & set(shown)
        assert all(not 0xD800 <= ord(ch) <= 0xDFFF for ch in shown)  # every sink can encode it
        shown.encode("utf-8")
    assert not _CONTROL & set(printable(text, limit=20))
    redact_url(text)
    redact_text(text)


_SECRET_CHARS = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.~+/", min_size=8
)


@settings(max_examples=examples(300), deadline=None)
@given(before=st.text(), secret=_SECRET_CHARS, after=st.text(), multiline=st.booleans())
def test_a_registered_secret_standing_as_a_token_never_survives_inside_arbitrary_text(
    before: str, secret: str, after: str, multiline: bool
) -> None:
    assume(secret != REDACTED)  # "REDACTED" itself is never registered: it is in every redaction
    secrets = Secrets((secret,))
    shown = safe_text(f"{before} {secret}\n{after}", multiline=multiline, secrets=secrets)
    assert secret not in shown
    assert secret not in safe_text(
        f"{before} {secret}{secret}\t{after} {secret}", limit=40, secrets=secrets
    )
    assert secret not in json.dumps(
        safe_doc({"error": [before, f"{secret} {after}"]}, secrets=secrets), ensure_ascii=False
    )


@settings(max_examples=examples(300), deadline=None)
@given(st.text())
def test_safe_text_twice_is_safe_text_once(text: str) -> None:
    # Sinks may meet text that another sink already cleaned (a per-file error, then the console): no
    # drift.
    once = safe_text(text)
    assert safe_text(once) == once


def test_a_catalog_key_path_naming_the_authorization_header_stays_readable() -> None:
    message = (
        "models.m.files[0].headers.Authorization: environment variable CIVITAI_TOKEN is not set"
    )
    assert redact_text(message) == message
    assert (
        redact_text("Authorization: Bearer abcdef123456 and more")
        == f"Authorization: {REDACTED} and more"
    )


SIG_HEX = "5454aedd03c4bdf939f7bca3057d0bc4005483da08e05b4921b42d668cb4e6b4"


@pytest.mark.parametrize(
    "target",
    [
        # a V2 presigned GET (boto3's generate_presigned_url default), V4, V4 with a session token
        "/mdl/m/x.bin?AWSAccessKeyId=MDL41D820FB17D39473&Signature=c2ln%2BbmF0%3D&Expires=17",
        "/mdl/m/x.bin?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=MDL41D820FB17D39473"
        f"%2F20261127%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20261127T062241Z&X-Amz-Expires=600"
        "&X-Amz-SignedHeaders=host&X-Amz-Security-Token=FwoGZXIvYXdzEJrT0KEN"
        f"&X-Amz-Signature={SIG_HEX}",
        # the parameters of the other clouds redact.py knows, and a bare query
        f"/c/m.bin?sv=2024&se=2030&sig={SIG_HEX}",
        f"/o/m.bin?X-Goog-Credential=svc%40p.iam&X-Goog-Signature={SIG_HEX}",
        f"?Expires=1&Signature={SIG_HEX}&Key-Pair-Id=K2",
    ],
    ids=["v2", "v4-token", "azure-sas", "gcs", "bare-query"],
)
@pytest.mark.parametrize(
    "line",
    ["127.0.0.1 GET {t} -> 200", '"GET {t} HTTP/1.1" 403', "asked ({t}) and refused", "{t}"],
    ids=["access-line", "request-line", "in-words", "alone"],
)
def test_a_request_target_loses_every_signature_and_credential(target: str, line: str) -> None:
    """A target as a server logs it (no scheme, no host) is redacted as a URL is: its signed
    query whole, however it is quoted in the line, and still after a cut at any length."""
    path, _, query = target.partition("?")
    shown = redact_text(line.format(t=target))
    assert shown == line.format(t=f"{path}?{REDACTED}")
    secrets = [v for k, v in (p.split("=", 1) for p in query.split("&")) if k != "Expires"]
    for cut in range(len(path) + 1, len(target) + 1):
        short = redact_text(line.format(t=target[:cut]))
        assert not any(len(v) > 7 and v in short for v in secrets), short


def test_a_query_without_credentials_and_a_question_in_words_stay() -> None:
    for text in ("GET /mdl?list-type=2&prefix=a%2F -> 200", "what? no", "is it /a/b?",
                 "/a;b=c/d: refused; said"):  # fmt: skip
        assert redact_text(text) == text


def test_a_secret_path_parameter_of_a_target_is_redacted() -> None:
    shown = redact_text(f"127.0.0.1 GET /mdl/m/x;jsessionid={SIG_HEX}/y: 403 AccessDenied")
    assert shown == f"127.0.0.1 GET /mdl/m/x;jsessionid={REDACTED}/y: 403 AccessDenied"


@pytest.mark.parametrize(
    "value",
    [
        "AWS4-HMAC-SHA256 Credential=MDL41D820FB17D39473/20261127/us-east-1/s3/aws4_request, "
        f"SignedHeaders=host;x-amz-date, Signature={SIG_HEX}",
        "AWS MDL41D820FB17D39473:c2lnbmF0dXJlc2ln",
    ],
    ids=["sigv4", "sigv2"],
)
def test_an_s3_authorization_header_loses_its_credential_and_signature(value: str) -> None:
    shown = redact_text(f"Authorization: {value} then more words")
    assert shown == f"Authorization: {REDACTED} then more words"


@pytest.mark.parametrize(
    "line",
    ["127.0.0.1 GET *?Signature=deadbeefcafe1234 -> 200",
     "127.0.0.1 GET mdl/m/x?X-Amz-Signature=deadbeefcafe1234 -> 200",
     "127.0.0.1: Bad request version ('HTTP/1.1?Signature=deadbeefcafe1234')",
     "127.0.0.1 GET /mdl/m/x#?Signature=deadbeefcafe1234 -> 200",
     "127.0.0.1 GET /mdl/m/x?a=b#c&x-amz-signature=deadbeefcafe1234 -> 200",
     '127.0.0.1 GET /mdl/m/x?a="b&Signature=deadbeefcafe1234 -> 200',
     "127.0.0.1 GET /mdl/m/x?a=<b&X-Amz-Credential=deadbeefcafe1234 -> 200",
     "127.0.0.1 GET /mdl/m/x?a=)&X-Amz-Security-Token=deadbeefcafe1234 -> 200",
     "127.0.0.1 GET /mdl/m/x?x=1;AWSAccessKeyId=deadbeefcafe1234 -> 200"],
)  # fmt: skip
def test_a_presigned_parameter_anywhere_in_a_line_is_redacted(line: str) -> None:
    """A signature's parameter in a target no URL or origin-form pattern reads whole (an
    asterisk-form or relative target, a fragment mark or a quote in the query, a request line
    quoted in a message) still loses its value; the rest of the line stays."""
    shown = safe_text(line, limit=300)
    assert "deadbeef" not in shown and "REDACTED" in shown
    assert shown.startswith("127.0.0.1")


def test_a_path_that_reads_like_a_parameter_is_no_query() -> None:
    """A dataset's partition folder (``session_id=42/``) at a line's or a word's start is a file's
    path, not a query: kept."""
    for text in ("session_id=42/part-0.parquet", "pulled auth_key=3/x.bin in 2s"):
        assert safe_text(text) == text


def test_records_that_carry_secrets_never_show_them_in_a_repr(tmp_path: Path) -> None:
    """Issue 90 made them NamedTuples (a dataclass's methods were compiled at every start); each
    keeps its dataclass's repr=False: a traceback or a log's %r names the type, not the token,
    the headers or the signed URL."""
    from mdl.catalog.settings import settings_for
    from mdl.setting import Overrides
    from mdl.sources.joboutput import UrlFile
    from mdl.sources.oneoff import GetRequest
    from mdl.sources.resolve import RemoteFile
    from mdl.transfer.connection import Proxy
    from mdl.transfer.http import Credentials
    from mdl.transfer.job import Identity, RetryLog, TransferJob
    from mdl.transfer.replies import Probed

    token, signed = "hf_" + "s" * 34, "https://cdn.example/w?X-Amz-Signature=" + "a" * 64
    credentials = Credentials(token=token, extra={"Authorization": "Basic c2VjcmV0"})
    remote = RemoteFile("m", "w", signed, headers=(("Authorization", "Bearer secret"),))
    job = TransferJob(
        "m/w", signed, Identity(1, None, None, None), credentials,
        tmp_path / "w", tmp_path / "w.part", tmp_path / "w.json", "s", RetryLog(),
    )  # fmt: skip
    settings = settings_for(None, {"HF_TOKEN": token, "HOME": str(tmp_path)}, Overrides())
    request = GetRequest([signed], headers=(("Authorization", "Bearer secret"),))
    listed = UrlFile("w", signed, 1, None, "w", headers=(("Authorization", "Bearer secret"),))
    proxy = Proxy(f"http://user:{token}@127.0.0.1:3128", "HTTPS_PROXY")
    probed = Probed(signed, 1, None, ranged=True)
    for record in (credentials, remote, job, settings, request, listed, proxy, probed):
        shown = repr(record)
        assert shown == f"<{type(record).__module__}.{type(record).__qualname__}>"
        assert token not in shown and "secret" not in shown and "Signature" not in shown
