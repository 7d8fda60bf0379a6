"""Evaluate candidate generators side by side on one split, with one set of metrics."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp

from models.candidates.base import CandidateGenerator, TrainingData
from models.evaluation import metrics
from models.evaluation.split import Split

KS: tuple[int, ...] = (10, 20, 50)


def aligned_items(split: Split, items: pd.DataFrame) -> pd.DataFrame:
    """The catalog in the split's column order."""
    return items.set_index("item_id").loc[list(split.items.ids)].reset_index()


def category_vectors(items: pd.DataFrame) -> np.ndarray:
    """Multi-hot categories per item: the space intra-list diversity is measured in."""
    categories = items["categories"].map(lambda c: list(c) if len(c) else [])
    categories = [c or [p] for c, p in zip(categories, items["category"], strict=True)]
    names = sorted({c for cats in categories for c in cats})
    position = {c: n for n, c in enumerate(names)}
    vectors = np.zeros((len(items), len(names)), dtype=np.float32)
    for row, cats in enumerate(categories):
        for c in cats:
            vectors[row, position[c]] = 1.0
    return vectors


def list_metrics(recommended: np.ndarray, relevant: sp.csr_matrix, ks: Sequence[int],
                 popularity: np.ndarray, item_vectors: np.ndarray) -> dict[str, float]:
    """Every metric for ranked lists (rows aligned with `relevant`)."""
    out: dict[str, float] = {}
    n_items = len(popularity)
    for k in ks:
        top = recommended[:, :k]
        out[f"precision@{k}"] = metrics.precision_at_k(top, relevant, k)
        out[f"recall@{k}"] = metrics.recall_at_k(top, relevant, k)
        out[f"ndcg@{k}"] = metrics.ndcg_at_k(top, relevant, k)
        out[f"map@{k}"] = metrics.map_at_k(top, relevant, k)
        out[f"hit_rate@{k}"] = metrics.hit_rate_at_k(top, relevant, k)
        out[f"coverage@{k}"] = metrics.catalog_coverage(top, n_items)
    k = ks[0]
    top = recommended[:, :k]
    out[f"diversity@{k}"] = metrics.intra_list_diversity(top, item_vectors)
    out[f"novelty@{k}"] = metrics.novelty(top, popularity)
    out[f"long_tail_share@{k}"] = metrics.long_tail_share(top, popularity)
    out[f"gini@{k}"] = metrics.gini(metrics.exposure_counts(top, n_items))
    return out


def compare(split: Split, items: pd.DataFrame, generators: Sequence[CandidateGenerator],
            ks: Sequence[int] = KS,
            on_model: Callable[[str, float], None] | None = None) -> pd.DataFrame:
    """Fit each generator on the split's training side and score its top-max(ks) lists
    for every test user; one row of metrics per generator."""
    catalog = aligned_items(split, items)
    train = split.train_matrix()
    data = TrainingData(train, split.train_events, catalog, split.users.ids)
    test = split.test_matrix()
    users = split.test_users()
    relevant = test[users]
    popularity = np.asarray(train.sum(axis=0)).ravel()
    vectors = category_vectors(catalog)
    rows = {}
    for generator in generators:
        began = time.perf_counter()
        generator.fit(data)
        recommended, _ = generator.recommend(users, max(ks), seen=train)
        seconds = time.perf_counter() - began
        rows[generator.name] = {**list_metrics(recommended, relevant, ks, popularity, vectors),
                                "seconds": seconds}
        if on_model is not None:
            on_model(generator.name, seconds)
    return pd.DataFrame.from_dict(rows, orient="index")
