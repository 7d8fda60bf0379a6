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


def _mean_percentile(truth: GroundTruth, events: pd.DataFrame) -> float:
    """The mean percentile of each event's item in its user's true preference at the
    event's time, among the items released by then (0.5 is chance)."""
    percentiles = []
    for user_id, item_id, ts in events[["user_id", "item_id", "timestamp"]].itertuples(
            index=False):
        row = truth.preference([user_id], ts).iloc[0]
        row = row[np.isfinite(row)]
        percentiles.append((row < row[item_id]).mean())
    return float(np.mean(percentiles))


def test_ground_truth_explains_behaviour(small_world: Path) -> None:
    """Purchased items rank far above chance in the saved true preference, and taste drifts."""
    data = read_dataset(small_world)
    truth = GroundTruth.load(small_world)
    purchases = data.events[data.events["event_type"] == "purchase"].head(200)
    assert _mean_percentile(truth, purchases) > 0.75  # chance is 0.5
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


def test_buckets_cover_the_catalog_once_within_categories() -> None:
    from models.data.synthetic.pools import BUCKET, buckets

    rng = np.random.default_rng(0)
    category = rng.integers(0, 5, 1000)
    vec = rng.normal(size=(1000, 16))
    table = buckets(category, vec / np.linalg.norm(vec, axis=1, keepdims=True),
                    rng.exponential(0.5, 1000))
    members = table.members[table.members >= 0]
    assert sorted(members) == list(range(1000))
    assert table.members.shape[1] == BUCKET
    for row, bucket in zip(table.members, range(len(table.members)), strict=True):
        real = row[row >= 0]
        assert len(set(category[real])) == 1  # a bucket never mixes categories
        assert (table.of_item[real] == bucket).all()


def _shape(world: Path) -> dict[str, float]:
    """Funnel ratios and the mean true-utility percentile of the viewed items."""
    events = read_dataset(world).events
    counts = events["event_type"].value_counts()
    truth = GroundTruth.load(world)
    views = events[events["event_type"] == "view"].sample(400, random_state=0)
    return {"click_per_view": counts["click"] / counts["view"],
            "purchase_per_click": counts["purchase"] / counts["click"],
            "events_per_user": len(events) / events["user_id"].nunique(),
            "view_percentile": _mean_percentile(truth, views)}


def test_pooled_sampling_keeps_the_shape_of_exact_sampling(tmp_path: Path) -> None:
    """Above `pool` items sessions sample from per-user pools (best buckets plus a
    reweighted sample of the rest): the funnel and how closely views follow the true
    utility stay those of sampling from the whole catalog."""
    exact = GenerateConfig(users=600, items=2000, days=20, seed=5)
    pooled = GenerateConfig(users=600, items=2000, days=20, seed=5, pool=256)
    generate(tmp_path / "exact", exact)
    generate(tmp_path / "pooled", pooled)
    a, b = _shape(tmp_path / "exact"), _shape(tmp_path / "pooled")
    assert abs(a["click_per_view"] - b["click_per_view"]) < 0.02, (a, b)
    assert abs(a["purchase_per_click"] - b["purchase_per_click"]) < 0.04, (a, b)
    assert abs(a["events_per_user"] / b["events_per_user"] - 1) < 0.08, (a, b)
    assert abs(a["view_percentile"] - b["view_percentile"]) < 0.03, (a, b)
    assert b["view_percentile"] > 0.8  # chance is 0.5
    generate(tmp_path / "again", pooled)
    assert _digests(tmp_path / "again") == _digests(tmp_path / "pooled")


def test_choices_follow_the_drifting_taste(small_world: Path) -> None:
    """Late in the period users view what fits their taste of the moment better than
    what fitted their taste at the start."""
    data = read_dataset(small_world)
    world = GroundTruth.load(small_world).world
    views = data.events[data.events["event_type"] == "view"]
    seconds = (views["timestamp"] - world.start).dt.total_seconds().to_numpy()
    late = seconds > world.days * 86_400 * 2 / 3
    users = views["user_id"].map({u: n for n, u in enumerate(world.user_ids)}).to_numpy()
    items = views["item_id"].map({i: n for n, i in enumerate(world.item_ids)}).to_numpy()
    now = (world.taste(users[late], seconds[late]) * world.item_vec[items[late]]).sum(axis=1)
    start = (world.taste(users[late], 0.0) * world.item_vec[items[late]]).sum(axis=1)
    assert now.mean() - start.mean() > 0.02


def test_worker_processes_write_the_same_bytes(tmp_path: Path) -> None:
    """Blocks draw from streams spawned from the seed: two processes, or one, same files."""
    config = GenerateConfig(users=1100, items=150, days=10, seed=2)  # three blocks
    done: list[int] = []
    generate(tmp_path / "one", config)
    generate(tmp_path / "two", config, workers=2, progress=done.append)
    assert _digests(tmp_path / "one") == _digests(tmp_path / "two")
    assert sum(done) == 1100 and len(done) == 3
