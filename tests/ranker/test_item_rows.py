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
