"""The catalog file: its schema, loading and lookup, and the settings resolved from flags, environment and catalog.
Other parts get frozen specs (``ModelSpec``, ``FileSpec``) and one ``Settings`` from here."""
