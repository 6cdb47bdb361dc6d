"""mdl.cli.app.given converts a plain value (text, a path, none) itself, to spare every run
Typer's pydantic: held here to Typer's own conversion, value for value, on every parameter of
every command, and to the hook it relies on (a Typer that stops calling ``process_value`` fails
here, loudly, not by a slower start)."""

from __future__ import annotations

import inspect
from typing import Any

import pytest
import typer
import typer.main
from typer.core import TyperArgument, TyperOption

from mdl.cli import app as cli

# what a user may give a text or path parameter: specials of shells and of Click included
VALUES = (None, (), [], "", "-", "a b", "~/x", "é/ü", "x\0y", "/", ".", "s3://b/k", "--x", " ",
          "$HOME", "a;b", "*", "/root", "/proc/1/mem", "caf\udce9", "a\nb", "\t")  # fmt: skip


def _params() -> list[tuple[Any, Any]]:
    group = typer.main.get_command(cli.app)
    top = typer.Context(group, info_name="mdl")
    found = [(top, param) for param in group.get_params(top)]  # the global options
    for name in cli.COMMANDS:
        command = group.get_command(typer.Context(group), name)
        ctx = typer.Context(command, info_name=name, parent=typer.Context(group, info_name="mdl"))
        found += [(ctx, param) for param in command.get_params(ctx)]
    return found


def _run(call: Any) -> tuple[str, Any]:
    try:
        return "ok", call()
    except typer.TyperException as exc:  # (Click's exceptions, as Typer's)
        return "refused", type(exc).__name__


def test_the_hook_given_relies_on_is_typers() -> None:
    """Typer converts a value in its parameters' ``process_value(ctx, value)``, which Click's
    ``handle_parse_result`` calls; every Typer option and argument of every command is one of
    given's. If Typer moves its conversion elsewhere, this fails (and a plain run would import
    pydantic again)."""
    for base in (TyperOption, TyperArgument):
        hook = inspect.getattr_static(base, "process_value")
        assert list(inspect.signature(hook).parameters) == ["self", "ctx", "value"]
        assert "get_runtime_param" in inspect.getsource(hook)  # where Typer builds its adapter
    params = _params()
    handle = inspect.getattr_static(type(params[0][1]), "handle_parse_result")
    assert "self.process_value(" in inspect.getsource(handle)
    assert params
    for _, param in params:
        if isinstance(param, (TyperOption, TyperArgument)):
            assert type(param) in (cli.GivenOption, cli.GivenArgument), param.name


@pytest.mark.parametrize("value", VALUES, ids=repr)
def test_given_converts_every_value_as_typer_does(value: object) -> None:
    """Each parameter of each command, each value (a list of it for a list parameter): given's
    answer is Typer's own, value and type, or Typer's refusal."""
    checked = 0
    for ctx, param in _params():
        if not isinstance(param, (cli.GivenOption, cli.GivenArgument)):
            continue
        many = (param.multiple or param.nargs == -1) and isinstance(value, str)
        given_value = (value, value) if many else value
        typers = _run(lambda: super(type(param), param).process_value(ctx, given_value))
        ours = _run(lambda: param.process_value(ctx, given_value))
        assert ours == typers, (ctx.info_name, param.name, given_value)
        assert type(ours[1]) is type(typers[1]), (ctx.info_name, param.name, given_value)
        checked += 1
    assert checked > 100
