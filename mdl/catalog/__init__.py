"""The catalog file: its schema, loading and lookup, and the settings resolved from flags, environment and catalog.
Other parts get frozen specs (``ModelSpec``, ``FileSpec``) and one ``Settings`` from here."""

from typing import TYPE_CHECKING

from mdl.lazy import lazy_exports

if TYPE_CHECKING:
    from mdl.catalog.addsource import parse_source
    from mdl.catalog.edit import (
        NEW_CATALOG,
        CatalogChange,
        Edit,
        add_entry,
        catalog_to_edit,
        check_model_name,
        remove_entry,
    )
    from mdl.catalog.load import expand_headers, find_catalog, load_catalog, parse_catalog
    from mdl.catalog.settings import (
        MIRROR_FIELDS,
        Settings,
        build_settings,
        choose_lock_mode,
        default_log_file,
        find_lock,
        lock_beside,
        resolve_dest,
        settings_for,
        user_config_dir,
    )
    from mdl.catalog.specs import Catalog, FileSpec, ModelSpec
    from mdl.catalog.templates import Placeholder, fill_template, parse_template

__all__ = [
    "MIRROR_FIELDS",
    "NEW_CATALOG",
    "Catalog",
    "CatalogChange",
    "Edit",
    "FileSpec",
    "ModelSpec",
    "Placeholder",
    "Settings",
    "add_entry",
    "build_settings",
    "catalog_to_edit",
    "check_model_name",
    "choose_lock_mode",
    "default_log_file",
    "expand_headers",
    "fill_template",
    "find_catalog",
    "find_lock",
    "load_catalog",
    "lock_beside",
    "parse_catalog",
    "parse_source",
    "parse_template",
    "remove_entry",
    "resolve_dest",
    "settings_for",
    "user_config_dir",
]

if not TYPE_CHECKING:  # hidden from mypy, which would take every unknown name for Any
    # Imported when first used (mdl/lazy.py): a command loads only the modules it touches.
    __getattr__, __dir__ = lazy_exports(
        __name__,
        {
            "addsource": ("parse_source",),
            "edit": (
                "NEW_CATALOG",
                "CatalogChange",
                "Edit",
                "add_entry",
                "catalog_to_edit",
                "check_model_name",
                "remove_entry",
            ),
            "load": ("expand_headers", "find_catalog", "load_catalog", "parse_catalog"),
            "settings": (
                "MIRROR_FIELDS",
                "Settings",
                "build_settings",
                "choose_lock_mode",
                "default_log_file",
                "find_lock",
                "lock_beside",
                "resolve_dest",
                "settings_for",
                "user_config_dir",
            ),
            "specs": ("Catalog", "FileSpec", "ModelSpec"),
            "templates": ("Placeholder", "fill_template", "parse_template"),
        },
    )
