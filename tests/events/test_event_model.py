"""The incoming event model: the contract's rules, derived ids, reasons that name the field."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from contracts.schemas import EVENT_FIELDS
from serving.events.event import MAX_ID_LENGTH, Event, parse_events

VIEW = {"user_id": "u1", "item_id": "i1", "event_type": "view",
        "timestamp": "2024-05-01T12:00:00Z"}


def reason(raw: dict, path: str = "") -> str:
    valid, rejected = parse_events([raw], path)
    assert not valid, f"accepted: {raw}"
    return rejected[0].reason


def test_record_matches_the_events_contract() -> None:
    event = Event.model_validate({**VIEW, "value": 3, "timestamp": "2024-05-01T14:00:00+02:00",
                                  "context": {"page": "home", "device": "ios"}})
    record = event.record()
    assert list(record) == [f.name for f in EVENT_FIELDS]
    assert record["timestamp"] == "2024-05-01T12:00:00.000000+00:00"  # UTC, microseconds
    assert record["value"] == 3.0 and isinstance(record["value"], float)
    assert record["context"] == '{"device":"ios","page":"home"}'  # JSON text, keys sorted
    assert json.loads(event.to_json()) == record


def test_derived_ids_are_stable_and_follow_the_content() -> None:
    first = Event.model_validate(VIEW).event_id
    assert first is not None and len(first) == 32
    assert Event.model_validate(dict(VIEW)).event_id == first
    # The same instant written another way, a value as int or float: the same event.
    assert Event.model_validate({**VIEW, "timestamp": "2024-05-01T14:00:00+02:00"}
                                ).event_id == first
    assert (Event.model_validate({**VIEW, "value": 2}).event_id
            == Event.model_validate({**VIEW, "value": 2.0}).event_id)
    for change in ({"item_id": "i2"}, {"value": 1.0}, {"timestamp": "2024-05-01T12:00:01Z"},
                   {"context": {"page": "cart"}}, {"session_id": "s"}):
        assert Event.model_validate({**VIEW, **change}).event_id != first, change
    # A given id is kept verbatim; integers are ids too.
    assert Event.model_validate({**VIEW, "event_id": "e-1"}).event_id == "e-1"
    assert Event.model_validate({**VIEW, "event_id": 42, "user_id": 7}).user_id == "7"


def test_missing_timestamp_is_now_and_naive_or_epoch_timestamps_are_rejected() -> None:
    before = datetime.now(UTC)
    for raw in ({k: v for k, v in VIEW.items() if k != "timestamp"}, {**VIEW, "timestamp": None}):
        stamp = Event.model_validate(raw).timestamp
        assert before <= stamp <= datetime.now(UTC) and stamp.tzinfo is not None
    assert reason({**VIEW, "timestamp": "2024-05-01T12:00:00"}) == \
        "timestamp: Input should have timezone info"
    for epoch in (1714564800, "1714564800"):
        assert reason({**VIEW, "timestamp": epoch}).startswith(
            "timestamp: Input should be an ISO 8601 date and time with a timezone")


@pytest.mark.parametrize("stamp", [
    "0001-01-01T00:00:00+01:00",  # overflowed converting to UTC: was a 500 (issue 17)
    "0001-01-01T00:00:00Z", "1677-09-21T00:12:43Z", "1969-12-31T23:59:59Z",
    "2262-04-12T00:00:00Z",  # beyond pandas: once accepted, it stopped the consumer
    "9999-12-31T23:59:59-05:00", "3000-01-01T00:00:00Z",
])
def test_timestamps_every_reader_cannot_hold_are_refused(stamp: str) -> None:
    assert reason({**VIEW, "timestamp": stamp}).startswith(
        "timestamp: Input should be between 1970-01-01T00:00:00+00:00 and a day from now")


def test_timestamps_at_the_edges_of_the_range() -> None:
    assert Event.model_validate({**VIEW, "timestamp": "1970-01-01T00:00:00Z"})
    soon = (datetime.now(UTC) + timedelta(hours=23)).isoformat()
    assert Event.model_validate({**VIEW, "timestamp": soon})
    later = (datetime.now(UTC) + timedelta(hours=25)).isoformat()
    assert reason({**VIEW, "timestamp": later}).startswith("timestamp: Input should be")


def test_text_no_store_can_hold_is_refused() -> None:
    assert reason({**VIEW, "context": {"note": "a\ud800b"}}) == \
        "context: Input should be valid Unicode text; '\\ud800' at 10 is a lone surrogate"
    assert reason({**VIEW, "user_id": "\udfff"}).startswith("user_id: Input should be a valid "
                                                            "string")
    for control in ("a\nb", "\x00", "tab\there", "\x7f"):
        assert reason({**VIEW, "item_id": control}).startswith(
            "item_id: String should match pattern")
    assert reason({**VIEW, "request_id": 42}) == "request_id: Input should be a valid string"
    assert Event.model_validate({**VIEW, "user_id": 42, "item_id": 7}).user_id == "42"
    # Integers as JSON Schema counts them (5.0 is one), within what a JavaScript client
    # holds exactly; beyond, a client's number is not the id it meant (schemathesis).
    assert Event.model_validate({**VIEW, "user_id": 5.0}).user_id == "5"
    assert Event.model_validate({**VIEW, "user_id": 2**53}).user_id == str(2**53)
    for far in (2**53 + 1, 18446744073709551999, 1e300, 4.5):
        assert reason({**VIEW, "user_id": far}) == "user_id: Input should be a valid string"


def test_contract_rules_by_event_type() -> None:
    assert reason({**VIEW, "event_type": "rating"}) == \
        "value: Field required for a rating event (the rating)"
    assert Event.model_validate({**VIEW, "event_type": "rating", "value": 0}).value == 0.0
    search = {"user_id": "u1", "event_type": "search"}
    assert reason(search) == "query: Field required for a search event (the search text)"
    assert Event.model_validate({**search, "query": "red shoes"}).item_id is None
    assert Event.model_validate({**search, "query": "q", "item_id": "i1"}).item_id == "i1"
    for event_type in ("view", "click", "add_to_cart", "purchase", "impression"):
        assert reason({**VIEW, "event_type": event_type, "item_id": None}) == (
            f"item_id: Field required for a {event_type} event "
            "(only search events may omit it)")


@pytest.mark.parametrize(("change", "expected"), [
    ({"value": -1}, "value: Input should be greater than or equal to 0"),
    ({"value": float("inf")}, "value: Input should be a finite number"),
    ({"value": "4"}, "value: Input should be a valid number"),
    ({"value": True}, "value: Input should be a valid number"),
    ({"event_type": "fly"}, "event_type: Input should be 'view', 'click', 'add_to_cart', "
                            "'purchase', 'rating', 'search' or 'impression'"),
    ({"colour": "red"}, "colour: Extra inputs are not permitted"),
    ({"user_id": ""}, "user_id: String should have at least 1 character"),
    ({"user_id": "u" * (MAX_ID_LENGTH + 1)},
     f"user_id: String should have at most {MAX_ID_LENGTH} characters"),
    ({"item_id": 1.5}, "item_id: Input should be a valid string"),
    ({"context": "{\"page\": 1}"}, "context: Input should be a JSON object"),
    ({"context": {"blob": "x" * 5000}},
     "context: Input should be at most 4096 characters as JSON, got 5011"),
])
def test_bad_fields_are_named(change: dict, expected: str) -> None:
    assert reason({**VIEW, **change}) == expected


def test_parse_events_keeps_the_valid_ones_and_names_each_bad_one_by_index() -> None:
    raw = [VIEW, {**VIEW, "value": -1}, {**VIEW, "item_id": "i2"}, 7,
           {"event_type": "view", "colour": "red"}]
    valid, rejected = parse_events(raw)
    assert [e.item_id for e in valid] == ["i1", "i2"]
    assert [(r.index, r.reason) for r in rejected] == [
        (1, "events[1].value: Input should be greater than or equal to 0"),
        (3, "events[3]: Input should be a valid dictionary or instance of Event"),
        (4, "events[4].user_id: Field required; events[4].colour: Extra inputs are not "
            "permitted"),
    ]


def test_model_and_contract_agree() -> None:
    with pytest.raises(ValidationError):
        Event.model_validate({**VIEW, "event_id": None, "extra": 1})
    assert tuple(Event.model_fields) == tuple(f.name for f in EVENT_FIELDS)
