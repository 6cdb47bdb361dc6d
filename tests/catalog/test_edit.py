"""Style-preserving catalog edits: what mdl add and mdl remove change, and every byte they must
not.
"""

from __future__ import annotations

import tomllib
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from profiles import examples

from mdl.catalog.edit import add_entry, parse_source, remove_entry
from mdl.catalog.load import parse_catalog
from mdl.errors import UsageError

HEX = "ab" * 32

# A hand-written catalog with comments everywhere a person puts them: above, beside and under
# entries, inside a multi-line files array, free-standing between entries, and at the very end.
HAND = """\
# My models. Pulled nightly by cron on the GPU boxes.
version = 1

[settings]
dest = "~/models"   # the big disk
connections = 8

# A tiny model for smoke tests.
[models.tiny]       # keep this one first
description = "Tiny random BERT"
repo = "org/tiny"   # public
include = ["*.json", "*.safetensors"]  # no msgpack

# ---- image models --------------------------------------------------------

# Z-Image Turbo and its helpers, from three repos.
[models.z-image-turbo]
files = [
  { repo = "leejet/Z-Image-Turbo-GGUF", path = "z_image_turbo-Q8_0.gguf" },
  # the VAE comes from FLUX
  { repo = "black-forest-labs/FLUX.1-schnell", path = "ae.safetensors", as = "vae/ae.safetensors" },
]
# (text encoder still to add)

[models."style.lora"]
files = [{ url = "https://cdn.example.com/loras/style.safetensors", sha256 = "HEX" }]

# end of catalog
""".replace("HEX", HEX)


def add(text: str, name: str, *sources: str, **options: Any) -> str:
    edit = add_entry(text, name, [parse_source(s) for s in sources], **options)
    parse_catalog(edit.text)  # every result is a valid catalog
    return edit.text


def lines_without(text: str, removed: str) -> list[str]:
    """The text's lines with the block ``removed`` (whole lines) taken out once."""
    assert removed in text, removed
    return text.replace(removed, "", 1).splitlines()


def test_a_new_model_goes_after_the_last_one_and_every_other_byte_stays() -> None:
    out = add(HAND, "qwen", "hf://unsloth/Qwen3-4B@v2", include=["*.gguf"], exclude=["*F16*"])
    block = (
        '\n[models.qwen]\nrepo = "unsloth/Qwen3-4B"\nrevision = "v2"\ninclude = ["*.gguf"]\nexclude'
        ' = ["*F16*"]\n'
    )
    assert lines_without(out, block) == HAND.splitlines()
    assert out.endswith(block + "\n# end of catalog\n")  # the closing comment stays last, apart
    assert tomllib.loads(out)["models"]["qwen"] == {
        "repo": "unsloth/Qwen3-4B",
        "revision": "v2",
        "include": ["*.gguf"],
        "exclude": ["*F16*"],
    }


def test_a_file_is_appended_inside_the_array_keeping_its_comments() -> None:
    out = add(
        HAND,
        "z-image-turbo",
        "hf://unsloth/Qwen3-4B-Instruct-2507-GGUF/Qwen3-4B-Instruct-2507-Q8_0.gguf",
    )
    new = (
        '  { repo = "unsloth/Qwen3-4B-Instruct-2507-GGUF", path ='
        ' "Qwen3-4B-Instruct-2507-Q8_0.gguf" },\n'
    )
    assert lines_without(out, new) == HAND.splitlines()
    assert out.index(new) < out.index("]\n# (text encoder still to add)")
    files = tomllib.loads(out)["models"]["z-image-turbo"]["files"]
    assert [f["path"] for f in files][-1] == "Qwen3-4B-Instruct-2507-Q8_0.gguf"


def test_a_one_line_array_stays_on_one_line() -> None:
    out = add(
        HAND,
        "style.lora",
        "https://cdn.example.com/loras/extra.safetensors",
        save_as="extra/x.safetensors",
    )
    line = next(line for line in out.splitlines() if line.startswith("files = [{ url"))
    assert line.endswith(
        ', { url = "https://cdn.example.com/loras/extra.safetensors", as = "extra/x.safetensors" }]'
    )
    assert len(out.splitlines()) == len(HAND.splitlines())


@pytest.mark.parametrize(
    "array",
    [
        'files = [\n  { url = "https://h/a.bin" }\n]\n',  # no trailing comma
        # ']' after the last
        'files = [{ url = "https://h/a.bin" },\n         { url = "https://h/b.bin" }]\n',
        'files = [{ url = "https://h/a.bin" },]\n',
        'files = [  # a comment, with a comma, and a ]\n  { url = "https://h/a.bin" },  # x ]\n]\n',
    ],
)
def test_files_arrays_in_any_style_get_the_new_file(array: str) -> None:
    text = f"[models.m]\n{array}\n[models.n]\nrepo = 'o/n'\n"
    out = add(text, "m", "hf://datasets/o/d@refs/pr/1/data/x.parquet")
    files = tomllib.loads(out)["models"]["m"]["files"]
    assert files[-1] == {
        "repo": "o/d",
        "path": "data/x.parquet",
        "revision": "refs/pr/1",
        "repo_type": "dataset",
    }
    assert out.endswith("\n[models.n]\nrepo = 'o/n'\n")


def test_files_as_tables_of_an_array_get_one_more_table_and_keep_every_comment() -> None:
    text = (
        "# top\n[models.m]  # m\ndescription = 'two'\n\n[[models.m.files]]  # the first\nrepo ="
        ' "o/a"  # a\npath = "a.bin"\n# about a\n\n[[models.m.files]]  # the second\nurl ='
        ' "https://h/b.bin"\n[models.m.files.headers]  # its headers\nX-Team = "render"\n# under'
        " the headers\n\n# above settings\n[settings]\njobs = 2\n"
    )
    out = add(text, "m", "hf://o/c/c.bin")
    assert tomllib.loads(out)["models"]["m"]["files"] == [
        {"repo": "o/a", "path": "a.bin"},
        {"url": "https://h/b.bin", "headers": {"X-Team": "render"}},
        {"repo": "o/c", "path": "c.bin"},
    ]
    assert out == text.replace(
        "# under the headers\n\n",
        '# under the headers\n\n[[models.m.files]]\nrepo = "o/c"\npath = "c.bin"\n\n',
    )


def test_models_written_as_one_inline_table_are_edited_with_tomlkit() -> None:
    text = '# mine\nmodels = { a = { repo = "o/a" } }  # inline\n'
    out = add(text, "b", "hf://o/b")
    assert tomllib.loads(out)["models"] == {"a": {"repo": "o/a"}, "b": {"repo": "o/b"}}
    assert out.startswith("# mine\n")


def test_the_same_request_twice_changes_nothing() -> None:
    assert (
        add_entry(
            HAND, "tiny", [parse_source("hf://org/tiny@main")], include=["*.json", "*.safetensors"]
        ).action
        == "unchanged"
    )
    again = add_entry(
        HAND,
        "z-image-turbo",
        [parse_source("hf://leejet/Z-Image-Turbo-GGUF/z_image_turbo-Q8_0.gguf")],
    )
    assert (again.action, again.text) == ("unchanged", HAND)


def test_contradictions_are_refused_naming_the_entry_and_force_replaces() -> None:
    with pytest.raises(
        UsageError, match=r"models.tiny is already a whole-repo snapshot of org/tiny; pass --force"
    ):
        add(HAND, "tiny", "hf://org/other")
    with pytest.raises(
        UsageError,
        match=r"models\.tiny is a whole-repo snapshot of org/tiny; files cannot be added",
    ):
        add(HAND, "tiny", "hf://org/tiny/config.json")
    with pytest.raises(
        UsageError, match=r"models.z-image-turbo.files\[1\] already saves to 'vae/ae.safetensors'"
    ):
        add(HAND, "z-image-turbo", "hf://other/vae/ae.safetensors", save_as="vae/ae.safetensors")
    out = add(HAND, "tiny", "hf://org/other", force=True)
    assert tomllib.loads(out)["models"]["tiny"] == {
        "description": "Tiny random BERT",
        "repo": "org/other",
    }
    assert out.startswith(HAND[: HAND.index("[models.tiny]")])  # the comment above it stays
    assert out.endswith(HAND[HAND.index("\n# ---- image models") :])
    out = add(
        HAND,
        "z-image-turbo",
        "hf://other/vae/x.safetensors",
        save_as="vae/ae.safetensors",
        force=True,
    )
    assert tomllib.loads(out)["models"]["z-image-turbo"]["files"][1]["repo"] == "other/vae"


@pytest.mark.parametrize(
    ("sources", "options", "message"),
    [
        (("hf://o/a", "hf://o/b"), {}, "a whole repo is one SOURCE"),
        (("hf://o/a/x.bin",), {"include": ["*"]}, "--include and --exclude filter a whole repo"),
        (("hf://o/a",), {"save_as": "x"}, "--as and --sha256 are for one file"),
        (("hf://o/a/x", "hf://o/a/y"), {"sha256": HEX}, "apply to a single SOURCE"),
    ],
)
def test_flags_that_do_not_fit_the_sources_are_usage_errors(
    sources: tuple[str, ...], options: dict[str, Any], message: str
) -> None:
    with pytest.raises(UsageError, match=message):
        add(HAND, "new", *sources, **options)


@pytest.mark.parametrize(
    "source", ["owner/name", "s3://b/k", "hf://onlyname", "hf://o/n/../x", "ftp://h/x"]
)
def test_sources_that_are_not_hub_uris_or_urls_are_refused(source: str) -> None:
    with pytest.raises(UsageError):
        parse_source(source)


def test_a_bare_repo_id_gets_a_hint() -> None:
    with pytest.raises(UsageError) as info:
        parse_source("org/tiny")
    assert info.value.hint == "write it as hf://org/tiny"


def test_remove_takes_the_entry_and_its_comments_but_not_the_next_ones() -> None:
    out = remove_entry(HAND, "tiny")
    gone = (
        "# A tiny model for smoke tests.\n[models.tiny]       # keep this one first\n"
        'description = "Tiny random BERT"\nrepo = "org/tiny"   # public\n'
        'include = ["*.json", "*.safetensors"]  # no msgpack\n\n'
    )
    assert out == HAND.replace(gone, "", 1)
    out = remove_entry(HAND, "z-image-turbo")
    assert (
        "# ---- image models" in out
        and "Z-Image" not in out
        and "(text encoder still to add)" not in out
    )
    assert out.replace("\n\n\n", "\n\n") == out  # never two blank lines where the entry was
    assert "tiny" in tomllib.loads(out)["models"]


def test_remove_of_the_last_entry_leaves_no_trailing_blank_lines() -> None:
    text = '[settings]\njobs = 2\n\n[models.a]\nrepo = "o/a"\n'
    assert remove_entry(text, "a") == "[settings]\njobs = 2\n"
    assert remove_entry(remove_entry(HAND, "style.lora"), "tiny").endswith("# end of catalog\n")


def test_remove_handles_inline_and_out_of_order_entries() -> None:
    text = (
        '[models]\na = { repo = "o/a" }  # one line\nb = { repo = "o/b" }\n\n[models.c]\nrepo ='
        ' "o/c"\n'
    )
    assert remove_entry(text, "a") == '[models]\nb = { repo = "o/b" }\n\n[models.c]\nrepo = "o/c"\n'
    split = '[models.a]\nrepo = "o/a"\n\n[settings]\njobs = 1\n\n[models.a.extra]\n'
    with pytest.raises(UsageError, match="did you mean 'a'"):
        remove_entry(split, "aa")


def test_models_written_as_root_keys_or_split_by_other_tables_keep_every_comment() -> None:
    dotted = 'models.d.repo = "o/d"\nmodels.c.repo = "o/c"  # c\n# about c\n'
    assert add(dotted, "n", "hf://o/n") == dotted + '\n[models.n]\nrepo = "o/n"\n'
    split = (
        '[models.a]\nrepo = "o/a"\n\n[settings]\njobs = 1\n\n[models]\nc = { repo = "o/c" }  #'
        " c\n\n# free\n"
    )
    assert remove_entry(split, "c") == split.replace('c = { repo = "o/c" }  # c\n', "")
    assert remove_entry(split, "a") == split.replace('[models.a]\nrepo = "o/a"\n\n', "")


def test_crlf_files_stay_crlf() -> None:
    text = HAND.replace("\n", "\r\n")
    out = add(text, "new", "hf://o/new")
    assert "\n" not in out.replace("\r\n", "")
    assert remove_entry(out, "new") == text


# -- properties
# --------------------------------------------------------------------------------------------------

NAMES = st.from_regex(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,20}", fullmatch=True)
PATH_PART = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9 ._'\"#=\[\]{}é-]{0,12}", fullmatch=True).filter(
    lambda p: p.strip() == p and p not in (".", "..") and not p.endswith(".")
)
PATHS = st.lists(PATH_PART, min_size=1, max_size=3).map("/".join)
GLOBS = st.lists(  # the schema refuses a blank pattern (" ")
    st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=10).filter(
        str.strip
    ),
    max_size=3,
)


@settings(max_examples=examples(60), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=NAMES, repo=st.sampled_from(["o/a", "org-x/b.c", "u_1/R-2"]), include=GLOBS, exclude=GLOBS
)
def test_any_snapshot_entry_loads_back_exactly(
    name: str, repo: str, include: list[str], exclude: list[str]
) -> None:
    out = add(HAND, name, f"hf://{repo}", include=include, exclude=exclude, force=True)
    model = next(m for m in parse_catalog(out).models if m.name == name)
    assert (model.repo, list(model.include), list(model.exclude)) == (repo, include, exclude)
    if name not in tomllib.loads(HAND)["models"]:
        assert [m.name for m in parse_catalog(out).models] == [
            "tiny",
            "z-image-turbo",
            "style.lora",
            name,
        ]
        assert remove_entry(out, name) == HAND


@settings(max_examples=examples(60), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=NAMES,
    paths=st.lists(PATHS, min_size=1, max_size=3, unique=True).filter(
        # a file is not another's folder
        lambda ps: not any(b.startswith(a + "/") for a in ps for b in ps)
    ),
    save_as=st.none() | PATHS,
)
def test_any_file_entry_loads_back_exactly(
    name: str, paths: list[str], save_as: str | None
) -> None:
    text = HAND
    for path in paths:
        text = add(
            text, name, f"hf://o/r/{path}", save_as=save_as if len(paths) == 1 else None, force=True
        )
    model = next(m for m in parse_catalog(text).models if m.name == name)
    wanted = [save_as] if save_as is not None and len(paths) == 1 else paths
    assert [f.save_path for f in model.files][-len(paths) :] == wanted


def _toml_string(text: str, style: str) -> str:
    import tomlkit

    if style == "literal":
        return "'" + text + "'"
    if style == "multiline":
        return tomlkit.string(text, multiline=True).as_string()
    return tomlkit.string(text).as_string()


TRICKY = st.lists(st.sampled_from([*"ab #=[]{}\"'\\,\n\t.", "é", '"""', "'''"]), max_size=20).map(
    "".join
)


@settings(max_examples=examples(80), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    texts=st.lists(TRICKY, min_size=2, max_size=2),
    styles=st.lists(st.sampled_from(["basic", "multiline", "literal"]), min_size=2, max_size=2),
    missing_newline=st.booleans(),
)
def test_strings_and_comments_of_other_entries_never_confuse_the_edit(
    texts: list[str], styles: list[str], missing_newline: bool
) -> None:
    """Brackets, quotes, '#' and line breaks inside other entries' strings are data, not
    structure.
    """
    values = []
    for text, style in zip(texts, styles, strict=True):
        if style == "literal" and ("'" in text or "\n" in text):
            style = "basic"
        values.append(_toml_string(text, style))
    catalog = (
        f"# {texts[0]!r}\n[models.a]  # ] [models.z]\ndescription = {values[0]}\nrepo ="
        f" 'o/a'\n\n[models.b]\ndescription = {values[1]}\nfiles = [\n  {{ url = 'https://h/x.bin'"
        " },  # ] '\n]"
    )
    if not missing_newline:
        catalog += "\n"
    document = tomllib.loads(catalog)
    out = add(catalog, "c", "hf://o/c")
    assert out.startswith(catalog.rstrip("\n")) and tomllib.loads(out)["models"]["c"] == {
        "repo": "o/c"
    }
    out = add(catalog, "b", "hf://o/c/c.bin")
    assert tomllib.loads(out)["models"]["b"]["files"][-1] == {"repo": "o/c", "path": "c.bin"}
    assert tomllib.loads(out)["models"]["a"] == document["models"]["a"]
    removed = remove_entry(catalog, "a")
    assert tomllib.loads(removed)["models"] == {"b": document["models"]["b"]}
    assert removed.endswith(catalog[catalog.index("[models.b]") :])


# ------------------------------------------------------------------------- --description and --tag


def meta(text: str, name: str, *sources: str, **options: Any) -> tuple[str, str]:
    """``add`` that also returns the action."""
    edit = add_entry(text, name, [parse_source(s) for s in sources], **options)
    parse_catalog(edit.text)
    return edit.text, edit.action


def test_a_new_entry_gets_its_description_and_tags_first() -> None:
    out, action = meta(
        HAND, "qwen", "hf://o/qwen", description="Qwen 4B", tags=["llm", "gguf", "llm"]
    )
    block = '\n[models.qwen]\ndescription = "Qwen 4B"\ntags = ["llm", "gguf"]\nrepo = "o/qwen"\n'
    assert action == "added"
    assert lines_without(out, block) == HAND.splitlines()


def test_an_existing_entry_gets_them_without_a_source_keeping_every_comment() -> None:
    out, action = meta(HAND, "tiny", description="Tiny random BERT (a few MB)", tags=["test"])
    assert action == "updated"
    # the description replaced where it is, the tags right after it; every other line as it was
    assert out == HAND.replace(
        'description = "Tiny random BERT"\n',
        'description = "Tiny random BERT (a few MB)"\ntags = ["test"]\n',
    )
    out, action = meta(HAND, "z-image-turbo", tags=["image"])
    assert action == "updated"
    assert out == HAND.replace(
        "[models.z-image-turbo]\n", '[models.z-image-turbo]\ntags = ["image"]\n'
    )


def test_tags_are_added_once_and_force_replaces_them() -> None:
    text, _ = meta(HAND, "tiny", tags=["test", "nlp"])
    out, _ = meta(text, "tiny", tags=["nlp", "bert"])
    assert tomllib.loads(out)["models"]["tiny"]["tags"] == ["test", "nlp", "bert"]
    out, _ = meta(text, "tiny", tags=["only"], force=True)
    assert tomllib.loads(out)["models"]["tiny"]["tags"] == ["only"]
    same, action = meta(text, "tiny", tags=["nlp"], description="Tiny random BERT")
    assert (same, action) == (text, "unchanged")


def test_a_comment_on_the_value_replaced_stays() -> None:
    text = (
        '[models.a]  # a\ntags = ["x"]   # why x\nrepo = "o/a"  # public\n\n[models.b]\nrepo ='
        ' "o/b"\n'
    )
    out, _ = meta(text, "a", tags=["y"], description="A")
    assert (
        out == '[models.a]  # a\ntags = ["x", "y"]   # why x\ndescription = "A"\nrepo = "o/a"  #'
        ' public\n\n[models.b]\nrepo = "o/b"\n'
    )


def test_with_sources_and_in_other_layouts() -> None:
    out, action = meta(HAND, "z-image-turbo", "hf://o/enc/qwen.gguf", tags=["image"])
    assert action == "extended"
    model = tomllib.loads(out)["models"]["z-image-turbo"]
    assert model["tags"] == ["image"] and model["files"][-1] == {
        "repo": "o/enc",
        "path": "qwen.gguf",
    }
    assert "  # the VAE comes from FLUX\n" in out and "# (text encoder still to add)\n" in out
    out, action = meta(
        HAND, "tiny", "hf://org/tiny", include=["*.json", "*.safetensors"], description="same repo"
    )  # the source as it is: "updated"
    assert (
        action == "updated" and tomllib.loads(out)["models"]["tiny"]["description"] == "same repo"
    )
    out, action = meta(HAND, "tiny", "hf://org/other", tags=["t"], force=True)
    assert action == "replaced"
    assert tomllib.loads(out)["models"]["tiny"] == {
        "description": "Tiny random BERT",
        "tags": ["t"],
        "repo": "org/other",
    }
    inline = '[models]\nx = { repo = "o/x" }  # one line\n'
    out, _ = meta(inline, "x", description="X")
    assert out == '[models]\nx = { description = "X", repo = "o/x" }  # one line\n'
    tables = '[[models.c.files]]\nurl = "https://h/c.bin"\n'  # no [models.c] header
    out, _ = meta(tables, "c", tags=["c"])
    assert tomllib.loads(out)["models"]["c"] == {
        "tags": ["c"],
        "files": [{"url": "https://h/c.bin"}],
    }


def test_description_and_tags_refusals() -> None:
    with pytest.raises(UsageError, match=r"models\.nope is not in the catalog: give a SOURCE"):
        add_entry(HAND, "nope", [], description="x")
    with pytest.raises(UsageError, match="--tag: a tag must not be empty"):
        add_entry(HAND, "tiny", [], tags=[" "])
    with pytest.raises(UsageError, match="give at least one SOURCE"):
        add_entry(HAND, "tiny", [])
    with pytest.raises(
        UsageError, match="--include, --exclude, --as and --sha256 describe a SOURCE"
    ):
        add_entry(HAND, "tiny", [], tags=["t"], include=["*.json"])


@settings(max_examples=examples(80), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.sampled_from(["tiny", "z-image-turbo", "style.lora"]),
    description=st.none() | TRICKY | st.text(max_size=20),
    tags=GLOBS,
    crlf=st.booleans(),
)
def test_any_description_and_tags_load_back_exactly_and_keep_every_comment(
    name: str, description: str | None, tags: list[str], crlf: bool
) -> None:
    text = HAND.replace("\n", "\r\n") if crlf else HAND
    edit = (
        add_entry(text, name, [], description=description, tags=tags)
        if description is not None or tags
        else None
    )
    if edit is None:
        return
    model = next(m for m in parse_catalog(edit.text).models if m.name == name)
    old = tomllib.loads(text)["models"][name]
    assert model.description == (old.get("description", "") if description is None else description)
    assert list(model.tags) == list(dict.fromkeys([*old.get("tags", []), *tags]))
    comments = [
        [line for line in t.splitlines() if line.lstrip().startswith("#")]
        for t in (text, edit.text)
    ]
    assert comments[0] == comments[1]
    if crlf:  # the new lines end as the others do
        assert "\n" not in edit.text.replace("\r\n", "")


def test_a_layout_no_edit_can_keep_is_a_usage_error_and_nothing_is_written() -> None:
    """Dotted keys of a model spread before other tables: neither the entry's own place nor tomlkit
    can edit it into the same document, so the user is told how to write it (exit 2), never an
    internal error (exit 1)."""
    text = (
        '# dotted\nmodels.x.repo = "org/tiny"\nmodels.x.tags = ["a"]\nversion = 1\n[settings]\njobs'
        " = 2\n"
    )
    with pytest.raises(UsageError, match="could not edit the catalog safely for 'x'") as info:
        add_entry(text, "x", [], tags=["b"])
    assert info.value.hint is not None and "[models.NAME] table" in info.value.hint
