"""Canary against control on live traffic: promote, wait or roll back.

`recstack rollout check` runs `check` on the events logged since the canary started:
the impressions `recstack serve` wrote (serving/events/impressions.py) and the clicks, carts
and purchases that carry an answer's `request_id` (attributed as in
models/evaluation/online.py). The two arms are told apart by the impressions'
`variant` (serve.yaml's `control` and `canary`), or by their `model_version` where each
arm is a predictor of its own that runs the same serve.yaml (a KServe canary).

Per arm: impressions, CTR and conversion with Wilson 95% intervals, revenue per
session (a user's answers less than 30 minutes apart) with a normal 95% interval, and
the CTR difference canary - control with an unpooled normal 95% interval,
d +- 1.96 sqrt(p1 (1 - p1) / n1 + p2 (1 - p2) / n2): unpooled, because the question
is not whether the two are equal but where the difference lies.

The rules, in this order (thresholds: promotion.yaml `canary:`, every field described
in contracts/promotion.py `Canary`):

1. Serving health, when given (`serving_health` reads it from `recstack serve`'s
   /metrics): the canary's error rate (degraded answers over answered requests)
   above `max_error_rate`, or its p99 latency above `max_p99_ratio` times control's:
   rollback at once, whatever the clicks say, since a failing version hurts every
   user it serves while the impressions accrue.
2. Fewer than `min_impressions` impressions in either arm: wait. Early looks are the
   noisiest, and an interval on a few hundred impressions says little.
3. With the margin m and the threshold t = -m x control's CTR (the canary may be up
   to m worse, relatively): the difference's lower bound above t: promote (it is no
   worse than the margin allows); its upper bound below t: rollback (it is worse by
   more than the margin); otherwise wait, with how many impressions the current
   difference would need to settle.

Each decision carries `reasons` that say the numbers, and `figures` (JSON-able) that
`recstack rollout check` writes into the stage history. The check is meant to be run
again as traffic accrues, so a wait leaves the decision to a later, larger look;
impressions are counted as independent trials (users are sticky to an arm and a
user's clicks are correlated, so on real traffic the intervals are somewhat too
narrow; the margin and `min_impressions` absorb part of that).

`simulate_traffic` writes seeded impressions and clicks of two arms with known click
rates in the events schema, as serving and the collector log them, so that tests and
benchmarks/canary_decisions.py run `check` on exactly what the pipeline reads.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

import numpy as np
import pandas as pd
from prometheus_client.parser import text_string_to_metric_families

from contracts.promotion import Canary
from contracts.schemas import EVENT_FIELDS
from models.evaluation.online import (
    Z95,
    Interval,
    impressions_frame,
    mean_interval,
    sessions,
    wilson,
)

Action = Literal["promote", "wait", "rollback"]
ArmsBy = Literal["variant", "model_version"]
# The metrics' label for each way of telling the arms apart (serving/telemetry.py).
METRIC_LABEL: dict[str, str] = {"variant": "variant", "model_version": "version"}
REQUESTS = "recstack_requests_total"
DURATION = "recstack_request_duration_seconds"
# Outcomes that count as failures: a degraded answer came from a fallback because a
# store or the graph failed (serve never answers a 5xx).
ERROR_OUTCOMES = frozenset({"degraded"})
QUANTILE = 0.99
NAN = Interval(math.nan, math.nan, math.nan)


# serving health ---------------------------------------------------------------------

@dataclass(frozen=True)
class ArmHealth:
    requests: int
    errors: int
    p99_s: float | None
    """None when the metrics hold no latency histogram labelled with this arm."""

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.requests if self.requests else None


@dataclass(frozen=True)
class ServingHealth:
    control: ArmHealth
    canary: ArmHealth


def serving_health(metrics_text: str, control: str, canary: str,
                   label: str = "variant") -> ServingHealth:
    """Each arm's answered requests, failed (degraded) ones and p99 latency, from the
    Prometheus text exposition of `recstack serve`'s /metrics. `label` tells the arms
    apart (`variant`, or `version` for per-version predictors). Several scrapes may be
    concatenated: samples of the same arm add up. Counts are since the process
    started, which for a canary is since it was rolled out (serve restarts with the new
    variants). ValueError when the text is not an exposition."""
    requests: dict[str, float] = defaultdict(float)
    errors: dict[str, float] = defaultdict(float)
    buckets: dict[str, dict[float, float]] = defaultdict(lambda: defaultdict(float))
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            arm = sample.labels.get(label)
            if arm not in (control, canary):
                continue
            if sample.name == REQUESTS:
                requests[arm] += sample.value
                if sample.labels.get("outcome") in ERROR_OUTCOMES:
                    errors[arm] += sample.value
            elif sample.name == f"{DURATION}_bucket":
                buckets[arm][float(sample.labels["le"])] += sample.value

    def health_of(name: str) -> ArmHealth:
        return ArmHealth(int(requests[name]), int(errors[name]),
                         histogram_quantile(QUANTILE, buckets.get(name, {})))

    return ServingHealth(health_of(control), health_of(canary))


def histogram_quantile(q: float, buckets: dict[float, float]) -> float | None:
    """The q-quantile of a cumulative histogram ({upper bound: count}), interpolated
    linearly inside its bucket as Prometheus's histogram_quantile does; the highest
    finite bound when it falls in the +Inf bucket; None without observations."""
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] <= 0:
        return None
    rank = q * buckets[bounds[-1]]
    lower, below = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return lower
            share = (rank - below) / (count - below) if count > below else 1.0
            return lower + (bound - lower) * share
        lower, below = bound, count
    return lower


# the arms ---------------------------------------------------------------------------

@dataclass(frozen=True)
class ArmFigures:
    name: str
    impressions: int
    clicks: int
    purchases: int
    sessions: int
    ctr: Interval
    conversion: Interval
    revenue_per_session: Interval


def arm_figures(shown: pd.DataFrame, name: str) -> ArmFigures:
    """The figures of one arm's impressions (rows of `impressions_frame`)."""
    per_session = (shown.assign(session=sessions(shown)).groupby("session")["revenue"]
                   .sum().to_numpy() if len(shown) else np.array([]))
    clicks, purchases = int(shown["clicked"].sum()), int(shown["purchased"].sum())
    return ArmFigures(name, len(shown), clicks, purchases, len(per_session),
                      wilson(clicks, len(shown)), wilson(purchases, len(shown)),
                      mean_interval(per_session))


def ctr_difference(control: ArmFigures, canary: ArmFigures) -> Interval:
    """Canary's CTR minus control's, with the unpooled normal 95% interval."""
    if not control.impressions or not canary.impressions:
        return NAN
    p1, p2 = control.ctr.value, canary.ctr.value
    se = math.sqrt(p1 * (1 - p1) / control.impressions + p2 * (1 - p2) / canary.impressions)
    return Interval(p2 - p1, p2 - p1 - Z95 * se, p2 - p1 + Z95 * se)


# the decision -----------------------------------------------------------------------

@dataclass(frozen=True)
class Decision:
    action: Action
    reasons: list[str]
    """The deciding reason first, then what else was checked, each with its numbers."""
    figures: dict[str, Any]
    """JSON-able: what the stage history keeps of this check."""
    control: ArmFigures
    canary: ArmFigures
    difference: Interval


def check(events: pd.DataFrame, control: str, canary: str, policy: Canary,
          since: pd.Timestamp | None, serving: ServingHealth | None = None,
          arms: ArmsBy = "variant") -> Decision:
    """Promote, wait or roll back the canary arm against the control arm on the events
    from `since` on (the rules of the module docstring). `control` and `canary` are
    values of the impressions' `arms` field: variant names, or version ids."""
    if since is not None:
        events = events[pd.to_datetime(events["timestamp"], utc=True) >= since]
    shown = impressions_frame(events)
    ours = arm_figures(shown[shown[arms] == control], control)
    theirs = arm_figures(shown[shown[arms] == canary], canary)
    difference = ctr_difference(ours, theirs)
    threshold = -policy.margin * ours.ctr.value if ours.impressions else math.nan
    action, deciding = _decide(ours, theirs, difference, threshold, policy, serving)
    return Decision(action, [*deciding, *_health_notes(serving, policy)],
                    _figures(action, since, arms, ours, theirs, difference, threshold,
                             policy, serving),
                    ours, theirs, difference)


def timed_out(decision: Decision, waited: str) -> Decision:
    """An undecided canary whose time ran out (`rollout check --until-decided
    --timeout`) is rolled back: within the time given it showed neither that it is
    no worse than the margin allows nor that it is worse, so the stage keeps the
    version it has; start it again with a larger share to settle it sooner."""
    if decision.action != "wait":
        return decision
    return replace(decision, action="rollback",
                   reasons=[f"no decision within {waited}: {decision.reasons[0]}",
                            *decision.reasons[1:]],
                   figures={**decision.figures, "action": "rollback", "timed_out": waited})


def _decide(control: ArmFigures, canary: ArmFigures, difference: Interval,
            threshold: float, policy: Canary, serving: ServingHealth | None
            ) -> tuple[Action, list[str]]:
    unhealthy = _health_problems(serving, policy)
    if unhealthy:
        return "rollback", unhealthy
    short = [a for a in (canary, control) if a.impressions < policy.min_impressions]
    compared = f"CTR {percent_interval(canary.ctr)} against {percent_interval(control.ctr)}"
    if short:
        counts = " and ".join(f"{a.name} {a.impressions:,}" for a in short)
        return "wait", [f"{counts} impressions of the {policy.min_impressions:,} needed "
                        f"per arm; {compared}"]
    bound = (f"{_points(threshold)} ({policy.margin:.0%} of control's "
             f"{_percent(control.ctr.value)})")
    shown = f"{compared}: difference {_difference(difference)}"
    if difference.low > threshold:
        return "promote", [f"{shown}, whose lower bound clears {bound}"]
    if difference.high < threshold:
        return "rollback", [f"{shown}, whose upper bound stays below {bound}"]
    return "wait", [f"{shown} straddles {bound}: not yet shown within the margin, nor "
                    f"beyond it{_settles(control, canary, difference, threshold)}"]


def _settles(control: ArmFigures, canary: ArmFigures, difference: Interval,
             threshold: float) -> str:
    """How many impressions the current difference would need to clear the threshold:
    the interval narrows as 1 / sqrt(n)."""
    gap = abs(difference.value - threshold)
    half = (difference.high - difference.low) / 2
    smaller = min(control, canary, key=lambda a: a.impressions)
    if not half > 0:
        return "; every impression alike (no clicks, or all clicked): the interval cannot narrow"
    if not gap > 0:
        return "; the difference sits on the threshold"
    needed = math.ceil(smaller.impressions * (half / gap) ** 2)
    return (f"; if the difference holds, about {needed:,} impressions in {smaller.name} "
            f"(now {smaller.impressions:,}) would settle it")


def _health_problems(serving: ServingHealth | None, policy: Canary) -> list[str]:
    """Why serving health alone rolls the canary back, if it does."""
    if serving is None:
        return []
    problems = []
    rate = serving.canary.error_rate
    if rate is not None and rate > policy.max_error_rate:
        problems.append(f"{_errors(serving)}: over the {policy.max_error_rate:.1%} limit")
    ratio = _p99_ratio(serving)
    if ratio is not None and ratio > policy.max_p99_ratio:
        problems.append(f"{_latency(serving)}: {ratio:.2f}x, over the "
                        f"{policy.max_p99_ratio:g}x limit")
    return problems


def _health_notes(serving: ServingHealth | None, policy: Canary) -> list[str]:
    """What was checked of serving health, when it did not decide."""
    if serving is None:
        return ["serving health not checked: no metrics given"]
    notes = []
    rate = serving.canary.error_rate
    if rate is None:
        notes.append("canary has answered no requests in the metrics: errors not checked")
    elif rate <= policy.max_error_rate:
        notes.append(f"{_errors(serving)} (limit {policy.max_error_rate:.1%})")
    ratio = _p99_ratio(serving)
    if ratio is None:
        notes.append("p99 not compared: the metrics hold no latency histogram per arm")
    elif ratio <= policy.max_p99_ratio:
        notes.append(f"{_latency(serving)} (limit {policy.max_p99_ratio:g}x)")
    return notes


def _p99_ratio(serving: ServingHealth) -> float | None:
    ours, theirs = serving.control.p99_s, serving.canary.p99_s
    return theirs / ours if ours and theirs is not None else None


def _errors(serving: ServingHealth) -> str:
    def rate(arm: ArmHealth) -> str:
        return f"{_percent(arm.error_rate, 2)} of {arm.requests:,}"

    return (f"canary failed {rate(serving.canary)} requests (control "
            f"{rate(serving.control)})")


def _latency(serving: ServingHealth) -> str:
    return (f"canary p99 {milliseconds(serving.canary.p99_s)} against control's "
            f"{milliseconds(serving.control.p99_s)}")


# output -----------------------------------------------------------------------------

def _percent(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{100 * value:.{digits}f}%"


def percent_interval(value: Interval) -> str:
    """`4.12% [3.05, 5.40]`: the value and its interval, in percent."""
    if math.isnan(value.value):
        return "n/a"
    return f"{_percent(value.value)} [{100 * value.low:.2f}, {100 * value.high:.2f}]"


def _points(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{100 * value:+.2f} pp"


def _difference(value: Interval) -> str:
    return (f"{_points(value.value)} [{100 * value.low:+.2f}, {100 * value.high:+.2f}]")


def milliseconds(seconds: float | None) -> str:
    return "n/a" if seconds is None else f"{1000 * seconds:.1f} ms"


def _number(value: float | None) -> float | None:
    """JSON-able: NaN and infinities are null; six significant digits are plenty."""
    if value is None or not math.isfinite(value):
        return None
    return float(f"{value:.6g}")


def _interval_dict(value: Interval) -> dict[str, float | None]:
    return {k: _number(v) for k, v in asdict(value).items()}


def arm_dict(arm: ArmFigures) -> dict[str, Any]:
    return {"name": arm.name, "impressions": arm.impressions, "clicks": arm.clicks,
            "purchases": arm.purchases, "sessions": arm.sessions,
            "ctr": _interval_dict(arm.ctr), "conversion": _interval_dict(arm.conversion),
            "revenue_per_session": _interval_dict(arm.revenue_per_session)}


def _figures(action: Action, since: pd.Timestamp | None, arms: ArmsBy,
             control: ArmFigures, canary: ArmFigures, difference: Interval,
             threshold: float, policy: Canary, serving: ServingHealth | None
             ) -> dict[str, Any]:
    health = None if serving is None else {
        role: {"requests": arm.requests, "errors": arm.errors,
               "error_rate": _number(arm.error_rate), "p99_s": _number(arm.p99_s)}
        for role, arm in (("control", serving.control), ("canary", serving.canary))}
    return {"action": action, "since": None if since is None else since.isoformat(),
            "arms_by": arms, "control": arm_dict(control), "canary": arm_dict(canary),
            "ctr_difference": _interval_dict(difference), "threshold": _number(threshold),
            "policy": policy.model_dump(), "serving": health}


# simulated traffic ------------------------------------------------------------------

@dataclass(frozen=True)
class Traffic:
    """Two arms with known click rates, and how requests reach them. Users are
    assigned to an arm once (sticky, as serve.yaml's variant hash does), requests
    arrive as a Poisson process and pick a user uniformly; each shows
    `items_per_request` distinct items, each clicked with its arm's CTR, a click
    bought with `purchase_rate`."""

    control_ctr: float = 0.05
    canary_ctr: float = 0.05
    canary_share: float = 0.5
    """Of the users, as the canary variant's weight."""
    requests_per_minute: float = 600.0
    items_per_request: int = 10
    users: int = 5_000
    items: int = 500
    purchase_rate: float = 0.1
    mean_value: float = 25.0
    control: str = "control"
    canary: str = "canary"
    control_version: str = "v-control"
    canary_version: str = "v-canary"

    def requests_for(self, impressions: int) -> int:
        """Requests after which the smaller arm has had `impressions` on average."""
        smaller = min(self.canary_share, 1 - self.canary_share)
        return math.ceil(impressions / (self.items_per_request * smaller))

    def minutes_for(self, impressions: int) -> float:
        """How long the smaller arm takes to reach `impressions` at the request rate."""
        return self.requests_for(impressions) / self.requests_per_minute


SIMULATION_START = pd.Timestamp("2026-12-01T09:00:00Z")
CLICK_DELAY_S = 20.0  # mean seconds from an answer to its click
PURCHASE_DELAY_S = 120.0  # and from the click to a purchase


def simulate_traffic(traffic: Traffic, requests: int, seed: int,
                     start: pd.Timestamp = SIMULATION_START) -> pd.DataFrame:
    """Seeded events in the events schema (contracts/schemas.py, columns in order): per
    request `items_per_request` impressions (id `REQUEST:POSITION`, context with
    position, variant, model version and sources, as serving/events/impressions.py writes
    them), then a click per clicked impression and a purchase (with a `value`) per
    bought one, each with the answer's `request_id` and the item."""
    rng = np.random.default_rng(seed)
    k = traffic.items_per_request
    in_canary = np.zeros(traffic.users, dtype=bool)
    in_canary[rng.permutation(traffic.users)[:round(traffic.canary_share * traffic.users)]] = True
    user = rng.integers(0, traffic.users, requests)
    at = np.cumsum(rng.exponential(60.0 / traffic.requests_per_minute, requests))
    canary = np.repeat(in_canary[user], k)
    # k distinct items a request: a random start and a fixed stride through the catalog.
    stride = max(1, traffic.items // k)
    item = (np.repeat(rng.integers(0, traffic.items, requests), k)
            + np.tile(np.arange(k) * stride, requests)) % traffic.items
    clicked = rng.random(requests * k) < np.where(canary, traffic.canary_ctr,
                                                  traffic.control_ctr)
    bought = clicked & (rng.random(requests * k) < traffic.purchase_rate)
    shown = pd.DataFrame({
        "request_id": np.repeat([f"req-{seed}-{n}" for n in range(requests)], k),
        "position": np.tile(np.arange(1, k + 1), requests), "canary": canary,
        "user_id": np.repeat(np.char.add("u", user.astype(str)), k),
        "item_id": np.char.add("i", item.astype(str)), "seconds": np.repeat(at, k)})
    click_at = shown["seconds"] + rng.exponential(CLICK_DELAY_S, len(shown))
    buy_at = click_at + rng.exponential(PURCHASE_DELAY_S, len(shown))
    value = rng.exponential(traffic.mean_value, len(shown))
    frames = [_impressions(shown, traffic),
              _acted(shown[clicked], click_at[clicked], "click", None),
              _acted(shown[bought], buy_at[bought], "purchase", value[bought])]
    events = pd.concat(frames, ignore_index=True)
    events["timestamp"] = (start + pd.to_timedelta(events.pop("seconds"), unit="s")
                           ).astype("datetime64[us, UTC]")
    return events[[f.name for f in EVENT_FIELDS]].sort_values(
        ["timestamp", "event_id"], kind="stable", ignore_index=True)


def _impressions(shown: pd.DataFrame, traffic: Traffic) -> pd.DataFrame:
    """Impression rows; the context is serving's JSON, built by template (fast)."""
    arms = {False: (traffic.control, traffic.control_version),
            True: (traffic.canary, traffic.canary_version)}
    template = {flag: '{"position": %d, "variant": ' + json.dumps(name)
                + ', "model_version": ' + json.dumps(version) + ', "sources": ["two_tower"]}'
                for flag, (name, version) in arms.items()}
    context = [template[flag] % position
               for flag, position in zip(shown["canary"], shown["position"], strict=True)]
    return _rows(shown, shown["request_id"] + ":" + shown["position"].astype(str),
                 "impression", shown["seconds"], None, context)


def _acted(shown: pd.DataFrame, at: pd.Series, kind: str, value: np.ndarray | None
           ) -> pd.DataFrame:
    ids = shown["request_id"] + ":" + shown["position"].astype(str) + ":" + kind
    return _rows(shown, ids, kind, at, value, None)


def _rows(shown: pd.DataFrame, event_ids: pd.Series, kind: str, seconds: pd.Series,
          value: np.ndarray | None, context: list[str] | None) -> pd.DataFrame:
    return pd.DataFrame({
        "event_id": event_ids.to_numpy(), "user_id": shown["user_id"].to_numpy(),
        "item_id": shown["item_id"].to_numpy(), "event_type": kind,
        "value": np.nan if value is None else value, "seconds": seconds.to_numpy(),
        "session_id": None, "query": None, "request_id": shown["request_id"].to_numpy(),
        "context": context})
