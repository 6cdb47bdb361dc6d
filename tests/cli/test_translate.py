"""The one translator (mdl.cli.translate) knows how a command ended by the exception's type: mdl's
errors, Ctrl-C (Python's and Typer's), Typer's parse errors (through Typer's public base,
``typer.TyperException``), never by a class's name or by the attributes an object happens to have.
"""

from __future__ import annotations

import pytest
import typer

from mdl.cli.run import Run
from mdl.cli.translate import translate


def test_typers_abort_is_an_interruption(capsys: pytest.CaptureFixture[str]) -> None:
    assert translate(typer.Abort(), Run(command="lock")) == 130
    assert "interrupted; catalog.lock was not changed" in capsys.readouterr().err


def test_a_typer_parse_error_is_a_usage_error_with_its_message(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert (
        translate(
            typer.BadParameter("must be 1-64", param_hint="'--connections'"), Run(command="pull")
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "Invalid value for '--connections': must be 1-64" in err
    assert "see mdl --help" in err


def test_a_class_named_like_typers_abort_is_a_bug_not_a_ctrl_c(
    capsys: pytest.CaptureFixture[str],
) -> None:
    class Abort(Exception):  # the name is the point: it is not Typer's
        pass

    assert translate(Abort("lost"), Run(command="pull")) == 1
    err = capsys.readouterr().err
    assert "internal error: Abort: lost" in err and "interrupted" not in err


def test_an_object_shaped_like_a_parse_error_is_a_bug_not_a_usage_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    class Lookalike(Exception):
        exit_code = 2

        def show(self, file: object = None) -> None:
            raise AssertionError("never shown as Typer's own")

    assert translate(Lookalike("odd"), Run(command="get")) == 1
    assert "internal error: Lookalike: odd" in capsys.readouterr().err
