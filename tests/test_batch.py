"""models/batch.py: batch recommendations, the known users' lists and the cold-start
list for everyone else, in the order the users were asked for."""

from __future__ import annotations

import pandas as pd

from models.batch import stored_lists, with_cold_start

FALLBACK = pd.DataFrame({"item_id": ["t1", "t2", "t3"], "rank": [1, 2, 3],
                         "score": [9.0, 8.0, 7.0]})
LISTS = pd.DataFrame({"user_id": ["a", "a", "a", "b", "b"],
                      "item_id": ["x", "y", "z", "y", "x"], "rank": [1, 2, 3, 1, 2],
                      "score": [1.0, 0.5, 0.1, 2.0, 1.0]})


def test_stored_lists_keep_the_asked_users_top_k() -> None:
    top = stored_lists(LISTS, ["b", "a", "nobody"], k=2)
    assert list(zip(top["user_id"], top["item_id"], strict=True)) == [
        ("a", "x"), ("a", "y"), ("b", "y"), ("b", "x")]


def test_unknown_users_get_the_cold_start_list_in_the_asked_order() -> None:
    batch = with_cold_start(stored_lists(LISTS, ["new", "b", "a", "b", "other"], 2),
                            ["new", "b", "a", "b", "other"], FALLBACK, k=2)
    assert batch.known == 2 and batch.cold == ["new", "other"]
    frame = batch.frame
    assert list(frame.columns) == ["user_id", "item_id", "rank", "score"]
    assert list(frame.index) == list(range(len(frame)))
    assert list(zip(frame["user_id"], frame["item_id"], frame["rank"], strict=True)) == [
        ("new", "t1", 1), ("new", "t2", 2), ("b", "y", 1), ("b", "x", 2),
        ("a", "x", 1), ("a", "y", 2), ("other", "t1", 1), ("other", "t2", 2)]
    assert list(frame["score"]) == [9.0, 8.0, 2.0, 1.0, 1.0, 0.5, 9.0, 8.0]


def test_all_known_users_need_no_cold_start_rows() -> None:
    batch = with_cold_start(stored_lists(LISTS, ["a"], 3), ["a"], FALLBACK, k=3)
    assert batch.cold == [] and batch.known == 1 and list(batch.frame["item_id"]) == [
        "x", "y", "z"]
