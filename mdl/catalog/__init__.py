"""The catalog file: its schema, loading and lookup, and the settings resolved from flags, environment and catalog.
Other parts get frozen specs (``ModelSpec``, ``FileSpec``) and one ``Settings`` from here."""

from mdl.catalog.load import expand_headers, find_catalog, load_catalog
from mdl.catalog.settings import (
    Settings,
    build_settings,
    choose_lock_mode,
    default_log_file,
    find_lock,
    resolve_dest,
    settings_for,
    user_config_dir,
)
from mdl.catalog.specs import Catalog, FileSpec, ModelSpec

__all__ = [
    "Catalog",
    "FileSpec",
    "ModelSpec",
    "Settings",
    "build_settings",
    "choose_lock_mode",
    "default_log_file",
    "expand_headers",
    "find_catalog",
    "find_lock",
    "load_catalog",
    "resolve_dest",
    "settings_for",
    "user_config_dir",
]
