"""Each kind of bad event, item and user cell is reported with its line and field."""

from __future__ import annotations

import pandas as pd
import pytest

from models.data.validate import (
    DataValidationError,
    Locator,
    normalize_events,
    normalize_items,
    normalize_users,
)

CSV = Locator("events.csv", "line", 2)


def _events(**overrides: object) -> pd.DataFrame:
    row = {"user_id": "u1", "item_id": "i1", "event_type": "view", "value": "12.5",
           "timestamp": "2026-01-01T10:00:00Z"}
    row.update(overrides)
    return pd.DataFrame([row])


def test_valid_event_is_normalised_to_the_contract() -> None:
    result = normalize_events(_events(context='{"page": "home", "device": "mobile"}'), CSV)
    assert result.issues == []
    row = result.frame.iloc[0]
    assert row["user_id"] == "u1" and row["item_id"] == "i1"
    assert row["value"] == 12.5
    assert row["timestamp"] == pd.Timestamp("2026-01-01T10:00:00Z")
    assert row["context"] == '{"device": "mobile", "page": "home"}'
    assert len(row["event_id"]) == 24


@pytest.mark.parametrize(("override", "field", "reason"), [
    ({"user_id": ""}, "user_id", "missing"),
    ({"event_type": "like"}, "event_type", "unknown event type 'like'"),
    ({"item_id": ""}, "item_id", "a view event needs an item"),
    ({"value": "abc"}, "value", "not a number: 'abc'"),
    ({"value": "-3"}, "value", "negative"),
    ({"value": "inf"}, "value", "not finite"),
    ({"event_type": "rating", "value": ""}, "value", "a rating event needs the rating in `value`"),
    ({"timestamp": "yesterday-ish"}, "timestamp", "unparseable timestamp"),
    ({"event_type": "search", "item_id": "", "query": ""}, "query",
     "a search event needs the search text in `query`"),
    ({"context": "{not json"}, "context", "not valid JSON"),
    ({"context": "[1, 2]"}, "context", "must be a JSON object"),
])
def test_each_bad_event_cell_names_line_and_field(override, field, reason) -> None:
    good = _events()
    bad = _events(**override)
    result = normalize_events(pd.concat([good, bad, good.assign(user_id="u2")],
                                        ignore_index=True), CSV)
    assert len(result.issues) == 1, result.issues
    issue = result.issues[0]
    assert (issue.source, issue.location, issue.field) == ("events.csv", "line 3", field)
    assert reason in issue.reason
    # The valid rows are kept, in order, and the positions still point at their lines.
    assert list(result.frame["user_id"]) == ["u1", "u2"]
    assert list(result.positions) == [0, 2]


def test_missing_required_column_fails_the_whole_file() -> None:
    with pytest.raises(DataValidationError) as info:
        normalize_events(pd.DataFrame({"user_id": ["u1"], "timestamp": ["2026-01-01"]}), CSV)
    issue = info.value.issues[0]
    assert issue.field == "event_type" and issue.location == "whole file"
    assert "required column is missing" in issue.reason


def test_duplicate_event_ids_point_at_the_first_occurrence() -> None:
    frame = pd.concat([_events(event_id="e1"), _events(event_id="e1", value="3")],
                      ignore_index=True)
    result = normalize_events(frame, CSV)
    assert [str(i) for i in result.issues] == [
        "events.csv: line 3: field 'event_id': duplicate event_id 'e1' (first at line 2)"]


def test_derived_event_ids_are_stable_and_tell_identical_rows_apart() -> None:
    frame = pd.concat([_events(), _events()], ignore_index=True)
    first = normalize_events(frame, CSV).frame["event_id"]
    again = normalize_events(frame, CSV).frame["event_id"]
    assert first.nunique() == 2
    assert list(first) == list(again)


def test_timestamps_accept_epochs_iso_and_naive_as_utc() -> None:
    frame = pd.concat([_events(timestamp="1767225600"), _events(timestamp="2026-01-01 00:00:00"),
                       _events(timestamp="2026-01-01T01:00:00+01:00")], ignore_index=True)
    stamps = normalize_events(frame, CSV).frame["timestamp"]
    assert (stamps == pd.Timestamp("2026-01-01T00:00:00Z")).all()
    millis = normalize_events(_events(timestamp=1767225600000), CSV, timestamp_unit="ms")
    assert millis.frame["timestamp"].iloc[0] == pd.Timestamp("2026-01-01T00:00:00Z")


def test_ids_are_kept_verbatim_and_integral_floats_lose_their_point() -> None:
    frame = pd.DataFrame([{"user_id": 42, "item_id": 318.0, "event_type": "click",
                           "timestamp": 0}, {"user_id": "007", "item_id": "318",
                                             "event_type": "click", "timestamp": 0}])
    result = normalize_events(frame, Locator("e.parquet"))
    assert list(result.frame["user_id"]) == ["42", "007"]
    assert list(result.frame["item_id"]) == ["318", "318"]


def test_items_validate_prices_years_lists_and_duplicates() -> None:
    raw = pd.DataFrame([
        {"item_id": "a", "title": "A", "categories": "Drama|Comedy", "price": "9.5",
         "year": "1995"},
        {"item_id": "b", "price": "-1"},
        {"item_id": "c", "year": "19x5"},
        {"item_id": "a"},
        {"item_id": "d", "category": "books", "categories": ["fiction"], "tags": 5},
    ])
    result = normalize_items(raw, Locator("items.csv", "line", 2))
    found = {(i.location, i.field) for i in result.issues}
    assert found == {("line 3", "price"), ("line 4", "year"), ("line 5", "item_id"),
                     ("line 6", "tags")}
    good = result.frame.iloc[0]
    assert good["category"] == "Drama" and good["categories"] == ["Drama", "Comedy"]
    assert good["year"] == 1995 and good["price"] == 9.5


def test_users_fold_extra_columns_into_attributes() -> None:
    raw = pd.DataFrame([{"user_id": "1", "age": 24, "gender": "F", "segment": "new"}])
    result = normalize_users(raw, Locator("users.csv", "line", 2))
    assert result.issues == []
    assert result.frame.iloc[0]["attributes"] == '{"age": 24, "gender": "F"}'
    assert result.frame.iloc[0]["segment"] == "new"
