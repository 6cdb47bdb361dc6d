"""Issue 37 (D): the data a command exists to print never changes with the environment's secrets.

A secret equal to a word of the destination path, the repo, a file or the model name (the issue's
``AWS_SECRET_ACCESS_KEY=models mdl pull bert``, moto's ``testing`` in ``hf-internal-testing``) once
cut that word out of stdout, ``--json`` and the records. Real CLI runs on the loopback Hub and CDN:
every command's stdout is byte-identical with and without the secret, whether it is only in the
environment (``AWS_SECRET_ACCESS_KEY``), sent to the Hub (``HF_TOKEN``) or to a CDN through a
catalog header (``${MY_KEY}``).
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from profiles import examples
from runfixtures import mdl, use_catalog
from servers import CdnServer, HubServer, make_data

from mdl.store.register import register_dir

REPO = "hf-internal-testing/tiny-random-classifier"
MODEL = "distilbert-classifier"
FILES = {
    "config.json": b'{"hidden_size": 8}',
    "weights/important-shard.safetensors": make_data(30_000, seed=37),
}
NEUTRAL_KEY = "neutral-header-value-0123456789"
# Every word of the names the commands print: the folders (dest is <tmp>/models), the repo, the
# files, the models.
NAMES = (REPO, MODEL, *FILES, "direct-download/important-weights.bin", "models")
WORDS = sorted({w for name in NAMES for w in (*name.split("/"), *re.split(r"[/._-]", name)) if w})
CARRIERS = ("AWS_SECRET_ACCESS_KEY", "HF_TOKEN", "MY_KEY", "MDL_PASSWORD")


@pytest.fixture
def world(hub: HubServer, cdn: CdnServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A Hub model and a direct-URL model sent with a ``${MY_KEY}`` header; the catalog; cwd in
    tmp_path.
    """
    hub.add_repo(REPO, FILES)
    url = cdn.add_file("/files/important-weights.bin", make_data(5000, seed=38))
    use_catalog(
        tmp_path,
        monkeypatch,
        f'[models.{MODEL}]\nrepo = "{REPO}"\n\n[models.direct-download]\nfiles = [{{ url = "{url}",'
        ' headers = { X-Key = "${MY_KEY}" } }]\n',
        endpoint=hub.url,
    )
    monkeypatch.setenv("MY_KEY", NEUTRAL_KEY)
    monkeypatch.chdir(tmp_path)
    return tmp_path


COMMANDS: tuple[tuple[str, ...], ...] = (
    ("pull", "--all"),
    ("pull", "--all", "--json"),
    ("pull", MODEL, "--layout", "hf-cache"),
    ("pull", MODEL, "--layout", "hf-cache", "--json"),
    ("show", MODEL),
    ("show", MODEL, "--json"),
    ("show", MODEL, "--layout", "hf-cache", "--json"),
    ("show", "direct-download", "--json"),
    ("list",),
    ("list", "--json"),
    ("verify", "--all"),
    ("verify", "--all", "--json"),
    ("resolve", MODEL, "--json"),
    ("get", f"hf://{REPO}/weights/important-shard.safetensors", "-d", "fetched", "--json"),
    ("get", f"hf://{REPO}", "-d", "fetched"),
)


def outputs(folder: Path, env: dict[str, str]) -> list[tuple[int, str]]:
    """Each command's exit code and stdout, from an empty destination (so the records are written
    in this run).
    """
    for made in ("models", "fetched", "hf-home"):
        shutil.rmtree(folder / made, ignore_errors=True)
    shutil.rmtree(register_dir(), ignore_errors=True)  # where gets wrote: none yet either
    said = []
    for args in COMMANDS:
        result = mdl(*args, "--no-progress", env={"HF_HOME": str(folder / "hf-home"), **env})
        assert result.exit_code == 0, (args, result.stderr)
        said.append((result.exit_code, result.stdout))
    return said


def assert_same_data(hub: HubServer, folder: Path, secret: str, carrier: str) -> None:
    neutral = "hf_neutraltoken0123456789abcdef"
    hub.valid_tokens.update((secret, neutral))  # as HF_TOKEN, the Hub accepts either
    plain = outputs(folder, {"HF_TOKEN": neutral} if carrier == "HF_TOKEN" else {})
    with_secret = outputs(folder, {carrier: secret})
    for args, before, after in zip(COMMANDS, plain, with_secret, strict=True):
        assert before == after, (carrier, secret, args)
    assert "REDACTED" not in "".join(text for _, text in with_secret)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("secret", "carrier"),
    [
        # the issue's `AWS_SECRET_ACCESS_KEY=models mdl pull bert`
        ("models", "AWS_SECRET_ACCESS_KEY"),
        # moto's value, a word of models--hf-internal-testing--…
        ("testing", "AWS_SECRET_ACCESS_KEY"),
        # registered (sent as a header): a word of a file and of a URL's path
        ("important", "MY_KEY"),
        ("distilbert-classifier", "HF_TOKEN"),  # the model's name, sent to the Hub as the token
        ("tiny-random-classifier", "MDL_PASSWORD"),
    ],
)
def test_a_secret_equal_to_a_word_of_the_data_changes_no_byte_of_stdout(
    world: Path, hub: HubServer, secret: str, carrier: str
) -> None:
    assert_same_data(hub, world, secret, carrier)


@settings(
    max_examples=examples(5),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(secret=st.sampled_from(WORDS), carrier=st.sampled_from(CARRIERS))
def test_property_any_word_of_the_data_as_any_secret_changes_nothing(
    world: Path, hub: HubServer, secret: str, carrier: str
) -> None:
    assert_same_data(hub, world, secret, carrier)
