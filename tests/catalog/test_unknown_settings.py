"""Rolling upgrades (issue 59, G): a ``[settings]`` key this build does not know (a newer mdl's
``fill_mirror``, read by a node not yet upgraded) is a warning naming file, line and key with a
did-you-mean, never a failure of the cron pull or the probe; a model entry's unknown key stays an
error (it could change which bytes are right), and ``mdl add`` keeps the unknown key as written."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
from runfixtures import mdl, use_catalog
from servers import HubServer, make_data
from terminal import unstamped

from mdl.catalog.load import parse_catalog
from mdl.catalog.specs import CatalogWarning
from mdl.errors import CatalogError
from mdl.version import __version__

FUTURE = """\
[settings]
connections = 3
fill_mirror_v9 = true
conections = 5

[models.tiny]
repo = "org/tiny"
"""
SAID = (
    f"cat.toml:3: settings.fill_mirror_v9: unknown key, ignored by mdl {__version__}"
    " (did you mean 'fill_mirror'?)",
    f"cat.toml:4: settings.conections: unknown key, ignored by mdl {__version__}"
    " (did you mean 'connections'?)",
)


def test_an_unknown_settings_key_is_a_warning_naming_file_line_and_key() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        catalog = parse_catalog(FUTURE, source="cat.toml")
    assert [(w.category, str(w.message)) for w in caught] == [(CatalogWarning, s) for s in SAID]
    assert catalog.settings.connections == 3  # the known keys are read, the unknown ones ignored
    assert [m.name for m in catalog.models] == ["tiny"]


def test_a_key_far_from_every_known_one_is_said_without_a_guess() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        parse_catalog("[settings]\nzz_future = [1, 2]\n", source="cat.toml")
    assert [str(w.message) for w in caught] == [
        f"cat.toml:2: settings.zz_future: unknown key, ignored by mdl {__version__}"
    ]


@pytest.mark.parametrize(
    ("text", "said"),
    [
        # a model's keys say which bytes are right: an older build never guesses
        (
            '[models.m]\nrepo = "o/m"\nrevison = "v2"\n',
            "cat.toml:3: models.m.revison: unknown key (did you mean 'revision'?)",
        ),
        (
            '[models.m]\nfiles = [{ url = "https://h/x.bin", sha265 = "x" }]\n',
            "cat.toml:2: models.m.files[0].sha265: unknown key (did you mean 'sha256'?)",
        ),
        # a table in [settings] may say whom to trust: a misspelt one never means "nobody"
        (
            "[settings.signatur]\nkey = 'k.pem'\n",
            "cat.toml:1: settings.signatur: unknown key (did you mean 'signature'?)",
        ),
        (
            "[settings.signature]\nkey = 'k.pem'\nissuers = 'x'\n",
            "cat.toml:3: settings.signature.issuers: unknown key (did you mean 'issuer'?)",
        ),
        ("zz = 1\n", "cat.toml:1: zz: unknown key (allowed: version, settings, models)"),
    ],
)
def test_unknown_keys_elsewhere_stay_errors(text: str, said: str) -> None:
    with pytest.raises(CatalogError) as info:
        parse_catalog(text, source="cat.toml")
    assert info.value.exit_code == 2
    assert str(info.value) == said


def test_the_cron_pull_and_the_probe_go_on_with_one_warning_each(
    hub: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub.add_repo("org/tiny", {"config.json": b"{}", "model.bin": make_data(20_000, seed=59)})
    catalog = use_catalog(tmp_path, monkeypatch, FUTURE, endpoint=hub.url)
    said = [f"mdl: warning: {line.replace('cat.toml', str(catalog), 1)}" for line in SAID]
    pulled = mdl("pull", "--all", "--no-progress")
    assert pulled.exit_code == 0, pulled.stderr
    assert pulled.stdout == f"{tmp_path / 'models' / 'tiny'}\n"
    # each once, though the run reads the catalog more than once
    assert [line for line in unstamped(pulled.stderr) if "warning" in line] == said
    probe = mdl("verify", "--quick", "tiny")
    assert probe.exit_code == 0, probe.stderr
    assert [line for line in unstamped(probe.stderr) if "warning" in line] == said
    log = (tmp_path / "mdl.log").read_text()
    # the pull's log line; a probe writes no log (docs/commands.md, "mdl verify --quick")
    assert log.count("settings.fill_mirror_v9: unknown key") == 1
    assert mdl("verify", "--quick", "tiny", "-q").stderr == ""  # -q silences warnings


def test_the_warning_is_an_event_in_a_json_event_stream(
    hub: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub.add_repo("org/tiny", {"config.json": b"{}"})
    use_catalog(tmp_path, monkeypatch, FUTURE, endpoint=hub.url)
    pulled = mdl("pull", "tiny", "--progress", "json")
    assert pulled.exit_code == 0, pulled.stderr
    events = [json.loads(line) for line in pulled.stderr.splitlines()]
    said = [e["message"] for e in events if e["event"] == "warning"]
    assert [message.split(": ", 1)[1] for message in said] == [s.split(": ", 1)[1] for s in SAID]


def test_mdl_add_keeps_the_unknown_key_as_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    catalog = use_catalog(tmp_path, monkeypatch, FUTURE)
    added = mdl("add", "tiny", "--description", "a tiny model")
    assert added.exit_code == 0, added.stderr
    text = catalog.read_text()
    assert "fill_mirror_v9 = true\nconections = 5\n" in text
    assert 'description = "a tiny model"' in text
    warned = [line for line in unstamped(added.stderr) if "warning" in line]
    assert len(warned) == 2, added.stderr  # each once, though add reads the catalog twice


@pytest.mark.parametrize(
    "command",
    [
        ("list",),
        ("show", "tiny"),
        ("verify", "tiny"),
        ("verify", "--quick", "tiny"),
        ("pull", "tiny", "--dry-run"),
        ("prune", "--dry-run"),
        ("clean",),
        ("show", "nosuch"),  # a failure's document too
    ],
)
def test_every_json_document_of_a_run_that_read_the_catalog_has_its_warnings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: tuple[str, ...]
) -> None:
    """product.md: every warning is a ``mdl: warning:`` line, a ``warning`` in --json and a log
    line (offline: no server is asked)."""
    future = FUTURE.replace('repo = "org/tiny"', 'files = [{ url = "http://127.0.0.1:9/w.bin" }]')
    catalog = use_catalog(tmp_path, monkeypatch, future)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    said = [line.replace("cat.toml", str(catalog), 1) for line in SAID]
    result = mdl(*command, "--json")
    doc = json.loads(result.stdout)
    assert doc["warnings"] == said, result.stdout  # each once, beside prune's own (none here)
    assert [line for line in unstamped(result.stderr) if "warning" in line] == [
        f"mdl: warning: {line}" for line in said
    ]


def test_a_catalog_with_an_error_too_says_its_settings_warning_beside_the_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """output.md: the warning is in a failure's document too; it was said only on the next run,
    once the error was fixed (one more try to learn of the typo)."""
    text = '[settings]\nconections = 4\n\n[models.x]\nrepo = "org/x"\nrevison = "main"\n'
    catalog = use_catalog(tmp_path, monkeypatch, text)
    result = mdl("list", "--json")
    assert result.exit_code == 2, result.stderr
    doc = json.loads(result.stdout)
    warned = f"{catalog}:2: settings.conections: unknown key, ignored by mdl {__version__}"
    assert [w.split(" (did you")[0] for w in doc["warnings"]] == [warned]
    assert "models.x.revison: unknown key" in doc["error"]["message"]
    assert f"mdl: warning: {warned}" in result.stderr
