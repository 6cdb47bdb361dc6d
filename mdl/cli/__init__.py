"""The command line: the Typer app, one module per command family, and the rendering (rich, plain
lines, JSON). Parses flags and renders results; the work itself is done by ``mdl.api`` and the
parts."""

from mdl.cli.app import app
from mdl.cli.run import invoke

__all__ = ["app", "invoke"]
