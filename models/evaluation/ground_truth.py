"""Scoring lists against the synthetic world's true preferences.

At time `at`, a user's next choice follows a softmax over the true utility of
the items they have not interacted with yet (see models/data/synthetic). Two
figures per list set:
- `gt_ndcg@k`: NDCG with each item's choice probability as its gain; the
  ground truth's own top-k scores 1.0;
- `gt_hit_prob@k`: the probability that the user's next choice is in the list.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from models.data.synthetic import GroundTruth
from models.interactions import positive_pairs


def choice_probabilities(truth: GroundTruth, user_ids: list[str], at: pd.Timestamp,
                         seen: dict[str, set[str]]) -> pd.DataFrame:
    utility = truth.preference(user_ids, at)
    for user_id in user_ids:
        gone = [i for i in seen.get(user_id, ()) if i in utility.columns]
        utility.loc[user_id, gone] = -np.inf
    values = utility.to_numpy()
    shifted = np.exp(values - np.nanmax(np.where(np.isfinite(values), values, np.nan),
                                        axis=1, keepdims=True))
    shifted[~np.isfinite(values)] = 0.0
    return pd.DataFrame(shifted / shifted.sum(axis=1, keepdims=True), index=utility.index,
                        columns=utility.columns)


def score_lists(truth: GroundTruth, lists: dict[str, list[str]], at: pd.Timestamp,
                seen: dict[str, set[str]], k: int = 10) -> dict[str, float]:
    users = [u for u in lists if truth.knows(u)]
    probs = choice_probabilities(truth, users, at, seen)
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    ndcgs, hits, ideal_hits = [], [], []
    for user in users:
        row = probs.loc[user]
        chosen = [i for i in lists[user][:k] if i in row.index]
        gains = row[chosen].to_numpy()
        ideal = np.sort(row.to_numpy())[::-1][:k]
        ndcgs.append(float((gains * discounts[: len(gains)]).sum()
                           / max((ideal * discounts[: len(ideal)]).sum(), 1e-12)))
        hits.append(float(gains.sum()))
        ideal_hits.append(float(ideal.sum()))
    return {f"gt_ndcg@{k}": float(np.mean(ndcgs)), f"gt_hit_prob@{k}": float(np.mean(hits)),
            f"gt_hit_prob@{k}_ideal": float(np.mean(ideal_hits)), "users": float(len(users))}


def serving_against_truth(truth: GroundTruth, serving: pd.DataFrame, fallback: pd.DataFrame,
                          events: pd.DataFrame, k: int = 10, max_users: int = 2000
                          ) -> dict[str, dict[str, float]]:
    """The served lists (user_id, item_id, rank), the popularity fallback and the truth's
    own lists, scored at the end of the data against what each user would choose next.
    At most `max_users` users (a fixed sample) keep the users x items matrix small."""
    at = pd.Timestamp(events["timestamp"].max())
    seen = positive_pairs(events).groupby("user_id")["item_id"].apply(set).to_dict()
    users = sorted(u for u in serving["user_id"].unique() if truth.knows(u))
    if len(users) > max_users:
        users = list(np.random.default_rng(0).choice(users, max_users, replace=False))
    ordered = serving[serving["user_id"].isin(set(users))].sort_values(["user_id", "rank"])
    model = ordered.groupby("user_id")["item_id"].apply(list).to_dict()
    popular = list(fallback.sort_values("rank")["item_id"])
    popularity = {u: [i for i in popular if i not in seen.get(u, ())][:k] for u in users}
    return {name: score_lists(truth, lists, at, seen, k)
            for name, lists in (("two_stage", model), ("popularity", popularity),
                                ("ground_truth", best_lists(truth, users, at, seen, k)))}


def best_lists(truth: GroundTruth, users: list[str], at: pd.Timestamp,
               seen: dict[str, set[str]], k: int = 10) -> dict[str, list[str]]:
    """The truth's own top-k unseen items per user: the lists that score 1."""
    utility = truth.preference(users, at)
    return {user: list(utility.loc[user].drop(list(seen.get(user, ())), errors="ignore")
                       .nlargest(k).index) for user in users}
