"""mdl add --signed-by as a catalog edit: where the ``signature`` table goes in each layout, what of
an existing one stays, how the key's path is written, and that every result reads back as exactly
that signer."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from profiles import examples

from mdl.catalog._entry import key_as_written
from mdl.catalog.edit import add_entry, parse_source
from mdl.catalog.load import parse_catalog
from mdl.errors import UsageError

FOLDER = Path("/proj")  # the catalog's folder
KEY = FOLDER / "keys" / "alice.pub"


def signed(text: str, name: str, key: Path = KEY, **options: object) -> str:
    edit = add_entry(text, name, [], signed_by=key, folder=FOLDER, **options)  # type: ignore[arg-type]
    trust = parse_catalog(edit.text, path=FOLDER / "catalog.toml").get(name).signature
    assert trust is not None and trust.key == key  # read back: the key given
    return edit.text


def test_the_keys_path_is_relative_inside_the_catalogs_folder_else_absolute(tmp_path: Path) -> None:
    assert key_as_written(FOLDER / "keys" / "a.pub", FOLDER) == "keys/a.pub"
    assert key_as_written(FOLDER / "a.pub", FOLDER) == "a.pub"
    assert key_as_written(Path("/proj/keys/../a.pub"), Path("/proj/sub/..")) == "a.pub"
    # a sibling, not inside
    assert key_as_written(Path("/proj-other/a.pub"), FOLDER) == "/proj-other/a.pub"
    assert key_as_written(Path("/etc/keys/a.pub"), FOLDER) == "/etc/keys/a.pub"
    # relative ones: from the current folder
    assert key_as_written(Path("keys/a.pub"), Path()) == "keys/a.pub"
    assert key_as_written(Path("keys/a.pub"), tmp_path) == str(Path.cwd() / "keys" / "a.pub")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(  # after the last value and the comment under it, before the blank line
            '[models.x]\nrepo = "o/x"  # mine\n# about x\n\n# y\n[models.y]\nrepo = "o/y"\n',
            '[models.x]\nrepo = "o/x"  # mine\n# about x\nsignature = { key = "keys/alice.pub"'
            ' }\n\n# y\n[models.y]\nrepo = "o/y"\n',
            id="table",
        ),
        pytest.param(
            '[models.x]\ndescription = "X"\nfiles = [\n  { repo = "o/x", path = "a.bin" },  #'
            " a\n]\n",
            '[models.x]\ndescription = "X"\nfiles = [\n  { repo = "o/x", path = "a.bin" },  #'
            ' a\n]\nsignature = { key = "keys/alice.pub" }\n',
            id="files-array",
        ),
        pytest.param(
            '[models]\nx = { repo = "o/x" }  # one line\n',
            '[models]\nx = { repo = "o/x", signature = { key = "keys/alice.pub" } }  # one line\n',
            id="inline",
        ),
        pytest.param(
            '[models.x]\r\nrepo = "o/x"  # no line break at the end',
            '[models.x]\r\nrepo = "o/x"  # no line break at the end\r\nsignature = { key ='
            ' "keys/alice.pub" }\r\n',
            id="crlf-unterminated",
        ),
        pytest.param(
            '[models.x]\n  repo = "o/x"\n  # the signer\n  [models.x.signature]  # ours\n  key ='
            ' "old.pub"  # rotated\n  file = "m.sig"\n',
            '[models.x]\n  repo = "o/x"\n  # the signer\n  [models.x.signature]  # ours\n'
            '  key = "keys/alice.pub"  # rotated\n  file = "m.sig"\n',
            id="sub-table-key",
        ),
        pytest.param(
            '[models.x]\nrepo = "o/x"\nsignature = { certificates = ["ca.pem"], file = "x.sig" }  #'
            " vendor\n",
            '[models.x]\nrepo = "o/x"\nsignature = { key = "keys/alice.pub", file = "x.sig" }  #'
            " vendor\n",
            id="inline-certificates",
        ),
    ],
)
def test_the_signature_goes_where_a_person_writes_it_and_every_other_byte_stays(
    text: str, expected: str
) -> None:
    assert signed(text, "x", force=True) == expected


def test_files_written_as_tables_of_an_array_take_it_too() -> None:
    text = '# pack\n[[models.x.files]]\nrepo = "o/x"\npath = "a.bin"  # first\n'
    out = signed(text, "x")
    assert tomllib.loads(out)["models"]["x"] == {
        "signature": {"key": "keys/alice.pub"},
        **tomllib.loads(text)["models"]["x"],
    }
    assert "# pack" in out and "# first" in out


def test_a_new_entry_has_it_last_and_a_replaced_one_keeps_it() -> None:
    text = '[models.x]\nrepo = "o/x"\n'
    edit = add_entry(
        text, "y", [parse_source("hf://o/y")], description="Y", signed_by=KEY, folder=FOLDER
    )
    assert edit.action == "added"
    assert (
        edit.text
        == text
        + '\n[models.y]\ndescription = "Y"\nrepo = "o/y"\nsignature = { key = "keys/alice.pub" }\n'
    )
    # another repo: the signer stays
    edit = add_entry(edit.text, "y", [parse_source("hf://o/z")], force=True)
    assert tomllib.loads(edit.text)["models"]["y"]["signature"] == {"key": "keys/alice.pub"}


def test_the_same_key_changes_nothing_and_another_needs_force() -> None:
    text = '[models.x]\nrepo = "o/x"\nsignature = { key = "./keys/../keys/alice.pub" }\n'
    assert add_entry(text, "x", [], signed_by=KEY, folder=FOLDER).action == "unchanged"
    with pytest.raises(
        UsageError,
        match=r"models\.x\.signature already trusts the key \./keys/\.\./keys/alice\.pub",
    ):
        add_entry(text, "x", [], signed_by=FOLDER / "bob.pub", folder=FOLDER)
    keyless = (
        '[models.x]\nrepo = "o/x"\n[models.x.signature]\nidentity = "me@example.com"\nissuer ='
        ' "https://id"\n'
    )
    with pytest.raises(
        UsageError, match=r"already trusts me@example\.com \(https://id\); pass --force"
    ):
        add_entry(keyless, "x", [], signed_by=KEY, folder=FOLDER)
    with pytest.raises(UsageError, match=r"models\.nope is not in the catalog: give a SOURCE"):
        add_entry(text, "nope", [], signed_by=KEY, folder=FOLDER)


def test_a_default_signer_in_settings_is_overridden_by_the_entrys_own() -> None:
    text = (
        '[settings.signature]\nidentity = "ci@example.com"\nissuer ='
        ' "https://id"\n\n[models.x]\nrepo = "o/x"\n'
    )
    assert signed(text, "x").endswith('repo = "o/x"\nsignature = { key = "keys/alice.pub" }\n')


HAND = """\
# My models.
[settings]
connections = 8   # the NAS

# A tiny model for smoke tests.
[models.tiny]       # keep this one first
description = "Tiny random BERT"
repo = "org/tiny"   # public
include = ["*.json", "*.safetensors"]  # no msgpack
# (pinned later)

[models.z]
files = [
  { repo = "org/z", path = "z.gguf" },
  # the VAE comes from the same repo
  { repo = "org/z", path = "ae.safetensors", as = "vae/ae.safetensors" },
]

[models.signed]
repo = "org/signed"
# vendor's trust
[models.signed.signature]   # keyless
identity = "ci@example.com"  # their CI
issuer = "https://id.example.com"

[models]
inline = { repo = "org/inline" }  # one line

# end of catalog
"""


@settings(max_examples=examples(60), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.sampled_from(["tiny", "z", "signed", "inline"]),
    where=st.sampled_from([KEY, FOLDER / "a" / "b" / "k.pub", Path("/elsewhere/k.pub")]),
    description=st.none() | st.text(max_size=12),
    tags=st.lists(st.text(min_size=1, max_size=6).filter(str.strip), max_size=2),
    crlf=st.booleans(),
)
def test_any_signer_with_any_description_and_tags_reads_back_and_keeps_every_comment(
    name: str, where: Path, description: str | None, tags: list[str], crlf: bool
) -> None:
    text = HAND.replace("\n", "\r\n") if crlf else HAND
    edit = add_entry(
        text,
        name,
        [],
        signed_by=where,
        folder=FOLDER,
        description=description,
        tags=tags,
        force=True,
    )
    model = parse_catalog(edit.text, path=FOLDER / "catalog.toml").get(name)
    assert (
        model.signature is not None
        and model.signature.key == where
        and model.signature.file == "model.sig"
    )
    if description is not None:
        assert model.description == description
    assert set(tags) <= set(model.tags)
    # the old signer's
    dropped = {'identity = "ci@example.com"  # their CI', 'issuer = "https://id.example.com"'}
    commented = [line for line in text.splitlines() if "#" in line and line not in dropped]
    after = edit.text.splitlines()
    assert [line for line in commented if line not in after] == (
        ['inline = { repo = "org/inline" }  # one line'] if name == "inline" else []
    )
    assert "# one line" in edit.text  # the one-line entry is written anew, its comment kept
    others = tomllib.loads(text)["models"]
    assert {k: v for k, v in tomllib.loads(edit.text)["models"].items() if k != name} == {
        k: v for k, v in others.items() if k != name
    }
    if crlf:  # the new lines end as the others do
        assert "\n" not in edit.text.replace("\r\n", "")
