"""Feature rows as one-user ranking reads them: the in-process copy of item feature
rows, laid out for per-request lookups, and the offline store's rows as of one time.

A request reads a few hundred items' features several times (ranker inputs, then
categories and availability for the rules). Kept as one dict per item, each of
those reads was a Python loop with a staleness check per item, ~3 ms a request on
the 10k-item load test; here an item has a slot, each field an array over slots,
and a request finds its slots once (`ItemRows`) and then indexes arrays.

Rows are written by request threads (missing or stale items) and by
OnlineFeatureJoin's background refresh; a lock keeps slots, arrays and their
growth consistent.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import pandas as pd

from contracts.feature_columns import ITEM_VIEWS, view_of


def number(value: Any) -> float:
    """A feature value as a float; NaN when missing or not a number."""
    try:
        return float(value) if value is not None else np.nan
    except (TypeError, ValueError):
        return np.nan


class ItemTable:
    def __init__(self, capacity: int = 1024) -> None:
        self._lock = threading.Lock()
        self._slots: dict[str, int] = {}
        self._read_at = np.full(capacity, -np.inf)
        self._rows: list[dict[str, Any]] = []
        self._fields: dict[str, np.ndarray] = {}  # name -> object array over slots
        # feature names -> (float matrix over slots, whether each slot's row is current)
        self._numeric: dict[tuple[str, ...], tuple[np.ndarray, np.ndarray]] = {}

    def __len__(self) -> int:
        return len(self._rows)

    def slots(self, item_ids: Sequence[str]) -> np.ndarray:
        """Each item's slot; -1 for items never written."""
        get = self._slots.get
        return np.array([get(i, -1) for i in item_ids], dtype=np.int64)

    def ages(self, slots: np.ndarray, now: float) -> np.ndarray:
        """Seconds since each slot's row was read; infinite for -1."""
        with self._lock:
            return np.where(slots >= 0, now - self._read_at[slots], np.inf)

    def write(self, rows: list[dict[str, Any]], key: str, now: float) -> None:
        with self._lock:
            written = np.empty(len(rows), np.int64)
            for n, row in enumerate(rows):
                slot = self._slots.get(row[key])
                if slot is None:
                    slot = self._slots[row[key]] = len(self._rows)
                    self._rows.append(row)
                    self._grow(len(self._rows))
                else:
                    self._rows[slot] = row
                written[n] = slot
                for name, value in row.items():
                    column = self._fields.get(name)
                    if column is None:
                        column = self._fields[name] = np.full(len(self._read_at), None,
                                                              dtype=object)
                    column[slot] = value
            self._read_at[written] = now
            for _, current in self._numeric.values():
                current[written] = False

    def touch(self, slots: np.ndarray, now: float) -> None:
        """Count these slots' rows as read at `now`: the store holds what they hold."""
        with self._lock:
            self._read_at[slots[slots >= 0]] = now

    def row(self, slot: int) -> dict[str, Any] | None:
        return self._rows[slot] if slot >= 0 else None

    def field(self, slots: np.ndarray, name: str) -> np.ndarray:
        """One field as stored (strings, lists, numbers) per slot; None for -1."""
        with self._lock:
            column = self._fields.get(name)
            if column is None:
                return np.full(len(slots), None, dtype=object)
            out = column[slots]
        out[slots < 0] = None
        return out

    def values(self, slots: np.ndarray, names: tuple[str, ...]) -> np.ndarray:
        """(slots, names) float64, NaN where missing or not a number; each slot's
        numbers are parsed once per row read."""
        with self._lock:
            matrix, current = self._numeric.get(names, (None, None))
            if matrix is None or current is None:
                matrix = np.full((len(self._read_at), len(names)), np.nan)
                current = np.zeros(len(self._read_at), dtype=bool)
                self._numeric[names] = (matrix, current)
            known = slots[slots >= 0]
            for slot in np.unique(known[~current[known]]):
                row = self._rows[slot]
                matrix[slot] = [number(row.get(k)) for k in names]
                current[slot] = True
            out = matrix[slots]
        out[slots < 0] = np.nan
        return out

    def _grow(self, size: int) -> None:
        """Room for `size` slots (doubling), under the lock."""
        capacity = len(self._read_at)
        if size <= capacity:
            return
        new = max(size, 2 * capacity)
        self._read_at = np.concatenate([self._read_at, np.full(new - capacity, -np.inf)])
        for name, column in self._fields.items():
            self._fields[name] = np.concatenate(
                [column, np.full(new - capacity, None, dtype=object)])
        for names, (matrix, current) in self._numeric.items():
            self._numeric[names] = (
                np.concatenate([matrix, np.full((new - capacity, len(names)), np.nan)]),
                np.concatenate([current, np.zeros(new - capacity, dtype=bool)]))


@dataclass(frozen=True)
class ItemRows:
    """Some items' rows, in the order asked for, found once for a request."""

    table: ItemTable
    slots: np.ndarray
    complete: bool  # False when the store failed and some rows are stale or missing

    def values(self, names: tuple[str, ...]) -> np.ndarray:
        return self.table.values(self.slots, names)

    def field(self, name: str) -> np.ndarray:
        return self.table.field(self.slots, name)


class FeatureRows(Protocol):
    """Where one-user ranking reads features: the user's row (`view__feature` names)
    and the items' rows. Serving's is the online store (serving.features); a batch
    as of one time reads the offline store (`OfflineRows`)."""

    def user(self, user_id: str) -> dict[str, Any]: ...

    def lookup(self, item_ids: Sequence[str] | np.ndarray) -> ItemRows: ...


class OfflineRows:
    """FeatureRows as of one instant from a point-in-time join (models.ranker.features'
    FeatureJoin): every user's and every item's row, read in one join."""

    def __init__(self, join: Callable[[pd.DataFrame], pd.DataFrame], user_ids: np.ndarray,
                 item_ids: np.ndarray, at: pd.Timestamp) -> None:
        # The ranker's service joins user views on user_id and item views on item_id
        # independently, so rows pairing users and items round-robin read each user's
        # and each item's values as of `at` with no cross product.
        self._users: dict[str, dict[str, Any]] = {}
        self._table = ItemTable(max(len(item_ids), 1))
        if not len(user_ids) or not len(item_ids):
            return
        n = max(len(user_ids), len(item_ids))
        joined = join(pd.DataFrame({
            "user_id": np.resize(np.asarray(user_ids, dtype=object), n),
            "item_id": np.resize(np.asarray(item_ids, dtype=object), n),
            "event_timestamp": pd.to_datetime(np.full(n, pd.Timestamp(at).value), utc=True)}))
        views = [c for c in joined.columns if "__" in c]
        items = [c for c in views if view_of(c) in ITEM_VIEWS]
        users = [c for c in views if c not in items]
        for row in joined.drop_duplicates("user_id")[["user_id", *users]].to_dict("records"):
            self._users[str(row.pop("user_id"))] = row
        self._table.write(joined.drop_duplicates("item_id")[["item_id", *items]].to_dict(
            "records"), "item_id", 0.0)

    def user(self, user_id: str) -> dict[str, Any]:
        return self._users.get(user_id, {})

    def lookup(self, item_ids: Sequence[str] | np.ndarray) -> ItemRows:
        return ItemRows(self._table, self._table.slots([str(i) for i in item_ids]), True)
