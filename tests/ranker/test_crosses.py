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
