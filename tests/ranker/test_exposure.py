"""The exposure trade-off: per-user standardised scores, a two-tower affinity blend, a
popularity penalty, and the setting chosen on calibration users against an accuracy
floor and a coverage target."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from models.ranker.exposure import Blend, blend_scores, calibrate, popularity_z, top_lists


def test_blend_penalises_popular_items_and_follows_affinity() -> None:
    users = np.array([0, 0, 1, 1])
    items = np.array([0, 1, 0, 1])
    ranker = np.array([2.0, 1.0, 5.0, 4.0])  # per-user scale differs; z-scores do not
    affinity = np.array([0.0, 0.0, -1.0, 1.0])
    pop_z = popularity_z(np.array([1000, 1]))
    assert pop_z[0] > 0 > pop_z[1]
    plain = blend_scores(ranker, affinity, users, pop_z[items], Blend())
    assert plain[0] == pytest.approx(plain[2]) and plain[0] > plain[1]
    penalised = blend_scores(ranker, affinity, users, pop_z[items], Blend(popularity=5.0))
    assert penalised[1] > penalised[0]  # the rare item now leads
    led = blend_scores(ranker, affinity, users, pop_z[items], Blend(affinity=2.0))
    assert led[0] > led[1] and led[3] > led[2]  # user 1 follows its affinity, user 0 has none


def _two_users() -> tuple[np.ndarray, ...]:
    """Both users' relevant item is the popular item 0; items 1 and 2 are rare."""
    users = np.repeat([0, 1], 3)
    items = np.tile([0, 1, 2], 2)
    ranker = np.tile([3.0, 2.0, 1.0], 2)
    affinity = np.zeros(6)
    relevant = sp.csr_matrix(np.array([[1.0, 0, 0], [1.0, 0, 0]]))
    return users, items, ranker, affinity, relevant, popularity_z(np.array([100, 1, 1]))


def test_calibrate_reaches_coverage_only_above_the_floor() -> None:
    users, items, ranker, affinity, relevant, pop_z = _two_users()
    kwargs = dict(affinity_weights=(0.0,), popularity_weights=(0.0, 10.0), k=1)
    # No penalty: both users get item 0 (NDCG 1, coverage 1/3); a heavy penalty gives
    # them a rare item (NDCG 0, coverage 1/3 with item 1 for both).
    blend, table = calibrate(users, items, ranker, affinity, relevant, pop_z, floor_ndcg=0.5,
                             coverage_target=0.3, **kwargs)  # type: ignore[arg-type]
    assert blend == Blend(0.0, 0.0) and table["chosen"].sum() == 1
    assert table.set_index("popularity").loc[10.0, "ndcg@1"] == 0.0
    # With no floor to respect, the most accurate setting that reaches the target wins.
    blend, _ = calibrate(users, items, ranker, affinity, relevant, pop_z, floor_ndcg=0.0,
                         coverage_target=0.3, **kwargs)  # type: ignore[arg-type]
    assert blend == Blend(0.0, 0.0)


def test_calibrate_widens_coverage_when_the_target_is_out_of_reach() -> None:
    users, items, ranker, affinity, relevant, pop_z = _two_users()
    affinity = np.array([0.0, 1.0, 0.0, 0.0, 0.0, 1.0])  # user 0 likes item 1, user 1 item 2
    blend, table = calibrate(users, items, ranker, affinity, relevant, pop_z, floor_ndcg=0.0,
                             coverage_target=0.9, affinity_weights=(0.0, 5.0),
                             popularity_weights=(0.0,), k=1)
    # Affinity 5 sends the users to items 1 and 2: coverage 2/3, the widest on offer.
    assert blend == Blend(5.0, 0.0)
    assert table.set_index("affinity").loc[5.0, "coverage@1"] == pytest.approx(2 / 3)
    # A floor nothing clears: the most accurate setting.
    blend, _ = calibrate(users, items, ranker, affinity, relevant, pop_z, floor_ndcg=2.0,
                         coverage_target=0.9, affinity_weights=(0.0, 5.0),
                         popularity_weights=(0.0,), k=1)
    assert blend == Blend(0.0, 0.0)


def test_top_lists_pads_short_lists() -> None:
    lists, values = top_lists(np.array([0, 0]), np.array([4, 7]), np.array([1.0, 3.0]),
                              np.array([0, 1]), 3)
    assert lists.tolist() == [[7, 4, -1], [-1, -1, -1]]
    assert values[0, :2].tolist() == [3.0, 1.0] and np.isneginf(values[1]).all()
