"""The per-request numpy path against the reference Scorer: the same lists and scores
from the same bundle and the same online features (real Redis, real Feast)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from models.bundle import load_bundle
from models.scoring import Scorer
from serving.features import OnlineFeatureJoin
from serving.online_scoring import OnlineScorer

pytestmark = pytest.mark.integration


def test_online_scorer_matches_the_reference(served_version: Path, online_store) -> None:
    bundle = load_bundle(served_version)
    join = OnlineFeatureJoin(online_store)
    reference, online = Scorer(bundle), OnlineScorer(bundle)
    events = bundle.events
    at = events["timestamp"].max() + pd.Timedelta(seconds=1)

    def same(user: str, user_events: pd.DataFrame, fresh: list[str]) -> None:
        expected = reference.recommend(user_events, [user], at, join, 10)
        got = online.score(user, fresh, join.user(user), join, at, 10)
        assert list(bundle.item_ids[got.items]) == expected["item_id"].tolist(), user
        np.testing.assert_allclose(got.scores, expected["score"], atol=1e-5)
        assert all(got.sources), "every item names the sources that retrieved it"

    for user in events["user_id"].unique()[:12]:
        same(user, events[events["user_id"] == user], [])
        # The real-time view's recent items repeat training's: they change nothing.
        recent = join.user(user)["user_realtime__recent_items"]
        same(user, events[events["user_id"] == user], list(recent))
    # A known user with two fresh purchases of items training never saw them with.
    user = events["user_id"].unique()[0]
    theirs = events[events["user_id"] == user]
    new = [i for i in events["item_id"].dropna().unique() if i not in set(theirs["item_id"])][:2]
    same(user, pd.concat([theirs, pd.DataFrame({"user_id": user, "item_id": new,
                                                "event_type": "purchase", "timestamp": at})],
                         ignore_index=True), new)
    # Someone training never saw, with two fresh purchases: embedded from them.
    fresh = list(events["item_id"].dropna().unique()[:2])
    same("brand-new", pd.DataFrame({"user_id": "brand-new", "item_id": fresh,
                                    "event_type": "purchase", "timestamp": at}), fresh)
    assert len(online.score("nobody", [], {}, join, at, 10).items) == 0
