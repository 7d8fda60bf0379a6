"""Evaluation splits: per-user temporal and global time.

Both work on distinct (user, item) positives dated by their first interaction,
and both drop from the test side any item the user already had in training,
since recommenders exclude seen items from the ranking and could never
"find" them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from models.interactions import Index, positive_pairs, to_matrix


@dataclass(frozen=True)
class Split:
    """Train events and the held-out positives, on one shared index."""

    train_events: pd.DataFrame
    test_pairs: pd.DataFrame
    users: Index
    items: Index
    cutoff: pd.Timestamp | None  # global split only

    def train_matrix(self) -> sp.csr_matrix:
        return to_matrix(positive_pairs(self.train_events), self.users, self.items)

    def test_matrix(self) -> sp.csr_matrix:
        return to_matrix(self.test_pairs, self.users, self.items)

    def test_users(self) -> np.ndarray:
        """Rows of users with at least one held-out positive."""
        return np.flatnonzero(np.diff(self.test_matrix().indptr) > 0)


def per_user_temporal(events: pd.DataFrame, catalog: pd.Series, holdout: float = 0.2
                      ) -> Split:
    """Each user's last `holdout` share of distinct items (by first interaction) is held
    out; users with a single item keep it for training. Events on or after the user's
    first held-out interaction leave the training side, so nothing from the test period
    of a user trains the model."""
    pairs = positive_pairs(events).sort_values(["user_id", "timestamp", "item_id"],
                                               kind="stable")
    size = pairs.groupby("user_id")["item_id"].transform("size")
    rank = pairs.groupby("user_id").cumcount()
    n_test = np.where(size >= 2, np.ceil(size * holdout), 0).astype(int)
    is_test = rank >= size - n_test
    test = pairs[is_test]
    boundary = test.groupby("user_id")["timestamp"].min()
    user_boundary = events["user_id"].map(boundary)
    train_events = events[user_boundary.isna() | (events["timestamp"] < user_boundary)]
    return _finish(train_events, test, events, catalog, cutoff=None)


def global_time(events: pd.DataFrame, catalog: pd.Series, holdout: float = 0.2) -> Split:
    """Everything before the time at which `1 - holdout` of events have happened trains;
    positives after it (for users seen in training) are the test set."""
    cutoff = pd.Timestamp(events["timestamp"].quantile(1 - holdout))
    train_events = events[events["timestamp"] < cutoff]
    later = positive_pairs(events[events["timestamp"] >= cutoff])
    later = later[later["user_id"].isin(set(train_events["user_id"]))]
    return _finish(train_events, later, events, catalog, cutoff=cutoff)


SPLITS: dict[str, Callable[[pd.DataFrame, pd.Series], Split]] = {
    "per_user": per_user_temporal, "global": global_time}
# What each split holds out, in words for tables and reports.
PROTOCOLS = {
    "per_user": "per-user temporal split: each user's last 20% of items held out",
    "global": "global time split: everything after the instant 80% of events had "
              "happened held out",
}


def _finish(train_events: pd.DataFrame, test: pd.DataFrame, events: pd.DataFrame,
            catalog: pd.Series, cutoff: pd.Timestamp | None) -> Split:
    seen = positive_pairs(train_events)[["user_id", "item_id"]]
    test = test.merge(seen, on=["user_id", "item_id"], how="left", indicator=True)
    test = test[test["_merge"] == "left_only"].drop(columns="_merge")
    users = Index.of(events["user_id"])
    items = Index.of(catalog)
    return Split(train_events.reset_index(drop=True), test.reset_index(drop=True),
                 users, items, cutoff)
