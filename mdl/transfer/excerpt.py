"""A server's error body in a few words: an HTML page (nginx's 404, a proxy's or a CDN's error page) by its
``<title>`` or its first text, never the whole page; any other body as it is, on one line.

The caller still makes the result safe (``safe_text``: printable, no secrets) and cuts it to its own limit.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

# Markup that starts an HTML document (an XML or JSON body is left alone: its text is the message).
_HTML_START = re.compile(r"<(?:!doctype\s+html|html|head|body|title|meta|h1|center)\b", re.IGNORECASE)
_HIDDEN = frozenset({"script", "style", "noscript", "template", "head"})
_SCAN_CHARS = 64 * 1024  # a title past this is not worth looking for


class _PageText(HTMLParser):
    """Collects a page's title and its visible text (not scripts, styles or the rest of <head>)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.title: list[str] = []
        self.text: list[str] = []
        self._hidden: list[str] = []
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "title":
            self._in_title = True
        elif tag in _HIDDEN:
            self._hidden.append(tag)
        elif tag == "body" and "head" in self._hidden:  # <body> ends a <head> left open
            del self._hidden[self._hidden.index("head") :]
        elif tag in ("br", "p", "div", "h1", "h2", "h3", "li", "tr", "hr"):
            self.text.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
        elif tag in self._hidden:
            while self._hidden and self._hidden.pop() != tag:
                pass

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title.append(data)
        elif not self._hidden:
            self.text.append(data)


def looks_like_html(text: str) -> bool:
    """Whether a body is an HTML page (it starts with markup that only HTML documents start with)."""
    head = text.lstrip()[:2048]
    return head.startswith("<") and _HTML_START.search(head) is not None


def _words(parts: list[str]) -> str:
    return " ".join("".join(parts).split())


def body_excerpt(text: str) -> str:
    """What a server said in an error body, on one line: an HTML page's title, else its first visible text;
    any other body with its whitespace collapsed."""
    if not looks_like_html(text):
        return " ".join(text.split())
    page = _PageText()
    try:
        page.feed(text[:_SCAN_CHARS])
        page.close()
    except (AssertionError, ValueError):  # malformed markup older parsers reject: keep what was read
        pass
    return _words(page.title) or _words(page.text)
