"""The in-process recommender on a trained version and a real online store: known
users, exclusions, filters, cold start and sessions."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from models.interactions import POSITIVE_TYPES
from serving.recommender import Recommender
from serving.requests import RecommendRequest
from serving.rules import RuleConfig

pytestmark = pytest.mark.integration


def test_recommender_answers_known_new_and_session_users(
        served_version: Path, online_store, small_world: Path) -> None:
    recommender = Recommender(served_version, online_store,
                              RuleConfig(exploration_rate=0.0), variant="a")
    events = pd.read_parquet(small_world / "events.parquet")
    items = pd.read_parquet(small_world / "items.parquet")
    category = dict(zip(items["item_id"], items["category"], strict=True))
    user = events["user_id"].value_counts().index[0]
    at = events["timestamp"].max() + pd.Timedelta(seconds=1)

    answer = recommender.recommend(RecommendRequest(user_id=user, k=8), "req-1", at)
    assert answer["request_id"] == "req-1" and answer["variant"] == "a"
    assert answer["model_version"] == served_version.name and answer["degraded"] is False
    got = [i["item_id"] for i in answer["items"]]
    assert len(got) == 8 == len(set(got))
    assert all(i["sources"] and i["reasons"] for i in answer["items"])
    mine = events[(events["user_id"] == user) & events["event_type"].isin(POSITIVE_TYPES)]
    assert not set(got) & set(mine["item_id"])  # seen items are not recommended

    # exclude_ids and a category filter.
    without = recommender.recommend(
        RecommendRequest(user_id=user, k=8, exclude_ids=got[:2]), "req-2", at)
    assert not {i["item_id"] for i in without["items"]} & set(got[:2])
    wanted = category[got[0]]
    only = recommender.recommend(
        RecommendRequest(user_id=user, k=5, filters={"category": [wanted]}), "req-3", at)
    assert only["items"] and {category[i["item_id"]] for i in only["items"]} == {wanted}

    # Nobody we know, no session: the trending list.
    cold = recommender.recommend(RecommendRequest(user_id="never-seen", k=5), "req-4", at)
    assert [i["sources"] for i in cold["items"]] == [["trending"]] * 5
    # The same newcomer with a session: item-to-item candidates, session items excluded.
    session = list(mine["item_id"][:3])
    warm = recommender.recommend(
        RecommendRequest(user_id="never-seen", k=5, session_items=session), "req-5", at)
    assert all(i["sources"] != ["trending"] for i in warm["items"])
    assert not {i["item_id"] for i in warm["items"]} & set(session)
