"""An offline key check loads only what it runs (issue 53): not sigstore's keyless client, its TUF
updater, Rekor, securesystemslib (boto3 through it) or pyOpenSSL, which model_signing's package
imports for its other verifiers. A certificate or keyless check still loads them when it needs
them. Checked on fresh processes: a pytest process may have imported model_signing already."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import trustme
from servers import HubServer
from signkeys import key_pair, official, official_sign, write_files

ROOT = Path(__file__).resolve().parents[2]
FILES = {"config.json": b'{"model_type": "bert"}\n', "w.bin": b"weights" * 1000}
# what a key check never runs (boto3: a Hub pull loads no bucket client either)
NOT_FOR_A_KEY = ("sigstore", "tuf", "securesystemslib", "rekor_types", "OpenSSL", "boto3")

# Runs `mdl ARGV` as the console script does, then writes which of the modules named in argv[1]
# (JSON) were loaded, and whether model_signing was.
PROBE = """\
import atexit, json, sys
watch, out = json.loads(sys.argv[1]), sys.argv[2]
atexit.register(
    lambda: open(out, "w").write(
        json.dumps([m for m in ["model_signing", *watch] if m in sys.modules])
    )
)
sys.argv = ["mdl", *sys.argv[3:]]
from mdl.__main__ import main
main()
"""


def test_a_first_pull_checked_with_a_key_loads_no_keyless_or_certificate_machinery(
    world: Path, hub: HubServer, tmp_path: Path
) -> None:
    private, public = key_pair(tmp_path / "keys")
    signature = official_sign(write_files(tmp_path / "upstream", FILES), private)
    hub.add_repo("org/tiny", {**FILES, "model.sig": signature})
    world.write_text(
        f'[models.tiny]\nrepo = "org/tiny"\n\n[models.tiny.signature]\nkey = "{public}"\n'
    )
    out = tmp_path / "loaded.json"
    done = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(NOT_FOR_A_KEY), str(out), "pull", "tiny"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=dict(os.environ),
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(out.read_text()) == ["model_signing"]  # it verified, with none of them
    assert (tmp_path / "models" / "tiny" / "model.sig").read_bytes() == signature


CHECKS = """\
import sys
from pathlib import Path
from mdl.errors import NetworkError
from mdl.signing import Trust, verify_signature
signature = Path(sys.argv[1]).read_bytes()
print(sorted(verify_signature(signature, Trust(key=Path(sys.argv[3])), what="m").files))
print("OpenSSL" in sys.modules, "sigstore" in sys.modules)
chain = Trust(certificates=(Path(sys.argv[2]),))
print(sorted(verify_signature(Path(sys.argv[4]).read_bytes(), chain, what="m").files))
try:
    verify_signature(signature, Trust(identity="a@example.com", issuer="https://example.com"), what="m")
except NetworkError as exc:
    print(exc.message.startswith("m: keyless (sigstore) verification needs sigstore's trust root"))
"""


def test_a_certificate_or_keyless_check_after_a_key_check_loads_what_it_needs(
    tmp_path: Path,
) -> None:
    # keyless: sigstore refreshes its trust root over TUF, every request to a closed port on
    # 127.0.0.1
    proxies = ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "https_proxy", "http_proxy", "all_proxy")
    env = {k: v for k, v in os.environ.items() if k not in {"NO_PROXY", "no_proxy"}}
    env.update(dict.fromkeys(proxies, "http://127.0.0.1:9"))
    private, public = key_pair(tmp_path / "keys")
    by_key = official_sign(write_files(tmp_path / "by-key", FILES), private)
    ca = trustme.CA()
    leaf = ca.issue_cert("signer.example.com")
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    leaf.private_key_pem.write_to_path(str(tmp_path / "leaf.key"))
    leaf.cert_chain_pems[0].write_to_path(str(tmp_path / "leaf.pem"))
    folder = write_files(tmp_path / "by-cert", FILES)
    done = official(
        "sign", "certificate", str(folder), "--private_key", str(tmp_path / "leaf.key"),
        "--signing_certificate", str(tmp_path / "leaf.pem"), "--certificate_chain", str(tmp_path / "ca.pem"),
        "--signature", str(folder / "model.sig"),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    (tmp_path / "by-key.sig").write_bytes(by_key)
    run = subprocess.run(
        [
            sys.executable,
            "-c",
            CHECKS,
            str(tmp_path / "by-key.sig"),
            str(tmp_path / "ca.pem"),
            str(public),
            str(folder / "model.sig"),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    names = str(sorted(FILES))
    assert run.stdout.splitlines() == [names, "False False", names, "True"], run.stdout
