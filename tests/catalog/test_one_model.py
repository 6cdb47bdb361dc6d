"""One model per concept: what the catalog's reader validates (pydantic tables, loaded only when a
catalog is parsed) and the frozen specs every other part uses (``mdl get URL`` never imports
pydantic) hold the same fields, so a key added to one and not the other fails here rather than being
dropped on the way."""

from __future__ import annotations

from dataclasses import fields

from mdl.catalog._schema import FileEntry, ModelEntry, SettingsTable
from mdl.catalog.specs import CatalogSettings, FileSpec, ModelSpec
from mdl.setting import SETTINGS


def names(spec: type) -> set[str]:
    return {f.name for f in fields(spec)}


def test_a_file_entry_is_a_file_spec_but_for_where_it_was_written() -> None:
    assert set(FileEntry.model_fields) == names(FileSpec) - {"key_path"}


def test_a_model_entry_is_a_model_spec_but_for_its_name_which_is_its_table_key() -> None:
    assert set(ModelEntry.model_fields) == names(ModelSpec) - {"name"}


def test_the_settings_table_is_the_catalog_settings_and_both_are_the_setting_tables_catalog_keys() -> (
    None
):
    # signature: every model's default, moved onto each ModelSpec; mirror_endpoints: read from the
    # mirror tables
    assert set(SettingsTable.model_fields) - {"signature"} == names(CatalogSettings) - {
        "mirror_endpoints"
    }
    assert names(CatalogSettings) - {"mirror_endpoints"} == {s.name for s in SETTINGS if s.catalog}
