"""A candidate model's CTR on live traffic, estimated from logged exploration
before any A/B test: self-normalised inverse propensity scoring (SNIPS).

When a request explores, serving puts one item, drawn uniformly from a logged
pool (the next `explore_pool` candidates of the serving model), into the
exploration slot, and the impression's context records the draw's propensity
(1 / the pool's size) and the pool (serving/rules.py, serving/events/impressions.py).
The candidate's policy for that slot is its highest-ranked item of the pool
(uniform over the pool when it ranks none of them), so each logged impression
weighs w = pi1(shown | context) / propensity, and

    SNIPS = sum(w * clicked) / sum(w),

with a 95% interval: Wilson's score interval at an effective number of
impressions (see `weighted_ctr`). In simulation it covers the true CTR in 95% of
runs from 300 logged impressions up; the delta method's normal interval alone
covers 70-80% at 300 and 88-92% at 1000 (benchmarks/off_policy_coverage.py).
What the estimate assumes, and so what it does not measure:

- The click depends on the user and the item at a fixed slot position: the
  exploration slot's position as served (`exploration_slot`, or the list's end), with
  the rest of the list as the serving model filled it. Effects of the candidate
  on the other slots, or of the slot's item on them, are not seen.
- Support covers the pool only: the estimate is how well the candidate chooses
  among the items the serving model put up for exploration, not the CTR of the
  candidate's own top item when that item is outside the pool.
- Whether a request explores is a hash of its id, independent of the user and
  the items, so conditioning on exploration biases nothing. A cached answer shown
  again repeats its draw: no bias, but those impressions are not independent, so
  the interval is narrower than it should be when many come from the cache.
- A user the candidate has no list for, or whose pool it ranks none of, counts
  as uniform over the pool (the logging policy's own draw): `ranked` says how
  many impressions the candidate's lists actually decided.

`logged_ctr` is the exploration slot's own CTR (the uniform draw) with a
Wilson interval; for a comparison with the serving version, estimate it the
same way (`snips` with its own lists) on the same log.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from contracts.event_types import ACTS_ON_IMPRESSION, IMPRESSION
from models.evaluation.online import Z95, impressions_frame, wilson

LOG_COLUMNS = ("request_id", "user_id", "item_id", "position", "model_version",
               "propensity", "pool", "clicked")


@dataclass(frozen=True)
class Estimate:
    value: float  # the CTR estimate (NaN when there is none, see `reason`)
    low: float  # 95% interval
    high: float
    n: int  # logged exploration impressions used
    effective_n: float  # sum(w)^2 / sum(w^2): how many impressions the weights amount to
    matched: int  # impressions the candidate could have shown as logged (pi1 > 0)
    ranked: int  # impressions whose pool the candidate's list reaches (else uniform)
    reason: str | None = None  # why there is no estimate


def exploration_log(events: pd.DataFrame) -> pd.DataFrame:
    """One row per logged exploration impression whose propensity and pool were
    recorded: LOG_COLUMNS, `pool` a list of item ids, `clicked` attributed as the
    online report does (a click, cart or purchase with the same request_id and item)."""
    impressions = events[(events["event_type"] == IMPRESSION) & events["request_id"].notna()]
    contexts = impressions["context"].map(_context)
    explored = impressions[contexts.map(_is_exploration).to_numpy(dtype=bool)]
    if explored.empty:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in LOG_COLUMNS})
    drawn = contexts.loc[explored.index]
    draws = pd.DataFrame({
        "request_id": explored["request_id"].astype(str).to_numpy(),
        "item_id": explored["item_id"].astype(str).to_numpy(),
        "propensity": drawn.map(lambda c: float(c["propensity"])).to_numpy(),
        "pool": drawn.map(lambda c: [str(i) for i in c["explore_pool"]]).to_numpy()})
    acted = events[events["event_type"].isin(ACTS_ON_IMPRESSION)]
    shown = impressions_frame(pd.concat([explored, acted]))  # its attribution, as is
    log = shown.merge(draws.drop_duplicates(["request_id", "item_id"]),
                      on=["request_id", "item_id"])
    return log[list(LOG_COLUMNS)].reset_index(drop=True)


def _context(raw: Any) -> dict[str, Any]:
    if isinstance(raw, dict):
        return raw
    if isinstance(raw, str) and '"propensity"' in raw:  # parse only the exploration ones
        parsed = json.loads(raw)
        return parsed if isinstance(parsed, dict) else {}
    return {}


def _is_exploration(context: dict[str, Any]) -> bool:
    """A usable draw: a propensity in (0, 1] and the non-empty pool it came from."""
    propensity, pool = context.get("propensity"), context.get("explore_pool")
    return (isinstance(propensity, int | float) and 0 < propensity <= 1
            and isinstance(pool, list) and len(pool) > 0)


def target_probabilities(log: pd.DataFrame, target_lists: Mapping[str, Sequence[str]]
                         ) -> tuple[np.ndarray, np.ndarray]:
    """pi1(shown item | context) per logged impression under the candidate, and
    whether the candidate's list reached the pool. The candidate fills the slot with
    its highest-ranked pool item; when it ranks none, uniformly over the pool."""
    ranks: dict[str, dict[str, int]] = {}
    pi1 = np.empty(len(log))
    reached = np.zeros(len(log), dtype=bool)
    rows = zip(log["user_id"], log["item_id"], log["pool"], strict=True)
    for n, (user, shown, pool) in enumerate(rows):
        if user not in ranks:
            ranking = target_lists.get(user, ())
            ranks[user] = {item: r for r, item in reversed(list(enumerate(ranking)))}
        rank = ranks[user]
        listed = [item for item in pool if item in rank]
        reached[n] = bool(listed)
        pi1[n] = (float(min(listed, key=rank.__getitem__) == shown) if listed
                  else 1.0 / len(pool))
    return pi1, reached


def snips(log: pd.DataFrame, target_lists: Mapping[str, Sequence[str]]) -> Estimate:
    """The candidate's exploration-slot CTR from `exploration_log` rows and its ranked
    lists (user id -> item ids, best first), with a 95% interval."""
    if log.empty:
        return _none(0, "no logged exploration impressions")
    pi1, reached = target_probabilities(log, target_lists)
    weights = pi1 / log["propensity"].to_numpy(dtype=float)
    return weighted_ctr(weights, log["clicked"].to_numpy(dtype=float), int(reached.sum()))


def weighted_ctr(weights: np.ndarray, clicked: np.ndarray, ranked: int = 0) -> Estimate:
    """SNIPS over importance weights and click outcomes, sum(w c) / sum(w), with
    Wilson's score interval (right near 0, where CTRs live) at the smaller of two
    effective sizes: Kish's, sum(w)^2 / sum(w^2), and the one the delta method's
    variance of the ratio implies, value (1 - value) / variance (which sees weights
    that go with clicks). Equal weights make both the matched impressions' count and
    the interval that of their plain CTR; benchmarks/off_policy_coverage.py has the
    coverage against the delta method's normal interval alone."""
    n, total = len(weights), float(weights.sum())
    if n == 0:
        return _none(0, "no logged exploration impressions")
    if total <= 0:
        return _none(n, "the candidate would have shown none of the logged items",
                     ranked=ranked)
    value = float(weights @ clicked) / total
    kish = total**2 / float(weights @ weights)
    variance = float((weights**2) @ (clicked - value) ** 2) / total**2
    size = min(kish, value * (1 - value) / variance) if variance > 0 else kish
    low, high = _score_interval(value, size)
    return Estimate(value, low, high, n, kish, int((weights > 0).sum()), ranked)


def _score_interval(p: float, n: float) -> tuple[float, float]:
    """Wilson's 95% interval for a proportion p over n (possibly fractional) trials:
    online.wilson's, for an effective n."""
    z2 = Z95**2
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = Z95 / (1 + z2 / n) * math.sqrt(p * (1 - p) / n + z2 / (4 * n**2))
    return max(0.0, centre - half), min(1.0, centre + half)


def logged_ctr(log: pd.DataFrame) -> Estimate:
    """The exploration slot's CTR as logged (the uniform draw), Wilson 95% interval."""
    if log.empty:
        return _none(0, "no logged exploration impressions")
    found = wilson(int(log["clicked"].sum()), len(log))
    return Estimate(found.value, found.low, found.high, len(log), float(len(log)),
                    len(log), 0)


def _none(n: int, reason: str, ranked: int = 0) -> Estimate:
    return Estimate(math.nan, math.nan, math.nan, n, 0.0, 0, ranked, reason)
