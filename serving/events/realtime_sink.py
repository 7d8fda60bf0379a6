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

The row read is skipped where this process pushed it: it keeps each state it pushed
(`PushedStates`, bounded) with the row's stamp, and one pipelined HMGET of the rows'
stamps per batch says whose row is still the one it wrote. A row anyone else wrote
since (another consumer that took over entries, a materialization, a deletion, a
flushed store) has another stamp, or none, and is read again through Feast; so is
every row after a restart, which starts with nothing kept. Rows are read and written
through the online store's own `online_read` / `online_write_batch`, with the feature
view looked up once: `get_online_features` and `push` re-read the registry and
re-convert through pandas on every call, three to four times the cost per batch.

Order matters: push first, then invalidate, so that an answer computed between the
two cannot be cached as fresh while it still reflects the old features.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import pyarrow as pa
import redis
from feast import FeatureStore, RepoConfig
from feast.infra.online_stores.helpers import _redis_key
from feast.infra.online_stores.redis import _versioned_fv_name
from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.type_map import feast_value_type_to_python_type, python_values_to_proto_values
from feast.utils import make_tzaware
from google.protobuf.timestamp_pb2 import Timestamp

from contracts.event_types import NOT_ACTIONS
from models.features.build import user_realtime
from models.features.realtime import RealtimeState, epoch_seconds
from serving.cache import invalidate_many
from serving.events.event import Event
from serving.features import entity_keys

REALTIME_VIEW = "user_realtime"
FIELDS = ("recent_items", "session_id", "session_event_count", "last_event_type",
          "last_event_ts")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)
MAX_HINTS = 1_000_000
MAX_PUSHED = 200_000  # states kept (a few hundred bytes each); past that the oldest go


def micros(at: datetime) -> int:
    return (at - EPOCH) // MICROSECOND


@dataclass(frozen=True)
class OnlineRow:
    state: RealtimeState
    stored_at_ns: int
    """The row's event timestamp in the store: Feast's Redis store ignores a write that
    is not newer, so a recomputed state must be stamped after it."""


class OnlineRows:
    """The `user_realtime` rows of a Feast store, through its online store's interface."""

    def __init__(self, store: FeatureStore, client: redis.Redis) -> None:
        self.store, self.client = store, client
        self.config, self.provider = store.config, store.provider
        self.write_config = _without_dedup(self.config)
        self.view = store.get_feature_view(REALTIME_VIEW)
        self.types = {f.name: f.dtype.to_value_type() for f in self.view.features}
        self.is_redis = self.config.online_store.type == "redis"
        # Where Feast's Redis store keeps a row's event timestamp (in the entity's hash).
        self.stamp_field = f"_ts:{_versioned_fv_name(self.view, self.config)}"
        self._keys: dict[str, bytes] = {}

    def stamps(self, users: Sequence[str]) -> list[int | None] | None:
        """Each user's row stamp (ns; None: no row), in one command; None when the store
        is not Redis. Reads the field Feast's own write reads to skip stale rows:
        should its layout ever change, no stamp matches and every row is read in full."""
        if not self.is_redis or not users:
            return None if not self.is_redis else []
        found = self.client.register_script(_HGET_EACH)(
            keys=[self.key(user) for user in users], args=[self.stamp_field])
        stamps: list[int | None] = []
        for raw in found:
            if raw is None:
                stamps.append(None)
                continue
            stamp = Timestamp()
            stamp.ParseFromString(raw)
            stamps.append(stamp.seconds * 1_000_000_000 + stamp.nanos)
        return stamps

    def key(self, user: str) -> bytes:
        """`online_key`, remembered: serializing the entity key is most of a stamp check."""
        key = self._keys.get(user)
        if key is None:
            if len(self._keys) >= MAX_PUSHED:
                self._keys.clear()
            key = self._keys[user] = online_key(self.store, user)
        return key

    def read(self, users: Sequence[str]) -> dict[str, OnlineRow]:
        """The current rows of these users (absent: no row)."""
        found = self.provider.online_read(self.config, self.view, entity_keys(users),
                                          list(FIELDS))
        rows = {}
        for user, (at, protos) in zip(users, found, strict=True):
            if at is None or not protos:
                continue
            values = {name: feast_value_type_to_python_type(protos[name]) for name in FIELDS}
            if values["last_event_ts"] is None:
                continue
            state = RealtimeState(
                recent_items=list(values["recent_items"] or []),
                session_id=values["session_id"] or None,  # stored as "" when there was none
                session_event_count=int(values["session_event_count"] or 0),
                last_event_type=values["last_event_type"],
                last_event_ts=float(values["last_event_ts"]))
            rows[user] = OnlineRow(state, micros(make_tzaware(at)) * 1000)
        return rows

    def write(self, states: dict[str, RealtimeState], stamps_ns: list[int]) -> None:
        """One `online_write_batch` for all the states, converted by Feast's type map,
        shaped like build.py's `user_realtime` rows."""
        columns: dict[str, list[Any]] = {
            "recent_items": [list(s.recent_items) for s in states.values()],
            "session_id": [s.session_id or "" for s in states.values()],
            "session_event_count": [s.session_event_count for s in states.values()],
            "last_event_type": [s.last_event_type for s in states.values()],
            "last_event_ts": [s.last_event_ts for s in states.values()],
        }
        protos = {name: python_values_to_proto_values(values, self.types[name])
                  for name, values in columns.items()}
        stamped = [EPOCH + timedelta(microseconds=ns // 1000) for ns in stamps_ns]
        rows: list[tuple[EntityKeyProto, dict[str, ValueProto], datetime, datetime | None]] = [
            (key, {name: protos[name][n] for name in FIELDS}, stamped[n], None)
            for n, key in enumerate(entity_keys(list(states)))]
        self.provider.online_write_batch(self.write_config, self.view, rows, None)


def _without_dedup(config: RepoConfig) -> RepoConfig:
    """`config` with Feast's Redis store told not to read each row's stamp before writing
    it (`skip_dedup`): the sink has read those stamps already, in one command, and
    stamps every state after the row it read (`push_stamps`), so Feast's check would
    never refuse a write; it cost a second pipeline of one HMGET per user (the consumer
    drains ~10% faster without it). What it still guarded, a newer row written by someone else
    between that read and this write, it guards no better than Feast's own read-then-
    write does (a row written between Feast's two round trips is overwritten too).
    Other stores get `config` unchanged."""
    online = config.online_store
    if getattr(online, "type", None) != "redis" or not hasattr(online, "skip_dedup"):
        return config
    copy = config.model_copy()
    copy._online_store = online.model_copy(update={"skip_dedup": True})
    return copy


# One HGET per key in one command: a pipeline of hundreds of HGETs cost more in
# client-side packing and parsing than the rest of the check.
_HGET_EACH = """
local out = {}
for i, key in ipairs(KEYS) do
  out[i] = redis.call('HGET', key, ARGV[1])
end
return out
"""


def state_from_history(history: pd.DataFrame) -> dict[str, RealtimeState]:
    """Each user's state after their whole history: build.py's last row per user."""
    rows = user_realtime(history)
    last = rows.groupby("user_id", sort=False).tail(1)
    return {str(row.user_id): RealtimeState(
        recent_items=list(row.recent_items), session_id=row.session_id or None,
        session_event_count=int(row.session_event_count),
        last_event_type=str(row.last_event_type), last_event_ts=float(row.last_event_ts))
        for row in last.itertuples(index=False)}


# A pushed state as kept: (recent_items, session_id, session_event_count,
# last_event_type, last_event_ts, stored_at_ns). A tuple of strings and numbers, which
# the garbage collector stops tracking: hundreds of thousands of them cost no GC passes.
Kept = tuple[tuple[str, ...], str | None, int, str | None, float | None, int]


class PushedStates:
    """The states this process pushed, with the stamps it wrote them under. Only a hint:
    a state is used only while the stored row still carries that stamp (see `current`)."""

    def __init__(self, limit: int = MAX_PUSHED) -> None:
        self.limit = limit
        self._rows: dict[str, Kept] = {}

    def __len__(self) -> int:
        return len(self._rows)

    def current(self, user: str, stored_at_ns: int | None) -> OnlineRow | None:
        """The state pushed for `user`, if the row stored now is that push."""
        kept = self._rows.get(user)
        if kept is None or kept[5] != stored_at_ns:
            return None
        items, session_id, count, event_type, ts, stamp = kept
        return OnlineRow(RealtimeState(list(items), session_id, count, event_type, ts), stamp)

    def remember(self, rows: dict[str, OnlineRow]) -> None:
        for user, row in rows.items():
            state = row.state
            self._rows.pop(user, None)  # (re-inserted: the dict's order is the age)
            self._rows[user] = (tuple(state.recent_items), state.session_id,
                                state.session_event_count, state.last_event_type,
                                state.last_event_ts, row.stored_at_ns)
        excess = len(self._rows) - self.limit
        if excess > 0:
            for user in list(itertools.islice(self._rows, excess)):
                del self._rows[user]

    def forget(self, users: Collection[str]) -> None:
        for user in users:
            self._rows.pop(user, None)


class RealtimeSink:
    def __init__(self, store: FeatureStore, cache: redis.Redis, cache_prefix: str,
                 cache_ttl_s: float, history: Callable[[Collection[str]], pa.Table],
                 clock: Callable[[], float] = time.time) -> None:
        """`history(users)`: those users' offline events (the offline sink's output
        included); `cache_ttl_s`: at least the servers' response-cache TTL. `cache`: the
        Redis of the response cache, which is the online store's too (`forget` deletes
        Feast's rows there)."""
        self.store, self.cache, self.cache_prefix = store, cache, cache_prefix
        self.cache_ttl_s, self.history, self.clock = cache_ttl_s, history, clock
        self.rows = OnlineRows(store, cache)
        self.pushed = PushedStates()
        self.recomputed = 0  # users whose state came from their full history, for tests
        self.rows_read = 0  # users whose row was read through Feast, for tests
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
        rows = self.current_rows(list(by_user))
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
        stamps = push_stamps(states, rows)
        try:
            self.rows.write(states, stamps)
            invalidate_many(self.cache, self.cache_prefix, states, self.cache_ttl_s,
                            self.clock())
        except BaseException:
            self.pushed.forget(states)  # what the store holds now is unknown: read it next
            raise
        self.pushed.remember({user: OnlineRow(state, stamp) for (user, state), stamp
                              in zip(states.items(), stamps, strict=True)})
        if len(self._last) > MAX_HINTS:  # only hints: forgetting costs a recomputation
            self._last.clear()
        self._last.update(lasts)
        return len(states)

    def current_rows(self, users: list[str]) -> dict[str, OnlineRow]:
        """The users' rows as stored now: the states this process pushed where the stored
        stamp says the row is still that push, the rest read through Feast."""
        stamps = self.rows.stamps(users)
        if stamps is None:  # no cheap way to tell: read every row
            self.rows_read += len(users)
            return self.rows.read(users)
        rows: dict[str, OnlineRow] = {}
        unknown: dict[str, int] = {}
        for user, stamp in zip(users, stamps, strict=True):
            pushed = self.pushed.current(user, stamp)
            if pushed is not None:
                rows[user] = pushed
            elif stamp is not None:  # (no stamp: no row, nothing to read)
                unknown[user] = stamp
        if unknown:
            self.rows_read += len(unknown)
            for user, row in self.rows.read(list(unknown)).items():
                # The exact stamp (the read's is a float in seconds, and a write must
                # land strictly after it).
                rows[user] = OnlineRow(row.state, max(row.stored_at_ns, unknown[user]))
        return rows

    def forget(self, user: str) -> None:
        """Delete every online feature of the user (all views: Feast's Redis store keeps
        one hash per entity), then invalidate their cached answers, in that order for
        the reason `apply` pushes first. Raises when Redis fails (retried)."""
        store_type = self.store.config.online_store.type
        if store_type != "redis":
            # Feast has no delete-by-entity API; the consumer runs on Redis (build_consumer).
            raise NotImplementedError(f"deleting online rows from a {store_type} store")
        self.pushed.forget([user])
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


def push_stamps(states: dict[str, RealtimeState], rows: dict[str, OnlineRow]) -> list[int]:
    """Each state's row stamp (ns, whole microseconds: what Feast stores of a datetime):
    just after its last event, as build.py stamps its rows, or just after the stored row
    when that is later (a recomputed state may end on the same event)."""
    stamps = []
    for user, state in states.items():
        at_ns = round((state.last_event_ts or 0.0) * 1e6) * 1000 + 1000
        if user in rows:
            at_ns = max(at_ns, rows[user].stored_at_ns + 1000)
        stamps.append(at_ns // 1000 * 1000)
    return stamps
