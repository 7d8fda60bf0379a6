"""`graph: {fused: true}`: retrieval in the Ranker's replicas, no Retriever deployment.
A real `recstack serve` (KServe front, Ray Serve, Redis) answering the same lists as
the same version scored in process."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from contracts.settings import Settings
from serving.features import open_serving_store
from serving.recommender import Recommender
from serving.requests import RecommendRequest
from serving.rules import RuleConfig
from stores.feature_store import RedisAddress, apply_definitions, materialize_all, open_store
from stores.registry import Registry
from tests.conftest import TEST_REDIS
from tests.serving.live_server import _call, following_dev, serving

pytestmark = pytest.mark.integration
PROJECT = "recstack_test_fused"
SERVE_YAML = """
graph: {fused: true}
rules: {exploration_rate: 0.0}
cache: {enabled: false}
impressions: {enabled: false}
watch_interval_s: 0
store_timeout_s: 3.0
"""


@pytest.fixture(scope="module")
def fused(served_version: Path, small_world: Path, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[int]:
    RedisAddress.parse(TEST_REDIS).client().flushdb()
    settings = Settings(redis=TEST_REDIS, online_store="redis", feast_project=PROJECT)
    store = open_store(small_world, settings)
    materialize_all(store, apply_definitions(store, small_world))
    registry = Registry(str(served_version.parent.parent))
    registry.promote(served_version.name, "dev")
    env = {"RECSTACK_REDIS": TEST_REDIS, "RECSTACK_ONLINE_STORE": "redis",
           "RECSTACK_FEAST_PROJECT": PROJECT}
    with serving(SERVE_YAML, tmp_path_factory.mktemp("fused"), env,
                 *following_dev(registry, small_world)) as (port, _):
        yield port


def test_fused_graph_answers_what_the_version_answers_in_process(
        fused: int, served_version: Path, small_world: Path) -> None:
    events = pd.read_parquet(small_world / "events.parquet")
    users = [str(u) for u in events["user_id"].value_counts().index[:3]]
    status, body = _call(fused, "/v1/models/recommender:predict", {"instances": [
        *({"user_id": u, "k": 5} for u in users), {"user_id": "someone-new", "k": 3}]})
    assert status == 200
    *known, new = body["predictions"]
    assert new["fallback"] == "trending" and len(new["items"]) == 3
    server_settings = Settings(redis=TEST_REDIS, online_store="redis", feast_project=PROJECT)
    local = Recommender(served_version, open_serving_store(small_world, server_settings),
                        rules=RuleConfig(exploration_rate=0.0))
    for user, answer in zip(users, known, strict=True):
        assert answer["degraded"] is False and len(answer["items"]) == 5
        expected = local.recommend(RecommendRequest(user_id=user, k=5), "in-process")
        assert [i["item_id"] for i in answer["items"]] == \
            [i["item_id"] for i in expected["items"]]
        assert [i["sources"] for i in answer["items"]] == \
            [i["sources"] for i in expected["items"]]

    # The ranker endpoint takes the fused path too: the caller's candidates, reordered.
    candidates = [i["item_id"] for i in known[0]["items"]][::-1]
    status, body = _call(fused, "/v1/models/ranker:predict", {"instances": [
        {"user_id": users[0], "candidates": candidates}]})
    assert status == 200
    assert sorted(i["item_id"] for i in body["predictions"][0]["items"]) == sorted(candidates)
