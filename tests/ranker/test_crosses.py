"""Serving's one-user path of the category-affinity cross equals training's per-row one."""

from __future__ import annotations

import numpy as np
import pytest

from models.ranker.features import crosses


@pytest.mark.parametrize("tops, shares", [
    (["books", "toys", "books"], [0.5, 0.3, 0.2]),  # a repeated name: the first counts
    (np.array(["toys"], dtype=object), np.array([1.0])),
    (None, [0.4]),
    (["books"], None),
    ([], []),
])
def test_one_user_crosses_equal_the_per_row_ones(tops: object, shares: object) -> None:
    category = np.array(["books", "toys", None, "garden", 3], dtype=object)
    price, created = np.array([10.0, 20, 30, 40, 50]), np.zeros(5)
    per_row = np.empty(5, dtype=object), np.empty(5, dtype=object)
    per_row[0][:], per_row[1][:] = [tops] * 5, [shares] * 5
    expected = crosses(1e6, category, per_row[0], per_row[1], price, 20.0, created)
    got = crosses(1e6, category, tops, shares, price, 20.0, created, one_user=True)
    assert expected.keys() == got.keys()
    for name in expected:
        np.testing.assert_array_equal(got[name], expected[name], err_msg=name)


def test_per_row_shares_match_one_lookup_per_row() -> None:
    """Rows sharing list objects (a training frame), equal but distinct lists, and
    missing ones: each row gets its own lists' share of its category."""
    rng = np.random.default_rng(0)
    names = np.array(["books", "toys", "garden", "music"], dtype=object)
    users = [(list(rng.permutation(names)[:3]), list(rng.random(3))) for _ in range(5)]
    users += [(None, None), (float("nan"), [0.5]), (["books", "toys"], [0.25])]
    n = 400
    tops, shares = np.empty(n, dtype=object), np.empty(n, dtype=object)
    for row, user in enumerate(rng.integers(0, len(users), n)):
        t, s = users[user]
        copy = row % 3 == 0 and isinstance(t, list)  # equal contents, another object
        tops[row], shares[row] = (list(t), list(s)) if copy else (t, s)
    category = rng.choice(np.array([*names, None, 7], dtype=object), n)
    got = crosses(0.0, category, tops, shares, np.ones(n), 1.0, np.zeros(n))
    expected = [crosses(0.0, category[r:r + 1], tops[r], shares[r], np.ones(1), 1.0,
                        np.zeros(1), one_user=True)["cross_category_affinity"][0]
                for r in range(n)]
    np.testing.assert_array_equal(got["cross_category_affinity"], expected)
    assert (got["cross_category_affinity"] > 0).sum() > n // 4  # the lookups found shares
