"""Against a real Redis and a real Feast repo: apply, materialize, read online and offline."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from contracts.settings import Settings
from models.features.build import build_features
from stores.feature_store import (
    JOIN_ENGINES,
    OnlineStoreUnavailable,
    apply_definitions,
    materialize_all,
    online_features,
    open_store,
    training_frame,
)
from tests.conftest import TEST_POSTGRES
from tests.features.handbuilt import write_handbuilt

pytestmark = pytest.mark.integration
CLOSED_PORT = "127.0.0.1:1"  # nothing listens on port 1


def _same(online: object, offline: object) -> bool:
    if isinstance(offline, np.ndarray | list):
        return list(online) == pytest.approx(list(offline))  # type: ignore[arg-type]
    if offline is None or offline is pd.NA or (isinstance(offline, float) and np.isnan(offline)):
        return online is None or (isinstance(online, float) and np.isnan(online))
    if isinstance(offline, float):
        return online == pytest.approx(offline)
    return bool(online == offline)


@pytest.mark.parametrize("engine", ["direct", "feast"])
def test_online_read_equals_latest_offline_row(small_world: Path, redis_settings, engine,
                                               tmp_path: Path) -> None:
    build_features(small_world)
    lines: list[str] = []
    store = open_store(small_world, redis_settings, announce=lines.append)
    assert lines == ["online store: Redis at localhost:6379 db 14"]
    definitions = apply_definitions(store, small_world)
    materialize_all(store, definitions, engine=engine)

    for view_name, key, service in (("user_activity", "user_id", "user_online"),
                                    ("user_profile", "user_id", "user_online"),
                                    ("user_realtime", "user_id", "user_online"),
                                    ("item_popularity", "item_id", "item_online"),
                                    ("item_content", "item_id", "item_online")):
        table = pq.read_table(small_world / "features" / f"{view_name}.parquet").to_pandas()
        latest = table.sort_values(["event_timestamp", "created"]).groupby(key).tail(1)
        sample = latest.sample(n=min(25, len(latest)), random_state=1)
        features = [f.name for f in definitions.views[view_name].features]
        online = online_features(store, service, [{key: k} for k in sample[key]])
        for n, (_, row) in enumerate(sample.iterrows()):
            assert online[key][n] == row[key]
            for feature in features:
                assert _same(online[feature][n], row[feature]), (
                    f"{view_name}.{feature} for {row[key]}: online {online[feature][n]!r} "
                    f"!= offline {row[feature]!r}")


def test_unknown_entity_reads_as_nulls(small_world: Path, redis_settings) -> None:
    build_features(small_world)
    store = open_store(small_world, redis_settings, announce=lambda _: None)
    materialize_all(store, apply_definitions(store, small_world))
    online = online_features(store, "user_online", [{"user_id": "nobody"}])
    assert online["views_7d"] == [None] and online["recent_items"] == [None]


@pytest.mark.parametrize("engine", JOIN_ENGINES)
def test_point_in_time_join_matches_hand_worked_answers(tmp_path: Path, redis_settings,
                                                         engine: str) -> None:
    data = write_handbuilt(tmp_path / "hand")
    build_features(data)
    store = open_store(data, redis_settings, announce=lambda _: None)
    apply_definitions(store, data)
    entity_df = pd.DataFrame({
        "user_id": ["u1", "u1", "u1", "u2", "u1"],
        "item_id": ["i1", "i1", "i2", "i2", "i1"],
        "event_timestamp": pd.to_datetime([
            "2026-01-09T12:00:00Z",   # snapshot of 9 Jan: the 1 Jan view left the 7d window
            "2026-01-03T08:59:00Z",   # one minute before the purchase: not seen yet
            "2026-01-11T23:00:00Z",   # after the 11 Jan view
            "2026-01-05T00:00:00Z",   # u2 rated i2 on 2 Jan
            "2025-12-31T00:00:00Z",   # before any event: no user features at all
        ], utc=True),
        "label": [0, 1, 2, 3, 4],
    })
    frame = training_frame(store, entity_df, "ranker", engine=engine).set_index(
        "label").sort_index()
    assert (frame.loc[0, "user_activity__views_7d"], frame.loc[0, "user_activity__purchases_7d"],
            frame.loc[0, "user_activity__views_30d"], frame.loc[0, "user_activity__events_total"]
            ) == (0, 1, 1, 3)
    assert (frame.loc[1, "user_activity__views_7d"], frame.loc[1, "user_activity__clicks_7d"],
            frame.loc[1, "user_activity__purchases_7d"]) == (1, 1, 0)
    assert frame.loc[1, "user_realtime__last_event_type"] == "click"
    assert list(frame.loc[2, "user_realtime__recent_items"]) == ["i2", "i1"]
    assert frame.loc[2, "item_content__category"] == "toys"
    assert (frame.loc[3, "user_activity__ratings_1d"], frame.loc[3, "user_activity__ratings_7d"]
            ) == (0, 1)
    assert frame.loc[3, "item_popularity__avg_rating"] == 4.0
    assert pd.isna(frame.loc[4, "user_activity__views_7d"])
    assert frame.loc[4, "item_content__title"] == "Book One"  # i1 existed since December


@pytest.mark.parametrize("engine", JOIN_ENGINES)
def test_training_frame_equals_one_feast_join(small_world: Path, redis_settings,
                                              engine: str) -> None:
    """Both engines (the ASOF join; Feast's join per entity on distinct (key, day)
    lookups) must give exactly what one plain Feast point-in-time join over every row
    gives."""
    build_features(small_world)
    store = open_store(small_world, redis_settings, announce=lambda _: None)
    apply_definitions(store, small_world)
    events = pd.read_parquet(small_world / "events.parquet")
    rng = np.random.default_rng(3)
    sample = events.sample(n=400, random_state=3)
    entity_df = pd.DataFrame({
        "user_id": sample["user_id"].to_numpy(),
        "item_id": rng.permutation(sample["item_id"].to_numpy()),
        # times inside days, at midnights and just before events, in no order
        "event_timestamp": pd.to_datetime(sample["timestamp"], utc=True).reset_index(drop=True)
        - pd.to_timedelta(rng.choice([0, 1, 3_600, 86_400], size=len(sample)), unit="s"),
        "label": np.arange(len(sample))})
    entity_df.loc[::7, "event_timestamp"] = entity_df.loc[::7, "event_timestamp"].dt.floor("D")
    grouped = training_frame(store, entity_df, "ranker", engine=engine)
    assert list(grouped["label"]) == list(entity_df["label"])  # order kept
    plain = store.get_historical_features(
        entity_df=entity_df, features=store.get_feature_service("ranker"),
        full_feature_names=True).to_df().set_index("label").sort_index()
    grouped = grouped.set_index("label")
    features = [c for c in plain.columns if "__" in c]
    assert set(features) == {c for c in grouped.columns if "__" in c} and len(features) > 40
    for column in features:
        for n, (a, b) in enumerate(zip(grouped[column], plain[column], strict=True)):
            assert _same(a, b), f"{column} row {n}: grouped {a!r} != plain {b!r}"


def test_asof_join_floors_times_only_for_midnight_snapshots(small_world: Path,
                                                            redis_settings) -> None:
    """The ASOF join shares one lookup per key and day only where every row of a view's
    source sits at a midnight: the daily views, not the real-time one."""
    import duckdb

    from stores.point_in_time import _midnights_only

    build_features(small_world)
    store = open_store(small_world, redis_settings, announce=lambda _: None)
    apply_definitions(store, small_world)
    con = duckdb.connect()
    checked = {view.name: _midnights_only(con, view.batch_source.path, "event_timestamp")
               for view in store.list_feature_views()}
    assert checked == {"user_activity": True, "user_profile": True, "item_popularity": True,
                       "item_content": False, "user_realtime": False}


def test_embedded_sqlite_default_when_no_redis_answers(tmp_path: Path) -> None:
    data = write_handbuilt(tmp_path / "hand")
    build_features(data)
    lines: list[str] = []
    store = open_store(data, Settings(redis=CLOSED_PORT), announce=lines.append)
    assert len(lines) == 1 and "embedded SQLite" in lines[0] and "no Redis at" in lines[0]
    materialize_all(store, apply_definitions(store, data),
                    end=datetime(2026, 2, 1, tzinfo=UTC))
    online = online_features(store, "user_online", [{"user_id": "u1"}])
    assert online["recent_items"] == [["i2", "i1"]]
    assert (data / "feature_store" / "online.db").exists()


def test_explicit_redis_that_is_down_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(OnlineStoreUnavailable, match="no Redis answers"):
        open_store(tmp_path, Settings(redis=CLOSED_PORT, online_store="redis"))


def test_shared_sql_registry_on_postgres(tmp_path: Path, redis_settings) -> None:
    pytest.importorskip("psycopg")
    data = write_handbuilt(tmp_path / "hand")
    build_features(data)
    project = f"recstack_pg_{datetime.now(UTC):%H%M%S%f}"
    settings = Settings(redis=redis_settings.redis, online_store="redis",
                        feast_project=project, feast_registry=TEST_POSTGRES)
    store = open_store(data, settings, announce=lambda _: None)
    try:
        apply_definitions(store, data)
        # A second client (another pod, say) sees the same registry.
        other = open_store(tmp_path / "elsewhere", settings, announce=lambda _: None)
        names = sorted(v.name for v in other.list_feature_views())
        assert names == ["item_content", "item_popularity", "user_activity", "user_profile",
                         "user_realtime"]
        assert not (data / "feature_store" / "registry.db").exists()
    finally:
        store.registry.delete_project(project, commit=True)
