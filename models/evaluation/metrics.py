"""Ranking, coverage and popularity-bias metrics as pure functions.

Inputs are item indices: `recommended` is a (users, K) array of ranked lists
(-1 pads short lists), `relevant` a sparse (users, items) matrix of held-out
positives. Every accuracy metric is the mean over users with at least one
relevant item, so users with nothing to find do not dilute the figure.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from models.vectors import unit_rows


def _hits(recommended: np.ndarray, relevant: sp.csr_matrix) -> np.ndarray:
    """(users, K) booleans: is the item at each rank relevant for that user?"""
    rows = np.repeat(np.arange(recommended.shape[0]), recommended.shape[1])
    cols = recommended.ravel()
    valid = cols >= 0
    hits = np.zeros(cols.shape, dtype=bool)
    hits[valid] = np.asarray(relevant[rows[valid], cols[valid]]).ravel() > 0
    return hits.reshape(recommended.shape)


def _users_with_relevant(relevant: sp.csr_matrix) -> np.ndarray:
    return np.diff(relevant.indptr) > 0


def precision_at_k(recommended: np.ndarray, relevant: sp.csr_matrix, k: int) -> float:
    mask = _users_with_relevant(relevant)
    hits = _hits(recommended[:, :k], relevant)[mask]
    return float(hits.sum(axis=1).mean() / k) if mask.any() else 0.0


def recall_at_k(recommended: np.ndarray, relevant: sp.csr_matrix, k: int) -> float:
    mask = _users_with_relevant(relevant)
    hits = _hits(recommended[:, :k], relevant)[mask]
    n_rel = np.diff(relevant.indptr)[mask]
    return float((hits.sum(axis=1) / n_rel).mean()) if mask.any() else 0.0


def hit_rate_at_k(recommended: np.ndarray, relevant: sp.csr_matrix, k: int) -> float:
    mask = _users_with_relevant(relevant)
    hits = _hits(recommended[:, :k], relevant)[mask]
    return float(hits.any(axis=1).mean()) if mask.any() else 0.0


def ndcg_per_user(recommended: np.ndarray, relevant: sp.csr_matrix, k: int) -> np.ndarray:
    """Binary-gain NDCG@k of each user with at least one relevant item (in row order):
    DCG = sum over hits of 1/log2(rank + 1), ideal = all hits first."""
    mask = _users_with_relevant(relevant)
    hits = _hits(recommended[:, :k], relevant)[mask]
    discounts = 1.0 / np.log2(np.arange(2, hits.shape[1] + 2))
    dcg = (hits * discounts).sum(axis=1)
    n_ideal = np.minimum(np.diff(relevant.indptr)[mask], hits.shape[1])
    idcg = np.cumsum(discounts)[n_ideal - 1]
    return np.asarray(dcg / idcg, dtype=np.float64)


def ndcg_at_k(recommended: np.ndarray, relevant: sp.csr_matrix, k: int) -> float:
    """Mean of ndcg_per_user."""
    per_user = ndcg_per_user(recommended, relevant, k)
    return float(per_user.mean()) if len(per_user) else 0.0


def map_at_k(recommended: np.ndarray, relevant: sp.csr_matrix, k: int) -> float:
    """Mean average precision, normalised by min(|relevant|, k)."""
    mask = _users_with_relevant(relevant)
    if not mask.any():
        return 0.0
    hits = _hits(recommended[:, :k], relevant)[mask]
    precision_at_rank = np.cumsum(hits, axis=1) / np.arange(1, hits.shape[1] + 1)
    denom = np.minimum(np.diff(relevant.indptr)[mask], hits.shape[1])
    return float(((precision_at_rank * hits).sum(axis=1) / denom).mean())


def catalog_coverage(recommended: np.ndarray, n_items: int) -> float:
    """Share of the catalog that appears in at least one list."""
    shown = np.unique(recommended[recommended >= 0])
    return float(len(shown) / n_items) if n_items else 0.0


def intra_list_diversity(recommended: np.ndarray, item_vectors: np.ndarray) -> float:
    """Mean pairwise cosine distance between the items of each list (0 = all alike)."""
    unit = unit_rows(item_vectors)
    scores = []
    for row in recommended:
        row = row[row >= 0]
        if len(row) < 2:
            continue
        vectors = unit[row]
        sim = vectors @ vectors.T
        n = len(row)
        mean_sim = (sim.sum() - np.trace(sim)) / (n * (n - 1))
        scores.append(1.0 - mean_sim)
    return float(np.mean(scores)) if scores else 0.0


def novelty(recommended: np.ndarray, item_popularity: np.ndarray) -> float:
    """Mean self-information -log2 p(i) of recommended items, p = share of training
    interactions (unseen items count as one interaction)."""
    p = (item_popularity + 1.0) / (item_popularity.sum() + len(item_popularity))
    shown = recommended[recommended >= 0]
    return float(np.mean(-np.log2(p[shown]))) if len(shown) else 0.0


def gini(exposure: np.ndarray) -> float:
    """Gini coefficient of how often each item is shown (0 = equal, 1 = one item only)."""
    x = np.sort(np.asarray(exposure, dtype=float))
    n = len(x)
    if n == 0 or x.sum() == 0:
        return 0.0
    index = np.arange(1, n + 1)
    return float((2 * (index * x).sum()) / (n * x.sum()) - (n + 1) / n)


def exposure_counts(recommended: np.ndarray, n_items: int) -> np.ndarray:
    shown = recommended[recommended >= 0]
    return np.bincount(shown, minlength=n_items)


def long_tail_share(recommended: np.ndarray, item_popularity: np.ndarray,
                    head_share: float = 0.2) -> float:
    """Share of recommendation slots given to long-tail items: everything outside the
    `head_share` most popular items of the training data."""
    n_head = max(1, round(head_share * len(item_popularity)))
    head = np.zeros(len(item_popularity), dtype=bool)
    head[np.argsort(-item_popularity, kind="stable")[:n_head]] = True
    shown = recommended[recommended >= 0]
    return float((~head[shown]).mean()) if len(shown) else 0.0
