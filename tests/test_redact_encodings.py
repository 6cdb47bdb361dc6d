"""Issue 25: a secret mdl read in a URL never comes back through a server's words, in any encoding.

The secret is registered only by the function that reads the URL (a command-line or job-output URL,
a catalog file, a mirror template, a redirect); the server's answer quotes it raw, percent-encoded,
JSON-escaped or as HTML/XML entities, inside an S3 ``SignatureDoesNotMatch`` document, a JSON error,
an HTML page or an echo of the request line. No sink function (``safe_text``, ``safe_doc``,
``redact_text``) may show it in any of those forms.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote, quote_plus, unquote

import pytest
from clocks import lines_run
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from profiles import examples

from mdl import redact
from mdl.redact import MIN_SECRET_LENGTH, REDACTED, Secrets, redact_text, safe_doc, safe_text

# Realistic secret alphabets: hex signatures (AWS, GCS), base64 and base64url (CloudFront, OSS,
# Azure SAS), JWTs.
HEX = "0123456789abcdef"
B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
B64 = B64URL[:-2] + "+/="
SECRETS = st.one_of(
    st.text(HEX, min_size=16, max_size=64),
    st.text(B64URL, min_size=12, max_size=64),
    st.text(B64, min_size=12, max_size=64),
    st.builds(lambda a, b, c: f"{a}.{b}.{c}", *(st.text(B64URL, min_size=4, max_size=20),) * 3),
).filter(lambda s: s not in REDACTED and not s.isdigit())
PARAMS = st.sampled_from(
    [
        "X-Amz-Signature",
        "Signature",
        "sig",
        "x-oss-signature",
        "q-signature",
        "token",
        "jwt",
        "X-Amz-Security-Token",
    ]
)


def _entities(secret: str, pick: list[bool], *, hex_form: bool) -> str:
    return (
        "".join(
            (f"&#x{ord(c):x};" if hex_form else f"&#{ord(c)};") if chosen else c
            for c, chosen in zip(secret, pick, strict=False)
        )
        + secret[len(pick) :]
    )


def _mixed_hex(secret: str, pick: list[bool]) -> str:
    encoded = quote(secret, safe="")
    return re.sub(
        "%[0-9A-F]{2}",
        lambda m: m.group(0).lower() if pick[m.start() % len(pick)] else m.group(0),
        encoded,
    )


def _json_u(secret: str, pick: list[bool]) -> str:
    return (
        "".join(
            f"\\u{ord(c):04x}" if chosen else c for c, chosen in zip(secret, pick, strict=False)
        )
        + secret[len(pick) :]
    )


# Every way the issue names a server may quote the secret; ``pick`` chooses the characters that are
# escaped.
ENCODINGS: dict[str, Callable[[str, list[bool]], str]] = {
    "raw": lambda s, p: s,
    "quote": lambda s, p: quote(s, safe=""),
    "quote-slash": lambda s, p: quote(s),
    "quote_plus": lambda s, p: quote_plus(s, safe=""),
    "quote_plus-slash": lambda s, p: quote_plus(s, safe="/"),
    "lower-hex": lambda s, p: re.sub(
        "%[0-9A-F]{2}", lambda m: m.group(0).lower(), quote(s, safe="")
    ),
    "mixed-hex": _mixed_hex,
    "json": lambda s, p: json.dumps(s)[1:-1],
    "json-slash": lambda s, p: json.dumps(s)[1:-1].replace("/", "\\/"),
    "json-unicode": _json_u,
    "html": lambda s, p: html.escape(s),
    "entities-dec": lambda s, p: _entities(s, p, hex_form=False),
    "entities-hex": lambda s, p: _entities(s, p, hex_form=True),
    "entities-all": lambda s, p: _entities(s, [True] * len(s), hex_form=False),
    "html-of-quote": lambda s, p: html.escape(quote(s, safe="")),
    "json-of-entities": lambda s, p: json.dumps(_entities(s, p, hex_form=True))[1:-1],
}


def s3_error(quoted: str, filler: str) -> str:
    return (
        '<?xml version="1.0"'
        ' encoding="UTF-8"?>\n<Error><Code>SignatureDoesNotMatch</Code><Message>The request '
        "signature we calculated does not match the signature you provided.</Message>"
        f"<AWSAccessKeyId>AKIAEXAMPLE</AWSAccessKeyId><StringToSign>AWS4-HMAC-SHA256\n{filler}</StringToSign>"
        f"<SignatureProvided>{quoted}</SignatureProvided><CanonicalRequest>GET\n/b/m.bin\n"
        f"X-Amz-Signature={quoted}\nhost:b.s3.example</CanonicalRequest></Error>"
    )


BODIES: dict[str, Callable[[str, str], str]] = {
    "s3-xml": s3_error,
    "json": lambda q, f: (
        '{"error": {"code": "Forbidden", "detail": "'
        + f
        + '", "request": "GET /m.bin?sig='
        + q
        + '"}}'
    ),
    "html": lambda q, f: (
        f"<html><head><title>403 {q}</title></head><body><h1>Forbidden</h1><p>{f} {q}</p></html>"
    ),
    "request-line": lambda q, f: f"{f} refused: GET /m.bin?token={q} HTTP/1.1",
}

ENTRY_POINTS = ("command-line", "job-output", "catalog", "mirror", "redirect")


def register(entry: str, param: str, encoded_value: str, secrets: Secrets) -> None:
    """Read a URL carrying the secret through one of mdl's real entry points into the run's
    ``secrets`` (nothing else registers it)."""
    url = f"https://b.s3.example/m.bin?X-Amz-Expires=3600&{param}={encoded_value}&X-Amz-SignedHeaders=host"
    if entry in ("command-line", "job-output"):
        from mdl.sources.oneoff import parse_sources

        job = {"files": [{"type": "redirect", "filename": "m.bin", "url": url}]}
        given = url if entry == "command-line" else "job.json"
        parse_sources([given], read_text=lambda _: json.dumps(job), secrets=secrets)
    elif entry == "catalog":
        from mdl.catalog.headers import catalog_secrets
        from mdl.catalog.load import parse_catalog

        catalog_secrets(
            parse_catalog(f"[models.m]\nfiles = [{{ url = {json.dumps(url)} }}]\n"), {}, secrets
        )
    elif entry == "mirror":
        from mdl.catalog.settings import build_settings
        from mdl.setting import Overrides

        template = url.replace("/m.bin", "/{model}/{path}")
        build_settings(
            Overrides(mirrors=(template,)), environ={}, dest=Path("/models"), secrets=secrets
        )
    else:
        # what the redirect follower does with each Location (tested end to end too)
        secrets.add_url(url)


def forms_of(secret: str) -> set[str]:
    """The deterministic forms a sink must never show."""
    return {
        encode(secret, [chosen] * len(secret))
        for encode in ENCODINGS.values()
        for chosen in (False, True)
    }


def _json_unescape(text: str) -> str:
    return re.sub(r"\\u([0-9a-fA-F]{4})", lambda m: chr(int(m.group(1), 16)), text).replace(
        "\\/", "/"
    )


def assert_hidden(secret: str, shown: str) -> None:
    for form in forms_of(secret):
        assert form not in shown, (form, shown)
    for decoded in (html.unescape(shown), unquote(shown), _json_unescape(shown)):
        assert secret not in decoded, shown


@settings(max_examples=examples(400), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    secret=SECRETS,
    param=PARAMS,
    entry=st.sampled_from(ENTRY_POINTS),
    encoding=st.sampled_from(sorted(ENCODINGS)),
    body=st.sampled_from(sorted(BODIES)),
    pick=st.lists(st.booleans(), min_size=1, max_size=64),
    filler=st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=400),
    cut=st.sampled_from([None, 200, 500]),
)
def test_a_secret_read_in_a_url_never_shows_in_a_server_answer(
    secret: str,
    param: str,
    entry: str,
    encoding: str,
    body: str,
    pick: list[bool],
    filler: str,
    cut: int | None,
) -> None:
    secrets = Secrets()
    # the URL carries it as a client sends it
    register(entry, param, quote(secret, safe=""), secrets)
    answer = BODIES[body](ENCODINGS[encoding](secret, pick), filler)
    for shown in (
        safe_text(answer, limit=cut, secrets=secrets),
        safe_text(answer, multiline=True, secrets=secrets),
        redact_text(answer, secrets=secrets),
        json.dumps(
            safe_doc(
                {"error": answer, "message": [answer], "hint": {"s": answer}}, secrets=secrets
            ),
            ensure_ascii=False,
        ),
    ):
        assert_hidden(secret, shown)


def test_the_public_parts_of_a_presigned_url_stay_readable() -> None:
    """Expiry, date, algorithm and signed headers are not secrets: registering "host" or "3600"
    would redact those words everywhere."""
    secrets = Secrets()
    secrets.add_url(
        "https://b.s3.example/m.bin?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAEXAMPLE%2F20240101%2F"
        "us-east-1%2Fs3%2Faws4_request&X-Amz-Date=20240101T000000Z&X-Amz-Expires=3600&X-Amz-SignedHeaders=host"
        "&X-Amz-Signature=0123456789abcdef&response-content-disposition=attachment"
    )
    assert (
        redact_text("host 3600 AWS4-HMAC-SHA256 20240101T000000Z attachment", secrets=secrets)
        == "host 3600 AWS4-HMAC-SHA256 20240101T000000Z attachment"
    )
    assert (
        redact_text("sig 0123456789abcdef key AKIAEXAMPLE", secrets=secrets)
        == f"sig {REDACTED} key {REDACTED}"
    )
    assert (
        redact_text("AKIAEXAMPLE%2F20240101%2Fus-east-1%2Fs3%2Faws4_request", secrets=secrets)
        == REDACTED
    )


def test_userinfo_is_registered_password_and_bare_token() -> None:
    secrets = Secrets()
    secrets.add_url("https://alice:pa%24%24word-123@h.example/x")
    secrets.add_url("https://ghp_0123456789abcdef@h.example/x")
    shown = redact_text(
        "user alice: alice:pa$$word-123 and pa%24%24word-123 and ghp_0123456789abcdef",
        secrets=secrets,
    )
    assert "pa$$word-123" not in shown and "pa%24%24word-123" not in shown
    assert "ghp_0123456789abcdef" not in shown
    assert shown.startswith("user alice: ")  # a user name alone is not a secret


def test_a_header_credential_is_hidden_without_its_scheme() -> None:
    secrets = Secrets()
    secrets.add("Bearer tok-0123456789abcdef")
    assert (
        redact_text("server saw tok-0123456789abcdef", secrets=secrets) == f"server saw {REDACTED}"
    )


def test_short_values_stay_unregistered() -> None:
    secrets = Secrets()
    secrets.add_url("https://h.example/x?sig=abc&token=" + "t" * MIN_SECRET_LENGTH)
    assert "abc" not in secrets.known()
    assert redact_text("abc", secrets=secrets) == "abc"
    assert redact_text("t" * MIN_SECRET_LENGTH, secrets=secrets) == REDACTED


def test_decoding_is_kept_only_when_a_secret_hides_in_it() -> None:
    secrets = Secrets()
    secrets.add("s3cr3t/value+0123==")
    plain = "path a%20b &amp; C:\\new"
    # nothing hidden: the text stays as the server wrote it
    assert safe_text(plain, secrets=secrets) == plain
    # Decoded only as far as the secret needs: the entity layer, not the %-escapes.
    assert (
        safe_text("x %1b echo &#115;3cr3t/value+0123== %2F", secrets=secrets)
        == f"x %1b echo {REDACTED} %2F"
    )
    # A decoded text is made printable again: "%1b" must not become an escape character.
    assert (
        safe_text("x %1b echo %733cr3t/value+0123== %2F", secrets=secrets)
        == f"x \\x1b echo {REDACTED} /"
    )


def _signed_urls(count: int) -> Secrets:
    secrets = Secrets()
    for i in range(count):
        secrets.add_url(f"https://cdn.example/f{i}?Signature=sig{i:08d}abcdef&Key-Pair-Id=K{i:06d}")
    return secrets


@pytest.mark.slow
@pytest.mark.parametrize("count", [20_000])
def test_thousands_of_signed_urls_keep_redaction_fast(count: int) -> None:
    """A snapshot of thousands of files, each behind its own signed CDN URL, must not make every log
    line slow: a line costs about what it costs with a handful of secrets. The steps are counted
    (lines of mdl/redact.py run), never timed, so the machine's speed and load change nothing (a
    scan of every secret per line costs thousands of times more)."""
    many, few = _signed_urls(count), _signed_urls(20)
    line = "file path=model-00001-of-00002.safetensors action=downloaded size=123456 " * 3
    steps = [lines_run(lambda s=s: safe_text(line, secrets=s), redact) for s in (few, many)]
    assert steps[1] < 2 * steps[0], steps
    assert safe_text("server: sig00019999abcdef", secrets=many) == f"server: {REDACTED}"


@given(secret=SECRETS)
@settings(max_examples=examples(50), deadline=None)
def test_safe_text_of_a_redacted_answer_changes_nothing_more(secret: str) -> None:
    assume(len(secret) >= MIN_SECRET_LENGTH)
    secrets = Secrets((secret,))
    once = safe_text(
        s3_error(_entities(secret, [True, False] * 8, hex_form=True), "x"), secrets=secrets
    )
    assert safe_text(once, secrets=secrets) == once


def test_a_secret_split_by_a_cut_is_hidden_from_its_first_characters() -> None:
    secrets = Secrets()
    from mdl.redact import hide_cut_secret

    secrets.add("0123456789abcdef0123")
    assert hide_cut_secret("said: 0123456789ab", secrets) == f"said: {REDACTED}"
    assert hide_cut_secret("said: 01234567", secrets) == f"said: {REDACTED}"
    assert (
        hide_cut_secret("said: 0123456\n789A", secrets) == f"said: {REDACTED}"
    )  # folded, re-cased (hex): still its start
    # under 8 characters: cannot be told from words
    assert hide_cut_secret("said: 0123456", secrets) == "said: 0123456"
    assert hide_cut_secret("said: nothing", secrets) == "said: nothing"
