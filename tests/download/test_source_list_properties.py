"""`mdl get -i`'s list reader takes any text (a file from anywhere, stdin): a source a line, or a
short usage error.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from profiles import examples

from mdl.errors import UsageError
from mdl.sources.oneoff import MAX_SOURCE_LINE, read_source_list

LINES = st.lists(
    st.one_of(
        st.text(max_size=40),
        st.sampled_from(
            ["# comment", "  ", "\ufeffhttps://a.example/x.bin", "https://b.example/y.gguf\r", "-"]
        ),
    ),
    max_size=12,
)


@settings(max_examples=examples(300), deadline=None)
@given(LINES, st.sampled_from(["\n", "\r\n"]), st.booleans())
def test_any_text_reads_as_sources_or_a_short_usage_error(
    lines: list[str], newline: str, bom: bool
) -> None:
    text = ("\ufeff" if bom else "") + newline.join(lines)
    try:
        listed = read_source_list("-", read_text=lambda _: text)
    # only a line too long to be a source is refused, and said in one short line
    except UsageError as exc:
        assert "\n" not in exc.message and len(exc.message) < 200
        return
    for source in listed:
        assert source == source.strip() and source and not source.startswith("#")
        assert len(source) <= MAX_SOURCE_LINE and "\n" not in source and "\r" not in source
    kept = [line.strip() for line in text.removeprefix("\ufeff").splitlines()]
    # in order, nothing else dropped
    assert listed == [line for line in kept if line and not line.startswith("#")]


def test_a_bom_is_dropped_only_at_the_start() -> None:
    assert read_source_list("-", read_text=lambda _: "\ufeffhttps://a.example/x\n") == [
        "https://a.example/x"
    ]
