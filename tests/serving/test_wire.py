"""What the split graph sends between deployments survives the trip unchanged: the
retrieved lists (packed as bytes, models/served.py), the rules (as a dict,
serving/front.py) and the request (as its validated fields, serving/graph.py)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from ray import cloudpickle

from models.served import Retrieved
from serving.config import VariantConfig
from serving.front import Variant
from serving.requests import RecommendRequest
from serving.rules import RuleConfig


@pytest.mark.parametrize("dumps", [pickle.dumps, cloudpickle.dumps])
def test_retrieved_lists_round_trip_with_their_dtypes(dumps: object) -> None:
    rng = np.random.default_rng(0)
    retrieved = Retrieved({
        "two_tower": (rng.integers(0, 1000, 100), rng.random(100, dtype=np.float32)),
        "ease": (np.array([3, -1, -1], np.int64), np.array([0.5, -np.inf, -np.inf])),
        "empty": (np.zeros(0, np.int64), np.zeros(0, np.float32))},
        rng.random(64, dtype=np.float32))
    back = pickle.loads(dumps(retrieved))  # type: ignore[operator]
    assert list(back.lists) == list(retrieved.lists)
    for name, (ids, scores) in retrieved.lists.items():
        got_ids, got_scores = back.lists[name]
        assert got_ids.dtype == ids.dtype and got_scores.dtype == scores.dtype
        np.testing.assert_array_equal(got_ids, ids)
        np.testing.assert_array_equal(got_scores, scores)
    assert back.vector.dtype == np.float32
    np.testing.assert_array_equal(back.vector, retrieved.vector)
    # Nothing known about the user: no lists, a zero vector.
    nobody = pickle.loads(dumps(Retrieved({}, np.zeros(8, np.float32))))  # type: ignore[operator]
    assert nobody.lists == {} and not nobody.vector.any()


def test_rules_and_request_cross_as_plain_data() -> None:
    rules = RuleConfig(diversity="category_cap", diversity_weight=0.4, category_cap=2,
                       exploration_rate=0.0, exploration_slot=3)
    variant = Variant(VariantConfig(name="v", weight=1.0), rules)
    assert RuleConfig(**variant.rule_fields) == rules
    request = RecommendRequest.model_validate({
        "user_id": "42", "k": 5, "exclude_ids": ["a"], "filters": {"category": ["books"]},
        "context": {"category": "books"}, "session_items": ["b", "c"]})
    assert RecommendRequest.model_validate(request.model_dump()) == request
