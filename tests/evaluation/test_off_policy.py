"""SNIPS from logged exploration: a hand-worked log, no exploration at all, and a
simulated world whose true candidate CTR is known exactly."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pandas as pd

from models.evaluation.off_policy import (
    LOG_COLUMNS,
    exploration_log,
    logged_ctr,
    snips,
    weighted_ctr,
)
from models.evaluation.online import wilson
from models.evaluation.simulate_clicks import simulate

AT = pd.Timestamp("2026-11-01", tz="UTC")


def _event(event_id: str, user: str, item: str, kind: str, request: str | None,
           context: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"event_id": event_id, "user_id": user, "item_id": item, "event_type": kind,
            "value": 10.0 if kind == "purchase" else None, "timestamp": AT,
            "session_id": None, "query": None, "request_id": request,
            "context": None if context is None else json.dumps(context)}


def _shown(request: str, user: str, item: str, position: int,
           pool: list[str] | None = None) -> dict[str, Any]:
    context: dict[str, Any] = {"position": position, "variant": "control",
                               "model_version": "v1", "sources": ["ease"]}
    if pool is not None:
        context |= {"propensity": 1 / len(pool), "explore_pool": pool}
    return _event(f"{request}:{position}", user, item, "impression", request, context)


def _hand_log() -> pd.DataFrame:
    rows = [
        _shown("r1", "u1", "top", 1), _shown("r1", "u1", "b", 2, ["a", "b", "c", "d"]),
        _event("c1", "u1", "b", "click", "r1"),
        _shown("r1", "u1", "b", 2, ["a", "b", "c", "d"]),  # a retried write: once
        _shown("r2", "u2", "c", 1, ["a", "b", "c"]),
        _shown("r3", "u1", "a", 1, ["a", "b", "c", "d"]),
        _event("c3", "u1", "a", "purchase", "r3"),
        _shown("r4", "u3", "x", 1, ["x", "y"]), _event("c4", "u3", "x", "add_to_cart", "r4"),
        # Not exploration, or not attributable to it:
        _event("c5", "u1", "top", "click", "r1"),
        _event("c6", "u2", "c", "click", None),
        _event("c7", "u2", "a", "click", "r2"),
        # A pool too long for its context was left out: no estimate from it.
        _event("r5:1", "u1", "q", "impression", "r5",
               {"position": 1, "propensity": 0.05}),
    ]
    return pd.DataFrame(rows)


# u1 would fill the slot with b (its best pool item); u2 lists none of its pool and u3
# has no list: both uniform over the pool, as logged.
LISTS = {"u1": ["z", "b", "a"], "u2": ["q"]}


def test_the_log_holds_each_exploration_impression_once_with_its_clicks() -> None:
    log = exploration_log(_hand_log())
    assert tuple(log.columns) == LOG_COLUMNS
    assert log["request_id"].tolist() == ["r1", "r2", "r3", "r4"]
    assert log["clicked"].tolist() == [True, False, True, True]
    assert log["propensity"].tolist() == [0.25, 1 / 3, 0.25, 0.5]
    assert log["pool"].iloc[1] == ["a", "b", "c"]


def test_snips_by_hand() -> None:
    log = exploration_log(_hand_log())
    found = snips(log, LISTS)
    # Weights: r1 b shown, chosen: 1 / 0.25 = 4, clicked; r2 uniform: 1, not clicked;
    # r3 a shown, b chosen: 0; r4 uniform: 1, clicked. (4 + 1) / (4 + 1 + 1).
    assert math.isclose(found.value, 5 / 6)
    assert (found.n, found.matched, found.ranked) == (4, 3, 2)
    assert math.isclose(found.effective_n, 6**2 / (16 + 1 + 1))
    assert found.low < found.value < found.high <= 1.0 and found.reason is None
    logged = logged_ctr(log)
    expected = wilson(3, 4)
    assert (logged.value, logged.low, logged.high, logged.n) == (
        expected.value, expected.low, expected.high, 4)


def test_equal_weights_give_the_plain_ctr_of_the_matched_impressions() -> None:
    weights = np.array([20.0] * 50 + [0.0] * 950)
    clicked = np.zeros(1000)
    clicked[:7] = 1.0
    found, plain = weighted_ctr(weights, clicked), wilson(7, 50)
    assert math.isclose(found.value, plain.value) and found.matched == 50
    assert math.isclose(found.low, plain.low) and math.isclose(found.high, plain.high)
    none_clicked = weighted_ctr(weights, np.zeros(1000))  # not a zero-width interval
    assert none_clicked.value == 0.0 and none_clicked.high > 0.05


def test_no_exploration_gives_no_estimate_and_says_why() -> None:
    events = pd.DataFrame([_shown("r1", "u1", "top", 1),
                           _event("c1", "u1", "top", "click", "r1")])
    log = exploration_log(events)
    assert log.empty and tuple(log.columns) == LOG_COLUMNS
    for found in (snips(log, LISTS), logged_ctr(log)):
        assert math.isnan(found.value) and math.isnan(found.low) and found.n == 0
    assert snips(log, LISTS).reason == "no logged exploration impressions"
    # Logged, but the candidate would never have shown what was: no weight at all.
    only_r3 = exploration_log(_hand_log()).iloc[[2]]
    found = snips(only_r3, LISTS)
    assert math.isnan(found.value) and found.n == 1 and found.matched == 0
    assert found.reason == "the candidate would have shown none of the logged items"


def test_the_interval_covers_the_true_ctr_in_simulation() -> None:
    """200 runs, as 100 leave a standard deviation of 2 runs in the count itself
    (these give 185/200; benchmarks/off_policy_coverage.py, 475-478/500 per size)."""
    seeds, covered = 200, 0
    for seed in range(seeds):
        world = simulate(2000, seed)
        found = snips(world.log, world.target_lists)
        covered += found.low <= world.truth <= found.high
    print(f"95% interval covered the true CTR in {covered}/{seeds} runs")
    assert covered >= 0.90 * seeds
