"""An error body in a few words: an HTML page by its title or first text, anything else on one
line.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from mdl.transfer.failures import body_excerpt, looks_like_html

NGINX_404 = (
    "<html>\r\n<head><title>404 Not Found</title></head>\r\n<body>\r\n<center><h1>404 Not"
    " Found</h1></center>\r\n<hr><center>nginx/1.24.0</center>\r\n</body>\r\n</html>\r\n"
    + "<!-- a padding comment -->\r\n"
    * 6
)


def test_nginx_page_is_its_title() -> None:
    assert body_excerpt(NGINX_404) == "404 Not Found"


def test_a_page_without_title_is_its_first_visible_text() -> None:
    page = (
        "<!DOCTYPE html><html><head><meta charset=utf-8><style>body{color:red}</style><script>var"
        " secret = 1;</script></head><body><h1>Bad&nbsp;Gateway</h1><p>The upstream   went"
        " away.</p></body></html>"
    )
    assert body_excerpt(page) == "Bad Gateway The upstream went away."


def test_a_head_left_open_does_not_hide_the_body() -> None:
    assert (
        body_excerpt("<html><head><meta x=1><body>Service Unavailable</body>")
        == "Service Unavailable"
    )


def test_other_bodies_are_kept_on_one_line() -> None:
    assert body_excerpt("not found\n") == "not found"
    xml = (
        "<?xml version='1.0'?>\n<Error><Code>AccessDenied</Code><Message>Request has"
        " expired</Message></Error>"
    )
    assert not looks_like_html(xml)
    assert body_excerpt(xml) == xml.replace("\n", " ")
    assert body_excerpt('{"error": "Repository not found"}') == '{"error": "Repository not found"}'


def test_broken_markup_ends_in_text() -> None:
    assert body_excerpt("<html><title>Oops") == "Oops"
    assert body_excerpt("<html><![if x]><body>text</body>") in ("text", "")
    assert body_excerpt("<html><script>never closed") == ""


@given(
    st.text(max_size=400), st.sampled_from(["", "<html>", "<!doctype html><title>", "<body><p>"])
)
def test_any_body_gives_one_line_and_never_raises(body: str, prefix: str) -> None:
    text = body_excerpt(prefix + body)
    assert isinstance(text, str)
    assert "\n" not in text and "\r" not in text
    assert len(text) <= len(prefix + body)
