"""Issue 60, item 5: secrets are redacted at the sinks, so a part may build its messages from the
words it has. Proved here before the parts stopped redacting them: a run whose inputs carry every
kind of secret -- a Hub token (not shaped like ``hf_…``), an S3 secret key and the signatures of the
GETs presigned with it, a presigned URL's signature in a mirror template, a ``user:pass@`` URL, a
netrc password -- against servers that quote them back, shows none of them in any sink: the
``mdl: error:`` line, the warnings, the progress lines, the summary, ``--json`` (document and
events), the log file and a library caller's report."""

from __future__ import annotations

import base64
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from runfixtures import mdl, use_catalog
from servers import Exchange, Fault, HubServer, LoopbackServer

HUB_TOKEN = "hubtokenQ7x9Zr2Lm4Np6Ks8Vw"
AWS_SECRET = "awsSecretKey/Xy7Qw3Er5Ty8Ui0Op2As4Df6Gh"
SIGNATURE = "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90"
URL_PASSWORD = "urlPassW0rd-Secret99"
NETRC_PASSWORD = "netrcPassW0rd-Secret77"
SECRETS = (HUB_TOKEN, AWS_SECRET, SIGNATURE, URL_PASSWORD, NETRC_PASSWORD)
BUCKET = "fleet-mirror"


class Quoting(LoopbackServer):
    """A server that refuses everything, quoting what it was sent: the request target (query and
    all), the Authorization header and its Basic credentials decoded; as an S3 endpoint (a path
    under the bucket) the secret key too, as a broken store might."""

    name = "quoting"

    def route(self, ex: Exchange) -> None:
        auth = ex.headers.get("Authorization") or ""
        scheme, _, value = auth.partition(" ")
        decoded = ""
        if scheme.lower() == "basic":
            decoded = base64.b64decode(value).decode("utf-8", "replace")
        said = f"refused {ex.method} {ex.handler.path} (Authorization: {auth}; login {decoded})"
        if ex.path.startswith(f"/{BUCKET}"):
            said += f" with key {AWS_SECRET}"
        ex.send_bytes(403 if ex.path.startswith(f"/{BUCKET}") else 401, said.encode())


@pytest.fixture
def quoting() -> Iterator[Quoting]:
    with Quoting() as server:
        yield server


@pytest.fixture
def fleet(
    hub: HubServer, quoting: Quoting, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """A catalog with a Hub model its two mirrors (a presigned http one, an S3 bucket behind the
    quoting server) fail for, a Hub model whose refusal quotes the token, a ``user:pass@`` URL and
    a URL with a netrc login, both refused with their credentials quoted."""
    hub.valid_tokens.add(HUB_TOKEN)
    hub.add_repo("org/good", {"config.json": b'{"a": 1}'})
    hub.add_repo("org/refused", {"config.json": b"{}"})
    echo = f"the token {HUB_TOKEN} has no access to org/refused"
    hub.faults.add(
        Fault.http_error(
            403,
            body=echo,
            headers={"X-Error-Message": echo},
            path_prefix="/api/models/org/refused",
            times=None,
        )
    )
    mirrors = [
        f"{quoting.url}/signed/{{repo}}/{{path}}?X-Amz-Expires=60&X-Amz-Signature={SIGNATURE}",
        f"s3://{BUCKET}/{{repo}}/{{path}}",
    ]
    login = quoting.url.replace("://", f"://alice:{URL_PASSWORD}@") + "/login/model.bin"
    text = (
        f"[settings]\nmirrors = {json.dumps(mirrors)}\n\n"
        '[models.good]\nrepo = "org/good"\n\n'
        '[models.refused]\nrepo = "org/refused"\n\n'
        f'[models.login]\nfiles = [{{ url = "{login}" }}]\n\n'
        f'[models.netrc]\nfiles = [{{ url = "{quoting.url}/netrc/model.bin" }}]\n'
    )
    use_catalog(tmp_path, monkeypatch, text, endpoint=hub.url)
    netrc = tmp_path / "netrc"
    netrc.write_text(f"machine 127.0.0.1 login bob password {NETRC_PASSWORD}\n")
    for name, value in {
        "NETRC": str(netrc),
        "HF_TOKEN": HUB_TOKEN,
        "MDL_RETRIES": "0",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_ACCESS_KEY_ID": "AKIAMDLSINKTESTKEY01",
        "AWS_SECRET_ACCESS_KEY": AWS_SECRET,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": quoting.url,
    }.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_CONFIG_FILE"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def forms(secret: str) -> set[str]:
    """The secret as a sink could show it: raw, percent-encoded, JSON-escaped."""
    return {secret, quote(secret, safe=""), json.dumps(secret)[1:-1]}


def assert_hidden(secrets: set[str], sinks: dict[str, str]) -> None:
    for name, text in sinks.items():
        for secret in secrets:
            for form in forms(secret):
                assert form not in text, f"{form!r} reached {name}: {text[:3000]}"


def presigned_signatures(server: Quoting) -> set[str]:
    """The signatures of the GETs the run presigned for the S3 mirror (and its Basic logins)."""
    found = set()
    for record in server.log:
        found.update(re.findall(r"X-Amz-Signature=([0-9a-f]{64})", record.path))
        auth = record.headers.get("authorization", "")
        if auth.lower().startswith("basic "):
            found.add(auth.split(" ", 1)[1])
    return found


@pytest.mark.slow
def test_no_secret_reaches_any_sink(fleet: Path, quoting: Quoting) -> None:
    filling = mdl(
        "pull", "--all", "--fill-mirror", "--json", "--no-progress", "--dest", str(fleet / "fill")
    )
    machine = mdl(
        "pull", "--all", "--json", "--progress", "json", "-v", "--dest", str(fleet / "machine")
    )
    human = mdl("pull", "--all", "--progress", "plain", "-v", "--dest", str(fleet / "human"))
    login = quoting.url.replace("://", f"://alice:{URL_PASSWORD}@") + "/login/model.bin"
    got = mdl("get", login, "-d", str(fleet / "got"))
    got_json = mdl("get", login, "-d", str(fleet / "got"), "--json")
    for result in (machine, human, filling, got, got_json):
        assert result.exit_code == 3, (result.exit_code, result.stdout, result.stderr)
    import mdl as api

    report = api.pull(
        all=True, catalog=fleet / "catalog.toml", dest=fleet / "api", environ=dict(os.environ)
    )
    outcomes = {o.model: o for o in report.files}
    # the runs got where the secrets are quoted: a refusal of each kind, a warning of each mirror
    doc = json.loads(machine.stdout)
    by_model = {f["model"]: f for f in doc["files"]}
    assert by_model["good"]["action"] == "downloaded", by_model["good"]
    warning = by_model["good"]["warning"]
    assert "signed" in warning and BUCKET in warning, warning
    assert {"refused", "login", "netrc"} <= {m for m, f in by_model.items() if f.get("error")}
    assert "REDACTED" in human.stderr and "mdl: warning:" in human.stderr
    assert "mdl: error:" in got.stderr and "refused GET" in got.stderr
    assert "cannot be" in filling.stderr or "not filling" in filling.stderr, filling.stderr
    events = [json.loads(line) for line in machine.stderr.splitlines()]
    assert events[0]["event"] == "begin" and events[-1]["event"] == "end"
    log_text = (fleet / "mdl.log").read_text(encoding="utf-8")
    assert "refused GET" in log_text and "server_text=" in log_text
    api_texts = [
        text
        for o in outcomes.values()
        for text in (o.error, o.hint, o.warning, o.server_text, *o.retries)
        if text
    ]
    assert outcomes["good"].action == "downloaded" and outcomes["refused"].error
    sinks = {
        "pull --json stdout": machine.stdout,
        "pull --progress json events": machine.stderr,
        "pull stderr (progress lines, warnings, errors, summary)": human.stderr,
        "pull stdout": human.stdout,
        "pull --fill-mirror --json stdout": filling.stdout,
        "pull --fill-mirror stderr": filling.stderr,
        "get stderr (the error line)": got.stderr,
        "get --json stdout": got_json.stdout,
        "log file": log_text,
        "a library caller's report": "\n".join(api_texts),
    }
    signatures = presigned_signatures(quoting)
    assert any(len(s) == 64 for s in signatures), "no GET was presigned for the S3 mirror"
    assert_hidden({*SECRETS, *signatures}, sinks)
