"""The serving request contract: valid requests parse with their defaults; anything
else is an InvalidInput (HTTP 400) whose reason names the field, never another error."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kserve.errors import InvalidInput
from kserve.protocol.infer_type import InferInput, InferRequest

from serving.requests import (
    MAX_INSTANCES,
    RankRequest,
    RecommendRequest,
    SimilarItemsRequest,
    parse_v1,
    parse_v2_recommend,
)


def test_v1_recommend_with_defaults_and_numeric_ids() -> None:
    body = {"instances": [
        {"user_id": "42"},
        {"user_id": 7, "k": 3, "exclude_ids": [318, "x"], "filters": {"category": ["Drama"]},
         "context": {"page": "home", "mobile": True}, "session_items": ["1"]}]}
    first, second = parse_v1(json.dumps(body).encode(), RecommendRequest)
    assert first == RecommendRequest(user_id="42", k=10)
    assert first.filters.category is None and first.exclude_ids == []
    assert second.user_id == "7" and second.exclude_ids == ["318", "x"]
    assert second.filters.category == ["Drama"] and second.context["mobile"] is True
    assert parse_v1(body, RecommendRequest) == [first, second]  # parsed or raw, the same


@pytest.mark.parametrize(("body", "reason"), [
    (b"{not json", "body is not valid JSON"),
    ({"inputs": []}, '{"instances": [...]}'),
    ({"instances": [], }, "instances: expected a non-empty list"),
    ({"instances": [{"user_id": "1"}], "extra": 1}, "unknown top-level field(s) extra"),
    ({"instances": [{"user_id": "1"}] * (MAX_INSTANCES + 1)}, "at most 64"),
    ({"instances": ["1"]}, "instances[0]: expected an object, got str"),
    ({"instances": [{"user_id": "1", "k": 0}]}, "instances[0].k: Input should be greater"),
    ({"instances": [{"user_id": "1", "k": "10"}]}, "instances[0].k: Input should be a valid"),
    ({"instances": [{"user_id": "1", "k": True}]}, "instances[0].k: Input should be a valid"),
    ({"instances": [{"user_id": ""}]}, "instances[0].user_id: String should have at least"),
    ({"instances": [{"k": 5}]}, "instances[0].user_id: Field required"),
    ({"instances": [{"user_id": "1", "colour": "red"}]},
     "instances[0].colour: Extra inputs are not permitted"),
    ({"instances": [{"user_id": "1"}, {"user_id": "2", "filters": {"category": [1.5]}}]},
     "instances[1].filters.category[0]: Input should be a valid string"),
    ({"instances": [{"user_id": "1", "context": {"nested": {"a": 1}}}]},
     "instances[0].context.nested"),
])
def test_v1_rejections_name_the_field(body: Any, reason: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_v1(body, RecommendRequest)
    assert reason in str(caught.value)


def test_similar_items_and_ranker_requests() -> None:
    (similar,) = parse_v1({"instances": [{"item_id": 318, "k": 5}]}, SimilarItemsRequest)
    assert similar.item_id == "318" and similar.k == 5
    (rank,) = parse_v1({"instances": [{"user_id": "1", "candidates": ["a", "b"]}]},
                       RankRequest)
    assert rank.candidates == ["a", "b"]
    with pytest.raises(InvalidInput, match=r"instances\[0\].candidates: List should have"):
        parse_v1({"instances": [{"user_id": "1", "candidates": []}]}, RankRequest)


def _v2(*inputs: InferInput) -> InferRequest:
    return InferRequest(model_name="recommender", infer_inputs=list(inputs))


def test_v2_recommend_inputs() -> None:
    users = InferInput("user_id", [2], "BYTES", ["42", "7"])
    parsed = parse_v2_recommend(_v2(users, InferInput("k", [1], "INT32", [5])))
    assert [(r.user_id, r.k) for r in parsed] == [("42", 5), ("7", 5)]
    parsed = parse_v2_recommend(_v2(users, InferInput("k", [2], "INT64", [3, 4])))
    assert [r.k for r in parsed] == [3, 4]
    assert [r.k for r in parse_v2_recommend(_v2(users))] == [10, 10]


@pytest.mark.parametrize(("inputs", "reason"), [
    ([InferInput("k", [1], "INT32", [5])], "missing input user_id"),
    ([InferInput("user_id", [1], "INT32", [5])], "user_id: datatype must be BYTES"),
    ([InferInput("user_id", [1], "BYTES", ["1"]), InferInput("k", [1], "FP32", [5.0])],
     "k: datatype must be an integer type"),
    ([InferInput("user_id", [2], "BYTES", ["1", "2"]), InferInput("k", [3], "INT32", [1, 2, 3])],
     "k: 3 values for 2 users"),
    ([InferInput("user_id", [1], "BYTES", ["1"]), InferInput("k", [1], "INT32", [500])],
     "k[0]: Input should be less than or equal to 100"),
    ([InferInput("user_id", [1, 2], "BYTES", ["1", "2"])], "shape must be [n] or [n, 1]"),
    ([InferInput("user_id", [1], "BYTES", ["1"]), InferInput("x", [1], "INT32", [1])],
     "unknown input(s) x"),
])
def test_v2_rejections_name_the_input(inputs: list[InferInput], reason: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_v2_recommend(_v2(*inputs))
    assert reason in str(caught.value)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda children: st.lists(children, max_size=5)
    | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=30)
FIELDS = st.sampled_from(["user_id", "item_id", "k", "exclude_ids", "filters", "context",
                          "session_items", "candidates", "category", "available"])
INSTANCE = st.dictionaries(FIELDS, JSON | st.lists(JSON, max_size=3), max_size=6)


@settings(max_examples=300, deadline=None)
@given(body=JSON | st.fixed_dictionaries({"instances": st.lists(INSTANCE, max_size=3)})
       | st.binary(max_size=64))
def test_v1_parsing_never_fails_other_than_invalid_input(body: Any) -> None:
    for model in (RecommendRequest, SimilarItemsRequest, RankRequest):
        try:
            parsed = parse_v1(body, model)
        except InvalidInput as exc:
            assert str(exc)
        else:
            assert parsed and all(isinstance(p, model) for p in parsed)
