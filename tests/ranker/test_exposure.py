"""The exposure trade-off: standardised scores, a popularity penalty, a weight chosen
on calibration users within a tolerance."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from models.ranker.exposure import adjust, calibrate, popularity_z, top_lists


def test_adjust_penalises_popular_items_by_weight() -> None:
    users = np.array([0, 0, 1, 1])
    items = np.array([0, 1, 0, 1])
    scores = np.array([2.0, 1.0, 5.0, 4.0])  # per-user scale differs; z-scores do not
    pop_z = popularity_z(np.array([1000, 1]))
    assert pop_z[0] > 0 > pop_z[1]
    plain = adjust(scores, users, items, pop_z, 0.0)
    assert plain[0] == pytest.approx(plain[2]) and plain[0] > plain[1]
    penalised = adjust(scores, users, items, pop_z, 5.0)
    assert penalised[1] > penalised[0]  # the rare item now leads


def test_calibrate_picks_the_largest_weight_within_tolerance() -> None:
    # One user; item 0 is popular and relevant, item 1 rare and relevant, 2 rare and not.
    users = np.zeros(3, dtype=np.int64)
    items = np.array([0, 1, 2])
    scores = np.array([3.0, 2.0, 1.0])
    relevant = sp.csr_matrix(([1.0, 1.0], ([0, 0], [0, 1])), shape=(1, 3))
    pop_z = popularity_z(np.array([100, 1, 1]))
    weight, table = calibrate(users, items, scores, relevant, pop_z, tolerance=0.0,
                              weights=(0.0, 0.5, 10.0), k=2)
    # Weights 0 and 0.5 keep both relevant items in the top 2; 10 pushes item 0 out.
    assert table.set_index("weight").loc[10.0, "ndcg@10"] < table["ndcg@10"].max()
    assert weight == 0.5
    lists, values = top_lists(users, items, scores, np.array([0]), 2)
    assert lists.tolist() == [[0, 1]] and values.tolist() == [[3.0, 2.0]]
