"""The download pipeline: resolve models, decide per file before any I/O, check space, fetch under locks, record;
and ``get`` for one-off sources."""
