"""Labels cut in the middle by display width, and never two rows alike."""

from __future__ import annotations

import pytest

from mdl.cli.render.bars import display_width, fit_labels, shorten

SHARD_1 = "big/model-00001-of-00002.safetensors"
SHARD_2 = "big/model-00002-of-00002.safetensors"


def test_short_labels_stay_whole() -> None:
    assert shorten("tiny/config.json", 20) == "tiny/config.json"
    assert fit_labels(["a", "b"], 5) == ["a", "b"]


def test_long_labels_are_cut_in_the_middle() -> None:
    shown = shorten("persiannlp/mt5-small-parsinlu-squad-reading-comprehension/spiece.model", 30)
    assert display_width(shown) <= 30
    assert shown.startswith("persiannlp/")
    assert shown.endswith("/spiece.model")
    assert "…" in shown


@pytest.mark.parametrize("width", [8, 12, 16, 20, 24, 30, 36, 40])
def test_shards_stay_distinct_at_every_width(width: int) -> None:
    shown = fit_labels([SHARD_1, SHARD_2, "big/config.json"], width)
    assert len(set(shown)) == 3
    assert all(display_width(s) <= width for s in shown)
    assert "1" in shown[0] and "2" in shown[1]


def test_cut_counts_display_width_not_characters() -> None:
    label = "模型/模型模型模型模型模型模型.bin"
    shown = shorten(label, 15)
    assert display_width(shown) <= 15
    assert shown.endswith(".bin")


def test_labels_alike_only_in_the_hidden_middle_still_differ() -> None:
    labels = [
        f"org/a-very-long-repository-name-{c}-with-a-long-tail/model.safetensors" for c in "xyz"
    ]
    shown = fit_labels(labels, 28)
    assert len(set(shown)) == 3
    assert all(display_width(s) <= 28 for s in shown)
