"""Serving's online feature join against the offline point-in-time join that training
used: a real Redis, a real Feast repo, the same rows."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from models.features.build import build_features
from serving.features import OnlineFeatureJoin, ServiceReader
from stores.feature_store import (
    apply_definitions,
    materialize_all,
    open_store,
    training_frame,
)

pytestmark = pytest.mark.integration


def _same(offline: object, online: object) -> bool:
    if isinstance(offline, np.ndarray | list):
        return online is not None and list(online) == pytest.approx(list(offline))  # type: ignore[call-overload]
    if offline is None or pd.isna(offline):  # type: ignore[arg-type]
        return online is None or (isinstance(online, float) and np.isnan(online))
    return bool(online == pytest.approx(offline)) if isinstance(offline, float) else (
        bool(online == offline))


def test_online_join_equals_the_training_join_at_the_end_of_the_data(
        small_world: Path, redis_settings) -> None:
    build_features(small_world)
    store = open_store(small_world, redis_settings)
    materialize_all(store, apply_definitions(store, small_world))
    events = pd.read_parquet(small_world / "events.parquet")
    rng = np.random.default_rng(0)
    entity = pd.DataFrame({
        "user_id": rng.choice(events["user_id"].unique(), 200),
        "item_id": rng.choice(events["item_id"].dropna().unique(), 200),
        # The last daily snapshot is stamped at the midnight after the last event, and
        # online serving holds it from materialization on: compare just after it.
        "event_timestamp": events["timestamp"].max().floor("D") + pd.Timedelta(days=1,
                                                                                seconds=1)})
    offline = training_frame(store, entity, "ranker")
    now = [0.0]
    join = OnlineFeatureJoin(store, item_staleness_s=60.0, clock=lambda: now[0])
    online = join(entity)
    assert list(online["user_id"]) == list(entity["user_id"])
    assert set(online.columns) == set(offline.columns)
    features = [c for c in offline.columns if "__" in c]
    assert len(features) > 20
    for column in features:
        for row, (a, b) in enumerate(zip(offline[column], online[column], strict=True)):
            assert _same(a, b), f"{column} row {row}: offline {a!r}, online {b!r}"
    # Items are cached with bounded staleness: a second request reads none of them,
    # one past the staleness bound reads them again.
    distinct = entity["item_id"].nunique()
    assert join.item_reads == distinct
    join(entity)
    assert join.item_reads == distinct
    now[0] = 61.0
    join(entity.head(5))
    assert join.item_reads == distinct + entity.head(5)["item_id"].nunique()
    # Renewal (keep_fresh's background work) re-reads the rows past half their bound,
    # and only those: the five read at 61 s are 20 s old, the rest 81 s.
    items = list(entity["item_id"].unique())
    recent = entity.head(5)["item_id"].nunique()
    now[0] = 81.0
    assert join.renew(items) == distinct - recent
    assert join.renew(items) == 0

    # keep_fresh reads the catalog at once, then renews it from its thread before rows
    # go stale (here a 0.4 s bound, re-checked every 0.1 s): unchanged in the store,
    # the rows are checked by their stamps and not read again.
    fresh = OnlineFeatureJoin(store, item_staleness_s=0.4)
    fresh.keep_fresh(items)
    assert fresh.item_reads == distinct
    deadline = time.monotonic() + 10
    while fresh.item_checks < distinct:  # within ~0.3 s, unless the box is starved
        assert time.monotonic() < deadline, "keep_fresh never renewed the rows"
        time.sleep(0.05)
    assert fresh.item_reads == distinct


def test_renewal_rereads_only_the_rows_the_store_changed(online_store, small_world: Path
                                                         ) -> None:
    """Renewal compares each cached row's stamp (its views' stored timestamps) with the
    store's and decodes again only the rows a newer write replaced; the new values are
    what requests then see. A write no newer than the stored row changes nothing in
    Redis (Feast skips it), so it is no reason to read."""
    items = list(pd.read_parquet(small_world / "items.parquet")["item_id"].astype(str))
    now = [0.0]
    join = OnlineFeatureJoin(online_store, item_staleness_s=60.0, clock=lambda: now[0])
    assert join.renew(items) == len(items) and join.item_reads == len(items)
    now[0] = 31.0
    assert join.renew(items) == len(items)  # all past half the bound: all checked
    assert join.item_checks == len(items) and join.item_reads == len(items)
    assert join.renew(items) == 0  # and counted as read at 31 s
    changed = items[:3]
    before = join.items(changed)
    row = online_store.get_online_features(
        features=[f"item_popularity:{f.name}" for f in
                  online_store.get_feature_view("item_popularity").features],
        entity_rows=[{"item_id": i} for i in changed]).to_df()
    row["interactions_total"] = row["interactions_total"].fillna(0) + 1000
    row["event_timestamp"] = row["created"] = pd.Timestamp.now(tz="UTC")
    online_store.write_to_online_store("item_popularity", row)
    old = pd.Timestamp("2000-01-01", tz="UTC")
    stale = row.assign(event_timestamp=old, created=old, interactions_total=-1)
    online_store.write_to_online_store("item_popularity", stale.head(1))  # older: skipped
    now[0] = 62.0
    assert join.renew(items) == len(items)
    assert join.item_reads == len(items) + len(changed)
    after = join.items(changed)
    column = "item_popularity__interactions_total"
    assert list(after[column]) == [b + 1000 for b in before[column].fillna(0)]
    others = join.items(items[3:6])
    assert (others[column] >= 0).all()


@pytest.mark.parametrize("service, key", [("user_online", "user_id"), ("item_online", "item_id")])
def test_service_reader_answers_what_get_online_features_does(
        online_store, small_world: Path, service: str, key: str) -> None:
    """The direct read (every view in one Redis pipeline, Feast's type map) and the
    view-by-view one (each view's online_read, as on stores other than Redis) against
    Feast's own `get_online_features`, value for value: known ids, unknown ids, a
    repeated one."""
    events = pd.read_parquet(small_world / "events.parquet")
    known = list(events[key].dropna().unique()[:40])
    ids = [*known, "nobody-has-this-id", known[0]]
    reader = ServiceReader(online_store, service)
    assert reader.redis is not None  # the one-pipeline read
    direct = reader.read(key, ids)
    reader.redis = None
    by_view = reader.read(key, ids)
    feast = online_store.get_online_features(
        features=online_store.get_feature_service(service),
        entity_rows=[{key: i} for i in ids], full_feature_names=True).to_dict()
    assert set(direct) == set(feast) and len(feast) > 5
    for name, values in feast.items():
        assert len(direct[name]) == len(values)
        for row, (a, b) in enumerate(zip(values, direct[name], strict=True)):
            assert _same(a, b), f"{name} row {row}: Feast {a!r}, direct {b!r}"
    assert all(direct[name][len(known)] is None for name in direct if name != key)
    assert set(by_view) == set(direct)
    for name, values in direct.items():
        assert all(_same(a, b) for a, b in zip(values, by_view[name], strict=True)), name
