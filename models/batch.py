"""Batch recommendations for a list of users (`recstack recommend`): the known users'
lists, either the ones a version stored at training time (`stored_lists`) or scored on
demand by its served model (`scored_on_demand`, models/served.py), merged with the
cold-start list for everyone else (`with_cold_start`), in the order the users were
asked for."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pandas as pd

if TYPE_CHECKING:
    from models.bundle import Bundle
    from models.ranker.features import FeatureJoin

COLUMNS = ["user_id", "item_id", "rank", "score"]


@dataclass(frozen=True)
class BatchRecommendations:
    frame: pd.DataFrame  # user_id, item_id, rank (from 1), score
    known: int  # users answered from the known lists
    cold: list[str]  # users answered with the cold-start list, in the asked order


def stored_lists(lists: pd.DataFrame, user_ids: Sequence[str], k: int) -> pd.DataFrame:
    """The top `k` of the lists a version stored for the users it knows among
    `user_ids`."""
    return lists[lists["user_id"].isin(set(user_ids)) & (lists["rank"] <= k)]


def scored_on_demand(bundle: Bundle, events: pd.DataFrame, user_ids: Sequence[str],
                     join: FeatureJoin, k: int) -> pd.DataFrame:
    """The version's served model over the users' `events`, seen items included, with
    features as of just after the last event."""
    from models.served import ServedModel

    at = events["timestamp"].max() + pd.Timedelta(seconds=1)
    return ServedModel(bundle, search=False, history=events).recommend(
        events, list(dict.fromkeys(user_ids)), at, join, k, include_seen=True)


def with_cold_start(known: pd.DataFrame, user_ids: Sequence[str], fallback: pd.DataFrame,
                    k: int) -> BatchRecommendations:
    """The `known` lists, and the top `k` of the cold-start list (`fallback`: item_id,
    rank, score) for every user in `user_ids` with none; rows by the users' first
    position in `user_ids`, then rank."""
    asked = list(dict.fromkeys(user_ids))
    answered = set(known["user_id"])
    cold = [u for u in asked if u not in answered]
    cold_rows = fallback.head(k)
    cold_frame = pd.DataFrame({
        "user_id": [u for u in cold for _ in range(len(cold_rows))],
        "item_id": list(cold_rows["item_id"]) * len(cold),
        "rank": list(cold_rows["rank"]) * len(cold),
        "score": list(cold_rows["score"]) * len(cold)})
    order = {u: n for n, u in enumerate(asked)}
    result = pd.concat([known, cold_frame], ignore_index=True)
    result = result.assign(_order=result["user_id"].map(order)).sort_values(
        ["_order", "rank"]).drop(columns="_order")
    return BatchRecommendations(result[COLUMNS].reset_index(drop=True),
                                len(order) - len(cold), cold)
