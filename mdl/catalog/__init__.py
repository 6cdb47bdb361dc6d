"""The catalog file: lookup, loading (pydantic only when one is parsed) and settings resolved from
flags, environment and catalog; others get frozen ``ModelSpec``, ``FileSpec`` and ``Settings``."""
