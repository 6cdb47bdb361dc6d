"""`mdl show` says why a file on disk is no longer part of its model, truly (issue 50, F): taken out
of the catalog (a file, a pattern, another repo) or gone from the repo the catalog still takes it
from; never "removed upstream" for what the user removed from the catalog."""

from __future__ import annotations

from pathlib import Path

import pytest
from runfixtures import mdl, use_catalog
from servers import CdnServer, HubServer, make_data

A, B = make_data(20_000, seed=61), make_data(30_000, seed=62)


def extra_lines(stdout: str) -> list[str]:
    lines = stdout.splitlines()
    at = lines.index("no longer part of the model, not counted:")
    return [line.strip() for line in lines[at + 1 :]]


def test_a_file_taken_out_of_the_catalog_is_said_to_be(
    cdn: CdnServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = cdn.add_file("/a.bin", A), cdn.add_file("/b.bin", B)
    catalog = use_catalog(
        tmp_path, monkeypatch, f'[models.m]\nfiles = [{{ url = "{a}" }}, {{ url = "{b}" }}]\n'
    )
    assert mdl("pull", "m").exit_code == 0
    catalog.write_text(f'[models.m]\nfiles = [{{ url = "{a}" }}]\n')
    assert mdl("pull", "m").exit_code == 0
    shown = mdl("show", "m")
    assert shown.exit_code == 0, shown.stderr
    assert "upstream" not in shown.stdout
    assert extra_lines(shown.stdout) == ["b.bin  (no longer in the catalog)"]


def test_a_file_gone_from_the_repo_or_left_out_by_a_pattern_says_which(
    hub: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub.add_repo("org/tiny", {"config.json": b"{}", "a.bin": A, "b.bin": B})
    text = '[models.tiny]\nrepo = "org/tiny"\n'
    catalog = use_catalog(tmp_path, monkeypatch, text, endpoint=hub.url)
    assert mdl("pull", "tiny").exit_code == 0
    hub.commit("org/tiny", {"b.bin": None})  # deleted upstream
    catalog.write_text(text + 'exclude = ["a.bin"]\n')  # and left out by the catalog
    assert mdl("pull", "tiny").exit_code == 0
    shown = mdl("show", "tiny")
    assert shown.exit_code == 0, shown.stderr
    assert extra_lines(shown.stdout) == [
        "a.bin  (no longer in the catalog)",
        "b.bin  (no longer in org/tiny)",
    ]
