"""The catalog file: lookup, loading (pydantic only when one is parsed) and settings resolved from
flags, environment and catalog; others get frozen ``ModelSpec``, ``FileSpec`` and ``Settings``."""

from mdl.catalog.headers import check_headers, is_secret_header, parse_header
from mdl.catalog.load import (
    expand_headers,
    find_catalog,
    find_lock,
    load_catalog,
    lock_beside,
    named_catalog,
    no_catalog,
    parse_catalog,
    read_bounded,
)
from mdl.catalog.settings import (
    MIRROR_FIELDS,
    Placeholder,
    Settings,
    choose_lock_mode,
    default_log_file,
    fill_template,
    fixed_part,
    parse_number,
    parse_template,
    settings_for,
    switch_from_env,
    user_config_dir,
)
from mdl.catalog.specs import MAX_MODEL_NAME, Catalog, FileSpec, ModelSpec, is_model_name

# Not here: mdl.catalog.edit (`from mdl.catalog import edit`, with entry, tomllines and placing
# behind it), which only the commands that edit the catalog load.
__all__ = [
    "MAX_MODEL_NAME",
    "MIRROR_FIELDS",
    "Catalog",
    "FileSpec",
    "ModelSpec",
    "Placeholder",
    "Settings",
    "check_headers",
    "choose_lock_mode",
    "default_log_file",
    "expand_headers",
    "fill_template",
    "find_catalog",
    "find_lock",
    "fixed_part",
    "is_model_name",
    "is_secret_header",
    "load_catalog",
    "lock_beside",
    "named_catalog",
    "no_catalog",
    "parse_catalog",
    "parse_header",
    "parse_number",
    "parse_template",
    "read_bounded",
    "settings_for",
    "switch_from_env",
    "user_config_dir",
]
