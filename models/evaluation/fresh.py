"""A version scored on data it has not seen: the events of a window after a cutoff.

`recstack train` reports figures measured before its refit on all the data; a
version in the registry has seen everything up to its own last event. Here its
bundle ranks, for each user, as of the window's start `since`, from the events
before it, with features joined as of `since` (no leakage), and the lists are
scored against what each user did in the window: positives on items they had not
touched before `since` (the lists exclude seen items, so those are what a list can
find). Items new in the window count as relevant too: a version that cannot
recommend them loses, as it would in production.

Two versions evaluated on the same window score the same users (drawn with a
fixed seed when there are more than `max_users`), so their per-user figures pair
up: the gates (models/evaluation/gates.py) bootstrap over those pairs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from models.bundle import Bundle
from models.evaluation.metrics import (
    catalog_coverage,
    long_tail_share,
    ndcg_per_user,
)
from models.interactions import Index, positive_pairs, to_matrix
from models.ranker.features import FeatureJoin
from models.served import ServedModel

DEPTH = 20  # the longest list scored (recall@20)
SEED = 0  # which users a large window keeps: the same for every version


@dataclass(frozen=True)
class Window:
    """The held-out events: from `since` (inclusive) to `until` (exclusive)."""

    since: pd.Timestamp
    until: pd.Timestamp | None
    events_sha256: str  # the data the window was cut from

    def key(self) -> str:
        """A file name that says which window: the same for every version scored on it."""
        until = "end" if self.until is None else f"{self.until:%Y%m%dT%H%M%S}"
        return f"{self.since:%Y%m%dT%H%M%S}-{until}-{self.events_sha256[:12]}"

    def as_dict(self) -> dict[str, str | None]:
        return {"since": self.since.isoformat(),
                "until": None if self.until is None else self.until.isoformat(),
                "events_sha256": self.events_sha256, "key": self.key()}


@dataclass(frozen=True)
class WindowUsers:
    """Who a window scores, and what each found: the part shared by every version."""

    window: Window
    user_ids: np.ndarray  # sorted
    relevant: sp.csr_matrix  # users x items: positives in the window, unseen before
    items: Index  # every item in the data
    popularity: np.ndarray  # per item: interactions before the window
    history_length: np.ndarray  # per user: distinct items before the window
    attributes: pd.DataFrame  # per user (index user_id): the users table's columns


def window_users(events: pd.DataFrame, items: pd.DataFrame, users: pd.DataFrame,
                 window: Window, max_users: int) -> WindowUsers:
    """The users with something to find in the window, at most `max_users` of them."""
    stamps = pd.to_datetime(events["timestamp"], utc=True)
    before = events[stamps < window.since]
    inside = events[(stamps >= window.since)
                    & (stamps < window.until if window.until is not None else True)]
    catalog = Index.of(pd.concat([items["item_id"].astype(str),
                                  events["item_id"].dropna().astype(str)]))
    seen = positive_pairs(before)[["user_id", "item_id"]]
    found = positive_pairs(inside)[["user_id", "item_id"]]
    found = found.merge(seen.assign(_seen=True), on=["user_id", "item_id"], how="left")
    found = found[found["_seen"].isna()].drop(columns="_seen")
    candidates = np.array(sorted(found["user_id"].astype(str).unique()), dtype=object)
    if len(candidates) > max_users:
        keep = np.random.default_rng(SEED).choice(len(candidates), max_users, replace=False)
        candidates = np.sort(candidates[keep])
    index = Index(candidates)
    relevant = to_matrix(found, index, catalog)
    counts = before[before["item_id"].notna()]["item_id"].astype(str).value_counts()
    popularity = counts.reindex(catalog.ids, fill_value=0).to_numpy(np.float64)
    lengths = seen.groupby("user_id").size().reindex(candidates, fill_value=0).to_numpy()
    attributes = users.assign(user_id=users["user_id"].astype(str)).set_index("user_id")
    return WindowUsers(window, candidates, relevant, catalog, popularity, lengths,
                       attributes.reindex(candidates))


def activity_bucket(lengths: np.ndarray, buckets: tuple[int, int]) -> np.ndarray:
    """new / casual / heavy by distinct items before the window."""
    low, high = buckets
    return np.where(lengths < low, "new", np.where(lengths <= high, "casual", "heavy"))


@dataclass(frozen=True)
class Scored:
    """One version on one window."""

    version: str
    per_user: pd.DataFrame  # user_id, ndcg@10, recall@20, activity[, segment]
    lists: np.ndarray | None  # users x DEPTH item ids' indices (-1 pads); None: read back
    summary: dict[str, Any]  # the figures, JSON-able


def score_version(version: str, bundle: Bundle, events: pd.DataFrame, who: WindowUsers,
                  join: FeatureJoin, buckets: tuple[int, int],
                  progress: Callable[[str], None] | None = None) -> Scored:
    """Rank the window's users with `bundle` as of `since`, from the events before it;
    users the version cannot rank (no usable history) get its cold-start list."""
    since = who.window.since
    before = events[pd.to_datetime(events["timestamp"], utc=True) < since]
    model = ServedModel(bundle, search=False, history=before)
    table = model.recommend(before, list(who.user_ids), since, join, DEPTH)
    if progress:
        progress(f"{version}: {table['user_id'].nunique()} of {len(who.user_ids)} users "
                 "ranked by the model, the rest get the cold-start list")
    lists = _lists(table, who, _cold_list(bundle, before, who))
    return _scored(version, lists, who, buckets)


def _cold_list(bundle: Bundle, before: pd.DataFrame, who: WindowUsers) -> np.ndarray:
    """The bundle's popularity order over its catalog, as of the window."""
    scores = np.asarray(bundle.popularity_scores())
    order = np.argsort(-scores, kind="stable")[:DEPTH]
    return who.items.positions(np.asarray(bundle.item_ids, dtype=object)[order])


def _lists(table: pd.DataFrame, who: WindowUsers, cold: np.ndarray) -> np.ndarray:
    lists = np.full((len(who.user_ids), DEPTH), -1, dtype=np.int64)
    lists[:, :len(cold)] = cold
    rows = pd.Index(who.user_ids).get_indexer(table["user_id"].astype(str))
    ranked = table.assign(_row=rows, _col=who.items.positions(table["item_id"].astype(str)))
    ranked = ranked[(ranked["_row"] >= 0) & (ranked["rank"] <= DEPTH)]
    known = np.unique(ranked["_row"].to_numpy())
    lists[known] = -1
    lists[ranked["_row"].to_numpy(), ranked["rank"].to_numpy() - 1] = ranked["_col"].to_numpy()
    return lists


def _scored(version: str, lists: np.ndarray, who: WindowUsers, buckets: tuple[int, int]
            ) -> Scored:
    ndcg = ndcg_per_user(lists, who.relevant, 10)  # every window user has a positive
    hits = _recall_per_user(lists, who.relevant, 20)
    per_user = pd.DataFrame({"user_id": who.user_ids, "ndcg@10": ndcg, "recall@20": hits,
                             "activity": activity_bucket(who.history_length, buckets)})
    if "segment" in who.attributes.columns:
        per_user["segment"] = who.attributes["segment"].astype(str).to_numpy()
    top10 = lists[:, :10]
    summary = {"users": len(who.user_ids), "ndcg@10": float(ndcg.mean()),
               "recall@20": float(hits.mean()),  # every window user has a positive
               "coverage@10": catalog_coverage(top10, len(who.items)),
               "long_tail_share@10": long_tail_share(top10, who.popularity),
               "segments": segment_table(per_user).to_dict(orient="records")}
    return Scored(version, per_user, lists, summary)


def _recall_per_user(lists: np.ndarray, relevant: sp.csr_matrix, k: int) -> np.ndarray:
    out = np.zeros(len(lists))
    for row in range(len(lists)):
        found = relevant.indices[relevant.indptr[row]:relevant.indptr[row + 1]]
        out[row] = np.isin(lists[row, :k], found).sum() / max(len(found), 1)
    return out


def segment_columns(per_user: pd.DataFrame) -> list[str]:
    return [c for c in ("activity", "segment") if c in per_user.columns]


def segment_table(per_user: pd.DataFrame) -> pd.DataFrame:
    """Users and mean NDCG@10 per segment of each segmentation (activity, segment)."""
    rows = []
    for column in segment_columns(per_user):
        for name, part in per_user.groupby(column, sort=True):
            rows.append({"by": column, "segment": str(name), "users": len(part),
                         "ndcg@10": float(part["ndcg@10"].mean())})
    return pd.DataFrame(rows, columns=["by", "segment", "users", "ndcg@10"])
