"""The Python API's input layer (mdl/api/_inputs.py): a wrong input is a UsageError (exit 2) naming
the parameter, never a TypeError, AttributeError or ValueError; a str where a list goes is one item;
get() needs a source."""

from __future__ import annotations

import inspect
import io
import math
import os
import tomllib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from profiles import examples

import mdl
from mdl import MdlError, UsageError
from mdl.errors import ExitCode

API = sorted(mdl.__all__[mdl.__all__.index("__version__") + 1 :])
CATALOG = '[models.tiny]\nrepo = "org/tiny"\n'


@pytest.fixture
def place(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty working folder beside a catalog with one model, the Hub unreachable and offline."""
    (tmp_path / "catalog.toml").write_text(CATALOG)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("MDL_LOG_FILE", str(tmp_path / "mdl.log"))
    return tmp_path


def test_every_public_function_checks_its_inputs() -> None:
    from mdl.api._inputs import _rules

    for name in API:
        function = getattr(mdl, name)
        assert hasattr(function, "__wrapped__"), f"{name} is not @checked"
        _rules(function.__wrapped__)  # every annotation has a rule (raises MdlError otherwise)


def test_a_str_where_a_list_goes_is_one_item(place: Path) -> None:
    catalog = place / "catalog.toml"
    mdl.add(
        "json-only",
        "hf://org/other",
        include="*.json",
        exclude="*.bin",
        check=False,
        catalog=catalog,
    )
    entry = tomllib.loads(catalog.read_text())["models"]["json-only"]
    assert entry["include"] == ["*.json"] and entry["exclude"] == ["*.bin"]
    mdl.add("both", "hf://org/two", include=("*.json", "*.txt"), check=False, catalog=catalog)
    assert tomllib.loads(catalog.read_text())["models"]["both"]["include"] == ["*.json", "*.txt"]


def test_get_without_a_source_is_a_usage_error(place: Path) -> None:
    with pytest.raises(UsageError, match="no source") as caught:
        mdl.get()
    assert caught.value.exit_code == ExitCode.USAGE and caught.value.hint


@pytest.mark.parametrize(
    ("call", "words"),
    [
        (lambda c: mdl.pack(3), "run_dir: expected a path"),
        (
            lambda c: mdl.pack("run", output=None, include=[1]),
            "include[0]: expected a string, got 1",
        ),
        (lambda c: mdl.show(None, catalog=c), "name: expected a string, got None"),
        (lambda c: mdl.pull(["tiny"], catalog=c), "names[0]: expected a string, got list"),
        (
            lambda c: mdl.pull("tiny", catalog=c, connections=True),
            "connections: expected a whole number, got True",
        ),
        (lambda c: mdl.pull("tiny", catalog=c, force=1), "force: expected True or False, got 1"),
        (lambda c: mdl.pull("tiny", catalog=c, dest="a\x00b"), "dest: a NUL character"),
        (lambda c: mdl.unpack(Path("a\x00b")), "archive: a NUL character"),
        (lambda c: mdl.unpack(42), "archive: expected a path or a binary stream, got 42"),
        (
            lambda c: mdl.unpack(io.StringIO("PK")),
            "archive: expected a path or a binary stream, got StringIO",
        ),
        (
            lambda c: mdl.pack("run", stream=io.StringIO()),
            "stream: expected a binary stream to write to",
        ),
        (lambda c: mdl.get("x", output=b"out"), "output: expected a path"),
        (lambda c: mdl.get("x", sha256=["abc"]), "sha256: expected a string, got list"),
        (lambda c: mdl.verify("tiny", catalog=c, environ={"A": 1}), "environ: expected strings"),
        (lambda c: mdl.load_catalog(""), "path: expected a path, got ''"),
        (lambda c: mdl.unpack("x.zip", max_ratio="10"), "max_ratio: expected a number, got '10'"),
        (
            lambda c: mdl.list_models(catalog=c, progress=object()),
            "got an unexpected keyword argument 'progress'",
        ),
        (lambda c: mdl.pull("tiny", catalog=c, progress="bar"), "progress: expected a Progress"),
        (
            lambda c: mdl.add("x", "hf://o/r", include={"*.json": 1}),
            "include: expected a string or a list",
        ),
    ],
)
def test_a_wrong_input_is_a_usage_error_naming_the_parameter(
    place: Path, call: Any, words: str
) -> None:
    with pytest.raises(UsageError) as caught:
        call(place / "catalog.toml")
    assert words in caught.value.message
    assert caught.value.exit_code == ExitCode.USAGE


# Values of every wrong kind, and text (a right kind with wrong contents: the function's own checks
# must hold).
ODD = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.binary(max_size=8),
    st.text(max_size=12),
    st.text(max_size=6).map(lambda s: s + "\x00"),
    st.lists(st.one_of(st.integers(), st.none(), st.text(max_size=4)), max_size=3),
    st.dictionaries(st.text(max_size=3), st.one_of(st.integers(), st.text(max_size=3)), max_size=2),
    st.tuples(st.none()),
    st.just(object()),
    st.just(math.inf),
    st.builds(Path, st.text(min_size=1, max_size=8)),
)


def _baseline(name: str, place: Path) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Arguments that end fast and offline (mostly a UsageError of their own), so that only the
    perturbed one is on trial."""
    catalog = str(place / "catalog.toml")
    quick: dict[str, tuple[tuple[Any, ...], dict[str, Any]]] = {
        "add": (
            ("new", "hf://org/new"),
            {"check": False, "force": True, "catalog": str(place / "add.toml")},
        ),
        "clean": ((), {"catalog": catalog, "dest": str(place / "models")}),
        "get": (("no-such-job.json",), {"output": "-"}),
        # an hf:// URI names its own type and revision: refused, whichever one is changed
        "fetch": (("hf://org/x",), {"revision": "main", "repo_type": "checkpoint"}),
        "init": ((catalog,), {}),  # there already: refused
        "list_models": ((), {"catalog": catalog, "dest": str(place / "models")}),
        "load_catalog": ((catalog,), {}),
        "lock": (("nosuch",), {"catalog": catalog, "check": True}),
        "pack": (("no-such-run",), {"dry_run": True}),
        "prune": ((), {"catalog": catalog, "dest": str(place / "models"), "dry_run": True}),
        "prune_mirror": (("http://x/{model}/{path}",), {"catalog": catalog, "dry_run": True}),
        "publish": (("nosuch",), {"to": "not-s3", "catalog": catalog}),
        "pull": (("nosuch",), {"catalog": catalog, "dest": str(place / "models")}),
        "remove": (("nosuch",), {"catalog": catalog}),
        "remove_fetched": ((str(place / "no-get-here"),), {"dry_run": True}),
        "resolve": (("nosuch",), {"catalog": catalog}),
        "serve": (("nosuch",), {"catalog": catalog, "port": 0}),
        "show": (("nosuch",), {"catalog": catalog}),
        "unpack": (("no-such.zip",), {"dest": str(place / "out")}),
        "verify": (("nosuch",), {"catalog": catalog, "dest": str(place / "models")}),
    }
    return quick[name]


@pytest.mark.slow
@pytest.mark.parametrize("name", API)
@settings(
    max_examples=examples(40),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_any_odd_input_is_an_mdl_error_or_works(
    name: str, place: Path, data: st.DataObject
) -> None:
    function = getattr(mdl, name)
    args, kwargs = _baseline(name, place)
    parameters = inspect.signature(function).parameters
    param = data.draw(st.sampled_from(sorted(parameters)), label="parameter")
    value = data.draw(ODD, label="value")
    kind = parameters[param].kind
    if kind is inspect.Parameter.VAR_POSITIONAL:
        args = (*args[: len(args) - (len(args) > 0)], value) if name != "add" else (args[0], value)
    elif kind is inspect.Parameter.POSITIONAL_OR_KEYWORD and param in list(parameters)[: len(args)]:
        position = list(parameters).index(param)
        args = (*args[:position], value, *args[position + 1 :])
    else:
        kwargs = {**kwargs, param: value}
    try:
        function(*args, **kwargs)
    except MdlError:
        pass
    assert not os.path.exists(place / "work" / "-"), "'-' is never a file name"
