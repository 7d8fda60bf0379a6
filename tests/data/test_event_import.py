"""models/data/event_import.py: your own events read, normalized and checked against the
catalog (`read_import`), and added to a data directory's (`merge`)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from models.data.dataset import Dataset
from models.data.event_import import merge, read_import


def test_events_are_checked_against_the_catalog_and_every_table_is_validated(
        tmp_path: Path) -> None:
    events = tmp_path / "e.csv"
    events.write_text("customer,sku,event_type,timestamp\nu1,x,view,2026-01-01\n"
                      "u2,zzz,view,2026-01-02\n")
    items = tmp_path / "items.csv"
    items.write_text("item_id,title\nx,Thing\n")
    users = tmp_path / "users.csv"
    users.write_text("user_id,country\nu1,NL\n")
    imported = read_import(events, {"user_id": "customer", "item_id": "sku"}, "s", items,
                           users)
    # The events as checked against the catalog, then the catalogs: what --skip-invalid
    # reports on.
    assert all(a is b for a, b in zip(
        imported.validated, (imported.events, imported.items, imported.users), strict=True))
    (issue,) = imported.events.issues
    assert str(issue).startswith(f"{events}: line 3: field 'item_id': 'zzz' is not in")
    frame, item_frame, user_frame = imported.frames()
    assert list(frame["user_id"]) == ["u1"]
    assert item_frame is not None and list(item_frame["item_id"]) == ["x"]
    assert user_frame is not None and list(user_frame["user_id"]) == ["u1"]


def test_without_catalogs_only_the_events_are_read(tmp_path: Path) -> None:
    events = tmp_path / "e.jsonl"
    events.write_text('{"user_id": "u", "item_id": "x", "event_type": "view", '
                      '"timestamp": 1767225600000}\n')
    imported = read_import(events, {}, "ms")
    assert imported.items is None and imported.users is None
    assert imported.validated == [imported.events]
    assert imported.frames()[0]["timestamp"].iloc[0] == pd.Timestamp("2026-01-01", tz="UTC")


def test_merge_keeps_existing_events_and_replaces_catalog_rows() -> None:
    existing = Dataset(
        events=pd.DataFrame({"event_id": ["a"], "user_id": ["u"], "item_id": ["x"]}),
        items=pd.DataFrame({"item_id": ["x", "y"], "title": ["old", "kept"]}),
        users=pd.DataFrame({"user_id": ["u"], "country": ["NL"]}))
    events = pd.DataFrame({"event_id": ["a", "b"], "user_id": ["u2", "v"],
                           "item_id": ["x", "y"]})
    merged, items, users = merge(existing, events,
                                 pd.DataFrame({"item_id": ["x"], "title": ["new"]}), None)
    assert list(merged["event_id"]) == ["a", "b"] and merged["user_id"].iloc[0] == "u"
    assert dict(zip(items["item_id"], items["title"], strict=True)) == {"y": "kept",
                                                                      "x": "new"}
    assert users is existing.users
