"""The exposure trade-off: per-user standardised scores, a two-tower affinity blend, a
popularity penalty, unique slots, and the setting chosen on calibration users against
an accuracy floor and a coverage target."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from models.ranker.exposure import (
    Blend,
    blend_scores,
    calibrate,
    popularity_z,
    ranked_lists,
    ratio_lower_bound,
    spread,
    standardise,
    top_lists,
)


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


ONES = np.ones(2)  # the baseline's per-user NDCG: perfect for both users


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
    kwargs = dict(affinity_weights=(0.0,), popularity_weights=(0.0, 10.0), heads=(10,), k=1)
    # No penalty: both users get item 0 (NDCG 1, coverage 1/3); a heavy penalty gives
    # them a rare item (NDCG 0, coverage 1/3 with item 1 for both).
    blend, table = calibrate(users, items, ranker, affinity, relevant, pop_z, baseline=ONES,
                             floor_ratio=0.5, coverage_target=0.3, **kwargs)  # type: ignore[arg-type]
    assert blend == Blend(0.0, 0.0) and table["chosen"].sum() == 1
    assert table.set_index("popularity").loc[10.0, "ndcg@1"] == 0.0
    # With no floor to respect, the most accurate setting that reaches the target wins.
    blend, _ = calibrate(users, items, ranker, affinity, relevant, pop_z, baseline=ONES,
                         floor_ratio=0.0, coverage_target=0.3, **kwargs)  # type: ignore[arg-type]
    assert blend == Blend(0.0, 0.0)


def test_calibrate_widens_coverage_when_the_target_is_out_of_reach() -> None:
    users, items, ranker, affinity, relevant, pop_z = _two_users()
    affinity = np.array([0.0, 1.0, 0.0, 0.0, 0.0, 1.0])  # user 0 likes item 1, user 1 item 2
    blend, table = calibrate(users, items, ranker, affinity, relevant, pop_z, ONES,
                             floor_ratio=0.0, coverage_target=0.9, affinity_weights=(0.0, 5.0),
                             popularity_weights=(0.0,), heads=(10,), k=1)
    # Affinity 5 sends the users to items 1 and 2: coverage 2/3, the widest on offer.
    assert blend == Blend(5.0, 0.0)
    assert table.set_index("affinity").loc[5.0, "coverage@1"] == pytest.approx(2 / 3)
    # A floor nothing clears: the most accurate setting.
    blend, _ = calibrate(users, items, ranker, affinity, relevant, pop_z, ONES,
                         floor_ratio=2.0, coverage_target=0.9, affinity_weights=(0.0, 5.0),
                         popularity_weights=(0.0,), k=1)
    assert blend == Blend(0.0, 0.0)


def test_top_lists_pads_short_lists() -> None:
    lists, values = top_lists(np.array([0, 0]), np.array([4, 7]), np.array([1.0, 3.0]),
                              np.array([0, 1]), 3)
    assert lists.tolist() == [[7, 4, -1], [-1, -1, -1]]
    assert values[0, :2].tolist() == [3.0, 1.0] and np.isneginf(values[1]).all()


def test_unique_slots_go_to_items_no_list_shows_yet() -> None:
    ids = np.tile(np.arange(12), (2, 1))  # both users rank items 0..11 alike
    values = np.tile(np.linspace(1.0, 0.0, 12, dtype=np.float32), (2, 1))
    # Head 8: places 9 and 10 of each list go to its best items nobody shows yet.
    lists, scores = spread(ids, values, head=8, k=10)
    assert lists.tolist() == [[*range(8), 8, 9], [*range(8), 10, 11]]
    assert scores[1, 8:].tolist() == pytest.approx([values[0, 10], values[0, 11]])
    # The visiting order decides who gets the better fresh items.
    lists, _ = spread(ids, values, head=8, k=10, visit=np.array([1, 0]))
    assert lists[0, 8:].tolist() == [10, 11] and lists[1, 8:].tolist() == [8, 9]
    # A shorter list is a prefix of a longer one; past the slots the rest follow in order.
    assert spread(ids, values, head=8, k=9)[0].tolist() == [[*range(8), 8],
                                                            [*range(8), 10]]
    assert spread(ids, values, head=8, k=12)[0][1].tolist() == [*range(8), 10, 11, 8, 9]
    assert spread(ids, values, head=10, k=3)[0].tolist() == [[0, 1, 2], [0, 1, 2]]
    # Rows with no candidates at all stay empty.
    empty = np.full((2, 3), -1)
    assert (spread(empty, np.zeros((2, 3), np.float32), head=1, k=3)[0] == -1).all()


def test_ranked_lists_spread_over_the_whole_candidate_list() -> None:
    users = np.repeat([0, 1], 12)
    items = np.tile(np.arange(12), 2)
    scores = np.tile(np.linspace(1.0, 0.0, 12), 2)
    lists, _ = ranked_lists(users, items, scores, np.array([0, 1]), k=10, head=9)
    # User 1's fresh item is its 11th best: found beyond the first k.
    assert lists.tolist() == [[*range(9), 9], [*range(9), 10]]


def test_calibrate_chooses_unique_slots_when_they_cost_no_accuracy() -> None:
    users = np.repeat([0, 1], 12)
    items = np.tile(np.arange(12), 2)
    ranker = np.tile(np.linspace(1.0, 0.0, 12), 2)
    relevant = sp.csr_matrix(([1.0, 1.0], ([0, 1], [0, 0])), shape=(2, 12))
    blend, table = calibrate(users, items, ranker, np.zeros(24), relevant,
                             popularity_z(np.arange(12, 0, -1)), ONES, floor_ratio=0.9,
                             coverage_target=0.9, affinity_weights=(0.0,),
                             popularity_weights=(0.0,), heads=(10, 9))
    # Head 10: both lists are items 0..9 (coverage 10/12); head 9: the second list ends
    # with item 10 instead (11/12), item 0 still first for both.
    assert blend == Blend(0.0, 0.0, head=9) and blend.unique_slots == 1
    assert table.set_index("head").loc[9, "coverage@10"] == pytest.approx(11 / 12)
    assert table.set_index("head").loc[9, "ndcg@10"] == 1.0


def test_ratio_lower_bound_is_cautious_on_few_users() -> None:
    rng = np.random.default_rng(3)
    baseline = rng.uniform(0.0, 0.4, 2000)
    better = baseline * 1.2 + rng.normal(0.0, 0.2, 2000)  # 1.2x on average, noisily
    same = ratio_lower_bound(np.stack([baseline]), baseline, 0.95)
    assert same[0] == pytest.approx(1.0)

    def margin(n: int) -> float:  # how far the bound sits below the point estimate
        point = better[:n].mean() / baseline[:n].mean()
        return point - ratio_lower_bound(np.stack([better[:n]]), baseline[:n], 0.95)[0]

    assert 0 < margin(2000) < margin(100)  # fewer users, a wider margin
    assert ratio_lower_bound(np.stack([better]), baseline, 0.95)[0] > 1.1


def test_one_users_scores_standardise_as_within_a_group() -> None:
    """Serving standardises one user's rows at a time (a shortcut): the same z-scores as
    when that user is one group among others, and 0 for a lone or constant row."""
    rng = np.random.default_rng(4)
    scores = rng.normal(size=30)
    users = np.repeat([3, 8], 15)
    grouped = standardise(scores, users)
    np.testing.assert_allclose(standardise(scores[15:], users[15:]), grouped[15:],
                               rtol=1e-12)
    assert standardise(np.array([2.5]), np.array([1])).tolist() == [0.0]
    assert standardise(np.full(4, 7.0), np.zeros(4)).tolist() == [0.0] * 4
