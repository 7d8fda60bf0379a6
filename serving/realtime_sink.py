"""The consumer's online sink: each user's new real-time state, pushed to Feast, then
their cached recommendations invalidated.

The state (`user_realtime`: recent items, session, last event) must equal what
`models.features.build.user_realtime` computes over the user's whole history, so
that training and serving agree. The common case is cheap: read the user's online
row, fold the new events onto it with the same `RealtimeState.add`. That is only
right when every new event is newer than the row's last event, so otherwise the
state is recomputed from the user's full offline history (the offline sink has
already written this batch), with build.py's own function:

- an event already in the offline history before this batch: delivered again after a
  crash, perhaps already in the row; folding it would count it twice;
- an event older than the row's last event (a late one), or as old (unless this
  process pushed that row and knows the id of its last event, which breaks the tie as
  build.py does); folding it would misorder the items;
- no online row, but the user has history (never materialized, or the store was
  reset): folding onto nothing would forget that history.

A user seen for the first time simply starts from an empty state.

Order matters: push first, then invalidate, so that an answer computed between the
two cannot be cached as fresh while it still reflects the old features.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import pyarrow as pa
import redis
from feast import FeatureStore
from feast.data_source import PushMode
from feast.infra.online_stores.helpers import _redis_key
from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.protos.feast.types.Value_pb2 import Value as ValueProto

from feature_repo.definitions import REALTIME_PUSH_SOURCE
from models.features.build import user_realtime
from models.features.realtime import NOT_ACTIONS, RealtimeState, epoch_seconds
from serving.cache import invalidate_many
from serving.events import Event

REALTIME_VIEW = "user_realtime"
FIELDS = ("recent_items", "session_id", "session_event_count", "last_event_type",
          "last_event_ts")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)
MAX_HINTS = 1_000_000


def micros(at: datetime) -> int:
    return (at - EPOCH) // MICROSECOND


@dataclass(frozen=True)
class OnlineRow:
    state: RealtimeState
    stored_at_ns: int
    """The row's event timestamp in the store: Feast's Redis store ignores a write that
    is not newer, so a recomputed state must be stamped after it."""


def read_rows(store: FeatureStore, users: list[str]) -> dict[str, OnlineRow]:
    """The current online rows of these users (absent: no row)."""
    response = store.get_online_features(
        features=[f"{REALTIME_VIEW}:{name}" for name in FIELDS],
        entity_rows=[{"user_id": user} for user in users])
    values = response.to_dict()
    names = list(response.proto.metadata.feature_names.val)
    stamps = response.proto.results[names.index("last_event_ts")].event_timestamps
    rows = {}
    for n, user in enumerate(users):
        if values["last_event_ts"][n] is None:
            continue
        state = RealtimeState(
            recent_items=list(values["recent_items"][n] or []),
            session_id=values["session_id"][n] or None,  # stored as "" when there was none
            session_event_count=int(values["session_event_count"][n] or 0),
            last_event_type=values["last_event_type"][n],
            last_event_ts=float(values["last_event_ts"][n]))
        rows[user] = OnlineRow(state, stamps[n].seconds * 1_000_000_000 + stamps[n].nanos)
    return rows


def state_from_history(history: pd.DataFrame) -> dict[str, RealtimeState]:
    """Each user's state after their whole history: build.py's last row per user."""
    rows = user_realtime(history)
    last = rows.groupby("user_id", sort=False).tail(1)
    return {str(row.user_id): RealtimeState(
        recent_items=list(row.recent_items), session_id=row.session_id or None,
        session_event_count=int(row.session_event_count),
        last_event_type=str(row.last_event_type), last_event_ts=float(row.last_event_ts))
        for row in last.itertuples(index=False)}


class RealtimeSink:
    def __init__(self, store: FeatureStore, cache: redis.Redis, cache_prefix: str,
                 cache_ttl_s: float, history: Callable[[Collection[str]], pa.Table],
                 clock: Callable[[], float] = time.time) -> None:
        """`history(users)`: those users' offline events (the offline sink's output
        included); `cache_ttl_s`: at least the servers' response-cache TTL."""
        self.store, self.cache, self.cache_prefix = store, cache, cache_prefix
        self.cache_ttl_s, self.history, self.clock = cache_ttl_s, history, clock
        self.recomputed = 0  # users whose state came from their full history, for tests
        # The (time, event_id) of the last event in each state this process pushed. The
        # row keeps only the time, and events of one user often share a time (clients
        # that send whole seconds): the id tells whether a new event with that same
        # time sorts after the row's, so folding stays exact without a recomputation.
        self._last: dict[str, tuple[int, str]] = {}

    def apply(self, events: list[Event], known_users: Collection[str],
              known_ids: Collection[str]) -> int:
        """Push the new state of every user these events change and invalidate their
        cached answers; returns how many users. `known_users`: users with offline
        history before this batch; `known_ids`: ids of these events that were already in
        it (a redelivery). Raises when the store or Redis fails (nothing is lost: the
        batch is retried, and a retry is harmless)."""
        by_user = actions_by_user(events)
        if not by_user:
            return 0
        rows = read_rows(self.store, list(by_user))
        states: dict[str, RealtimeState] = {}
        recompute = []
        for user, actions in by_user.items():
            row = rows.get(user)
            if any(str(e.event_id) in known_ids for e in actions):
                recompute.append(user)  # the row may hold them already
            elif row is None and user not in known_users:
                states[user] = fold(RealtimeState(), actions)
            elif row is not None and self._follows(user, row, actions[0]):
                states[user] = fold(row.state, actions)
            else:
                recompute.append(user)
        lasts = {user: order_key(by_user[user][-1]) for user in states}
        if recompute:
            history = self.history(recompute).to_pandas()
            rebuilt, rebuilt_lasts = state_from_history(history), last_keys(history)
            for user in recompute:
                # (no history at all would mean the offline sink skipped the batch: fold
                # what there is rather than push nothing)
                states[user] = rebuilt.get(user) or fold(RealtimeState(), by_user[user])
                lasts[user] = rebuilt_lasts.get(user) or order_key(by_user[user][-1])
            self.recomputed += len(recompute)
        self.store.push(REALTIME_PUSH_SOURCE, push_frame(states, rows),
                        to=PushMode.ONLINE)
        invalidate_many(self.cache, self.cache_prefix, states, self.cache_ttl_s, self.clock())
        if len(self._last) > MAX_HINTS:  # only hints: forgetting costs a recomputation
            self._last.clear()
        self._last.update(lasts)
        return len(states)

    def forget(self, user: str) -> None:
        """Delete every online feature of the user (all views: Feast's Redis store keeps
        one hash per entity), then invalidate their cached answers, in that order for
        the reason `apply` pushes first. Raises when Redis fails (retried)."""
        store_type = self.store.config.online_store.type
        if store_type != "redis":
            # Feast has no delete-by-entity API; the consumer runs on Redis (build_consumer).
            raise NotImplementedError(f"deleting online rows from a {store_type} store")
        self.cache.delete(online_key(self.store, user))
        invalidate_many(self.cache, self.cache_prefix, [user], self.cache_ttl_s, self.clock())
        self._last.pop(user, None)

    def _follows(self, user: str, row: OnlineRow, first: Event) -> bool:
        """Whether `first` sorts after every event the row holds, so that folding from
        the row gives what build.py would compute over the whole history."""
        if row.state.last_event_ts is None:
            return False
        row_micros = round(row.state.last_event_ts * 1e6)
        key = order_key(first)
        if key[0] != row_micros:
            return key[0] > row_micros
        hint = self._last.get(user)
        return hint is not None and hint[0] == row_micros and key > hint


def online_key(store: FeatureStore, user: str) -> bytes:
    """The user's hash in Feast's Redis online store (the key Feast itself computes)."""
    entity = EntityKeyProto(join_keys=["user_id"], entity_values=[ValueProto(string_val=user)])
    return _redis_key(store.project, entity, entity_key_serialization_version=(
        store.config.entity_key_serialization_version))


def order_key(event: Event) -> tuple[int, str]:
    """Where an event sorts in a user's history (build.py sorts by time, then id)."""
    return micros(event.timestamp), str(event.event_id)


def fold(state: RealtimeState, actions: list[Event]) -> RealtimeState:
    for event in actions:
        state.add(event.item_id, event.session_id, event.event_type,
                  epoch_seconds(micros(event.timestamp)))
    return state


def last_keys(history: pd.DataFrame) -> dict[str, tuple[int, str]]:
    """The order key of each user's last action in a (timestamp, event_id)-sorted history."""
    actions = history[~history["event_type"].isin(NOT_ACTIONS)]
    last = actions.groupby("user_id", sort=False).tail(1)
    stamps = pd.to_datetime(last["timestamp"], utc=True).dt.as_unit("us").astype("int64")
    return {str(u): (int(t), str(e))
            for u, t, e in zip(last["user_id"], stamps, last["event_id"], strict=True)}


def actions_by_user(events: list[Event]) -> dict[str, list[Event]]:
    """The events that change the real-time state, grouped by user in (timestamp,
    event_id) order; once per event_id, the first met (as the offline sink keeps it)."""
    unique: dict[str, Event] = {}
    for event in events:
        unique.setdefault(str(event.event_id), event)
    actions = [e for e in unique.values() if e.event_type not in NOT_ACTIONS]
    by_user: dict[str, list[Event]] = {}
    for event in sorted(actions, key=order_key):
        by_user.setdefault(event.user_id, []).append(event)
    return by_user


def push_frame(states: dict[str, RealtimeState], rows: dict[str, OnlineRow]
               ) -> pd.DataFrame:
    """The rows to push, shaped like build.py's `user_realtime` table. Stamped just after
    the last event, as build.py stamps them, or just after the stored row when that is
    later (a recomputed state may end on the same event)."""
    stamps = []
    for user, state in states.items():
        at_ns = round((state.last_event_ts or 0.0) * 1e6) * 1000 + 1000
        if user in rows:
            at_ns = max(at_ns, rows[user].stored_at_ns + 1000)
        stamps.append(at_ns)
    stamped = pd.to_datetime(pd.Series(stamps, dtype="int64"), unit="ns", utc=True)
    frame: dict[str, Any] = {
        "user_id": list(states),
        "event_timestamp": stamped,
        "recent_items": [list(s.recent_items) for s in states.values()],
        "session_id": [s.session_id or "" for s in states.values()],
        "session_event_count": pd.Series([s.session_event_count for s in states.values()],
                                         dtype="int64"),
        "last_event_type": [s.last_event_type for s in states.values()],
        "last_event_ts": pd.Series([s.last_event_ts for s in states.values()],
                                   dtype="float64"),
        "created": stamped,
    }
    return pd.DataFrame(frame)
