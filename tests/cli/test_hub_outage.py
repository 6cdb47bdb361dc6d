"""A Hub outage keeps installed, verified models (issue 11, item 17): cron stays green for what is
already here.

Like ``hf_hub_download`` serving its cache: when the Hub cannot be asked (down, silent, 5xx after
the retries) or refuses a check made without a token, a model installed at a verified commit is
``skipped`` with one warning and counts as present. A model never installed (or changed since it was
verified) fails as before.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from hostile import SilentServer
from runfixtures import mdl, use_catalog
from servers import TOKEN, Fault, HubServer, make_data

CATALOG = """
[models.tiny]
repo = "org/tiny"

[models.big]
files = [{ repo = "org/big", path = "weights.bin" }]

[models.gated]
repo = "org/gated"

[models.gated-file]
files = [{ repo = "org/gated", path = "w.bin", as = "w.bin" }]

[models.never]
repo = "org/never-pulled"
"""


@pytest.fixture
def hub_world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[HubServer, Path]]:
    """A Hub (stopped by the tests that need an outage) and a catalog of models on it."""
    server = HubServer().start()
    server.add_repo(
        "org/tiny", {"config.json": b'{"a": 1}', "model.safetensors": make_data(200_000, seed=1)}
    )
    server.add_repo("org/big", {"weights.bin": make_data(3_000_000, seed=2)})
    server.add_repo("org/gated", {"w.bin": make_data(50_000, seed=3)}, gated="auto", gate_api=True)
    server.add_repo("org/never-pulled", {"x.bin": b"x"})
    use_catalog(tmp_path, monkeypatch, CATALOG, endpoint=server.url)
    dest = tmp_path / "models"
    try:
        yield server, dest
    finally:
        server.stop()


def warnings_in(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "could not check" in line]


def test_hub_down_keeps_installed_models(hub_world: tuple[HubServer, Path]) -> None:
    hub, dest = hub_world
    first = mdl("pull", "tiny", "big")
    assert first.exit_code == 0, first.stderr
    commit = hub.repo("org/tiny").sha
    hub.stop()

    result = mdl("pull", "tiny", "big", "--timeout", "2")
    assert result.exit_code == 0, result.stderr
    warnings = warnings_in(result.stderr)
    assert len(warnings) == 2, result.stderr  # once per model, not once per file
    assert f"could not check tiny for updates: cannot reach the Hub at {hub.url}" in warnings[0]
    assert f"keeping commit {commit[:12]}" in warnings[0]
    assert "could not check big for updates" in warnings[1]
    assert (dest / "big" / "weights.bin").read_bytes() == make_data(3_000_000, seed=2)

    as_json = mdl("pull", "tiny", "big", "--json", "--timeout", "2")
    assert as_json.exit_code == 0
    doc = json.loads(as_json.stdout)
    assert doc["ok"] is True
    assert {f["action"] for f in doc["files"]} == {"skipped"}
    assert {f["path"] for f in doc["files"]} == {"config.json", "model.safetensors", "weights.bin"}
    assert all(
        f["warning"].startswith(f"could not check {f['model']} for updates") for f in doc["files"]
    )


def test_hub_down_still_fails_a_model_never_installed(hub_world: tuple[HubServer, Path]) -> None:
    hub, _ = hub_world
    assert mdl("pull", "tiny").exit_code == 0
    hub.stop()
    result = mdl("pull", "tiny", "never", "--json", "--timeout", "2")
    assert result.exit_code == 5
    doc = json.loads(result.stdout)
    actions = {f["model"]: f["action"] for f in doc["files"]}
    assert actions == {"tiny": "skipped", "never": "failed"}


@pytest.mark.slow
def test_a_changed_file_is_not_kept(hub_world: tuple[HubServer, Path]) -> None:
    """Kept means verified: a file whose bytes changed since its record is not vouched for."""
    hub, dest = hub_world
    assert mdl("pull", "big").exit_code == 0
    hub.stop()
    (dest / "big" / "weights.bin").write_bytes(b"tampered")
    result = mdl("pull", "big", "--timeout", "2")
    assert result.exit_code == 5
    assert not warnings_in(result.stderr)


def test_hub_5xx_after_retries_keeps_installed_models(
    hub_world: tuple[HubServer, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    hub, _ = hub_world
    assert mdl("pull", "tiny").exit_code == 0
    monkeypatch.setenv("MDL_RETRIES", "0")
    hub.faults.add(Fault.http_error(503, retry_after=0, times=None, path_prefix="/api/"))
    result = mdl("pull", "tiny")
    assert result.exit_code == 0, result.stderr
    assert "HTTP 503" in warnings_in(result.stderr)[0]


@pytest.mark.parametrize("model", ["gated", "gated-file"])
def test_installed_gated_model_without_token_is_kept(
    hub_world: tuple[HubServer, Path], monkeypatch: pytest.MonkeyPatch, model: str
) -> None:
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    assert mdl("pull", model).exit_code == 0
    monkeypatch.delenv("HF_TOKEN")
    result = mdl("pull", model)
    assert result.exit_code == 0, result.stderr
    assert len(warnings_in(result.stderr)) == 1


def test_gated_model_never_installed_without_token_is_still_exit_3(
    hub_world: tuple[HubServer, Path],
) -> None:
    result = mdl("pull", "gated")
    assert result.exit_code == 3
    assert not warnings_in(result.stderr)


def test_a_wrong_token_is_reported_not_hidden(
    hub_world: tuple[HubServer, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a token, a refusal is news (revoked, expired): the model is not quietly kept."""
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    assert mdl("pull", "gated").exit_code == 0
    monkeypatch.setenv("HF_TOKEN", "hf_revokedrevokedrevokedrevokedrevoked")
    result = mdl("pull", "gated")
    assert result.exit_code == 3


@pytest.mark.slow
@pytest.mark.realtime
def test_a_silent_hub_keeps_installed_models_within_the_timeout(
    hub_world: tuple[HubServer, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Hub that accepts connections and never answers is an outage too (and is asked once per
    run).
    """
    assert mdl("pull", "tiny", "big").exit_code == 0
    with SilentServer() as silent:
        monkeypatch.setenv("HF_ENDPOINT", silent.url)
        result = mdl("pull", "tiny", "big", "--timeout", "0.3")
        accepted, url = silent.accepted, silent.url
    assert result.exit_code == 0, result.stderr
    warnings = warnings_in(result.stderr)
    assert len(warnings) == 2
    assert f"the Hub at {url} did not answer within 0.3 s" in warnings[0]
    assert accepted <= 3  # big was not asked again after tiny's tries went unanswered


def test_force_with_the_hub_down_is_exit_5_not_a_kept_copy(
    hub_world: tuple[HubServer, Path],
) -> None:
    """Issue 88: ``--force`` promises to download again; the outage's fallback (keep the verified
    copy, exit 0) must not win over it silently."""
    hub, dest = hub_world
    assert mdl("pull", "big").exit_code == 0
    hub.stop()
    result = mdl("pull", "big", "--force", "--timeout", "2")
    assert result.exit_code == 5, result.stderr
    assert "could not check" not in result.stderr and "keeping" not in result.stderr
    assert "--force downloads again, which needs the Hub" in result.stderr
    assert (dest / "big" / "weights.bin").read_bytes() == make_data(3_000_000, seed=2)
    # without --force the same outage keeps it
    assert mdl("pull", "big", "--timeout", "2").exit_code == 0
