"""The KServe front on its own: sticky variant assignment, graph sharing, the response
cache (real Redis), the last-resort fallback and hot swap. The graphs are stand-ins
here (a fake handle per version); tests/serving/test_serve.py runs the real ones."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from contracts.settings import Settings
from serving.cache import ResponseCache, key_prefix
from serving.config import ServeConfig
from serving.front import Front, Running, assign
from serving.requests import RankRequest, RecommendRequest
from serving.rules import RuleConfig
from serving.trending import Trending
from stores.feature_store import RedisAddress
from stores.registry import Manifest, Registry


def test_assignment_is_sticky_and_follows_the_weights() -> None:
    users = [f"user-{n}" for n in range(20000)]
    first = [assign(u, [3.0, 1.0], "feed") for u in users]
    assert first == [assign(u, [3.0, 1.0], "feed") for u in users]
    assert abs(Counter(first)[0] / len(users) - 0.75) < 0.015
    # Another experiment name reshuffles who is where.
    other = [assign(u, [3.0, 1.0], "search") for u in users]
    moved = sum(a != b for a, b in zip(first, other, strict=True)) / len(users)
    assert 0.3 < moved < 0.45  # independent draws: 2 x 0.75 x 0.25 = 0.375


class _Method:
    def __init__(self, handle: _Handle, name: str) -> None:
        self.handle, self.name = handle, name

    def remote(self, body: dict[str, Any], *args: Any) -> Any:
        async def call() -> dict[str, Any]:
            return self.handle.answer(self.name, body, args)
        return call()


class _Handle:
    """Stands in for one version's Serve graph."""

    def __init__(self, version: str) -> None:
        self.version, self.calls, self.fail = version, 0, False
        self.recommend, self.rank, self.similar = (
            _Method(self, "recommend"), _Method(self, "rank"), _Method(self, "similar"))

    def answer(self, method: str, body: dict[str, Any], args: tuple[Any, ...]) -> dict[str, Any]:
        self.calls += 1
        if self.fail:
            raise RuntimeError("replica died")
        rules = args[0] if method == "recommend" else None
        variant = args[-1]
        return {"items": [{"item_id": f"{self.version}-{rules['diversity_weight'] if rules else 0}",
                           "score": 1.0, "sources": ["ease"], "reasons": []}],
                "request_id": "graph", "model_version": self.version, "variant": variant,
                "degraded": body.get("user_id") == "unlucky", "fallback": None,
                "timings": {"rank": (1, 2)}, "candidates": 7}


class _Deployer:
    def __init__(self) -> None:
        self.deployed: list[str] = []
        self.deleted: list[str] = []

    def deploy(self, version: str) -> Running:
        self.deployed.append(version)
        return Running(version, f"app-{version}", _Handle(version),  # type: ignore[arg-type]
                       trending=Trending(np.array(["t1", "t2", "t3", "t4"], dtype=object),
                                         np.array([4.0, 3.0, 2.0, 1.0])))

    def delete(self, running: Running) -> None:
        self.deleted.append(running.version)


NOT_ORDER = "the front follows a stage; the stage order is tested in tests/recstack"


def _registry(tmp_path: Path, *versions: str) -> Registry:
    registry = Registry(tmp_path / "reg")
    for version in versions:
        artifacts = tmp_path / version
        artifacts.mkdir()
        (artifacts / "x.txt").write_text(version)
        registry.publish(Manifest(version=version, created_at=datetime.now(UTC),
                                  code_revision="test", data_snapshot={},
                                  feature_service="ranker"), artifacts)
    return registry


def _config(**extra: Any) -> ServeConfig:
    return ServeConfig.model_validate({"experiment": "t", "variants": [
        {"name": "control", "weight": 1},
        {"name": "diverse", "weight": 1, "rules": {"diversity_weight": 0.7}}], **extra})


def test_variants_share_a_graph_cache_answers_and_fall_back(
        tmp_path: Path, redis_settings: Settings) -> None:
    registry = _registry(tmp_path, "v1")
    registry.promote("v1", "prod", force_reason=NOT_ORDER)
    address = RedisAddress.parse(redis_settings.redis)
    deployer = _Deployer()

    async def run() -> None:
        cache = ResponseCache.connect(address, key_prefix(redis_settings.feast_project), 60)
        front = Front(registry, _config(), None, "prod", cache, deployer)  # type: ignore[arg-type]
        front.start()
        assert deployer.deployed == ["v1"]  # two variants, one version: one graph
        users = [f"u{n}" for n in range(40)]
        first = await front.answer("recommend", [RecommendRequest(user_id=u) for u in users])
        variants = {a["variant"] for a in first}
        assert variants == {"control", "diverse"}
        for answer in first:  # each variant's rules reached the graph
            weight = 0.7 if answer["variant"] == "diverse" else RuleConfig().diversity_weight
            assert answer["items"][0]["item_id"] == f"v1-{weight}"
            assert answer["cached"] is False
        handle = front.variants[0].running.handle  # type: ignore[union-attr]
        calls = handle.calls
        again = await front.answer("recommend", [RecommendRequest(user_id=u) for u in users])
        assert handle.calls == calls and all(a["cached"] for a in again)
        assert [a["variant"] for a in again] == [a["variant"] for a in first]  # sticky
        assert len({a["request_id"] for a in again}) == len(users)  # a new id per answer
        # Other parameters are another entry; degraded answers are never stored.
        (other,) = await front.answer("recommend", [RecommendRequest(user_id="u1", k=3)])
        assert other["cached"] is False
        for _ in range(2):
            (bad,) = await front.answer("recommend", [RecommendRequest(user_id="unlucky")])
            assert bad["degraded"] and not bad["cached"]
        # The graph failing: trending, marked degraded, exclusions kept; not a 5xx.
        handle.fail = True
        (fallback,) = await front.answer(
            "recommend", [RecommendRequest(user_id="u-new", k=2, exclude_ids=["t1"])])
        assert [i["item_id"] for i in fallback["items"]] == ["t2", "t3"]
        assert fallback["degraded"] and fallback["fallback"] == "trending"
        (ranked,) = await front.answer(
            "rank", [RankRequest(user_id="u1", candidates=["b", "a", "b"])])
        assert [i["item_id"] for i in ranked["items"]] == ["b", "a"] and ranked["degraded"]
        await cache.client.aclose()

    asyncio.run(run())


def test_a_moved_stage_is_deployed_beside_switched_to_and_the_old_one_deleted(
        tmp_path: Path) -> None:
    registry = _registry(tmp_path, "v1", "v2")
    registry.promote("v1", "prod", force_reason=NOT_ORDER)
    deployer = _Deployer()
    config = ServeConfig.model_validate({"variants": [
        {"name": "live", "weight": 9}, {"name": "pinned", "weight": 1, "version": "v1"}]})
    front = Front(registry, config, None, "prod", None, deployer)  # type: ignore[arg-type]
    front.start()
    front.refresh()
    assert deployer.deployed == ["v1"] and front.swaps == []  # nothing moved

    registry.promote("v2", "prod", force_reason=NOT_ORDER)
    front.refresh()
    live, pinned = front.variants
    assert live.running.version == "v2" and pinned.running.version == "v1"  # type: ignore[union-attr]
    assert deployer.deployed == ["v1", "v2"] and front.swaps == [("live", "v1", "v2")]
    assert deployer.deleted == []  # v1 still serves the pinned variant

    registry.promote("v1", "prod", force_reason=NOT_ORDER)  # a rollback reuses the running v1 graph
    front.refresh()
    assert deployer.deployed == ["v1", "v2"] and deployer.deleted == ["v2"]

    async def answer() -> dict[str, Any]:
        return (await front.answer("similar", [_similar()]))[0]
    assert asyncio.run(answer())["variant"] == "live"  # no user: the heaviest variant


def _similar() -> Any:
    from serving.requests import SimilarItemsRequest
    return SimilarItemsRequest(item_id="i1")


@pytest.fixture(autouse=True)
def _no_grace(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("serving.front.SWITCH_GRACE_S", 0.0)


def test_a_swap_waits_for_requests_in_flight_on_the_old_graph(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    registry = _registry(tmp_path, "v1", "v2")
    registry.promote("v1", "prod", force_reason=NOT_ORDER)
    deployer = _Deployer()
    front = Front(registry, ServeConfig(), None, "prod", None, deployer)  # type: ignore[arg-type]
    front.start()
    old = front.variants[0].running
    assert old is not None
    finished: list[float] = []
    deleted_at: list[float] = []
    slow = old.handle.answer  # type: ignore[attr-defined]

    def slow_answer(*args: Any) -> dict[str, Any]:
        time.sleep(0.8)
        finished.append(time.monotonic())
        return slow(*args)  # type: ignore[no-any-return]

    old.handle.answer = slow_answer  # type: ignore[attr-defined]
    deployer.delete = lambda running: deleted_at.append(time.monotonic())  # type: ignore[method-assign]

    def request() -> None:
        asyncio.run(front.answer("recommend", [RecommendRequest(user_id="u")]))

    worker = threading.Thread(target=request)
    worker.start()
    time.sleep(0.2)  # the request is on the old graph now
    registry.promote("v2", "prod", force_reason=NOT_ORDER)
    front.refresh()
    worker.join()
    assert front.variants[0].running.version == "v2"  # type: ignore[union-attr]
    assert finished and deleted_at and deleted_at[0] >= finished[0]
