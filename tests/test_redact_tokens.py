"""Issue 37 (D): a registered secret is matched as a token, however a server reflows it, and nothing
else is.

Properties: a secret split by line breaks, CRLF, header folding or wrapping spaces, with invisible
format characters inside (zero-width space and joiners, soft hyphen, BOM, word joiner, bidi marks,
tag characters), a hex one in any case, and in a text made printable before it reached its sink,
never survives ``safe_text``. A value under 8 characters rewrites nothing; a secret inside a longer
word is that word's business; data (``shown_data``, the data keys of ``safe_doc``) is never
rewritten; path parameters are secrets; the scan is linear in the text.
"""

from __future__ import annotations

import re
import unicodedata

import pytest
from clocks import lines_run
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from profiles import examples

from mdl import redact
from mdl.redact import (
    MIN_SECRET_LENGTH,
    REDACTED,
    Secrets,
    printable,
    redact_url,
    safe_doc,
    safe_text,
    shown_data,
)

HEX = "0123456789abcdef"
B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
SECRETS = st.one_of(
    st.text(HEX, min_size=16, max_size=64),
    st.text(B64URL, min_size=MIN_SECRET_LENGTH, max_size=48),
    st.text(B64URL[:-2] + "+/=", min_size=12, max_size=48),
).filter(lambda s: s != REDACTED and not s.isdigit())
# What a server, a proxy or a wrapping page puts inside a secret it echoes.
MARKS = [
    "\n",
    "\r\n",
    "\r\n ",
    "\r\n\t",
    " ",
    "  ",
    "\t",
    "\u200b",
    "\u200c",
    "\u200d",
    "\xad",
    "\ufeff",
    "\u2060",
]
MARKS += ["\u200e", "\u202e", "\u2066", "\U000e0041", "\u180e", "\u061c"]
_ESCAPES = re.compile(r"\\(?:x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}|[rnt])")


def squeezed(text: str) -> str:
    """What a reader pieces together: escapes, whitespace and format characters out."""
    text = _ESCAPES.sub("", text)
    return "".join(ch for ch in text if not ch.isspace() and unicodedata.category(ch) != "Cf")


@st.composite
def reflowed(draw: st.DrawFn) -> tuple[str, str]:
    """A secret and the same secret as a server may echo it."""
    secret = draw(SECRETS)
    shown = secret.upper() if set(secret) <= set(HEX) and draw(st.booleans()) else secret
    cuts = sorted(draw(st.lists(st.integers(1, len(secret) - 1), max_size=5)))
    pieces, last = [], 0
    for cut in cuts:
        pieces += [shown[last:cut], draw(st.sampled_from(MARKS))]
        last = cut
    return secret, "".join([*pieces, shown[last:]])


@settings(max_examples=examples(400), deadline=None)
@given(
    pair=reflowed(),
    before=st.text(max_size=60),
    after=st.text(max_size=60),
    left=st.sampled_from([" ", "\n", ": ", "=", "<", '"', "(", "\u200b"]),
    right=st.sampled_from([" ", "\n", ".", "<", '"', ")", "&", "\u2060"]),
    registered=st.booleans(),
    made_printable=st.booleans(),
    multiline=st.booleans(),
)
def test_a_reflowed_secret_never_survives(
    pair: tuple[str, str],
    before: str,
    after: str,
    left: str,
    right: str,
    registered: bool,
    made_printable: bool,
    multiline: bool,
) -> None:
    secret, echo = pair
    assume(secret.lower() not in squeezed(before + after).lower())
    # a run's own secrets (its environment) from the start
    secrets = Secrets(() if registered else (secret,))
    if registered:
        secrets.add(secret)
    text = f"{before}{left}{echo}{right}{after}"
    if made_printable:  # a message made printable where it was made, redacted at its sink
        text = printable(text, multiline=multiline)
    shown = safe_text(text, multiline=multiline, secrets=secrets)
    folded = set(secret) <= set(HEX)
    assert (secret.lower() if folded else secret) not in (
        squeezed(shown).lower() if folded else squeezed(shown)
    )
    assert REDACTED in shown


@settings(max_examples=examples(200), deadline=None)
@given(secret=SECRETS, word=st.text("abcxyz0123456789", min_size=1, max_size=4))
def test_a_secret_inside_a_longer_word_is_not_a_token(secret: str, word: str) -> None:
    secrets = Secrets()
    assume(secret[0].isalnum() and secret[-1].isalnum())
    secrets.add(secret)
    assert (
        safe_text(f"see {word}{secret} and {secret}{word}", secrets=secrets)
        == f"see {word}{secret} and {secret}{word}"
    )
    assert (
        safe_text(f"see {secret}, ({secret}) and {secret}{secret}.", secrets=secrets)
        == f"see {REDACTED}, ({REDACTED}) and {REDACTED}."
    )


def test_hex_matches_in_any_case_and_other_secrets_only_as_written() -> None:
    secrets = Secrets()
    secrets.add("4f1d0c2b9a8e7d6c5b4a")
    secrets.add("Zm9vYmFyLXNlY3JldA")
    assert (
        safe_text("sig 4F1D0C2B9A8E7D6C5B4A and 4f1D0c2B9a8E7d6C5b4A", secrets=secrets)
        == f"sig {REDACTED} and {REDACTED}"
    )
    # another base64 value
    assert safe_text("token ZM9VYMFYLXNLY3JLDA", secrets=secrets) == "token ZM9VYMFYLXNLY3JLDA"


def test_a_value_under_eight_characters_rewrites_nothing() -> None:
    secrets = Secrets()
    for short in ("models", "testing", "abc1234"):
        secrets.add(short)
        secrets.add_url(f"https://h.example/m.bin?token={short}&X-Amz-Credential={short}/2024")
        assert short not in secrets.known()
        assert (
            safe_text(f"/home/me/{short}/bert: {short} failed", secrets=secrets)
            == f"/home/me/{short}/bert: {short} failed"
        )
        # a run's own short value too
        assert safe_text(f"{short} here", secrets=Secrets((short,))) == f"{short} here"
    secrets.add("testing1")  # eight: a secret
    assert safe_text("key testing1 refused", secrets=secrets) == f"key {REDACTED} refused"


def test_data_is_never_rewritten_by_the_registry() -> None:
    secrets = Secrets()
    secrets.add("important-models")
    path = "/srv/important-models/hf-internal-testing/model.bin"
    assert shown_data(path) == path
    doc = {
        "dest": path,
        "files": [{"path": path, "error": f"cannot write {path}"}],
        "url": f"https://h/{path}?sig=x",
    }
    assert safe_doc(doc, secrets=secrets) == {
        "dest": path,
        "files": [
            {"path": path, "error": f"cannot write /srv/{REDACTED}/hf-internal-testing/model.bin"}
        ],
        # the URL's credentials go: they are structural, not registered
        "url": f"https://h/{path}?{REDACTED}",
    }
    assert shown_data("\x1b[2Jname\xad") == "\\x1b[2Jname\\xad"  # made printable, as on a terminal


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "https://h.example/a;jsessionid=A7F3K9Q2M8X1/b.bin",
            f"https://h.example/a;jsessionid={REDACTED}/b.bin",
        ),
        (
            "https://h.example/a/b.bin;token=t0k3n-v4lue?x=1",
            f"https://h.example/a/b.bin;token={REDACTED}?x=1",
        ),
        (
            "https://h.example/a;JSESSIONID=s3ss10nvalue;v=2/b",
            f"https://h.example/a;JSESSIONID={REDACTED};v=2/b",
        ),
        # not secrets
        ("https://h.example/a;v=2;type=i/b.bin", "https://h.example/a;v=2;type=i/b.bin"),
        # public
        ("https://h.example/a;x-amz-date=20240101/b", "https://h.example/a;x-amz-date=20240101/b"),
    ],
)
def test_path_parameters_are_secrets_like_query_parameters(url: str, expected: str) -> None:
    assert redact_url(url) == expected
    assert safe_text(f"redirect -> {url}") == f"redirect -> {expected}"


def test_a_path_parameter_read_in_a_url_is_registered() -> None:
    secrets = Secrets()
    secrets.add_url("https://h.example/app;jsessionid=A7F3K9Q2M8X1Z5W0/model.bin")
    assert (
        safe_text("session A7F3K9Q2\nM8X1Z5W0 expired", secrets=secrets)
        == f"session {REDACTED} expired"
    )


@pytest.mark.slow
def test_every_format_character_is_escaped_and_matched_across() -> None:
    from mdl.redact import _IGNORABLE, _squeeze

    secrets = Secrets()

    # What the scan squeezes out and what it maps back across are the same characters.
    assert all(
        bool(re.fullmatch(_IGNORABLE, chr(c))) == (_squeeze(chr(c)) == "") for c in range(0x110000)
    )
    secrets.add("0123456789abcdef")
    for code in range(0x110000):
        char = chr(code)
        if unicodedata.category(char) != "Cf":
            continue
        assert char not in printable(f"a{char}b"), hex(code)
        assert safe_text(f"x 01234567{char}89abcdef y", secrets=secrets) == f"x {REDACTED} y", hex(
            code
        )


@pytest.mark.slow
def test_redaction_is_linear_in_the_text_with_thousands_of_secrets() -> None:
    """Old: a 1.3 MB text with 20,000 registered signatures took 14 CPU-s (every signature sharing a
    4-character head was searched for through the whole text); now growing with the text alone."""
    secrets = Secrets()
    for i in range(20_000):
        secrets.add_url(f"https://cdn.example/f{i}?Signature=sig{i:08d}abcdef&Key-Pair-Id=K{i:06d}")
    words = (
        "the",
        "request",
        "sig00000123",
        "signature",
        "does",
        "not",
        "match",
        "the",
        "one",
        "you",
        "sent",
    )
    texts = {  # (lines of 50 words, as a body has them: a sink bounds each line, not the text)
        n: "".join(words[i % len(words)] + ("\n" if i % 50 == 49 else " ") for i in range(n))
        + "sig00012345abcdef."
        for n in (20_000, 200_000)
    }
    # the steps counted (lines of mdl/redact.py run), never timed: 10 times the text, about 10
    # times the steps (the old search, per signature through the whole text, grew with both)
    steps = {
        n: lines_run(lambda: safe_text(texts[n], multiline=True, secrets=secrets), redact)
        for n in texts
    }
    assert steps[200_000] < 12 * steps[20_000], steps
    assert safe_text(texts[200_000], multiline=True, secrets=secrets).endswith(f"\n{REDACTED}.")
