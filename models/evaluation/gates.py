"""The promotion gates: a candidate against the stage's current version, both scored
on the same fresh window (models/evaluation/fresh.py), with promotion.yaml's
thresholds (contracts/promotion.py says what each one means).

Each gate is one row: candidate, current, threshold, passed, and a note. A gate
that cannot decide (no current version to compare with, too little logged
traffic, a segment too small) is shown with `gated=False` and does not block.

- accuracy: NDCG@10 and recall@20 non-inferiority. A paired bootstrap over the
  window's users (the same users, each resample takes both versions' figures of
  the users it draws) gives the candidate/current ratio's one-sided lower bound;
  the candidate passes when `current x lower-bound ratio >= current x (1 - margin)`.
- catalog: coverage@10 and long-tail share of the top 10, floors and at most
  `max_drop` below the current version.
- fairness: the worst segment's NDCG@10 over the overall, a floor; and no segment
  below current x (1 - max_segment_loss). Point estimates: the segments are small.
- latency: p99 of in-process scoring within `max_ratio` of the current's.
- stage order, and the off-policy CTR estimate where enough traffic was logged.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from contracts.promotion import Policy
from models.evaluation.fresh import Scored, segment_columns

BOOTSTRAP_SEED = 7


@dataclass(frozen=True)
class Gate:
    name: str
    candidate: float | str | None
    current: float | str | None
    threshold: str
    passed: bool
    note: str = ""
    gated: bool = True  # False: shown, not deciding

    def blocks(self) -> bool:
        return self.gated and not self.passed

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def ratio_lower_bound(candidate: np.ndarray, current: np.ndarray, confidence: float,
                      resamples: int, seed: int = BOOTSTRAP_SEED) -> float:
    """One-sided lower bound of mean(candidate) / mean(current), paired over users."""
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(candidate), size=(resamples, len(candidate)))
    ours, theirs = candidate[draws].mean(axis=1), current[draws].mean(axis=1)
    ratios = np.divide(ours, theirs, out=np.full(resamples, np.inf), where=theirs > 0)
    return float(np.quantile(ratios, 1 - confidence))


def accuracy_gates(candidate: Scored, current: Scored | None, policy: Policy) -> list[Gate]:
    rule = policy.accuracy
    out = []
    for metric in ("ndcg@10", "recall@20"):
        ours = float(candidate.per_user[metric].mean())
        if current is None:
            out.append(Gate(metric, ours, None, "no current version", True,
                            "first version of the stage: nothing to be non-inferior to",
                            gated=False))
            continue
        theirs = float(current.per_user[metric].mean())
        _same_users(candidate, current)
        bound = ratio_lower_bound(candidate.per_user[metric].to_numpy(),
                                  current.per_user[metric].to_numpy(), rule.confidence,
                                  rule.resamples)
        floor = theirs * (1 - rule.margin)
        low = theirs * bound if np.isfinite(bound) else ours
        out.append(Gate(metric, ours, theirs, f"lower bound >= {floor:.4f}", low >= floor,
                        f"{rule.confidence:.0%} lower bound {low:.4f} (paired bootstrap over "
                        f"{len(candidate.per_user)} users, {rule.resamples} resamples)"))
    return out


def catalog_gates(candidate: Scored, current: Scored | None, policy: Policy) -> list[Gate]:
    rule = policy.catalog
    out = []
    for metric, floor in (("coverage@10", rule.coverage_floor),
                          ("long_tail_share@10", rule.long_tail_floor)):
        ours = float(candidate.summary[metric])
        theirs = None if current is None else float(current.summary[metric])
        need = floor if theirs is None else max(floor, theirs * (1 - rule.max_drop))
        why = (f">= {floor:.3f}" if theirs is None else
               f">= {need:.3f} (floor {floor:.3f}, at most {rule.max_drop:.0%} below current)")
        out.append(Gate(metric, ours, theirs, why, ours >= need))
    return out


def fairness_gates(candidate: Scored, current: Scored | None, policy: Policy) -> list[Gate]:
    rule = policy.fairness
    overall = float(candidate.per_user["ndcg@10"].mean())
    out = []
    for column in segment_columns(candidate.per_user):
        ours = _segments(candidate.per_user, column)
        big = ours[ours["users"] >= rule.min_segment_users]
        if big.empty or overall == 0:
            continue
        worst = big.loc[big["ndcg@10"].idxmin()]
        ratio = float(worst["ndcg@10"]) / overall
        out.append(Gate(f"worst {column} / overall", ratio, None,
                        f">= {rule.worst_ratio_floor:.2f}", ratio >= rule.worst_ratio_floor,
                        f"{worst['segment']} ({int(worst['users'])} users): "
                        f"NDCG@10 {worst['ndcg@10']:.4f} against {overall:.4f} overall"))
        if current is None:
            continue
        theirs = _segments(current.per_user, column).set_index("segment")["ndcg@10"]
        for _, row in ours.iterrows():
            before = float(theirs.get(row["segment"], np.nan))
            floor = before * (1 - rule.max_segment_loss)
            small = row["users"] < rule.min_segment_users
            out.append(Gate(f"{column}={row['segment']} NDCG@10", float(row["ndcg@10"]),
                            before, f">= {floor:.4f}", bool(row["ndcg@10"] >= floor),
                            f"{int(row['users'])} users" + (
                                f", fewer than {rule.min_segment_users}: not gated"
                                if small else ""), gated=not small))
    return out


def latency_gate(candidate_p99_ms: float, current_p99_ms: float | None, requests: int,
                 policy: Policy) -> Gate:
    rule = policy.latency
    if current_p99_ms is None:
        return Gate("scoring p99 ms", candidate_p99_ms, None, "no current version", True,
                    f"{requests} requests in process", gated=False)
    limit = current_p99_ms * rule.max_ratio
    return Gate("scoring p99 ms", candidate_p99_ms, current_p99_ms,
                f"<= {limit:.1f} ({rule.max_ratio:g}x current)",
                candidate_p99_ms <= limit,
                f"{requests} requests in process, the two versions alternated")


def order_gate(problem: str | None, stage: str) -> Gate:
    return Gate("stage order", "ok" if problem is None else "out of order", None,
                problem or f"{stage} after its previous stage", problem is None)


def off_policy_gate(candidate: tuple[float, float, float, int] | None,
                    current: tuple[float, float, float, int] | None,
                    policy: Policy) -> Gate | None:
    """(value, low, high, matched impressions) of each version's SNIPS estimate: matched
    are the logged exploration impressions that showed what the version would have
    shown, the ones that carry weight."""
    if candidate is None:
        return None
    rule = policy.off_policy
    value, low, high, n = candidate
    theirs = None if current is None else current[0]
    note = f"SNIPS, {n} matched exploration impressions, 95% [{low:.4f}, {high:.4f}]"
    if theirs is None or not np.isfinite(value) or n < rule.min_impressions:
        why = (f"fewer than {rule.min_impressions} matched: not gated"
               if n < rule.min_impressions else "no estimate to compare with: not gated")
        return Gate("off-policy CTR", value, theirs, "shown only", True, f"{note}; {why}",
                    gated=False)
    floor = theirs * (1 - rule.margin)
    return Gate("off-policy CTR", value, theirs, f"upper bound >= {floor:.4f}", high >= floor,
                note)


def _segments(per_user: pd.DataFrame, column: str) -> pd.DataFrame:
    return (per_user.groupby(column, sort=True)["ndcg@10"].agg(["size", "mean"])
            .rename(columns={"size": "users", "mean": "ndcg@10"}).reset_index()
            .rename(columns={column: "segment"}))


def _same_users(candidate: Scored, current: Scored) -> None:
    if not np.array_equal(candidate.per_user["user_id"].to_numpy(),
                          current.per_user["user_id"].to_numpy()):
        raise ValueError(f"{candidate.version} and {current.version} were not scored on "
                         "the same users: evaluate both on one window")
