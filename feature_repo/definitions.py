"""Feast objects for RecStack: entities, sources, feature views, feature services.

`build_definitions(data_dir)` returns every object, with file sources pointing
at the tables that `recstack features build` wrote under `DATA_DIR/features/`.
Nothing is created at import time; `repo.py` builds the objects for the plain
`feast` CLI, and `recstack features apply` passes them to `FeatureStore.apply`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from feast import (
    Entity,
    FeatureService,
    FeatureView,
    Field,
    FileSource,
    PushSource,
    ValueType,
)
from feast.types import Array, Bool, Float32, Float64, Int64, String

from contracts.event_types import ITEM_COUNTED, USER_COUNTED
from contracts.feature_columns import WINDOWS

USER_COUNTS = tuple(USER_COUNTED.values())
ITEM_COUNTS = (*ITEM_COUNTED.values(), "interactions")
REALTIME_PUSH_SOURCE = "user_realtime_push"
# Batch views are snapshots stamped when they change and valid until the next
# row, so they never expire on their own (ttl 0 = no limit in point-in-time joins).
NO_TTL = timedelta(0)
# Real-time state older than this is no longer "real time": treat it as absent.
REALTIME_TTL = timedelta(days=30)
# Batch views built by models/features: every row is a snapshot stamped at a UTC midnight.
# Point-in-time joins rely on it (stores.feature_store.training_frame).
DAILY_SNAPSHOTS = {"snapshots": "daily"}


@dataclass(frozen=True)
class Definitions:
    user: Entity
    item: Entity
    views: dict[str, FeatureView]
    services: dict[str, FeatureService]
    push_source: PushSource

    def join_keys(self, view: FeatureView) -> list[str]:
        by_name = {self.user.name: self.user.join_key, self.item.name: self.item.join_key}
        return [by_name[entity] for entity in view.entities]

    def objects(self) -> list[Any]:
        """Everything `FeatureStore.apply` registers (Any: apply's list type is invariant)."""
        return [self.user, self.item, self.push_source, *self.views.values(),
                *self.services.values()]


def _source(data_dir: Path, name: str) -> FileSource:
    return FileSource(
        name=f"{name}_source",
        path=str((data_dir / "features" / f"{name}.parquet").resolve()),
        timestamp_field="event_timestamp",
        created_timestamp_column="created",
    )


def _windowed(stems: tuple[str, ...]) -> list[Field]:
    return [Field(name=f"{stem}_{w}d", dtype=Int64) for stem in stems for w in WINDOWS]


def build_definitions(data_dir: Path) -> Definitions:
    user = Entity(name="user", join_keys=["user_id"], value_type=ValueType.STRING,
                  description="A person using the product; ids verbatim from the source.")
    item = Entity(name="item", join_keys=["item_id"], value_type=ValueType.STRING,
                  description="A recommendable item; ids verbatim from the source.")
    user_activity, user_profile = _user_views(data_dir, user)
    user_realtime, push_source = _realtime_view(data_dir, user)
    item_popularity, item_content = _item_views(data_dir, item)
    views = {v.name: v for v in (user_activity, user_profile, user_realtime, item_popularity,
                                 item_content)}
    return Definitions(user, item, views, _services(views), push_source)


def _user_views(data_dir: Path, user: Entity) -> tuple[FeatureView, FeatureView]:
    user_activity = FeatureView(
        name="user_activity", tags=DAILY_SNAPSHOTS, entities=[user], ttl=NO_TTL,
        source=_source(data_dir, "user_activity"),
        schema=[*_windowed(USER_COUNTS), Field(name="events_total", dtype=Int64),
                Field(name="days_since_last_event", dtype=Float64),
                Field(name="days_since_last_purchase", dtype=Float64)],
        description="Event counts per type over 1/7/30 days, and recency at the snapshot.")
    user_profile = FeatureView(
        name="user_profile", tags=DAILY_SNAPSHOTS, entities=[user], ttl=NO_TTL,
        source=_source(data_dir, "user_profile"),
        schema=[Field(name="top_category", dtype=String),
                Field(name="top_categories", dtype=Array(String)),
                Field(name="category_affinity", dtype=Array(Float32)),
                Field(name="avg_rating_given", dtype=Float64),
                Field(name="avg_purchase_price", dtype=Float64)],
        description="Category affinity (top categories and their shares of weighted "
                    "interactions), average rating given, usual purchase price.")
    return user_activity, user_profile


def _item_views(data_dir: Path, item: Entity) -> tuple[FeatureView, FeatureView]:
    item_popularity = FeatureView(
        name="item_popularity", tags=DAILY_SNAPSHOTS, entities=[item], ttl=NO_TTL,
        source=_source(data_dir, "item_popularity"),
        schema=[*_windowed(ITEM_COUNTS), Field(name="interactions_total", dtype=Int64),
                Field(name="ctr_30d", dtype=Float64), Field(name="conversion_30d", dtype=Float64),
                Field(name="rating_count", dtype=Int64), Field(name="avg_rating", dtype=Float64),
                Field(name="age_days", dtype=Float64)],
        description="Popularity over 1/7/30 days, smoothed click-through and conversion "
                    "rates, average rating, age at the snapshot.")
    item_content = FeatureView(
        name="item_content", entities=[item], ttl=NO_TTL,
        source=_source(data_dir, "item_content"),
        schema=[Field(name="title", dtype=String), Field(name="category", dtype=String),
                Field(name="categories", dtype=Array(String)),
                Field(name="tags", dtype=Array(String)), Field(name="price", dtype=Float64),
                Field(name="year", dtype=Int64), Field(name="created_ts", dtype=Float64),
                Field(name="available", dtype=Bool)],
        description="Catalog attributes, valid from the item's creation.")
    return item_popularity, item_content


def _realtime_view(data_dir: Path, user: Entity) -> tuple[FeatureView, PushSource]:
    push_source = PushSource(name=REALTIME_PUSH_SOURCE,
                             batch_source=_source(data_dir, "user_realtime"))
    user_realtime = FeatureView(
        name="user_realtime", entities=[user], ttl=REALTIME_TTL, source=push_source,
        schema=[Field(name="recent_items", dtype=Array(String)),
                Field(name="session_id", dtype=String),
                Field(name="session_event_count", dtype=Int64),
                Field(name="last_event_type", dtype=String),
                Field(name="last_event_ts", dtype=Float64)],
        description="State after the user's latest event, pushed by the stream consumer: "
                    "recent items (newest first), current session, last event time "
                    "(epoch seconds).")
    return user_realtime, push_source


def _services(views: dict[str, FeatureView]) -> dict[str, FeatureService]:
    user_activity, user_profile, user_realtime = (
        views["user_activity"], views["user_profile"], views["user_realtime"])
    item_popularity, item_content = views["item_popularity"], views["item_content"]
    return {
        # What serving reads for one user per request.
        "user_online": FeatureService(name="user_online",
                                      features=[user_activity, user_profile, user_realtime]),
        # Item side of serving and the content generator.
        "item_online": FeatureService(name="item_online",
                                      features=[item_popularity, item_content]),
        # Two-tower retrieval: user history and profile, item content.
        "two_tower": FeatureService(name="two_tower",
                                    features=[user_activity, user_profile, item_content]),
        # Ranker: everything, joined as of each training example's time.
        "ranker": FeatureService(name="ranker",
                                 features=[user_activity, user_profile, user_realtime,
                                           item_popularity, item_content]),
    }
