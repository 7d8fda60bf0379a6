"""The slot table behind the in-process item feature cache."""

from __future__ import annotations

import numpy as np

from models.ranker.item_rows import ItemTable


def test_rows_are_found_by_slot_and_missing_items_read_as_none_or_nan() -> None:
    table = ItemTable(capacity=2)  # small, so that writes grow it
    table.write([{"item_id": f"i{n}", "price": n, "category": f"c{n % 2}"}
                 for n in range(5)], "item_id", now=10.0)
    slots = table.slots(["i4", "nope", "i0"])
    assert list(slots[[0, 2]] >= 0) == [True, True] and slots[1] == -1
    assert list(table.field(slots, "category")) == ["c0", None, "c0"]
    assert list(table.field(slots, "no_such_field")) == [None, None, None]
    values = table.values(slots, ("price", "category"))
    assert values[0, 0] == 4.0 and values[2, 0] == 0.0
    assert np.isnan(values[1]).all() and np.isnan(values[:, 1]).all()  # not a number
    assert list(table.ages(slots, now=12.5)) == [2.5, np.inf, 2.5]


def test_a_new_read_replaces_the_row_and_its_parsed_numbers() -> None:
    table = ItemTable()
    table.write([{"item_id": "a", "price": "1.5"}], "item_id", now=0.0)
    slots = table.slots(["a"])
    assert table.values(slots, ("price",))[0, 0] == 1.5
    table.write([{"item_id": "a", "price": None}], "item_id", now=5.0)
    assert np.isnan(table.values(slots, ("price",))[0, 0])
    assert len(table) == 1 and table.row(int(slots[0])) == {"item_id": "a", "price": None}
    assert table.ages(slots, now=6.0)[0] == 1.0


def test_offline_rows_read_each_user_and_item_once_as_of_one_time() -> None:
    """The ranker's service joins user views on user_id and item views on item_id, so
    one round-robin join gives every user's and every item's row (a stand-in join here:
    a unit test of this class)."""
    import numpy as np
    import pandas as pd

    from models.ranker.item_rows import OfflineRows

    at = pd.Timestamp("2026-03-01T12:00:00Z")
    asked: list[pd.DataFrame] = []

    def join(entity: pd.DataFrame) -> pd.DataFrame:
        asked.append(entity)
        return entity.assign(**{
            "user_profile__avg_purchase_price": entity["user_id"].map({"u1": 10.0, "u2": 20.0}),
            "item_content__category": entity["item_id"].map({"a": "books", "b": "home",
                                                              "c": "toys"}),
            "item_popularity__views_7d": entity["item_id"].map({"a": 1, "b": 2, "c": 3})})

    rows = OfflineRows(join, np.array(["u1", "u2"], dtype=object),
                       np.array(["a", "b", "c"], dtype=object), at)
    [entity] = asked
    assert len(entity) == 3 and set(entity["user_id"]) == {"u1", "u2"}
    assert (entity["event_timestamp"] == at).all()
    assert rows.user("u2") == {"user_profile__avg_purchase_price": 20.0}
    assert rows.user("nobody") == {}
    found = rows.lookup(["c", "a", "zzz"])
    assert list(found.field("item_content__category")) == ["toys", "books", None]
    values = found.values(("item_popularity__views_7d",))
    assert values[:2, 0].tolist() == [3.0, 1.0] and np.isnan(values[2, 0])
