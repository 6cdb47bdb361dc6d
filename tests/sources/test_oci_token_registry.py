"""oci:// against a real distribution registry configured for token auth (``auth: token:``), its
tokens signed by a token service in the tests (tests/registrytokens.py): the registry's own
challenge, checked JWTs, and a login from Docker's config.json sent to the token service only."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from registry import NEEDS_REGISTRY, DistributionRegistry, distribution
from registrytokens import TokenService, token_service
from runfixtures import mdl
from servers import make_data

pytestmark = NEEDS_REGISTRY
LOGIN = ("ci-robot", "pa55-w0rd-for-tokens")
FILES = {"config.json": b'{"n": 1}', "model.safetensors": make_data(300_000, seed=21)}


@pytest.fixture(scope="module")
def tokens() -> Iterator[TokenService]:
    with token_service(LOGIN) as started:
        yield started


@pytest.fixture(scope="module")
def registry(
    tmp_path_factory: pytest.TempPathFactory, tokens: TokenService
) -> Iterator[DistributionRegistry]:
    with distribution(tmp_path_factory.mktemp("registry"), tokens=tokens) as started:
        started.push_model("team/private", "v1", FILES)
        yield started


def docker_login(host: str, login: tuple[str, str]) -> None:
    auth = base64.b64encode(":".join(login).encode()).decode()
    config = Path.home() / ".docker" / "config.json"
    config.parent.mkdir(exist_ok=True)
    config.write_text(json.dumps({"auths": {host: {"auth": auth}}}))


def test_a_login_gets_a_token_the_registry_accepts(
    registry: DistributionRegistry, tokens: TokenService, tmp_path: Path
) -> None:
    docker_login(registry.host, LOGIN)
    tokens.asked.clear()
    done = mdl("get", f"oci://{registry.host}/team/private:v1", "-d", str(tmp_path), "--json")
    assert done.exit_code == 0, done.stderr
    assert {p: (tmp_path / p).read_bytes() for p in FILES} == FILES
    assert tokens.asked and all(
        scope == "repository:team/private:pull" for scope, _ in tokens.asked
    )
    assert LOGIN[1] not in done.stdout + done.stderr


def test_no_login_is_exit_3_naming_where_to_log_in(
    registry: DistributionRegistry, tmp_path: Path
) -> None:
    done = mdl("get", f"oci://{registry.host}/team/private:v1", "-d", str(tmp_path))
    assert done.exit_code == 3, done.stderr
    assert "docker login" in done.stderr


def test_a_wrong_login_is_exit_3_naming_its_file(
    registry: DistributionRegistry, tmp_path: Path
) -> None:
    docker_login(registry.host, (LOGIN[0], "wrong"))
    done = mdl("get", f"oci://{registry.host}/team/private:v1", "-d", str(tmp_path))
    assert done.exit_code == 3, done.stderr
    assert "config.json was refused" in done.stderr
    assert "wrong" not in done.stderr
