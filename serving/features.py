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
most `item_staleness_s` old (300 s by default), and only missing or stale items
are read. `keep_fresh` takes those reads off the request path: it reads a
catalog's rows at start and re-reads each from a background thread before it goes
stale (a cold read of 200 candidates cost ~4 ms of a request on the 10k-item
load test).

When the store fails (Redis unreachable, a timeout), `user` raises
`FeaturesUnavailable` and item reads fall back to the rows already cached, stale
or not, with the rest missing; `lookup` says whether every read succeeded, so a
request can be answered and marked degraded. After a failure the store is left
alone for `retry_after_s`, so that a dead Redis costs one failed connection per
interval rather than one per request.
"""

from __future__ import annotations

import logging
import math
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import pandas as pd
from feast import FeatureStore, ValueType
from feast.infra.online_stores.redis import RedisOnlineStore, _versioned_fv_name
from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.type_map import feast_value_type_to_python_type, python_values_to_proto_values
from redis.exceptions import RedisError

from models.ranker.item_rows import ItemRows, ItemTable
from serving.config import ITEM_STALENESS_S, STORE_TIMEOUT_S

if TYPE_CHECKING:
    from contracts.settings import Settings

log = logging.getLogger("recstack.serving")
USER_SERVICE, ITEM_SERVICE = "user_online", "item_online"
RETRY_AFTER_S = 2.0
# What a failing online store raises: Redis (refused, reset, timed out) or SQLite.
STORE_ERRORS = (RedisError, OSError, sqlite3.Error)


class FeaturesUnavailable(RuntimeError):
    pass


T = TypeVar("T")
# One row's views' stored event timestamps, as the store's bytes (None: no row).
Stamp = tuple[object, ...]


class OnlineFeatureJoin:
    def __init__(self, store: FeatureStore, item_staleness_s: float = ITEM_STALENESS_S,
                 clock: Callable[[], float] = time.monotonic,
                 retry_after_s: float = RETRY_AFTER_S) -> None:
        self.store = store
        self.item_staleness_s = item_staleness_s
        self.clock = clock
        self.retry_after_s = retry_after_s
        self._failed_at: float | None = None
        self._table = ItemTable()
        self.item_reads = 0  # items read from the store, for metrics and tests
        self.item_checks = 0  # items whose stamps were compared instead (renew)
        self._stamps: dict[str, Stamp] = {}  # each item's stamp when its row was read
        self.failures = 0  # store reads that failed
        # Resolved once: a registry lookup per read cost ~9 ms of a ~10 ms user read.
        self._services = {name: ServiceReader(store, name)
                          for name in (USER_SERVICE, ITEM_SERVICE)}

    def __call__(self, entity: pd.DataFrame) -> pd.DataFrame:
        users = self._read(USER_SERVICE, "user_id", entity["user_id"].unique())
        items = self.items(entity["item_id"].unique())
        out = entity[["user_id", "item_id", "event_timestamp"]].reset_index(drop=True)
        return (out.merge(users, on="user_id", how="left", validate="many_to_one")
                .merge(items, on="item_id", how="left", validate="many_to_one"))

    def user(self, user_id: str) -> dict[str, Any]:
        """One user's `user_online` row, read now; FeaturesUnavailable when the store
        fails."""
        values = self._guarded(lambda: self._values(USER_SERVICE, "user_id", [user_id]))
        if values is None:
            raise FeaturesUnavailable("the online store is unavailable")
        return {k: v[0] for k, v in values.items()}

    def items(self, item_ids: Iterable[str]) -> pd.DataFrame:
        """`item_online` rows for these items, in order, each at most
        `item_staleness_s` old."""
        ids = [str(i) for i in item_ids]
        found = self.lookup(ids)
        return pd.DataFrame([self._table.row(int(s)) or {"item_id": i}
                             for i, s in zip(ids, found.slots, strict=True)])

    def lookup(self, item_ids: Iterable[str]) -> ItemRows:
        """These items' rows, the missing and stale ones read first."""
        ids = [str(i) for i in item_ids]
        slots = self._table.slots(ids)
        stale = np.flatnonzero(self._table.ages(slots, self.clock()) > self.item_staleness_s)
        if not len(stale):
            return ItemRows(self._table, slots, True)
        complete = self._read_items([ids[n] for n in stale])
        return ItemRows(self._table, self._table.slots(ids), complete)

    def keep_fresh(self, item_ids: Iterable[str], tick_s: float = 1.0) -> threading.Thread:
        """Read these items' rows now, then keep re-reading them from a daemon thread
        before they are `item_staleness_s` old, so requests find them fresh. Feast's
        Python read costs ~0.35 ms of CPU an item (10k items: 3.5 s), so the thread
        reads a share each tick, oldest first, rather than the catalog in one burst."""
        catalog = [str(i) for i in item_ids]
        self.renew(catalog)
        tick = min(tick_s, self.item_staleness_s / 4)
        # Twice the even share: the catalog is renewed within a quarter of the bound.
        share = math.ceil(2 * len(catalog) * tick / (self.item_staleness_s / 2))

        def loop() -> None:
            while True:
                time.sleep(tick)
                try:
                    self.renew(catalog, share)
                except Exception:  # a failing store: requests fall back, and read again
                    log.exception("background item feature refresh failed")

        thread = threading.Thread(target=loop, name="item-features", daemon=True)
        thread.start()
        return thread

    def renew(self, item_ids: list[str], limit: int | None = None, chunk: int = 1000) -> int:
        """Renew the rows of these items that are missing or past half their
        staleness bound, oldest first, at most `limit`, `chunk` a read; returns how
        many were renewed. On Redis a cached row is re-read only when its stamp
        changed (`ServiceReader.stamps`): a catalog whose rows change once a day costs
        a short HMGET an item per round, not Feast's decoding of every row."""
        ages = self._table.ages(self._table.slots(item_ids), self.clock())
        due = np.flatnonzero(ages > self.item_staleness_s / 2)
        due = due[np.argsort(-ages[due], kind="stable")][:limit]
        for start in range(0, len(due), chunk):
            self._read_items(self._changed([item_ids[n] for n in due[start:start + chunk]]))
        return len(due)

    def _changed(self, item_ids: list[str]) -> list[str]:
        """The items whose stored rows are not the cached ones (all of them when the
        stamps cannot be read); the others count as read now."""
        known, reader = self._stamps, self._services[ITEM_SERVICE]
        cached = [i for i in item_ids if i in known]  # never read: nothing to compare
        if not cached or not reader.stamped:
            return item_ids
        now = self.clock()
        stamps = self._guarded(lambda: reader.stamps("item_id", cached))
        if stamps is None:
            return item_ids
        self.item_checks += len(cached)
        same = {i for i, stamp in zip(cached, stamps, strict=True) if known[i] == stamp}
        self._table.touch(self._table.slots(list(same)), now)
        return [i for i in item_ids if i not in same]

    def _read_items(self, item_ids: list[str]) -> bool:
        """Read and cache these items' rows; False when the store failed."""
        if not item_ids:
            return True
        now = self.clock()
        reader = self._services[ITEM_SERVICE]
        read = self._guarded(lambda: reader.read_stamped("item_id", item_ids))
        if read is None:
            return False
        values, stamps = read
        self.item_reads += len(item_ids)
        self._table.write(pd.DataFrame(values).to_dict(orient="records"), "item_id", now)
        if stamps is not None:
            self._stamps.update(zip(item_ids, stamps, strict=True))
        return True

    def _guarded(self, read: Callable[[], T]) -> T | None:
        """`read()`, or None when the store fails or failed less than retry_after_s ago.
        One immediate second try, on fresh connections: after an outage every pooled
        connection is dead, and each would fail a request once (the Redis client
        itself does not retry; see open_serving_store)."""
        if self._failed_at is not None and self.clock() - self._failed_at < self.retry_after_s:
            return None
        for attempt in range(2):
            try:
                values = read()
            except STORE_ERRORS as exc:
                if attempt == 0:
                    _drop_idle_connections(self.store)
                    continue
                log.warning("online store read failed (%s: %s); answering degraded for "
                            "%.1f s", type(exc).__name__, exc, self.retry_after_s)
                self.failures += 1
                self._failed_at = self.clock()
                return None
            self._failed_at = None
            return values
        raise AssertionError("unreachable")

    def _read(self, service: str, key: str, ids: Iterable[str]) -> pd.DataFrame:
        return pd.DataFrame(self._values(service, key, ids))

    def _values(self, service: str, key: str, ids: Iterable[str]) -> dict[str, list[Any]]:
        return self._services[service].read(key, [str(i) for i in ids])


class ServiceReader:
    """A feature service's online values, converted by Feast's type map: what
    `get_online_features(..., full_feature_names=True).to_dict()` answers
    (tests/serving/test_features.py compares the two), without its per-call work of
    resolving the service's views again and building a response proto. On the
    10k-item load test that work was most of a user's read (0.8 ms) and of the
    Ranker's background item renewal.

    On Redis every view is read in one pipeline, one round trip, as Feast's own
    `get_online_features` does it (RedisOnlineStore._read_features_per_fv, through
    the same helpers): one per view had cost a user's read three round trips, about
    half of its 1 ms on the 20k-user load test. Other stores are read view by view
    through `online_read`.

    Entity keys are strings (RecStack's user and item ids)."""

    def __init__(self, store: FeatureStore, service: str) -> None:
        self.config, self.provider = store.config, store.provider
        online = getattr(self.provider, "online_store", None)
        self.redis = online if isinstance(online, RedisOnlineStore) else None
        self.views = []
        for projection in store.get_feature_service(service).feature_view_projections:
            view = store.get_feature_view(projection.name)
            types = {f.name: f.dtype.to_value_type() for f in view.features}
            names = [f.name for f in projection.features]
            self.views.append((view, names, [f"{projection.name_to_use()}__{n}" for n in names],
                               [types[n] for n in names]))
        self._key_cache: dict[str, dict[str, bytes]] = {}  # join key -> id -> Redis key
        # Each view's Redis hash fields (hashed names, then its timestamp), once.
        self._fields: list[tuple[str, tuple[str, ...], list[Any]]] = []
        if self.redis is not None:
            for view, names, _, _ in self.views:
                fv_name = _versioned_fv_name(view, self.config)
                requested, hset_keys = self.redis._generate_hset_keys_for_features(
                    view, list(names), fv_name_override=fv_name)
                self._fields.append((fv_name, tuple(requested), hset_keys))

    @property
    def stamped(self) -> bool:
        """Whether `stamps` can tell changed rows from unchanged ones (Redis only)."""
        return self.redis is not None

    def read(self, key: str, ids: list[str]) -> dict[str, list[Any]]:
        return self.read_stamped(key, ids)[0]

    def read_stamped(self, key: str, ids: list[str]
                     ) -> tuple[dict[str, list[Any]], list[Stamp] | None]:
        """`read`'s values, and each id's stamp as `stamps` gives it (None off Redis)."""
        keys = entity_keys(ids, key)
        rows, stamps = self._rows(keys)
        out: dict[str, list[Any]] = {key: list(ids)}
        for (_, names, full_names, types), found_rows in zip(self.views, rows, strict=True):
            for name, full_name, value_type in zip(names, full_names, types, strict=True):
                out[full_name] = [
                    feast_value_type_to_python_type(found[name], value_type)
                    if found is not None and name in found else None
                    for _, found in found_rows]
        return out, stamps

    def stamps(self, key: str, ids: list[str]) -> list[Stamp]:
        """Each id's stamp: its views' stored event timestamps, as Feast's bytes, in one
        HMGET of a few short fields a key, none of them parsed. Feast's Redis writes
        skip a row no newer than the stored one and write the timestamp with every
        row, so a row whose stamp is unchanged holds what it held (Redis only; a
        store written with `skip_dedup`, as RecStack writes only the user real-time
        view, could rewrite a row under the same stamp)."""
        assert self.redis is not None, "stamps: a Redis online store only"
        fields = [hset_keys[-1] for _, _, hset_keys in self._fields]  # the _ts fields
        replies = self.redis._read_hash_fields(
            self.config, [(k, fields) for k in self._cached_keys(key, ids)])
        return [tuple(reply) for reply in replies]

    def _cached_keys(self, key: str, ids: list[str]) -> list[bytes]:
        """These ids' Redis keys, each serialized once: half of a renewal round was
        serializing the same catalog's keys again (0.6 of 1.15 s for 100k items). Only
        `stamps` uses it: a catalog is bounded, the users who pass through are not."""
        cache = self._key_cache.setdefault(key, {})
        new = [i for i in dict.fromkeys(ids) if i not in cache]
        if new:
            cache.update(zip(new, self._redis_keys(entity_keys(new, key)), strict=True))
        return [cache[i] for i in ids]

    def _redis_keys(self, keys: list[EntityKeyProto]) -> list[bytes]:
        assert self.redis is not None
        return self.redis._generate_redis_keys_for_entities(self.config, keys)

    def _rows(self, keys: list[EntityKeyProto]
              ) -> tuple[list[list[tuple[Any, Any]]], list[Stamp] | None]:
        """Each view's (timestamp, {feature: ValueProto} or None) rows for these keys,
        and each key's stamp (Redis only)."""
        if self.redis is None:
            # A copy of the names: online_read may append to the list it is given.
            return [self.provider.online_read(self.config, view, keys, list(names))
                    for view, names, _, _ in self.views], None
        redis_keys = self._redis_keys(keys)
        commands = [(redis_key, hset_keys) for _, _, hset_keys in self._fields
                    for redis_key in redis_keys]
        replies = self.redis._read_hash_fields(self.config, commands)
        n = len(redis_keys)
        stamps: list[Stamp] = [tuple(replies[v * n + k][-1] for v in range(len(self._fields)))
                               for k in range(n)]
        return [self.redis._convert_redis_values_to_protobuf(
                    replies[v * n:(v + 1) * n], fv_name, list(requested))
                for v, (fv_name, requested, _) in enumerate(self._fields)], stamps


def entity_keys(ids: Sequence[str], key: str = "user_id") -> list[EntityKeyProto]:
    """Feast entity keys of these string ids under join key `key`."""
    values = python_values_to_proto_values(list(ids), ValueType.STRING)
    return [EntityKeyProto(join_keys=[key], entity_values=[value]) for value in values]


def _drop_idle_connections(store: FeatureStore) -> None:
    """Close the idle pooled Redis connections of Feast's online store (connections
    in use by other threads are left alone). Feast keeps its client private, hence
    the careful lookups; other stores have nothing to drop."""
    online = getattr(store._get_provider(), "online_store", None)
    pool = getattr(getattr(online, "_client", None), "connection_pool", None)
    if pool is not None:
        pool.disconnect(inuse_connections=False)


def open_serving_store(data_dir: Path | None, settings: Settings,
                       timeout_s: float = STORE_TIMEOUT_S,
                       version_dir: Path | None = None) -> FeatureStore:
    """The Feast store of the data directory, or (`data_dir` None) of the registry
    snapshot `version_dir` carries, so that a pod holding only the version serves it;
    Feast's scratch files then go to the temp directory.

    Its Redis reads use short socket timeouts: serving
    reads must fail fast when Redis is unreachable, answering degraded rather than
    waiting on a socket. redis-py waits forever by default and retries three times
    with up to 10 s of backoff; `retry=null` (Feast passes the connection string's
    options to redis.Redis) turns the retries off, and OnlineFeatureJoin tries once
    more itself, at once."""
    import tempfile

    from stores.feature_store import open_store
    from stores.registry import FEATURE_REGISTRY_FILE

    if data_dir is None:
        if version_dir is None:
            raise ValueError("open_serving_store: a data directory or a version directory")
        settings = settings.model_copy(
            update={"feast_registry": str(version_dir / FEATURE_REGISTRY_FILE)})
        data_dir = Path(tempfile.gettempdir()) / "recstack-feast"
    options = {"socket_timeout": timeout_s, "socket_connect_timeout": timeout_s,
               "retry": "null"}
    extra = "".join(f",{k}={v}" for k, v in options.items() if f"{k}=" not in settings.redis)
    settings = settings.model_copy(update={"redis": settings.redis + extra})
    return open_store(data_dir, settings)
