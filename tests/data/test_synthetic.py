"""The synthetic world: deterministic, and realistic in the ways models rely on."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from models.data.dataset import read_dataset
from models.data.synthetic import GenerateConfig, GroundTruth, generate
from models.data.validate import Locator, normalize_events


def _digests(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_gives_byte_identical_files(tmp_path: Path) -> None:
    config = GenerateConfig(users=120, items=80, days=14, seed=3)
    generate(tmp_path / "a", config)
    generate(tmp_path / "b", config)
    first, second = _digests(tmp_path / "a"), _digests(tmp_path / "b")
    assert set(first) >= {"events.parquet", "items.parquet", "users.parquet",
                          "ground_truth/world.json", "ground_truth/users.parquet",
                          "ground_truth/items.parquet"}
    assert first == second
    generate(tmp_path / "c", GenerateConfig(users=120, items=80, days=14, seed=4))
    assert _digests(tmp_path / "c")["events.parquet"] != first["events.parquet"]


def test_output_satisfies_the_contract(small_world: Path) -> None:
    data = read_dataset(small_world)
    check = normalize_events(data.events, Locator("events.parquet"))
    assert check.issues == []
    assert set(data.events["item_id"].dropna()) <= set(data.items["item_id"])
    assert set(data.events["user_id"]) <= set(data.users["user_id"])
    assert data.events["event_id"].is_unique
    searches = data.events[data.events["event_type"] == "search"]
    assert len(searches) > 0 and searches["item_id"].isna().all()
    assert searches["query"].str.len().gt(0).all()


def test_catalog_has_text_categories_prices_and_arrivals(small_world: Path) -> None:
    data = read_dataset(small_world)
    items = data.items
    assert items["category"].nunique() >= 4
    assert (items["price"] > 0).all()
    assert items["title"].is_unique or items["title"].nunique() > 0.9 * len(items)
    assert items["description"].str.contains(" by ").all()
    assert items["tags"].map(len).min() >= 2
    start = data.events["timestamp"].min().floor("D")
    arrived = items["created_at"] > start
    # New items keep arriving during the period, and get interactions after arrival.
    assert 0.15 < arrived.mean() < 0.45
    first_seen = data.events.dropna(subset=["item_id"]).groupby("item_id")["timestamp"].min()
    created = items.set_index("item_id")["created_at"]
    assert (first_seen >= created.loc[first_seen.index]).all()


def test_funnel_and_power_law_popularity(small_world: Path) -> None:
    events = read_dataset(small_world).events
    counts = events["event_type"].value_counts()
    assert counts["view"] > counts["click"] > counts["add_to_cart"] > counts["purchase"] > 0
    assert counts["rating"] > 0
    views = events[events["event_type"] == "view"]
    assert (views["value"] > 0).all()  # dwell seconds
    per_item = views["item_id"].value_counts()
    top_decile = per_item.iloc[: max(1, len(per_item) // 10)].sum() / per_item.sum()
    assert top_decile > 0.25  # uniform would give 0.10
    # Every purchase follows an add_to_cart of the same item in the same session.
    carts = set(zip(*[events.loc[events["event_type"] == "add_to_cart", c]
                      for c in ("session_id", "item_id")], strict=True))
    purchases = events[events["event_type"] == "purchase"]
    assert all((s, i) in carts for s, i in zip(purchases["session_id"], purchases["item_id"],
                                               strict=True))


def test_users_have_segments_and_staggered_signups(small_world: Path) -> None:
    data = read_dataset(small_world)
    assert set(data.users["segment"]) >= {"heavy", "casual"}
    per_user = data.events.groupby("user_id").size()
    segment = data.users.set_index("user_id")["segment"]
    by_segment = per_user.groupby(segment.loc[per_user.index]).median()
    assert by_segment["heavy"] > by_segment["casual"]


def test_ground_truth_explains_behaviour(small_world: Path) -> None:
    """Purchased items rank far above chance in the saved true preference, and taste drifts."""
    data = read_dataset(small_world)
    truth = GroundTruth.load(small_world)
    purchases = data.events[data.events["event_type"] == "purchase"].head(200)
    percentiles = []
    for user_id, item_id, ts in purchases[["user_id", "item_id", "timestamp"]].itertuples(
            index=False):
        row = truth.preference([user_id], ts).iloc[0]
        row = row[np.isfinite(row)]
        percentiles.append((row < row[item_id]).mean())
    assert np.mean(percentiles) > 0.75  # chance is 0.5
    world = truth.world
    users = np.arange(len(world.user_ids))
    start_taste = world.taste(users, 0.0)
    end_taste = world.taste(users, world.days * 86_400.0)
    moved = 1 - (start_taste * end_taste).sum(axis=1)
    assert (moved > 0.01).mean() > 0.5


def test_bad_sizes_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="--items must be at least 10"):
        generate(tmp_path, GenerateConfig(items=3))


def test_top_items_of_ground_truth(small_world: Path) -> None:
    truth = GroundTruth.load(small_world)
    at = pd.Timestamp("2026-01-15T00:00:00Z")
    top = truth.top_items(truth.world.user_ids[0], at, k=5)
    assert len(top) == 5 and len(set(top)) == 5
