"""Feature tables on a hand-built data set, every value worked out by hand."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from models.data.dataset import read_dataset
from models.features.build import compute_features
from tests.features.handbuilt import write_handbuilt


@pytest.fixture(scope="module")
def tables(tmp_path_factory: pytest.TempPathFactory) -> dict[str, pd.DataFrame]:
    data = write_handbuilt(tmp_path_factory.mktemp("handbuilt"))
    return compute_features(read_dataset(data)).tables


def _row(frame: pd.DataFrame, key: str, entity: str, at: str) -> pd.Series:
    rows = frame[(frame[key] == entity) & (frame["event_timestamp"] == pd.Timestamp(at))]
    assert len(rows) == 1, f"expected one row for {entity} at {at}, got {len(rows)}"
    return rows.iloc[0]


def test_user_activity_rows_only_on_change_days(tables) -> None:
    u1 = tables["user_activity"][tables["user_activity"]["user_id"] == "u1"]
    days = sorted(u1["event_timestamp"].dt.day)
    # Active on 1, 3 and 11 Jan -> a row the midnight after each (2, 4, 12), the midnight
    # each leaves the 1-day window (3, 5; 13 is past the data) and the 7-day window
    # (9, 11; 19 is past). No rows on idle days in between.
    assert days == [2, 3, 4, 5, 9, 11, 12]


def test_user_activity_windows(tables) -> None:
    ua = tables["user_activity"]
    jan4 = _row(ua, "user_id", "u1", "2026-01-04T00:00:00Z")
    assert (jan4["views_1d"], jan4["purchases_1d"], jan4["views_7d"], jan4["clicks_7d"],
            jan4["purchases_7d"], jan4["events_total"]) == (0, 1, 1, 1, 1, 3)
    assert jan4["days_since_last_event"] == 0.0 and jan4["days_since_last_purchase"] == 0.0
    jan9 = _row(ua, "user_id", "u1", "2026-01-09T00:00:00Z")
    assert (jan9["views_7d"], jan9["purchases_7d"], jan9["views_30d"]) == (0, 1, 1)
    jan11 = _row(ua, "user_id", "u1", "2026-01-11T00:00:00Z")
    assert (jan11["purchases_7d"], jan11["purchases_30d"]) == (0, 1)
    assert jan11["days_since_last_event"] == 7.0
    jan12 = _row(ua, "user_id", "u1", "2026-01-12T00:00:00Z")
    assert (jan12["views_1d"], jan12["events_total"]) == (1, 4)
    u2 = _row(ua, "user_id", "u2", "2026-01-04T00:00:00Z")
    assert (u2["ratings_1d"], u2["ratings_7d"]) == (0, 1)
    assert np.isnan(u2["days_since_last_purchase"])


def test_user_profile_affinity_and_money(tables) -> None:
    up = tables["user_profile"]
    jan2 = _row(up, "user_id", "u1", "2026-01-02T00:00:00Z")
    assert jan2["top_categories"] == ["books"] and jan2["top_category"] == "books"
    jan12 = _row(up, "user_id", "u1", "2026-01-12T00:00:00Z")
    # Weights: view 1 + click 2 + purchase 5 on books = 8, view 1 on toys = 1.
    assert jan12["top_categories"] == ["books", "toys"]
    assert jan12["category_affinity"] == pytest.approx([8 / 9, 1 / 9], abs=1e-4)
    assert jan12["avg_purchase_price"] == 10.0
    u2 = _row(up, "user_id", "u2", "2026-01-03T00:00:00Z")
    assert u2["avg_rating_given"] == 4.0


def test_item_popularity_and_smoothed_rates(tables) -> None:
    ip = tables["item_popularity"]
    jan2 = _row(ip, "item_id", "i1", "2026-01-02T00:00:00Z")
    assert (jan2["views_1d"], jan2["clicks_1d"], jan2["interactions_total"]) == (1, 1, 2)
    assert jan2["ctr_30d"] == pytest.approx((1 + 1) / (1 + 10))
    assert jan2["age_days"] == pytest.approx(32.0)
    i2 = _row(ip, "item_id", "i2", "2026-01-03T00:00:00Z")
    assert (i2["rating_count"], i2["avg_rating"]) == (1, 4.0)


def test_realtime_state_after_each_event(tables) -> None:
    rt = tables["user_realtime"]
    u1 = rt[rt["user_id"] == "u1"].reset_index(drop=True)
    assert list(u1["last_event_type"]) == ["view", "click", "purchase", "view"]
    assert u1.loc[3, "recent_items"] == ["i2", "i1"]
    assert list(u1["session_event_count"]) == [1, 2, 1, 1]
    assert u1.loc[0, "last_event_ts"] == pd.Timestamp("2026-01-01T10:00:00Z").timestamp()
    # Stamped just after the event, so a lookup at the event's own time does not see it.
    assert u1.loc[0, "event_timestamp"] > pd.Timestamp("2026-01-01T10:00:00Z")


def test_item_content_valid_from_creation(tables) -> None:
    ic = tables["item_content"].set_index("item_id")
    assert ic.loc["i1", "event_timestamp"] == pd.Timestamp("2025-12-01T00:00:00Z")
    assert ic.loc["i2", "category"] == "toys" and ic.loc["i2", "price"] == 20.0


def test_build_writes_every_table(tmp_path: Path) -> None:
    from models.features.build import TABLES, build_features

    paths = build_features(write_handbuilt(tmp_path))
    assert sorted(paths) == sorted(TABLES)
    assert all(p.exists() for p in paths.values())


def test_ratings_only_data_has_no_purchase_recency() -> None:
    """MovieLens has only ratings: windows work and purchase recency stays empty."""
    from models.features.windows import change_days, daily_totals, last_active_before

    events = pd.DataFrame({"user_id": ["a", "a"], "day": [0, 3], "purchases": [0.0, 0.0]})
    daily = daily_totals(events, "user_id", ["purchases"])
    snaps = change_days(daily, "user_id", (1,), last_day=10)
    assert list(last_active_before(daily, snaps, "user_id", "purchases")) == [-1] * len(snaps)
    assert list(last_active_before(daily, snaps, "user_id")) == [0, 0, 3, 3]
