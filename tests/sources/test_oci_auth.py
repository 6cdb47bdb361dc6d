"""oci:// through a gate in front of a real distribution registry: the Bearer token handshake with
a login from the places users keep it, a token that expires mid-blob renewed without restarting
the blob, a registry that ignores Range, a 307 to its storage (the Authorization never follows)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from registry import NEEDS_REGISTRY, DistributionRegistry, RegistryGate, registry_gate
from runfixtures import mdl
from servers import make_data

from mdl.transfer import scheduling
from mdl.transfer.scheduling import SPLIT_THRESHOLD

pytestmark = NEEDS_REGISTRY
BIG = make_data(SPLIT_THRESHOLD + 5000, seed=11)  # fetched as parallel ranges
FILES = {"config.json": b'{"a": 1}', "model.safetensors": BIG}
LOGIN = ("robot$team", "s3cret-passw0rd")


@pytest.fixture(scope="module")
def registry(plain_registry: DistributionRegistry) -> DistributionRegistry:
    plain_registry.push_model("team/big", "v1", FILES)
    plain_registry.push_model("team/one", "v1", {"model.safetensors": BIG})
    return plain_registry


@pytest.fixture
def gate(registry: DistributionRegistry) -> Iterator[RegistryGate]:
    with registry_gate(registry.url) as started:
        yield started


def fetched(folder: Path) -> dict[str, bytes]:
    return {name: (folder / name).read_bytes() for name in FILES}


def docker_login(home: Path, host: str, login: tuple[str, str] = LOGIN) -> None:
    auth = base64.b64encode(":".join(login).encode()).decode()
    (home / ".docker").mkdir(exist_ok=True)
    (home / ".docker" / "config.json").write_text(json.dumps({"auths": {host: {"auth": auth}}}))


def host_of(gate: RegistryGate) -> str:
    return gate.url.removeprefix("http://")


def test_the_token_handshake_with_a_docker_login(
    gate: RegistryGate, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate.token_auth, gate.login = True, LOGIN
    docker_login(Path.home(), host_of(gate))
    log = tmp_path / "mdl.log"
    monkeypatch.setenv("MDL_LOG_FILE", str(log))
    done = mdl("get", f"oci://{host_of(gate)}/team/big:v1", "-d", str(tmp_path / "d"), "--json")
    assert done.exit_code == 0, done.stderr
    assert fetched(tmp_path / "d") == FILES
    assert len(gate.requests()) and [s for s in gate.requests() if s.path.startswith("/token")]
    told = done.stdout + done.stderr + log.read_text()
    issued = list(gate.tokens)
    for secret in [LOGIN[1], base64.b64encode(":".join(LOGIN).encode()).decode(), *issued]:
        assert secret not in told


def test_no_login_where_the_token_service_wants_one_is_exit_3(
    gate: RegistryGate, tmp_path: Path
) -> None:
    gate.token_auth, gate.login = True, LOGIN
    done = mdl("get", f"oci://{host_of(gate)}/team/big:v1", "-d", str(tmp_path))
    assert done.exit_code == 3, done.stderr
    assert "token service" in done.stderr and "docker login" in done.stderr


def test_the_login_from_registry_auth_file(
    gate: RegistryGate, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate.token_auth, gate.login = True, LOGIN
    auth_file = tmp_path / "auth.json"
    auth = base64.b64encode(":".join(LOGIN).encode()).decode()
    auth_file.write_text(json.dumps({"auths": {host_of(gate): {"auth": auth}}}))
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(auth_file))
    docker_login(Path.home(), host_of(gate), ("someone", "else"))  # read after auth.json
    done = mdl("get", f"oci://{host_of(gate)}/team/big:v1", "-d", str(tmp_path / "d"))
    assert done.exit_code == 0, done.stderr


def test_a_token_that_expires_mid_blob_is_renewed_and_no_range_is_asked_twice(
    gate: RegistryGate, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # two ranges of one blob at once on a token good for two requests (the manifest took one):
    # one range is refused, a token renewed, that range asked again, the other never (the blob in
    # two pieces, and no stream stealing the other's tail: the count the test asserts is set here,
    # not by the engine's piece size or which stream ends first)
    monkeypatch.setattr(scheduling, "KEEP_AHEAD", len(BIG))  # (two streams: halves)
    monkeypatch.setattr(scheduling, "MIN_STEAL", len(BIG))
    gate.token_auth, gate.token_uses = True, 2
    where = f"oci://{host_of(gate)}/team/one:v1"
    done = mdl("get", where, "-d", str(tmp_path), "--connections", "2")
    assert done.exit_code == 0, done.stderr
    assert (tmp_path / "model.safetensors").read_bytes() == BIG
    assert len([s for s in gate.requests() if s.path.startswith("/token")]) == 2
    ranges = [s for s in gate.requests() if "/blobs/" in s.path]
    refused = [s.range for s in ranges if not s.admitted]
    asked = [s.range for s in ranges if s.admitted]
    assert len(refused) == 1 and refused[0] in asked  # the refused range, asked again
    assert len(asked) == 2 and None not in asked and len(set(asked)) == 2


def test_a_registry_that_ignores_range(gate: RegistryGate, tmp_path: Path) -> None:
    gate.ignore_range = True
    done = mdl("get", f"oci://{host_of(gate)}/team/big:v1", "-d", str(tmp_path))
    assert done.exit_code == 0, done.stderr
    assert fetched(tmp_path) == FILES


def test_a_307_to_storage_never_carries_the_authorization(
    gate: RegistryGate, tmp_path: Path
) -> None:
    gate.token_auth, gate.redirect_blobs = True, True
    done = mdl("get", f"oci://{host_of(gate)}/team/big:v1", "-d", str(tmp_path))
    assert done.exit_code == 0, done.stderr
    assert fetched(tmp_path) == FILES
    at_storage = [s for s in gate.requests() if s.path.startswith("/storage")]
    assert at_storage and all(s.authorization is None for s in at_storage)
    at_registry = [
        s
        for s in gate.requests()
        if s.path.startswith("/v2/") and "/blobs/" in s.path and s.admitted
    ]
    assert at_registry and all(s.authorization for s in at_registry)


@pytest.mark.parametrize("token", ["a\r\nX-Injected: 1", "tok en", "é" * 8])
def test_a_token_no_header_can_carry_is_refused(
    gate: RegistryGate, tmp_path: Path, token: str
) -> None:
    gate.token_auth, gate.token_given = True, token
    done = mdl("get", f"oci://{host_of(gate)}/team/big:v1", "-d", str(tmp_path))
    assert done.exit_code == 5, done.stderr
    assert "holds no token mdl can send" in done.stderr


def test_basic_where_the_registry_asks_for_it(gate: RegistryGate, tmp_path: Path) -> None:
    gate.basic = LOGIN
    anonymous = mdl("get", f"oci://{host_of(gate)}/team/big:v1", "-d", str(tmp_path / "a"))
    assert anonymous.exit_code == 3, anonymous.stderr
    assert "docker login" in anonymous.stderr
    docker_login(Path.home(), host_of(gate))
    done = mdl("get", f"oci://{host_of(gate)}/team/big:v1", "-d", str(tmp_path / "d"))
    assert done.exit_code == 0, done.stderr
    assert fetched(tmp_path / "d") == FILES
    assert not [s for s in gate.requests() if s.path.startswith("/token")]


def test_a_blob_cut_short_is_resumed_where_it_stopped(gate: RegistryGate, tmp_path: Path) -> None:
    gate.cut_after = 5 << 20
    where = f"oci://{host_of(gate)}/team/one:v1"
    done = mdl("get", where, "-d", str(tmp_path), "--connections", "1")
    assert done.exit_code == 0, done.stderr
    assert (tmp_path / "model.safetensors").read_bytes() == BIG
    asked = [s.range for s in gate.requests() if "/blobs/" in s.path]
    assert len(asked) == 2 and asked[0] is None  # the whole blob, then what was left of it
    assert asked[1] is not None and not asked[1].startswith("bytes=0-")
