"""The event types' one table (contracts/event_types.py) is what every reader of
events goes by: the collector's model and schema, the importer's checks, the count
features declared in the Feast repo, and the README's table."""

from __future__ import annotations

from pathlib import Path
from typing import get_args

import pandas as pd

from contracts import event_types
from contracts.feature_columns import WINDOWS
from feature_repo.definitions import build_definitions
from models.data.validate import Locator, normalize_events
from serving.events.event import Event, EventType, parse_events

ROOT = Path(__file__).resolve().parents[1]


def test_the_collectors_literal_lists_the_table() -> None:
    assert get_args(EventType) == event_types.EVENT_TYPES


def test_each_types_required_fields_are_required_by_the_collector() -> None:
    base = {"user_id": "u1", "item_id": "i1", "value": 4.0, "query": "shoes",
            "timestamp": "2024-05-01T12:00:00Z"}
    for kind in event_types.TYPES:
        accepted, _ = parse_events([base | {"event_type": kind.name}])
        assert accepted, kind.name
        for name in kind.requires:
            bad = {k: v for k, v in base.items() if k != name} | {"event_type": kind.name}
            accepted, rejected = parse_events([bad])
            assert not accepted and rejected[0].reason.startswith(f"events[0].{name}: "), \
                (kind.name, rejected)
    schema = Event.model_json_schema()
    assert {c["if"]["properties"]["event_type"]["const"]: c["then"]["required"]
            for c in schema["allOf"]} == {t.name: list(t.requires) for t in event_types.TYPES}


def test_each_types_required_fields_are_required_by_the_importer() -> None:
    base = {"user_id": "u1", "item_id": "i1", "value": "4", "query": "shoes",
            "timestamp": "2024-05-01T12:00:00Z"}
    for kind in event_types.TYPES:
        for name in kind.requires:
            row = {k: v for k, v in base.items() if k != name} | {"event_type": kind.name}
            issues = normalize_events(pd.DataFrame([row]), Locator("e.csv", "line", 2)).issues
            assert [i.field for i in issues] == [name], (kind.name, issues)


def test_every_count_stem_is_a_feature_of_the_feast_repo(tmp_path: Path) -> None:
    views = build_definitions(tmp_path).views
    user = {f.name for f in views["user_activity"].schema}
    item = {f.name for f in views["item_popularity"].schema}
    for stem in event_types.USER_COUNTED.values():
        assert {f"{stem}_{w}d" for w in WINDOWS} <= user, stem
    for stem in event_types.ITEM_COUNTED.values():
        assert {f"{stem}_{w}d" for w in WINDOWS} <= item, stem


def test_the_readme_shows_the_table() -> None:
    readme = (ROOT / "README.md").read_text()
    shown = readme.split("<!-- event types: begin -->\n")[1].split("\n<!-- event types: end -->")[0]
    assert shown == event_types.describe()
