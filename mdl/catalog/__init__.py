"""The catalog file: lookup, loading (pydantic only when one is parsed) and settings resolved from
flags, environment and catalog; others get frozen ``ModelSpec``, ``FileSpec`` and ``Settings``."""

from typing import TYPE_CHECKING

from mdl.lazy import export_lazily

if TYPE_CHECKING:
    from mdl.catalog.headers import check_headers, is_secret_header, parse_header
    from mdl.catalog.load import (
        expand_headers,
        find_catalog,
        find_lock,
        given_mirrors,
        load_catalog,
        lock_beside,
        named_catalog,
        no_catalog,
        parse_catalog,
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
    from mdl.catalog.specs import (
        MAX_MODEL_NAME,
        NAME_RE,
        Catalog,
        CatalogWarning,
        FileSpec,
        ModelSpec,
        is_model_name,
    )

__all__ = [
    "MAX_MODEL_NAME",
    "MIRROR_FIELDS",
    "NAME_RE",
    "Catalog",
    "CatalogWarning",
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
    "given_mirrors",
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
    "settings_for",
    "switch_from_env",
    "user_config_dir",
]

export_lazily(
    __name__,
    {
        "check_headers": "headers",
        "is_secret_header": "headers",
        "parse_header": "headers",
        "expand_headers": "load",
        "find_catalog": "load",
        "find_lock": "load",
        "given_mirrors": "load",
        "load_catalog": "load",
        "lock_beside": "load",
        "named_catalog": "load",
        "no_catalog": "load",
        "parse_catalog": "load",
        "MIRROR_FIELDS": "settings",
        "Placeholder": "settings",
        "Settings": "settings",
        "choose_lock_mode": "settings",
        "default_log_file": "settings",
        "fill_template": "settings",
        "fixed_part": "settings",
        "parse_number": "settings",
        "parse_template": "settings",
        "settings_for": "settings",
        "switch_from_env": "settings",
        "user_config_dir": "settings",
        "MAX_MODEL_NAME": "specs",
        "NAME_RE": "specs",
        "Catalog": "specs",
        "CatalogWarning": "specs",
        "FileSpec": "specs",
        "ModelSpec": "specs",
        "is_model_name": "specs",
    },
)
