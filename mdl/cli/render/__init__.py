"""What people and programs see: progress reporters (rich / plain / none), stderr messages, tables, JSON, the log.
The only place besides the Typer app that imports rich."""
