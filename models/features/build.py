"""Feature tables that the Feast sources read, computed from a data directory.

`build_features(data_dir)` writes `DIR/features/<view>.parquet` for each batch
feature view in `feature_repo`. Every row carries `event_timestamp` (the
instant its values describe: events strictly before it) and `created`. Rows
are emitted only when a value changes (see `windows.py`), so point-in-time
joins through Feast's `get_historical_features` are exact.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from contracts.event_types import AFFINITY_WEIGHT, ITEM_COUNTED, NOT_ACTIONS, USER_COUNTED
from contracts.feature_columns import WINDOWS
from models.data.dataset import Dataset, read_dataset
from models.features.realtime import RealtimeState, epoch_seconds
from models.features.windows import (
    DAY,
    change_days,
    daily_totals,
    day_index,
    last_active_before,
    origin_of,
    window_sums,
)

FEATURES_DIR = "features"
TOP_CATEGORIES = 5
# Smoothing for rates: (hits + a) / (trials + a + b), a prior rate of 10%.
PRIOR_HITS, PRIOR_MISSES = 1.0, 9.0

TABLES = ("user_activity", "user_profile", "user_realtime", "item_popularity",
          "item_content")


@dataclass
class FeatureTables:
    tables: dict[str, pd.DataFrame]

    def row_counts(self) -> dict[str, int]:
        return {name: len(frame) for name, frame in self.tables.items()}


def _stamp(frame: pd.DataFrame, origin: pd.Timestamp) -> pd.DataFrame:
    frame = frame.copy()
    frame.insert(1, "event_timestamp", origin + frame.pop("day").to_numpy() * DAY)
    frame["created"] = frame["event_timestamp"]
    return frame


def _events_with_days(dataset: Dataset) -> tuple[pd.DataFrame, pd.Timestamp, int]:
    events = dataset.events.copy()
    origin = origin_of(events["timestamp"])
    events["day"] = day_index(events["timestamp"], origin)
    # Snapshots run to the midnight after the last event, so the newest data is served.
    last_day = int(events["day"].max()) + 1
    for event_type, stem in USER_COUNTED.items():
        events[stem] = (events["event_type"] == event_type).astype(np.float64)
    events["interactions"] = events["event_type"].isin(AFFINITY_WEIGHT).astype(np.float64)
    is_rating = events["event_type"] == "rating"
    events["rating_sum"] = np.where(is_rating, events["value"].fillna(0.0), 0.0)
    is_purchase = events["event_type"] == "purchase"
    events["purchase_value_sum"] = np.where(is_purchase, events["value"].fillna(0.0), 0.0)
    events["priced_purchases"] = (is_purchase & events["value"].notna()).astype(np.float64)
    return events, origin, last_day


def user_activity(events: pd.DataFrame, origin: pd.Timestamp, last_day: int) -> pd.DataFrame:
    """Counts per event type over 1/7/30 days, and recency."""
    stems = list(USER_COUNTED.values())
    daily = daily_totals(events, "user_id", [*stems, "interactions"])
    snaps = change_days(daily, "user_id", WINDOWS, last_day)
    sums = window_sums(daily, snaps, "user_id", [*stems, "interactions"], WINDOWS)
    out = sums[["user_id", "day"]].copy()
    for stem in stems:
        for w in WINDOWS:
            out[f"{stem}_{w}d"] = sums[f"{stem}_{w}d"].astype(np.int64)
    out["events_total"] = sums[[f"{s}_total" for s in stems]].sum(axis=1).astype(np.int64)
    for name, mask in (("days_since_last_event", None),
                       ("days_since_last_purchase", "purchases")):
        last = last_active_before(daily, snaps, "user_id", mask)
        out[name] = np.where(last >= 0, (sums["day"] - last - 1).astype(np.float64), np.nan)
    return _stamp(out, origin)


def user_profile(events: pd.DataFrame, items: pd.DataFrame, origin: pd.Timestamp
                 ) -> pd.DataFrame:
    """Category affinity (top categories and their shares), average rating given,
    usual purchase price; all over the user's whole history before the snapshot."""
    cats = items.set_index("item_id")["categories"]
    primary = items.set_index("item_id")["category"]
    acted = events[events["event_type"].isin(AFFINITY_WEIGHT)].copy()
    acted["weight"] = acted["event_type"].map(AFFINITY_WEIGHT)
    # An item with several categories (film genres) shares its weight among them.
    item_cats = acted["item_id"].map(cats).map(
        lambda c: list(c) if c is not None and len(c) else None)
    item_cats = item_cats.where(item_cats.notna(), acted["item_id"].map(primary).map(
        lambda c: [c]))
    acted["category"] = item_cats
    acted = acted.explode("category")
    acted["weight"] = acted["weight"] / acted.groupby(level=0)["category"].transform("size")
    by_day = acted.groupby(["user_id", "day", "category"])["weight"].sum().unstack(fill_value=0.0)
    by_day = by_day.sort_index()
    cum = by_day.groupby(level="user_id").cumsum()
    values = cum.to_numpy()
    names = np.array(cum.columns.astype(str))
    top = np.argsort(-values, axis=1, kind="stable")[:, :TOP_CATEGORIES]
    totals = values.sum(axis=1, keepdims=True)
    shares = np.take_along_axis(values, top, axis=1) / np.maximum(totals, 1e-12)
    top_names = [[names[j] for j, s in zip(row, share, strict=True) if s > 0]
                 for row, share in zip(top, shares, strict=True)]
    out = pd.DataFrame({"user_id": cum.index.get_level_values("user_id"),
                        "day": cum.index.get_level_values("day") + 1})
    out["top_categories"] = top_names
    out["category_affinity"] = [list(np.round(s[: len(n)], 4).astype(np.float32))
                                for s, n in zip(shares, top_names, strict=True)]
    out["top_category"] = [n[0] if n else None for n in top_names]

    money = events.groupby(["user_id", "day"])[
        ["ratings", "rating_sum", "purchase_value_sum", "priced_purchases"]].sum()
    money = money.groupby(level="user_id").cumsum().reset_index()
    money["day"] += 1
    out = money.merge(out, on=["user_id", "day"], how="left")
    out["avg_rating_given"] = np.where(money["ratings"] > 0,
                                       money["rating_sum"] / money["ratings"].clip(lower=1),
                                       np.nan)
    out["avg_purchase_price"] = np.where(
        money["priced_purchases"] > 0,
        money["purchase_value_sum"] / money["priced_purchases"].clip(lower=1), np.nan)
    out = out.sort_values(["user_id", "day"]).reset_index(drop=True)
    # Days with only searches add no category weight: carry the previous profile forward.
    for col in ("top_categories", "category_affinity", "top_category"):
        out[col] = out.groupby("user_id")[col].ffill()
    out["top_categories"] = out["top_categories"].map(
        lambda v: v if isinstance(v, list) else [])
    out["category_affinity"] = out["category_affinity"].map(
        lambda v: v if isinstance(v, list) else [])
    keep = ["user_id", "day", "top_category", "top_categories", "category_affinity",
            "avg_rating_given", "avg_purchase_price"]
    return _stamp(out[keep], origin)


def item_popularity(events: pd.DataFrame, items: pd.DataFrame, origin: pd.Timestamp,
                    last_day: int) -> pd.DataFrame:
    """Windowed popularity, smoothed click-through and conversion rates, average rating."""
    stems = [*ITEM_COUNTED.values(), "interactions", "rating_sum"]
    acted = events[events["item_id"].notna()]
    daily = daily_totals(acted, "item_id", stems)
    snaps = change_days(daily, "item_id", WINDOWS, last_day)
    sums = window_sums(daily, snaps, "item_id", stems, WINDOWS)
    out = sums[["item_id", "day"]].copy()
    for stem in ITEM_COUNTED.values():
        for w in WINDOWS:
            out[f"{stem}_{w}d"] = sums[f"{stem}_{w}d"].astype(np.int64)
    for w in WINDOWS:
        out[f"interactions_{w}d"] = sums[f"interactions_{w}d"].astype(np.int64)
    out["interactions_total"] = sums["interactions_total"].astype(np.int64)
    denom = PRIOR_HITS + PRIOR_MISSES
    out["ctr_30d"] = (sums["clicks_30d"] + PRIOR_HITS) / (sums["views_30d"] + denom)
    out["conversion_30d"] = (sums["purchases_30d"] + PRIOR_HITS) / (sums["clicks_30d"] + denom)
    out["rating_count"] = sums["ratings_total"].astype(np.int64)
    out["avg_rating"] = np.where(sums["ratings_total"] > 0,
                                 sums["rating_sum_total"] / sums["ratings_total"].clip(lower=1),
                                 np.nan)
    created = pd.to_datetime(out["item_id"].map(items.set_index("item_id")["created_at"]),
                             utc=True)
    snapshot = pd.Series(origin + out["day"].to_numpy() * DAY, index=out.index)
    out["age_days"] = ((snapshot - created) / DAY).clip(lower=0)
    return _stamp(out, origin)


def item_content(items: pd.DataFrame) -> pd.DataFrame:
    """Static attributes, valid from the item's creation."""
    out = pd.DataFrame({
        "item_id": items["item_id"],
        "event_timestamp": pd.to_datetime(items["created_at"], utc=True),
        "title": items["title"],
        "category": items["category"],
        "categories": items["categories"].map(list),
        "tags": items["tags"].map(list),
        "price": items["price"].astype(np.float64),
        "year": items["year"].astype("Int64"),
        "created_ts": pd.to_datetime(items["created_at"], utc=True).astype("int64") / 1e6,
        "available": items["available"].astype(bool),
    })
    out["created"] = out["event_timestamp"]
    return out


def user_realtime(events: pd.DataFrame) -> pd.DataFrame:
    """The real-time view's history: its state after each event (what the stream
    consumer pushes online), so training sees exactly what serving will see. Both fold
    events through `RealtimeState.add`; impressions are not actions and are left out."""
    actions = events[~events["event_type"].isin(NOT_ACTIONS)]
    ordered = actions.sort_values(["user_id", "timestamp", "event_id"], kind="stable")
    stamps = pd.to_datetime(ordered["timestamp"], utc=True)
    micros = stamps.dt.as_unit("us").astype("int64").to_numpy()
    rows_recent: list[list[str]] = []
    rows_session_events: list[int] = []
    state = RealtimeState()
    last_user: object = None
    for user_id, item_id, session_id, event_type, micro in zip(
            ordered["user_id"], ordered["item_id"], ordered["session_id"],
            ordered["event_type"], micros, strict=True):
        if user_id != last_user:
            state, last_user = RealtimeState(), user_id
        state.add(item_id, session_id, event_type, epoch_seconds(int(micro)))
        rows_recent.append(list(state.recent_items))
        rows_session_events.append(state.session_event_count)
    out = pd.DataFrame({
        "user_id": ordered["user_id"].to_numpy(),
        # Stamped just after the event, since the state includes it.
        # (.array: to_numpy would box every tz-aware time as an object)
        "event_timestamp": (stamps + pd.Timedelta(microseconds=1)).array,
        "recent_items": rows_recent,
        "session_id": ordered["session_id"].fillna("").to_numpy(),
        "session_event_count": np.array(rows_session_events, dtype=np.int64),
        "last_event_type": ordered["event_type"].to_numpy(),
        "last_event_ts": micros / 1e6,
    })
    out["created"] = out["event_timestamp"]
    return out


def compute_features(dataset: Dataset,
                     progress: Callable[[str], None] | None = None) -> FeatureTables:
    events, origin, last_day = _events_with_days(dataset)
    steps: list[tuple[str, Callable[[], pd.DataFrame]]] = [
        ("user_activity", lambda: user_activity(events, origin, last_day)),
        ("user_profile", lambda: user_profile(events, dataset.items, origin)),
        ("user_realtime", lambda: user_realtime(events)),
        ("item_popularity", lambda: item_popularity(events, dataset.items, origin, last_day)),
        ("item_content", lambda: item_content(dataset.items)),
    ]
    tables: dict[str, pd.DataFrame] = {}
    for name, step in steps:
        if progress is not None:
            progress(name)
        tables[name] = step()
    return FeatureTables(tables)


# Explicit types for list columns: a column of only empty lists would otherwise be
# inferred as list<null>, which offline stores cannot cast to the declared feature type.
LIST_TYPES = {"top_categories": pa.list_(pa.string()), "recent_items": pa.list_(pa.string()),
              "categories": pa.list_(pa.string()), "tags": pa.list_(pa.string()),
              "category_affinity": pa.list_(pa.float32())}


def _to_arrow(frame: pd.DataFrame) -> pa.Table:
    table = pa.Table.from_pandas(frame, preserve_index=False)
    for n, field in enumerate(table.schema):
        if field.name in LIST_TYPES:
            table = table.set_column(n, field.name, table.column(n).cast(LIST_TYPES[field.name]))
    return table


def write_features(tables: FeatureTables, data_dir: Path) -> dict[str, Path]:
    out = data_dir / FEATURES_DIR
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, frame in tables.tables.items():
        path = out / f"{name}.parquet"
        tmp = path.with_name(f".{path.name}.tmp")
        pq.write_table(_to_arrow(frame), tmp)
        tmp.replace(path)
        paths[name] = path
    return paths


def build_features(data_dir: Path, progress: Callable[[str], None] | None = None
                   ) -> dict[str, Path]:
    """Compute and write every feature table for `data_dir`."""
    return write_features(compute_features(read_dataset(data_dir), progress), data_dir)


def feature_paths(data_dir: Path) -> dict[str, Path]:
    return {name: data_dir / FEATURES_DIR / f"{name}.parquet" for name in TABLES}
