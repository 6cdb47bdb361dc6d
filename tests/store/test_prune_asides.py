"""A prune killed between its rename aside and its unlink (``kill -9``, a power cut) leaves the
file under a hidden name, ``.<name>.<hex>.mdl-prune``, as big as it is. The next ``mdl prune`` or
``mdl clean`` ends it: put back under its name when that name is free (prune then decides anew);
removed when the name was taken since and the aside is what mdl recorded there; else kept and
said. One a running prune holds (its rename just made) is left alone."""

from __future__ import annotations

import hashlib
import os
import secrets
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from mdl import api
from mdl.store.prune import clean_asides  # noqa: F401 (loads mdl.store.prune)
from mdl.store.records import FileRecord
from mdl.store.store import Store

ORIGINAL = b"weights mdl wrote " * 500
THEIRS = b"another tool's file " * 450


@dataclass
class Scene:
    dest: Path
    catalog: Path
    target: Path  # the recorded file
    aside: Path  # where the killed prune left it


def killed_prune(tmp_path: Path, model: str) -> Scene:
    """``model``'s one file recorded as mdl wrote it, then renamed aside as a prune does it just
    before its unlink; the catalog names ``stays`` only."""
    dest, catalog = tmp_path / "models", tmp_path / "catalog.toml"
    tmp_path.mkdir(parents=True, exist_ok=True)
    catalog.write_text('[models.stays]\nrepo = "org/stays"\n')
    target = dest / model / "w.bin"
    target.parent.mkdir(parents=True)
    target.write_bytes(ORIGINAL)
    record = FileRecord(
        "w.bin", len(ORIGINAL), hashlib.sha256(ORIGINAL).hexdigest(), target.stat().st_mtime_ns
    )
    Store(dest).update_record(model, revision=None, commit=None, put=record)
    aside = target.parent / f".w.bin.{secrets.token_hex(6)}.mdl-prune"
    target.rename(aside)
    return Scene(dest, catalog, target, aside)


@pytest.fixture
def left_long_ago(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every aside counts as left by a killed run, however recent its rename (no waiting)."""
    monkeypatch.setattr(sys.modules["mdl.store.prune"], "ASIDE_LEFT_AFTER", -3600.0)


def test_prune_puts_back_a_free_name_then_removes_a_gone_model_as_usual(
    tmp_path: Path, left_long_ago: None
) -> None:
    scene = killed_prune(tmp_path, "gone")
    report = api.prune(catalog=scene.catalog, dest=scene.dest, environ={})
    assert report.exit_code == 0, report.errors
    assert not scene.aside.exists() and not scene.target.exists()
    assert any("put back where a killed prune left it" in w for w in report.warnings)
    assert [r.path for r in report.removed] == [scene.target]
    assert report.freed == len(ORIGINAL)


def test_clean_puts_back_a_file_of_a_model_still_in_the_catalog(
    tmp_path: Path, left_long_ago: None
) -> None:
    scene = killed_prune(tmp_path, "stays")
    report = api.clean(dest=scene.dest, environ={})
    assert scene.target.read_bytes() == ORIGINAL and not scene.aside.exists()
    assert report.files == ()  # nothing removed: it is back


def test_a_taken_name_with_what_mdl_recorded_aside_is_removed_by_clean_and_prune(
    tmp_path: Path, left_long_ago: None
) -> None:
    """A pull wrote the file again since: the aside is the old copy, mdl's own: removed."""
    scene = killed_prune(tmp_path, "stays")
    scene.target.write_bytes(ORIGINAL)  # pulled again
    dry = api.clean(dest=scene.dest, dry_run=True, environ={})
    assert [(f.path, f.removed) for f in dry.files] == [(scene.aside, False)]
    assert scene.aside.exists()
    report = api.clean(dest=scene.dest, environ={})
    assert [(f.path, f.size) for f in report.files] == [(scene.aside, len(ORIGINAL))]
    assert not scene.aside.exists() and scene.target.read_bytes() == ORIGINAL
    again = killed_prune(tmp_path / "again", "stays")
    again.target.write_bytes(ORIGINAL)
    pruned = api.prune(catalog=again.catalog, dest=again.dest, environ={})
    assert [r.path for r in pruned.removed] == [again.aside]
    assert not again.aside.exists() and again.target.exists()


def test_a_taken_name_with_something_else_aside_is_kept_and_said(
    tmp_path: Path, left_long_ago: None
) -> None:
    scene = killed_prune(tmp_path, "stays")
    scene.aside.write_bytes(THEIRS)  # not what mdl recorded
    scene.target.write_bytes(ORIGINAL)
    report = api.prune(catalog=scene.catalog, dest=scene.dest, environ={})
    assert scene.aside.read_bytes() == THEIRS
    kept = {k.path: k.reason for k in report.kept}
    assert "set aside by a killed prune" in kept[scene.aside]
    assert api.clean(dest=scene.dest, environ={}).files == ()
    assert scene.aside.exists()


def test_an_aside_a_running_prune_holds_is_left_alone(tmp_path: Path) -> None:
    """Renamed just now: a prune between its rename and its unlink (microseconds), not a leftover."""
    scene = killed_prune(tmp_path, "stays")
    scene.target.write_bytes(ORIGINAL)
    assert api.clean(dest=scene.dest, environ={}).files == ()
    assert scene.aside.exists()
    os.unlink(scene.aside)
