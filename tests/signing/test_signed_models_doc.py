"""docs/signed-models.md's publisher recipe, run as written: each line of its shell block in bash
(openssl, the official model_signing command, mdl add and mdl pull), the push (`hf upload`) done on
the loopback Hub by the test, and the install line held to the `sign` extra it names."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from servers import HubServer

ROOT = Path(__file__).parents[2]
DOC = (ROOT / "docs" / "signed-models.md").read_text(encoding="utf-8")
SAFETY_NET = 300  # seconds; only a hang reaches it


def recipe() -> list[str]:
    """The commands of the publisher's shell block (comments dropped)."""
    block = (
        DOC.split("The publisher, once per version", 1)[1].split("```sh\n", 1)[1].split("```", 1)[0]
    )
    return [re.sub(r"\s+#.*$", "", line).strip() for line in block.splitlines() if line.strip()]


def test_the_install_line_names_the_extra_that_brings_model_signing_and_openssl() -> None:
    (install,) = [line for line in recipe() if line.startswith("pip install")]
    extra = re.fullmatch(r"pip install 'mdl\[(\w+)\]'", install)
    assert extra is not None, install
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    wanted = {
        re.split(r"[<>=\[ ]", dep)[0].lower()
        for dep in pyproject["project"]["optional-dependencies"][extra[1]]
    }
    assert {"model_signing", "pyopenssl"} <= wanted


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("openssl") is None, reason="the recipe's key is made with openssl")
def test_the_publisher_recipe_run_as_written_pulls_a_verified_model(
    hub: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "my-model"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "bert"}\n')
    (folder / "model.safetensors").write_bytes(os.urandom(50_000))
    env = {
        **os.environ,
        # model_signing, mdl
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "HF_ENDPOINT": hub.url,
        "MDL_CATALOG": str(tmp_path / "catalog.toml"),
        "MDL_DEST": str(tmp_path / "models"),
        "MDL_LOG_FILE": str(tmp_path / "mdl.log"),
    }
    ran = []
    for line in recipe():
        if line.startswith("pip install"):
            continue  # the environment: held to pyproject's extra above
        if line.startswith("hf upload"):  # the push: the loopback Hub takes the folder as it is
            repo, local = shlex.split(line)[2:4]
            hub.add_repo(repo, {p.name: p.read_bytes() for p in (tmp_path / local).iterdir()})
            continue
        done = subprocess.run(
            ["bash", "-c", line],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=SAFETY_NET,
            check=False,
        )
        assert done.returncode == 0, f"{line}\n{done.stderr}{done.stdout}"
        ran.append(line.split()[0])
    assert ran == ["openssl", "openssl", "model_signing", "mdl"]
    assert (folder / "model.sig").is_file()  # inside the model, where the push takes it
    pulled = tmp_path / "models" / "my-model"
    assert (pulled / "model.sig").read_bytes() == (folder / "model.sig").read_bytes()
    assert (pulled / "model.safetensors").read_bytes() == (
        folder / "model.safetensors"
    ).read_bytes()
