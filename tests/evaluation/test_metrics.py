"""Metric limits (a perfect list scores 1) and hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp

from models.evaluation import metrics


def _relevant(rows: list[list[int]], n_items: int = 6) -> sp.csr_matrix:
    data = [(r, c) for r, cols in enumerate(rows) for c in cols]
    r, c = zip(*data, strict=True) if data else ((), ())
    return sp.csr_matrix((np.ones(len(data)), (r, c)), shape=(len(rows), n_items))


def test_perfect_lists_score_one() -> None:
    relevant = _relevant([[0, 1, 2], [3, 4, 5]])
    perfect = np.array([[0, 1, 2], [5, 4, 3]])
    for metric in (metrics.precision_at_k, metrics.recall_at_k, metrics.ndcg_at_k,
                   metrics.map_at_k, metrics.hit_rate_at_k):
        assert metric(perfect, relevant, 3) == pytest.approx(1.0), metric.__name__


def test_useless_lists_score_zero() -> None:
    relevant = _relevant([[0], [1]])
    useless = np.array([[3, 4], [5, 2]])
    for metric in (metrics.precision_at_k, metrics.recall_at_k, metrics.ndcg_at_k,
                   metrics.map_at_k, metrics.hit_rate_at_k):
        assert metric(useless, relevant, 2) == 0.0


def test_known_values() -> None:
    relevant = _relevant([[0, 2]])
    recommended = np.array([[0, 1, 2]])
    assert metrics.precision_at_k(recommended, relevant, 3) == pytest.approx(2 / 3)
    assert metrics.recall_at_k(recommended, relevant, 3) == pytest.approx(1.0)
    dcg = 1 + 1 / math.log2(4)
    idcg = 1 + 1 / math.log2(3)
    assert metrics.ndcg_at_k(recommended, relevant, 3) == pytest.approx(dcg / idcg)
    assert metrics.map_at_k(recommended, relevant, 3) == pytest.approx((1 + 2 / 3) / 2)
    assert metrics.recall_at_k(recommended, relevant, 1) == pytest.approx(0.5)


def test_users_without_relevant_items_do_not_count_and_padding_is_ignored() -> None:
    relevant = _relevant([[1], []])
    recommended = np.array([[1, -1], [0, 2]])
    assert metrics.precision_at_k(recommended, relevant, 2) == pytest.approx(0.5)
    assert metrics.ndcg_at_k(recommended, relevant, 2) == pytest.approx(1.0)


def test_coverage_gini_and_long_tail() -> None:
    recommended = np.array([[0, 1], [0, 2]])
    assert metrics.catalog_coverage(recommended, 6) == pytest.approx(3 / 6)
    assert metrics.gini(np.array([5, 5, 5, 5])) == pytest.approx(0.0)
    assert metrics.gini(np.array([0, 0, 0, 8])) == pytest.approx(3 / 4)
    popularity = np.array([100, 50, 1, 1, 1, 1])  # head = top 20% of 6 items = item 0
    assert metrics.long_tail_share(recommended, popularity) == pytest.approx(2 / 4)
    assert metrics.exposure_counts(recommended, 6).tolist() == [2, 1, 1, 0, 0, 0]


def test_novelty_rewards_rare_items_and_diversity_measures_spread() -> None:
    popularity = np.array([1000.0, 1.0, 1.0])
    assert metrics.novelty(np.array([[1, 2]]), popularity) > metrics.novelty(
        np.array([[0, 0]]), popularity)
    vectors = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    assert metrics.intra_list_diversity(np.array([[0, 1]]), vectors) == pytest.approx(0.0)
    assert metrics.intra_list_diversity(np.array([[0, 2]]), vectors) == pytest.approx(1.0)
