"""Popularity and trending: global or per category, with optional time decay."""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from contracts.event_types import TASTE_TYPES
from models.candidates.base import CandidateGenerator, HistoryScorer, TrainingData


class Popularity(HistoryScorer):
    """Items ranked by how many users interacted with them. With `half_life_days`,
    each interaction counts 0.5 ** (age / half_life): trending rather than all-time."""
    name = "popularity"
    reason = "popular"
    baseline = True
    params = ("half_life_days",)
    fitted = ("item_scores",)

    def __init__(self, half_life_days: float | None = None) -> None:
        self.half_life_days = half_life_days
        self.name = "popularity" if half_life_days is None else "trending"
        self.item_scores = np.zeros(0, dtype=np.float32)

    def fit(self, data: TrainingData) -> Popularity:
        self.item_scores = item_weights(data, self.half_life_days)
        return self

    def score(self, users: np.ndarray) -> np.ndarray:
        return np.broadcast_to(self.item_scores, (len(users), len(self.item_scores))).copy()

    def score_history(self, history: sp.csr_matrix) -> np.ndarray:
        return self.score(np.zeros(history.shape[0], dtype=np.int64))

    def score_row(self, columns: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
        return self.item_scores.copy()  # the same for everyone; `values` do not matter

    def catalog_size(self) -> int:
        return len(self.item_scores)


def item_weights(data: TrainingData, half_life_days: float | None) -> np.ndarray:
    if half_life_days is None:
        return np.asarray(data.matrix.sum(axis=0), dtype=np.float32).ravel()
    events = data.events[data.events["event_type"].isin(TASTE_TYPES)
                         & data.events["item_id"].notna()]
    age_days = (data.now - events["timestamp"]) / pd.Timedelta(days=1)
    weights = np.power(0.5, age_days.to_numpy() / half_life_days)
    column = pd.Index(data.items["item_id"]).get_indexer(events["item_id"])
    keep = column >= 0
    return np.bincount(column[keep], weights=weights[keep],
                       minlength=data.matrix.shape[1]).astype(np.float32)


class CategoryPopularity(CandidateGenerator):
    """Popular items within each user's favourite categories: a user's score for an item
    is the share of their history in its category times the item's (decayed) popularity,
    plus a small global term so lists stay full."""

    name = "category_popularity"

    def __init__(self, half_life_days: float | None = 30.0, global_weight: float = 0.05
                 ) -> None:
        self.half_life_days = half_life_days
        self.global_weight = global_weight

    def fit(self, data: TrainingData) -> CategoryPopularity:
        categories = pd.Categorical(data.items["category"])
        n_cat = len(categories.categories)
        item_cat = categories.codes
        one_hot = np.zeros((data.matrix.shape[1], n_cat), dtype=np.float32)
        one_hot[np.arange(len(item_cat)), item_cat] = 1.0
        counts = data.matrix @ one_hot
        totals = counts.sum(axis=1, keepdims=True)
        self.user_affinity = counts / np.maximum(totals, 1.0)
        popularity = item_weights(data, self.half_life_days)
        self.popularity = popularity / max(float(popularity.max()), 1e-9)
        self.item_cat = item_cat
        return self

    def score(self, users: np.ndarray) -> np.ndarray:
        affinity = self.user_affinity[users][:, self.item_cat]
        return ((affinity + self.global_weight) * self.popularity).astype(np.float32)
