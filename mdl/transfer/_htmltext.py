"""An HTML error page's words: its title, else its visible text (``body_excerpt`` in
mdl.transfer.http says a page by them); loaded only when a server answers with one."""

from __future__ import annotations

from html.parser import HTMLParser

_HIDDEN = frozenset({"script", "style", "noscript", "template", "head"})


class PageText(HTMLParser):
    """The title and the visible text of a page fed to it (scripts, styles, the head left out)."""

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
