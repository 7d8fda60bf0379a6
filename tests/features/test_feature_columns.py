"""Every feature column read by name (contracts/feature_columns.py) is a feature of a
view the Feast repo defines, and the item views are the views keyed by item."""

from __future__ import annotations

from pathlib import Path

from contracts import feature_columns
from feature_repo.definitions import build_definitions


def test_every_named_column_is_a_defined_feature(tmp_path: Path) -> None:
    views = build_definitions(tmp_path).views
    defined = {f"{name}__{field.name}" for name, view in views.items()
               for field in view.schema}
    assert set(feature_columns.NAMED) <= defined, set(feature_columns.NAMED) - defined
    by_item = {name for name, view in views.items() if view.entities == ["item"]}
    assert set(feature_columns.ITEM_VIEWS) == by_item
    assert feature_columns.view_of(feature_columns.ITEM_PRICE) == "item_content"
    assert feature_columns.view_of("n_sources") is None
