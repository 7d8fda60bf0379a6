"""A data directory: `events.parquet`, `items.parquet`, `users.parquet`.

`write_dataset` is the one way data lands on disk: it checks that events refer
to known items and users, fills the catalogs' missing creation times from first
events, casts to the Arrow contract and writes each file atomically, so a crash
never leaves half a file and a rerun with the same input gives the same bytes.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from contracts.schemas import (
    EVENTS_FILE,
    EVENTS_SCHEMA,
    ITEMS_FILE,
    ITEMS_SCHEMA,
    USERS_FILE,
    USERS_SCHEMA,
)
from models.data.event_log import forgotten_users, read_history, stream_parts


class DatasetExistsError(FileExistsError):
    pass


@dataclass
class Dataset:
    events: pd.DataFrame
    items: pd.DataFrame
    users: pd.DataFrame

    def summary(self) -> dict[str, Any]:
        by_type = self.events["event_type"].value_counts().sort_index()
        return {
            "events": len(self.events),
            "items": len(self.items),
            "users": len(self.users),
            "event_types": {str(k): int(v) for k, v in by_type.items()},
            "first_event": str(self.events["timestamp"].min()),
            "last_event": str(self.events["timestamp"].max()),
        }


def _default_items(ids: list[str]) -> pd.DataFrame:
    return pd.DataFrame({
        "item_id": ids, "title": ids, "description": None, "category": "unknown",
        "categories": [[] for _ in ids], "tags": [[] for _ in ids],
        "price": float("nan"), "year": pd.array([None] * len(ids), dtype="Int32"),
        "created_at": pd.Series(pd.NaT, index=range(len(ids)), dtype="datetime64[us, UTC]"),
        "available": True})


def _default_users(ids: list[str]) -> pd.DataFrame:
    return pd.DataFrame({
        "user_id": ids,
        "created_at": pd.Series(pd.NaT, index=range(len(ids)), dtype="datetime64[us, UTC]"),
        "segment": None, "attributes": None})


def complete_catalogs(events: pd.DataFrame, items: pd.DataFrame | None,
                      users: pd.DataFrame | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Add catalog rows for ids that only appear in events, and fill missing
    `created_at` with the first event that mentions the id (the earliest event
    overall for ids never seen in events)."""
    earliest = events["timestamp"].min() if len(events) else pd.Timestamp(0, tz="UTC")
    item_first = events.dropna(subset=["item_id"]).groupby("item_id")["timestamp"].min()
    user_first = events.groupby("user_id")["timestamp"].min()

    catalogs = []
    for frame, key, first, default in ((items, "item_id", item_first, _default_items),
                                       (users, "user_id", user_first, _default_users)):
        known = set() if frame is None else set(frame[key])
        extra = default(sorted(set(first.index.astype(str)) - known))
        if frame is None or frame.empty:
            frame = extra
        elif len(extra):
            frame = pd.concat([frame, extra], ignore_index=True)
        frame = frame.copy()
        frame["created_at"] = _fill_first_seen(frame, key, first, earliest)
        catalogs.append(frame)
    return catalogs[0], catalogs[1]


def _fill_first_seen(frame: pd.DataFrame, key: str, first: pd.Series,
                     earliest: pd.Timestamp) -> pd.Series:
    current = pd.to_datetime(frame["created_at"], utc=True)
    seen = frame[key].map(first)
    return current.fillna(pd.to_datetime(seen, utc=True)).fillna(earliest)


def _to_table(frame: pd.DataFrame, schema: pa.Schema) -> pa.Table:
    frame = frame[schema.names].reset_index(drop=True)
    return pa.Table.from_pandas(frame, schema=schema, preserve_index=False)


def _write_atomic(table: pa.Table, path: Path) -> None:
    write_tables_atomic([table], path)


def write_tables_atomic(tables: Iterable[pa.Table], path: Path) -> None:
    """One Parquet file from tables of one schema, written in turn (so a caller can
    build a large file slice by slice), renamed into place only when complete."""
    tmp = path.with_name(f".{path.name}.tmp")
    writer: pq.ParquetWriter | None = None
    try:
        for table in tables:
            if writer is None:
                writer = pq.ParquetWriter(tmp, table.schema, compression="zstd")
            writer.write_table(table)
    finally:
        if writer is not None:
            writer.close()
    if writer is None:
        raise ValueError(f"no tables to write to {path}")
    os.replace(tmp, path)


def events_sha256(data_dir: Path) -> str:
    """What ties a version, or an evaluation window, to its data: the SHA-256 of
    DATA/events.parquet."""
    return hashlib.sha256((data_dir / "events.parquet").read_bytes()).hexdigest()


def check_destination(out: Path, overwrite: bool = False) -> None:
    """Raise DatasetExistsError if writing a data directory at `out` would replace a
    table without `overwrite`. Importers call it before reading their input, so that
    a refusal comes before the work, not after a report of what was read."""
    existing = [p for p in (out / EVENTS_FILE, out / ITEMS_FILE, out / USERS_FILE)
                if p.exists()]
    if existing and not overwrite:
        raise DatasetExistsError(
            f"{existing[0]} already exists; pass --overwrite to replace it "
            "(or --append, where the command offers it, to add to it)")


def write_dataset(out: Path, events: pd.DataFrame, items: pd.DataFrame,
                  users: pd.DataFrame, overwrite: bool = False) -> Dataset:
    """Write the three tables of a data directory (sorted, so output is deterministic)."""
    check_destination(out, overwrite)
    out.mkdir(parents=True, exist_ok=True)
    events = events.sort_values(["timestamp", "event_id"], kind="stable")
    _write_atomic(_to_table(events, EVENTS_SCHEMA), out / EVENTS_FILE)
    items, users = write_catalogs(out, items, users)
    return Dataset(events.reset_index(drop=True), items, users)


def write_catalogs(out: Path, items: pd.DataFrame, users: pd.DataFrame
                   ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Write the items and users tables (sorted by id), as written."""
    items = items.sort_values("item_id", kind="stable")
    users = users.sort_values("user_id", kind="stable")
    _write_atomic(_to_table(items, ITEMS_SCHEMA), out / ITEMS_FILE)
    _write_atomic(_to_table(users, USERS_SCHEMA), out / USERS_FILE)
    return items.reset_index(drop=True), users.reset_index(drop=True)


def read_dataset(data_dir: Path) -> Dataset:
    """Load a data directory; a clear error names the first missing file.

    The events are `events.parquet` together with what the stream consumer appended
    under `events_stream/` (models/data/event_log.py): one row per event_id, sorted by
    timestamp then event_id. Users and items that only streamed events mention get
    default catalog rows, as importers give them. Deleted users (`DELETE
    /v1/users/{id}`) are left out at once, their events and their catalog row, even
    before a compaction removes them from disk; events they sent after the deletion
    are kept, with a default catalog row."""
    for name in (EVENTS_FILE, ITEMS_FILE, USERS_FILE):
        path = data_dir / name
        if not path.exists():
            raise FileNotFoundError(
                f"{path} not found: create the data directory with `recstack data generate` "
                "or `recstack data import ...` first")
    items = pq.read_table(data_dir / ITEMS_FILE).to_pandas()
    users = pq.read_table(data_dir / USERS_FILE).to_pandas()
    deleted = forgotten_users(data_dir)
    if not stream_parts(data_dir) and not deleted:
        return Dataset(pq.read_table(data_dir / EVENTS_FILE).to_pandas(), items, users)
    if deleted:
        users = users[~users["user_id"].isin(deleted)].reset_index(drop=True)
    events = read_history(data_dir).to_pandas()
    unknown_items = set(events["item_id"].dropna()) - set(items["item_id"])
    if unknown_items or set(events["user_id"]) - set(users["user_id"]):
        items, users = complete_catalogs(events, items, users)
        items = items.sort_values("item_id", kind="stable").reset_index(drop=True)
        users = users.sort_values("user_id", kind="stable").reset_index(drop=True)
    return Dataset(events, items, users)
