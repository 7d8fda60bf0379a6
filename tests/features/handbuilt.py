"""A tiny hand-built data set whose feature values are worked out by hand in the tests."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from models.data.dataset import complete_catalogs, write_dataset
from models.data.validate import Locator, normalize_events, normalize_items

EVENTS = [
    # user, item, type, value, timestamp, session
    ("u1", "i1", "view", 30.0, "2026-01-01T10:00:00Z", "s1"),
    ("u1", "i1", "click", None, "2026-01-01T10:01:00Z", "s1"),
    ("u2", "i2", "rating", 4.0, "2026-01-02T12:00:00Z", "s2"),
    ("u1", "i1", "purchase", 10.0, "2026-01-03T09:00:00Z", "s3"),
    ("u1", "i2", "view", 5.0, "2026-01-11T08:00:00Z", "s4"),
]
ITEMS = [("i1", "Book One", "books", 10.0, "2025-12-01T00:00:00Z"),
         ("i2", "Toy Two", "toys", 20.0, "2025-12-15T00:00:00Z")]


def write_handbuilt(out: Path) -> Path:
    events = pd.DataFrame(EVENTS, columns=["user_id", "item_id", "event_type", "value",
                                           "timestamp", "session_id"])
    items = pd.DataFrame(ITEMS, columns=["item_id", "title", "category", "price",
                                         "created_at"])
    ev = normalize_events(events, Locator("handbuilt"))
    it = normalize_items(items, Locator("handbuilt"))
    assert not ev.issues and not it.issues
    items_full, users_full = complete_catalogs(ev.frame, it.frame, None)
    write_dataset(out, ev.frame, items_full, users_full, overwrite=True)
    return out
