"""Item 4 and 5 at every sink: no secret and no control character reaches stdout, stderr, --json,
the log or records.

The secrets come in every way the issue names: a catalog header from ``${CIVITAI_KEY}`` (a variable
whose name does not look secret), presigned URLs of other clouds (x-oss-signature, q-signature, jwt,
Authorization in the query), and a server that echoes the header value back in its 401 body, with
escape sequences around it.
"""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest
from runfixtures import mdl, parse_file_line, use_catalog
from servers import CdnServer, Fault, make_data
from typer.testing import Result

from mdl.cli.run import Run

CIVITAI = "civ-7f3a9b2c4d5e6f708192"  # the value of ${CIVITAI_KEY}
OSS_SIG = "ossSIG0a1b2c3d4e5f6a7b8c9d"
COS_SIG = "cosSIGf0e1d2c3b4a5968778695a4b"
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJtZGwifQ.c2lnbmF0dXJl"
AUTH = "authQUERY5566778899aabbccdd"
SECRETS = (CIVITAI, OSS_SIG, COS_SIG, JWT, AUTH)
DATA = make_data(50_000, seed=11)


def everything_written(result: Result, tmp_path: Path) -> dict[str, str]:
    """stdout, stderr, the log (and rotated logs) and every file under the destination's state
    folder.
    """
    sinks = {"stdout": result.stdout, "stderr": result.stderr}
    for path in sorted(tmp_path.rglob("*")):
        if path.is_file() and (path.name.startswith("mdl.log") or ".mdl" in path.parts):
            sinks[str(path.relative_to(tmp_path))] = path.read_text(
                encoding="utf-8", errors="replace"
            )
    return sinks


def assert_no_secret(sinks: dict[str, str]) -> None:
    for name, text in sinks.items():
        for secret in SECRETS:
            assert secret not in text, f"{secret} leaked into {name}"
        assert "\x1b" not in text and "\x07" not in text, f"a control character reached {name}"


@pytest.fixture
def served(cdn: CdnServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Files behind presigned-looking URLs, one that refuses the key echoing it, and a catalog
    naming them.
    """
    echo = f"invalid key {CIVITAI} for this file\x1b]0;pwned\x07\x1b[2J"
    cdn.faults.add(Fault.http_error(401, body=echo, path_prefix="/files/refused.bin", times=None))
    cdn.add_file("/files/refused.bin", DATA)
    urls = {
        "oss": (
            cdn.add_file("/files/oss.bin", DATA)
            + f"?Expires=1&OSSAccessKeyId=AK&x-oss-signature={OSS_SIG}"
        ),
        "cos": (
            cdn.add_file("/files/cos.bin", DATA) + f"?q-sign-algorithm=sha1&q-signature={COS_SIG}"
        ),
        "jwt": cdn.add_file("/files/jwt.bin", DATA) + f"?jwt={JWT}",
        "gone": f"{cdn.url}/files/gone.bin?Authorization={AUTH}",
        "refused": f"{cdn.url}/files/refused.bin",
    }
    header = 'headers = { X-Civitai = "${CIVITAI_KEY}" }'
    lines = ["[models.presigned]", "files = ["]
    lines += [f'  {{ url = "{urls[k]}", as = "{k}.bin" }},' for k in ("oss", "cos", "jwt", "gone")]
    lines += [
        "]",
        "",
        "[models.civitai]",
        f'files = [{{ url = "{urls["refused"]}", {header} }}]',
        "",
    ]
    use_catalog(tmp_path, monkeypatch, "\n".join(lines))
    monkeypatch.setenv("CIVITAI_KEY", CIVITAI)
    return urls


@pytest.mark.parametrize("verbose", [False, True])
def test_pull_json_keeps_every_secret_out_of_every_sink(
    served: dict[str, str], tmp_path: Path, verbose: bool
) -> None:
    args = ["pull", "presigned", "civitai", "--json", "--no-progress", *(["-v"] if verbose else [])]
    result = mdl(*args)
    assert result.exit_code == 3, result.stderr  # 401 (3) and 404 (4): the lowest above 1 wins
    doc = json.loads(result.stdout)
    actions = {f["path"]: f["action"] for f in doc["files"]}
    assert actions == {
        "oss.bin": "downloaded",
        "cos.bin": "downloaded",
        "jwt.bin": "downloaded",
        "gone.bin": "failed",
        "refused.bin": "failed",
    }
    errors = {f["path"]: f["error"] for f in doc["files"] if f["error"]}
    assert "REDACTED" in errors["refused.bin"]  # the server's echo is kept, the key in it is not
    assert "invalid key" in errors["refused.bin"]
    assert "gone.bin?REDACTED" in errors["gone.bin"]
    sinks = everything_written(result, tmp_path)
    # records were written, and checked
    assert any(".mdl/records" in name for name in sinks), sinks.keys()
    assert_no_secret(sinks)
    lines = [parse_file_line(line) for line in sinks["mdl.log"].splitlines() if " file " in line]
    refused = next(f for f in lines if f["path"] == "refused.bin")
    assert refused["status"] == "401"
    assert refused["server_text"].startswith("invalid key REDACTED for this file\\x1b]0;pwned\\x07")
    sources = {f["path"]: f["source"] for f in lines if f["action"] == "downloaded"}
    assert sources["oss.bin"].endswith("/files/oss.bin?REDACTED")
    assert sources["cos.bin"].endswith("/files/cos.bin?REDACTED")


def test_get_url_with_authorization_in_the_query_is_redacted_everywhere(
    served: dict[str, str], tmp_path: Path
) -> None:
    ok = served["jwt"].replace(f"jwt={JWT}", f"Authorization={AUTH}")
    result = mdl("get", ok, served["gone"], "-d", str(tmp_path / "out"), "--json", "-v")
    assert result.exit_code == 4, result.stderr
    doc = json.loads(result.stdout)
    assert [f["action"] for f in doc["files"]] == ["downloaded", "failed"]
    assert (tmp_path / "out" / "jwt.bin").read_bytes() == DATA
    assert_no_secret(everything_written(result, tmp_path))


def test_a_usage_error_naming_a_signed_url_is_redacted_in_json_and_stderr(tmp_path: Path) -> None:
    result = mdl("get", f"ftp://files.example/x.bin?q-signature={COS_SIG}", "--json")
    assert result.exit_code == 2
    assert_no_secret({"stdout": result.stdout, "stderr": result.stderr})


def test_show_prints_a_hostile_record_escaped_in_text_and_json(
    served: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A record written by an older mdl (or tampered with) holding a terminal escape and a signed
    URL.
    """
    records = tmp_path / "models" / ".mdl" / "records"
    records.mkdir(parents=True)
    hostile = "\x1b]0;pwned\x07\x1b[2Jdeadbeef"
    record = {
        "version": 1,
        "name": "civitai",
        "revision": None,
        "commit": hostile,
        "updated_at": "",
        "files": {
            "refused.bin": {
                "path": "refused.bin",
                "size": 3,
                "sha256": "0" * 64,
                "mtime_ns": 0,
                "source": f"{served['refused']}?x-oss-signature={OSS_SIG}",
            }
        },
    }
    (records / "civitai.json").write_text(json.dumps(record))
    for args in (("show", "civitai"), ("show", "civitai", "--json"), ("list",), ("list", "--json")):
        result = mdl(*args)
        assert result.exit_code == 0, result.stderr
        assert_no_secret({"stdout": result.stdout, "stderr": result.stderr})
    text = mdl("show", "civitai").stdout
    assert "commit:      \\x1b]0;pwned\\x07\\x1b[2Jdeadbeef" in text


def test_a_stored_hub_token_without_the_hf_prefix_is_never_shown(
    hub: object, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The token huggingface_hub stored (not in the environment, not shaped like hf_…), echoed by
    the Hub.
    """
    from servers import HubServer

    assert isinstance(hub, HubServer)
    stored = "private-hub-token-0123456789"
    hub.valid_tokens.add(stored)
    hub.add_repo("org/tiny", {"config.json": b"{}"})
    from huggingface_hub import constants

    # huggingface_hub fixes its token path when first imported (another test's HF_HOME): point it
    # here.
    token_file = tmp_path / "hf-home" / "token"
    token_file.parent.mkdir(parents=True)
    token_file.write_text(stored)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(token_file))
    echo = f"token {stored} has expired\x1b[2J"
    hub.faults.add(Fault.http_error(401, body=echo, headers={"X-Error-Message": echo}, times=None))
    use_catalog(tmp_path, monkeypatch, '[models.tiny]\nrepo = "org/tiny"\n', endpoint=hub.url)
    monkeypatch.setenv("MDL_RETRIES", "0")
    result = mdl("pull", "tiny", "--json", "-v")
    assert result.exit_code == 3, result.stderr
    sinks = everything_written(result, tmp_path)
    for name, text in sinks.items():
        assert stored not in text, f"the stored token leaked into {name}"
        assert "\x1b" not in text, name
    (line,) = [parse_file_line(x) for x in sinks["mdl.log"].splitlines() if " file " in x]
    assert line["status"] == "401"
    assert line["server_text"] == "token REDACTED has expired\\x1b[2J"


def test_a_variable_that_names_a_file_is_shown_its_credential_neighbours_are_not(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # HF_TOKEN_PATH is where a token is, not a token: an error about that file names it (the file's
    # contents, once read, are the run's secret)
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    paths = {
        "HF_TOKEN_PATH": "/run/secrets/hf-token",
        "AWS_SHARED_CREDENTIALS_FILE": "/home/u/.aws/credentials",
        "VAULT_SECRETS_DIR": "/var/lib/vault/secrets",
    }
    hidden = {
        "HF_TOKEN": "hf_0123456789abcdef",
        "MY_API_KEY": "key-0123456789",
        "DB_PASSWORD": "pw-9876543210",
    }
    run = Run(environ={**paths, **hidden}, logged=False)
    assert set(run.secrets.known()) == set(hidden.values())
