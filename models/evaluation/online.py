"""Online metrics and A/B results from the event history: what was shown
(impressions) and what users did with it (events that carry the answer's
`request_id`).

An impression is one recommended item of one answer (serving/events/impressions.py
writes them: context with position, variant, model version). A click,
add-to-cart or purchase is attributed to an impression when it carries the
impression's `request_id` and names the same item; an attributed purchase's
`value` is its revenue. Per variant and per model version:

- CTR: impressions clicked / impressions; conversion: impressions purchased /
  impressions; both with Wilson 95% intervals (correct near 0, where CTRs live).
- Revenue per impression (normal 95% interval over impressions) and per session
  (a user's answers with gaps under 30 minutes form one session).
- Against the control (the variant named `control` when there is one, else the one
  with the most impressions): the difference in CTR and a two-proportion z-test
  (pooled), two-sided p-value.
- Guardrails, so that optimising clicks alone shows: diversity (distinct
  categories per answer over its length) and long-tail exposure (share of
  impressions on items outside the most popular 20%, popularity counted over the
  non-impression events).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import norm

from contracts.event_types import ACTS_ON_IMPRESSION, IMPRESSION

SESSION_GAP = pd.Timedelta(minutes=30)
HEAD_SHARE = 0.2  # the most popular items, by interactions, that are not the long tail
Z95 = float(norm.ppf(0.975))


@dataclass(frozen=True)
class Interval:
    value: float
    low: float
    high: float


def wilson(successes: int, trials: int) -> Interval:
    if trials == 0:
        return Interval(math.nan, math.nan, math.nan)
    p = successes / trials
    centre = (p + Z95**2 / (2 * trials)) / (1 + Z95**2 / trials)
    half = (Z95 / (1 + Z95**2 / trials)) * math.sqrt(
        p * (1 - p) / trials + Z95**2 / (4 * trials**2))
    return Interval(p, max(0.0, centre - half), min(1.0, centre + half))


def mean_interval(values: np.ndarray) -> Interval:
    if len(values) == 0:
        return Interval(math.nan, math.nan, math.nan)
    mean = float(values.mean())
    half = Z95 * float(values.std(ddof=1)) / math.sqrt(len(values)) if len(values) > 1 else 0.0
    return Interval(mean, mean - half, mean + half)


def two_proportion_test(x1: int, n1: int, x2: int, n2: int) -> tuple[float, float]:
    """(z, two-sided p) for p2 - p1 with the pooled standard error."""
    if n1 == 0 or n2 == 0:
        return math.nan, math.nan
    pooled = (x1 + x2) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if se == 0:
        return 0.0, 1.0
    z = (x2 / n2 - x1 / n1) / se
    return z, float(2 * norm.sf(abs(z)))


def impressions_frame(events: pd.DataFrame) -> pd.DataFrame:
    """One row per impression: request_id, user_id, item_id, timestamp, position,
    variant, model_version, and the attributed clicked / purchased / revenue."""
    shown = events[(events["event_type"] == IMPRESSION) & events["request_id"].notna()]
    context = shown["context"].map(lambda c: json.loads(c) if isinstance(c, str) else {})
    out = pd.DataFrame({
        "request_id": shown["request_id"].astype(str).to_numpy(),
        "user_id": shown["user_id"].astype(str).to_numpy(),
        "item_id": shown["item_id"].astype(str).to_numpy(),
        "timestamp": pd.to_datetime(shown["timestamp"], utc=True).to_numpy(),
        "position": context.map(lambda c: c.get("position")).to_numpy(),
        "variant": context.map(lambda c: str(c.get("variant"))).to_numpy(),
        "model_version": context.map(lambda c: str(c.get("model_version"))).to_numpy()})
    out = out.drop_duplicates(["request_id", "item_id"])
    acted = events[events["event_type"].isin(ACTS_ON_IMPRESSION) & events["request_id"].notna()]
    acted = acted.assign(request_id=acted["request_id"].astype(str),
                         item_id=acted["item_id"].astype(str))
    keys = ["request_id", "item_id"]
    clicked = acted[keys].drop_duplicates().assign(clicked=True)
    purchases = acted[acted["event_type"] == "purchase"]
    bought = (purchases.groupby(keys)["value"].agg(lambda v: float(np.nansum(v)))
              .rename("revenue").reset_index().assign(purchased=True))
    out = out.merge(clicked, on=keys, how="left").merge(bought, on=keys, how="left")
    return out.assign(clicked=out["clicked"].notna(), purchased=out["purchased"].notna(),
                      revenue=out["revenue"].fillna(0.0).astype(float))


def sessions(shown: pd.DataFrame) -> pd.Series:
    """A session id per impression: a user's answers with gaps under SESSION_GAP."""
    order = shown.sort_values(["user_id", "timestamp"])
    new = (order["user_id"] != order["user_id"].shift()) | \
        (order["timestamp"].diff() > SESSION_GAP)
    return new.cumsum().reindex(shown.index)


def _guardrails(shown: pd.DataFrame, categories: pd.Series, head: set[str]
                ) -> tuple[float, float]:
    per_answer = shown.assign(category=shown["item_id"].map(categories)).groupby("request_id")
    diversity = float((per_answer["category"].nunique() / per_answer.size()).mean())
    return diversity, float((~shown["item_id"].isin(head)).mean())


def online_metrics(events: pd.DataFrame, items: pd.DataFrame,
                   since: pd.Timestamp | None = None) -> dict[str, pd.DataFrame]:
    """`by_variant` and `by_version` tables (one row per group), and `tests`
    (each variant against the control)."""
    if since is not None:
        events = events[pd.to_datetime(events["timestamp"], utc=True) >= since]
    shown = impressions_frame(events)
    shown = shown.assign(session=sessions(shown)) if len(shown) else shown.assign(session=0)
    categories = items.set_index(items["item_id"].astype(str))["category"]
    interactions = events[events["event_type"] != IMPRESSION]["item_id"].dropna().astype(str)
    counts = interactions.value_counts()
    head = set(counts.index[:max(1, math.ceil(HEAD_SHARE * len(counts)))])
    tables = {}
    for key in ("variant", "model_version"):
        rows = []
        for group, part in shown.groupby(key, sort=True):
            ctr = wilson(int(part["clicked"].sum()), len(part))
            conversion = wilson(int(part["purchased"].sum()), len(part))
            per_impression = mean_interval(part["revenue"].to_numpy())
            per_session = part.groupby("session")["revenue"].sum().to_numpy()
            diversity, long_tail = _guardrails(part, categories, head)
            rows.append({key: group, "answers": part["request_id"].nunique(),
                         "impressions": len(part), "clicks": int(part["clicked"].sum()),
                         "ctr": ctr.value, "ctr_low": ctr.low, "ctr_high": ctr.high,
                         "conversion": conversion.value, "conversion_low": conversion.low,
                         "conversion_high": conversion.high,
                         "revenue": float(part["revenue"].sum()),
                         "revenue_per_impression": per_impression.value,
                         "rpi_low": per_impression.low, "rpi_high": per_impression.high,
                         "sessions": len(per_session),
                         "revenue_per_session": mean_interval(per_session).value,
                         "diversity": diversity, "long_tail_share": long_tail})
        tables[f"by_{'variant' if key == 'variant' else 'version'}"] = pd.DataFrame(rows)
    tables["tests"] = _tests(tables["by_variant"])
    return tables


CONTROL = "control"  # the variant tested against, when one has this name


def _tests(by_variant: pd.DataFrame) -> pd.DataFrame:
    if by_variant.empty:
        return pd.DataFrame()
    named = by_variant.index[by_variant["variant"] == CONTROL]
    control = by_variant.loc[named[0] if len(named) else by_variant["impressions"].idxmax()]
    rows = []
    for _, other in by_variant.iterrows():
        if other["variant"] == control["variant"]:
            continue
        z, p = two_proportion_test(int(control["clicks"]), int(control["impressions"]),
                                   int(other["clicks"]), int(other["impressions"]))
        rows.append({"control": control["variant"], "variant": other["variant"],
                     "ctr_difference": other["ctr"] - control["ctr"], "z": z, "p_value": p,
                     "significant_at_5pct": bool(p < 0.05)})
    return pd.DataFrame(rows)
