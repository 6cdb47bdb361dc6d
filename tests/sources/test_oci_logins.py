"""Where a registry login is found (containers' auth.json, Docker's config.json, a credential
helper), in the order podman and Docker read them, and how a challenge is read."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pytest

from mdl.sources.ociauth import find_login, parse_challenge


def auths(path: Path, host: str, user: str, password: str, **more: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    path.write_text(json.dumps({"auths": {host: {"auth": auth}}, **more}))


def test_a_bearer_challenge_is_read() -> None:
    scheme, params = parse_challenge(
        'Bearer realm="https://auth.example/token",service="registry.example",'
        'scope="repository:a/b:pull,push"'
    )
    assert scheme == "bearer"
    assert params == {
        "realm": "https://auth.example/token",
        "service": "registry.example",
        "scope": "repository:a/b:pull,push",
    }
    assert parse_challenge('Basic realm="x"') == ("basic", {"realm": "x"})


def test_logins_are_read_in_podmans_order_then_dockers(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = {"HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config")}
    assert find_login("r.example:5000", env) is None
    auths(home / ".docker" / "config.json", "https://r.example:5000", "docker", "d")
    assert find_login("r.example:5000", env).username == "docker"  # type: ignore[union-attr]
    auths(home / ".config" / "containers" / "auth.json", "r.example:5000", "podman", "p")
    assert find_login("r.example:5000", env).username == "podman"  # type: ignore[union-attr]
    given = tmp_path / "given.json"
    auths(given, "r.example:5000", "given", "g")
    login = find_login("r.example:5000", {**env, "REGISTRY_AUTH_FILE": str(given)})
    assert login is not None and (login.username, login.password) == ("given", "g")
    other = tmp_path / "dockercfg"
    auths(other / "config.json", "other.example", "elsewhere", "e")
    only_docker = {"HOME": str(tmp_path / "nobody"), "DOCKER_CONFIG": str(other)}
    assert find_login("other.example", only_docker).username == "elsewhere"  # type: ignore[union-attr]
    assert find_login("r.example:5000", only_docker) is None


def test_a_file_that_is_not_json_is_skipped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    broken = tmp_path / "auth.json"
    broken.write_text("{not json")
    assert (
        find_login("r.example", {"HOME": str(tmp_path), "REGISTRY_AUTH_FILE": str(broken)}) is None
    )
    assert "not valid JSON" in caplog.text


def test_a_credential_helper_is_asked(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    helper = bin_dir / "docker-credential-fake"
    helper.write_text(
        "#!/bin/sh\nread host\n"
        'if [ "$host" = "r.example" ]; then echo \'{"Username":"robot","Secret":"tok3n"}\'; exit 0; fi\n'
        "echo 'credentials not found' >&2; exit 1\n"
    )
    helper.chmod(0o755)
    home = tmp_path / "home"
    (home / ".docker").mkdir(parents=True)
    (home / ".docker" / "config.json").write_text(
        json.dumps({"credHelpers": {"r.example": "fake"}})
    )
    env = {"HOME": str(home), "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    login = find_login("r.example", env)
    assert login is not None and (login.username, login.password) == ("robot", "tok3n")
    assert find_login("elsewhere.example", env) is None
    # what docker login leaves with a store: an empty auths entry, the secret in the store
    config = {"auths": {"r.example": {}}, "credsStore": "fake"}
    (home / ".docker" / "config.json").write_text(json.dumps(config))
    assert find_login("r.example", env) is not None  # the default store, for every registry
    assert find_login("elsewhere.example", env) is None  # it has none for this one
