"""The per-request numpy path against the reference Scorer: the same lists and scores
from the same bundle and the same online features (real Redis, real Feast)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from models.bundle import load_bundle
from models.scoring import Scorer
from recstack.cli import app
from recstack.feature_store import apply_definitions, materialize_all, open_store
from recstack.registry import Registry
from serving.features import OnlineFeatureJoin
from serving.online_scoring import OnlineScorer
from tests.cli.test_train import SMALL
from tests.conftest import TEST_REDIS

pytestmark = pytest.mark.integration


def test_online_scorer_matches_the_reference(small_world: Path, tmp_path: Path,
                                             redis_settings) -> None:
    config = tmp_path / "small.yaml"
    config.write_text(json.dumps(SMALL))
    env = {"RECSTACK_REDIS": TEST_REDIS, "RECSTACK_ONLINE_STORE": "redis",
           "RECSTACK_FEAST_PROJECT": redis_settings.feast_project}
    trained = CliRunner().invoke(app, ["train", "--data", str(small_world), "--registry",
                                       str(tmp_path / "reg"), "--config", str(config)],
                                 env=env)
    assert trained.exit_code == 0, trained.output
    registry = Registry(str(tmp_path / "reg"))
    bundle = load_bundle(Path(registry.fetch(registry.resolve().version)))
    store = open_store(small_world, redis_settings)
    materialize_all(store, apply_definitions(store, small_world))
    join = OnlineFeatureJoin(store)
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
    # Someone training never saw, with two fresh purchases: embedded from them.
    fresh = list(events["item_id"].dropna().unique()[:2])
    same("brand-new", pd.DataFrame({"user_id": "brand-new", "item_id": fresh,
                                    "event_type": "purchase", "timestamp": at}), fresh)
    assert len(online.score("nobody", [], {}, join, at, 10).items) == 0
