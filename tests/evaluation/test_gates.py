"""Each promotion gate on hand-made per-user figures: a candidate worse on one thing
only is refused by that gate alone, and a better one passes them all."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from contracts.promotion import Policy, PolicyError, load_policy
from models.evaluation import gates
from models.evaluation.fresh import Scored, segment_table

USERS = 600


def _scored(name: str, ndcg: np.ndarray, coverage: float = 0.3, long_tail: float = 0.2
            ) -> Scored:
    activity = np.array(["new", "casual", "heavy"])[np.arange(USERS) % 3]
    per_user = pd.DataFrame({"user_id": [f"u{n:04d}" for n in range(USERS)],
                             "ndcg@10": ndcg, "recall@20": np.clip(ndcg * 1.5, 0, 1),
                             "activity": activity})
    summary = {"ndcg@10": float(ndcg.mean()), "coverage@10": coverage,
               "long_tail_share@10": long_tail,
               "segments": segment_table(per_user).to_dict(orient="records")}
    return Scored(name, per_user, None, summary)


@pytest.fixture()
def current() -> Scored:
    rng = np.random.default_rng(0)
    return _scored("current", rng.beta(2, 6, USERS))


def _all(candidate: Scored, current: Scored | None, policy: Policy, p99: float = 10.0,
         order: str | None = None) -> list[gates.Gate]:
    return [gates.order_gate(order, "prod"), *gates.accuracy_gates(candidate, current, policy),
            *gates.catalog_gates(candidate, current, policy),
            *gates.fairness_gates(candidate, current, policy),
            gates.latency_gate(p99, 10.0 if current else None, 200, policy)]


def _blocking(found: list[gates.Gate]) -> set[str]:
    return {g.name for g in found if g.blocks()}


def test_a_better_candidate_passes_every_gate(current: Scored) -> None:
    better = _scored("better", np.clip(current.per_user["ndcg@10"].to_numpy() * 1.1, 0, 1))
    found = _all(better, current, Policy())
    assert _blocking(found) == set()
    assert {g.name for g in found} >= {"stage order", "ndcg@10", "recall@20", "coverage@10",
                                       "long_tail_share@10", "scoring p99 ms"}


def test_each_gate_refuses_on_its_own(current: Scored) -> None:
    base = current.per_user["ndcg@10"].to_numpy()
    policy = Policy()
    worse = _scored("worse", base * 0.85)  # NDCG and recall 15% down
    assert _blocking(_all(worse, current, policy)) >= {"ndcg@10", "recall@20"}
    narrow = _scored("narrow", base, coverage=0.05)
    assert _blocking(_all(narrow, current, policy)) == {"coverage@10"}
    head = _scored("head", base, long_tail=0.1)  # the floor is 0.05; 50% below current
    assert _blocking(_all(head, current, policy)) == {"long_tail_share@10"}
    unfair = base.copy()
    unfair[np.arange(USERS) % 3 == 0] *= 0.3  # "new" users lose 70%
    unfair[np.arange(USERS) % 3 != 0] *= 1.4  # everyone else gains: overall is up
    blocked = _blocking(_all(_scored("unfair", unfair), current, policy))
    assert "activity=new NDCG@10" in blocked and "worst activity / overall" in blocked
    assert not blocked & {"ndcg@10", "coverage@10"}
    slow = _all(_scored("slow", base), current, policy, p99=16.0)
    assert _blocking(slow) == {"scoring p99 ms"}
    skipped = _all(_scored("skipped", base), current, policy,
                   order="v2 has never been in staging; prod takes only versions that have "
                         "been in staging")
    assert _blocking(skipped) == {"stage order"}


def test_non_inferiority_is_a_lower_bound_not_a_point_estimate(current: Scored) -> None:
    """A candidate 1% down on average clears a 2% margin only when the users agree; the
    same mean with noisy per-user differences does not."""
    base = current.per_user["ndcg@10"].to_numpy()
    steady = _scored("steady", base * 0.99)
    noisy = _scored("noisy", np.clip(base * 0.99 + np.random.default_rng(1).normal(
        0, 0.25, USERS), 0, 1))
    noisy = replace(noisy, per_user=noisy.per_user.assign(
        **{"ndcg@10": noisy.per_user["ndcg@10"] - noisy.per_user["ndcg@10"].mean()
           + steady.per_user["ndcg@10"].mean()}))
    policy = Policy()
    assert not _blocking(gates.accuracy_gates(steady, current, policy))
    assert "ndcg@10" in _blocking(gates.accuracy_gates(noisy, current, policy))


def test_the_first_version_of_a_stage_is_held_to_the_floors_only() -> None:
    rng = np.random.default_rng(3)
    first = _scored("first", rng.beta(2, 6, USERS))
    found = _all(first, None, Policy())
    assert _blocking(found) == set()
    assert {g.name for g in found if not g.gated} >= {"ndcg@10", "recall@20",
                                                      "scoring p99 ms"}
    assert _blocking(_all(_scored("tiny", first.per_user["ndcg@10"].to_numpy(),
                                  coverage=0.01), None, Policy())) == {"coverage@10"}


def test_off_policy_gates_only_with_enough_traffic() -> None:
    policy = Policy()
    assert gates.off_policy_gate(None, None, policy) is None
    few = gates.off_policy_gate((0.05, 0.01, 0.09, 40), (0.06, 0.05, 0.07, 40), policy)
    assert few is not None and not few.gated and "fewer than 500 matched" in few.note
    worse = gates.off_policy_gate((0.03, 0.025, 0.035, 900), (0.06, 0.055, 0.065, 900),
                                  policy)
    assert worse is not None and worse.blocks()
    fine = gates.off_policy_gate((0.058, 0.05, 0.066, 900), (0.06, 0.055, 0.065, 900),
                                 policy)
    assert fine is not None and fine.gated and fine.passed


def test_versions_scored_on_different_users_are_not_compared(current: Scored) -> None:
    other = replace(current, per_user=current.per_user.assign(
        user_id=current.per_user["user_id"] + "x"))
    with pytest.raises(ValueError, match="not scored on the same users"):
        gates.accuracy_gates(other, current, Policy())


def test_the_policy_file_is_checked_with_the_key_named(tmp_path) -> None:  # type: ignore[no-untyped-def]
    assert load_policy() == load_policy(None)  # the repository's promotion.yaml parses
    bad = tmp_path / "promotion.yaml"
    bad.write_text("accuracy: {margin: 2}\n")
    with pytest.raises(PolicyError, match=r"promotion.yaml: accuracy.margin: Input should "
                                          r"be less than 1"):
        load_policy(bad)
    bad.write_text("acuracy: {margin: 0.1}\n")
    with pytest.raises(PolicyError, match="acuracy: Extra inputs are not permitted"):
        load_policy(bad)
    with pytest.raises(PolicyError, match="file not found"):
        load_policy(tmp_path / "missing.yaml")
