"""Ranker features from the Feast online store, shaped like the offline join.

A `FeatureJoin` (models/ranker/features.py) for serving: (user_id, item_id,
event_timestamp) rows in, the same rows with the `ranker` service's features out,
named `view__feature` as `training_frame` names them, so the ranker reads both
the same way.

The user side (`user_online`) is read fresh on every call: one entity per
request, and it must see the user's latest events. The item side
(`item_online`) is read for a few hundred candidates per request, changes
slowly (daily popularity snapshots, catalog content), and Feast's Python read
path costs per entity, so it is cached in process: an item's features are at
most `item_staleness_s` old (60 s by default), and only missing or stale items
are read.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

import pandas as pd
from feast import FeatureStore

USER_SERVICE, ITEM_SERVICE = "user_online", "item_online"
ITEM_STALENESS_S = 60.0


class OnlineFeatureJoin:
    def __init__(self, store: FeatureStore, item_staleness_s: float = ITEM_STALENESS_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.item_staleness_s = item_staleness_s
        self.clock = clock
        self._items: dict[str, tuple[float, dict[str, Any]]] = {}  # id -> (read at, row)
        self.item_reads = 0  # items read from the store, for metrics and tests

    def __call__(self, entity: pd.DataFrame) -> pd.DataFrame:
        users = self._read(USER_SERVICE, "user_id", entity["user_id"].unique())
        items = self.items(entity["item_id"].unique())
        out = entity[["user_id", "item_id", "event_timestamp"]].reset_index(drop=True)
        return (out.merge(users, on="user_id", how="left", validate="many_to_one")
                .merge(items, on="item_id", how="left", validate="many_to_one"))

    def user(self, user_id: str) -> dict[str, Any]:
        """One user's `user_online` row, read now."""
        return dict(self._read(USER_SERVICE, "user_id", [user_id]).iloc[0])

    def items(self, item_ids: Iterable[str]) -> pd.DataFrame:
        """`item_online` rows for these items, in order, each at most
        `item_staleness_s` old."""
        now = self.clock()
        wanted = list(item_ids)
        stale = [i for i in wanted
                 if i not in self._items or now - self._items[i][0] > self.item_staleness_s]
        if stale:
            fresh = self._read(ITEM_SERVICE, "item_id", stale)
            self.item_reads += len(stale)
            for row in fresh.to_dict(orient="records"):
                self._items[row["item_id"]] = (now, row)
        return pd.DataFrame([self._items[i][1] for i in wanted])

    def _read(self, service: str, key: str, ids: Iterable[str]) -> pd.DataFrame:
        rows = [{key: str(i)} for i in ids]
        values = self.store.get_online_features(
            features=self.store.get_feature_service(service), entity_rows=rows,
            full_feature_names=True).to_dict()
        return pd.DataFrame(values)
