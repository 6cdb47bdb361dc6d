"""The command line: the Typer app, one module per command family, and the rendering (rich, plain
lines, JSON); it parses and renders, the work is done by ``mdl.api`` and the parts."""
