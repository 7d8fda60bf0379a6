"""Each business rule on its own, on hand-made candidates."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from serving.rules import Candidates, RuleConfig, apply_rules

NONE = RuleConfig(diversity="none", exploration_rate=0.0)


def _candidates(n: int = 6, vectors: np.ndarray | None = None) -> Candidates:
    return Candidates(item_ids=np.array([f"i{n}" for n in range(n)], dtype=object),
                      scores=np.linspace(1.0, 0.5, n),
                      sources=[["two_tower"] if n % 2 else ["item_knn", "popularity"]
                               for n in range(n)],
                      categories=np.array(["a", "a", "b", "b", "c", "c"][:n], dtype=object),
                      available=np.array([True, True, True, False, True, True][:n]),
                      vectors=vectors)


def _ids(picks: list) -> list[str]:
    return [p.item_id for p in picks]


def test_exclusions_and_filters() -> None:
    c = _candidates()
    assert _ids(apply_rules(c, 3, ["i0", "i2"], None, True, NONE, "r")) == ["i1", "i4", "i5"]
    assert _ids(apply_rules(c, 5, [], ["b", "c"], True, NONE, "r")) == ["i2", "i4", "i5"]
    # Unavailable items only when asked for.
    assert _ids(apply_rules(c, 5, [], ["b"], False, NONE, "r")) == ["i2", "i3"]
    assert apply_rules(c, 5, [], ["zzz"], True, NONE, "r") == []


def test_mmr_moves_a_different_item_up() -> None:
    vectors = np.array([[1, 0], [0.99, 0.141], [0, 1], [0, 1], [1, 0], [1, 0]], float)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    c = _candidates(vectors=vectors)
    plain = apply_rules(c, 3, [], None, True, RuleConfig(diversity_weight=0.0,
                                                         exploration_rate=0.0), "r")
    assert _ids(plain) == ["i0", "i1", "i2"]
    diverse = apply_rules(c, 3, [], None, True, RuleConfig(diversity_weight=0.5,
                                                           exploration_rate=0.0), "r")
    assert _ids(diverse)[:2] == ["i0", "i2"]  # the near-copy of i0 waits


def test_category_cap_then_fill() -> None:
    c = _candidates()
    config = RuleConfig(diversity="category_cap", category_cap=1, exploration_rate=0.0)
    assert _ids(apply_rules(c, 3, [], None, True, config, "r")) == ["i0", "i2", "i4"]
    # More slots than categories: the rest in score order.
    assert _ids(apply_rules(c, 5, [], None, True, config, "r")) == ["i0", "i2", "i4", "i1",
                                                                    "i5"]


def test_exploration_slot_is_marked_reproducible_and_at_the_rate() -> None:
    c = _candidates()
    always = RuleConfig(diversity="none", exploration_rate=1.0, exploration_slot=2)
    picks = apply_rules(c, 3, [], None, True, always, "req-1")
    assert "exploration" in picks[1].sources and len(picks) == 3
    assert "something new for you" in picks[1].reasons
    # From beyond the top of the list, and never an unavailable (i3) or excluded item.
    assert picks[1].item_id in ("i4", "i5")
    explored = apply_rules(c, 3, ["i4"], None, True, always, "req-1")
    assert explored[1].item_id == "i5" and "exploration" in explored[1].sources
    assert _ids(apply_rules(c, 3, [], None, True, always, "req-1")) == _ids(picks)
    sometimes = RuleConfig(diversity="none", exploration_rate=0.1)
    explores = [any("exploration" in p.sources
                    for p in apply_rules(c, 3, [], None, True, sometimes, f"r{n}"))
                for n in range(2000)]
    assert 0.08 < np.mean(explores) < 0.12


def test_the_exploration_pick_carries_its_pool_and_propensity() -> None:
    c = Candidates(item_ids=np.array([f"i{n}" for n in range(10)], dtype=object),
                   scores=np.linspace(1.0, 0.1, 10), sources=[["ease"]] * 10,
                   categories=np.array(["a"] * 10, dtype=object),
                   available=np.ones(10, dtype=bool))
    config = RuleConfig(diversity="none", exploration_rate=1.0, exploration_slot=2,
                        explore_pool=4)
    picks = apply_rules(c, 3, ["i5"], None, True, config, "req-1")
    explored = picks[1]
    # The pool: the next four candidates in score order that passed the rules and were
    # not chosen (i5 excluded), the draw one of them.
    assert explored.explore_pool == ["i3", "i4", "i6", "i7"]
    assert explored.item_id in explored.explore_pool
    assert explored.propensity == 1 / 4
    wire = explored.as_dict()
    assert (wire["propensity"], wire["explore_pool"]) == (0.25, explored.explore_pool)
    # Only the exploration item carries them; the same request draws the same item.
    assert all(p.propensity is None and "propensity" not in p.as_dict()
               and "explore_pool" not in p.as_dict() for p in (picks[0], picks[2]))
    again = apply_rules(c, 3, ["i5"], None, True, config, "req-1")[1]
    assert (again.item_id, again.explore_pool) == (explored.item_id, explored.explore_pool)
    # Uniform over the pool across requests.
    drawn = [apply_rules(c, 3, ["i5"], None, True, config, f"r{n}")[1].item_id
             for n in range(800)]
    counts = {i: drawn.count(i) for i in explored.explore_pool}
    assert sum(counts.values()) == 800 and min(counts.values()) > 150
    # A pool smaller than asked for: what is left, its propensity to match.
    short = apply_rules(c, 7, [], None, True, config, "req-1")[1]
    assert short.explore_pool == ["i7", "i8", "i9"] and short.propensity == 1 / 3


def test_no_exploration_no_propensity() -> None:
    c = _candidates()
    for config in (NONE, RuleConfig(diversity="none", exploration_rate=1.0)):
        picks = apply_rules(c, 6, [], None, False, config, "r")  # nothing left to explore
        assert all(p.propensity is None and p.explore_pool is None for p in picks)
        assert all(set(p.as_dict()) == {"item_id", "score", "sources", "reasons"}
                   for p in picks)


def test_every_pick_says_why() -> None:
    picks = apply_rules(_candidates(), 4, [], None, False, NONE, "r")
    assert picks[0].sources == ["item_knn", "popularity"]
    assert picks[0].reasons == ["similar to items you interacted with", "popular"]
    assert picks[1].reasons == ["matches your taste"]


@pytest.mark.parametrize(("kwargs", "field", "message"), [
    ({"diversity": "random"}, "diversity", "Input should be 'mmr', 'category_cap' or 'none'"),
    ({"diversity_weight": 2.0}, "diversity_weight", "less than or equal to 1"),
    ({"exploration_rate": -0.1}, "exploration_rate", "greater than or equal to 0"),
    ({"category_cap": 0}, "category_cap", "greater than or equal to 1"),
    ({"explore_pool": 0}, "explore_pool", "greater than or equal to 1"),
    ({"explore_pool": 2.5}, "explore_pool", "Input should be a valid integer"),
    ({"speed": 3}, "speed", "Extra inputs are not permitted"),
])
def test_bad_rule_config_is_rejected(kwargs: dict, field: str, message: str) -> None:
    with pytest.raises(ValidationError) as error:
        RuleConfig(**kwargs)
    [problem] = error.value.errors()
    assert problem["loc"] == (field,) and message in problem["msg"]
