"""Ranker features: Feast's `ranker` feature service joined as of each example's
time, plus crosses between the user and the candidate item."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from feast import FeatureStore

from contracts import feature_columns
from stores.feature_store import training_frame
from stores.point_in_time import asof_join, join_plan

DAY_S = 86_400.0


# (user_id, item_id, event_timestamp) rows in, the same rows with Feast's `ranker`
# feature service joined out (columns `view__feature`, in order).
FeatureJoin = Callable[[pd.DataFrame], pd.DataFrame]


def store_join(store: FeatureStore, engine: str = "asof") -> FeatureJoin:
    """Point-in-time features from the offline store, with
    `stores.feature_store.training_frame`'s join `engine`. The ASOF join's is a plain
    function of the views' sources, which pickles: Ray workers run it (models.shards)."""
    if engine == "asof":
        return functools.partial(asof_join, join_plan(store, "ranker"))
    return lambda entity: training_frame(store, entity, "ranker", engine=engine)


def with_features(frame: pd.DataFrame, join: FeatureJoin, user_ids: np.ndarray,
                  item_ids: np.ndarray, at: pd.Series) -> pd.DataFrame:
    """`frame` (with `user`/`item` indices into the id arrays) with its features and the
    crosses; `at` gives each row's time."""
    entity = pd.DataFrame({"user_id": user_ids[frame["user"].to_numpy()],
                           "item_id": item_ids[frame["item"].to_numpy()],
                           # .array: to_numpy() would box each row as a Timestamp
                           "event_timestamp": pd.to_datetime(at, utc=True).array})
    joined = join(entity)
    out = pd.concat([frame.reset_index(drop=True),
                     joined.drop(columns=["user_id", "item_id"])], axis=1, copy=False)
    return add_crosses(out)


def add_crosses(frame: pd.DataFrame) -> pd.DataFrame:
    """Features that relate this user to this item, from the joined columns."""
    def number(column: str) -> np.ndarray:
        return pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=np.float64)

    ts = pd.to_datetime(frame["event_timestamp"], utc=True).astype("int64").to_numpy() / 1e9
    for name, values in crosses(
            ts, frame[feature_columns.ITEM_CATEGORY].to_numpy(),
            frame[feature_columns.USER_TOP_CATEGORIES].to_numpy(),
            frame[feature_columns.USER_CATEGORY_AFFINITY].to_numpy(),
            number(feature_columns.ITEM_PRICE), number(feature_columns.USER_AVG_PURCHASE_PRICE),
            number(feature_columns.ITEM_CREATED_TS)).items():
        frame[name] = values
    return frame


def crosses(ts: np.ndarray | float, category: np.ndarray, tops: Any, shares: Any,
            price: np.ndarray, avg_price: np.ndarray | float, created_ts: np.ndarray,
            one_user: bool = False) -> dict[str, np.ndarray]:
    """The cross features, column by column, shared by training's frames and serving's
    per-request arrays. `tops` and `shares` hold one list per row, or with `one_user`
    (serving: every row is the same user's) the user's two lists; `avg_price` may be
    a scalar."""
    # No "days since the user's last event": under the per-user split every training
    # example sits just after one of the user's events, while serving sees users idle
    # for months: what the ranker learns from it does not carry over (when it slipped in,
    # the synthetic world's served lists fell from above 1.2x popularity's gt-NDCG@10
    # to 1.14x).
    with np.errstate(divide="ignore", invalid="ignore"):
        return {
            "cross_category_affinity": (
                _one_user_shares(category, tops, shares) if one_user
                else _row_shares(category, tops, shares)),
            "cross_price_ratio": price / avg_price,
            "cross_item_age_days": (ts - created_ts) / DAY_S}


def _share_table(tops: Any, shares: Any) -> dict[object, float]:
    """Category -> share from a user's two lists; empty where either is None or not a
    list, and where a name repeats the first counts."""
    table: dict[object, float] = {}
    try:
        names, values = list(tops), list(shares)
    except TypeError:
        return table
    for name, value in reversed(list(zip(names, values, strict=False))):
        table[name] = float(value)
    return table


def _lookup(table: dict[object, float], category: np.ndarray) -> np.ndarray:
    return np.array([table.get(c, 0.0) if isinstance(c, str) else 0.0 for c in category],
                    dtype=np.float64)


def _one_user_shares(category: np.ndarray, tops: Any, shares: Any) -> np.ndarray:
    """Each row's category's share in one user's lists."""
    return _lookup(_share_table(tops, shares), category)


def _row_shares(category: np.ndarray, tops: np.ndarray, shares: np.ndarray) -> np.ndarray:
    """Each row's category's share in its own row's lists (1-D object arrays). Rows that
    hold the same two list objects share one table: a training frame's rows repeat each
    user's lists (stores.point_in_time spreads one lookup over its rows), and a table
    per row cost ~10 s per million rows. Same answers as one table per row."""
    n = len(category)
    tops_code = pd.factorize(np.fromiter(map(id, tops), np.int64, n))[0]
    shares_code = pd.factorize(np.fromiter(map(id, shares), np.int64, n))[0]
    group = pd.factorize(tops_code * (int(shares_code.max(initial=0)) + 1) + shares_code)[0]
    order = np.argsort(group, kind="stable")
    starts = np.searchsorted(group[order], np.arange(int(group.max(initial=-1)) + 2))
    codes, names = pd.factorize(category)  # None/NaN: -1, the extra slot below (0)
    slot = {name: n for n, name in enumerate(names) if isinstance(name, str)}
    out = np.zeros(n, dtype=np.float64)
    for g in range(len(starts) - 1):
        rows = order[starts[g]:starts[g + 1]]
        table = _share_table(tops[rows[0]], shares[rows[0]])
        if table:
            by_code = np.zeros(len(names) + 1)
            for name, value in table.items():
                if name in slot:
                    by_code[slot[name]] = value
            out[rows] = by_code[codes[rows]]
    return out


def numeric_columns(frame: pd.DataFrame, exclude: set[str]) -> list[str]:
    """Every numeric (or boolean) column the model can read."""
    out = []
    for column in frame.columns:
        if column in exclude:
            continue
        if _numeric(frame[column].dtype):
            out.append(column)
    return out


def _numeric(dtype: Any) -> bool:
    return bool(pd.api.types.is_bool_dtype(dtype) or pd.api.types.is_numeric_dtype(dtype))


def compact(frame: pd.DataFrame, keep: set[str]) -> pd.DataFrame:
    """The numeric (and boolean) columns as float32, `keep` as they are, the rest
    dropped: what training reads of a candidate frame once its crosses are added.
    float32 is what `matrix` hands the ranker, so its values are unchanged."""
    out = {}
    for column in frame.columns:
        if column in keep:
            out[column] = frame[column]
        elif _numeric(frame[column].dtype):
            out[column] = frame[column].astype(np.float32)
    return pd.DataFrame(out)


def matrix(frame: pd.DataFrame, columns: list[str]) -> np.ndarray:
    return frame[columns].apply(pd.to_numeric, errors="coerce").astype(np.float32).to_numpy()
