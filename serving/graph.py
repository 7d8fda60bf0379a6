"""The Ray Serve graph of one model version: an ingress with `Retriever` and `Ranker`
deployments (REFERENCE.md: KServe + Ray Serve).

The ingress reads the user's online row, asks the Retriever for every source's top
list and the Ranker for the ranked candidates, and applies the rules
(serving/recommender.py). It also answers `similar-items` (in process: a few
matrix-vector products) and `ranker` (the caller's candidates through the same
Retriever and Ranker). Every answer carries the stage timings and the candidate
count, for the KServe front's telemetry (serving/front.py), which removes them.

Each version runs as its own Serve application, so a new one can start beside the
old and take traffic only once it is ready (hot swap, serving/front.py).
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import pandas as pd
from ray import serve
from ray.serve.handle import DeploymentHandle

from models.bundle import load_bundle
from serving.config import GraphConfig, StoreOptions
from serving.features import OnlineFeatureJoin, open_serving_store
from serving.online_scoring import OnlineScorer, Retrieved, Scored
from serving.recommender import DEPTH, Recommender
from serving.requests import RankRequest, RecommendRequest, SimilarItemsRequest
from serving.rules import RuleConfig
from serving.timing import Timings, stage


@serve.deployment
class Retriever:
    def __init__(self, version_dir: str) -> None:
        self.scorer = OnlineScorer(load_bundle(Path(version_dir)))

    def retrieve(self, user_id: str, fresh: list[str], at: pd.Timestamp,
                 include_seen: bool = False) -> tuple[Retrieved, Timings]:
        timings: Timings = {}
        with stage(timings, "retrieve"):
            retrieved = self.scorer.retrieve(user_id, fresh, at, include_seen)
        return retrieved, timings


@serve.deployment
class Ranker:
    def __init__(self, version_dir: str, data_dir: str, store: StoreOptions) -> None:
        self.scorer = OnlineScorer(load_bundle(Path(version_dir)))
        self.join = OnlineFeatureJoin(open_serving_store(Path(data_dir), store.timeout_s),
                                      store.item_staleness_s)
        self.join.keep_fresh(self.scorer.bundle.item_ids)

    def rank(self, retrieved: Retrieved, user: dict[str, Any], at: pd.Timestamp, k: int,
             only: Any = None) -> tuple[Scored, Timings]:
        timings: Timings = {}
        scored = self.scorer.rank(retrieved, user, self.join, at, k, timings, only)
        return scored, timings


@serve.deployment
class RecommenderIngress:
    """One version's entry point: `recommend`, `rank` and `similar`, one request each."""

    def __init__(self, retriever: DeploymentHandle, ranker: DeploymentHandle,
                 version_dir: str, data_dir: str, store: StoreOptions) -> None:
        self.retriever, self.ranker = retriever, ranker
        self.recommender = Recommender(
            Path(version_dir), open_serving_store(Path(data_dir), store.timeout_s),
            score_locally=False, item_staleness_s=store.item_staleness_s)
        self.recommender.join.keep_fresh(self.recommender.bundle.item_ids)

    def ready(self) -> str:
        return self.recommender.version

    async def recommend(self, body: dict[str, Any], rules: RuleConfig, variant: str | None
                        ) -> dict[str, Any]:
        request = RecommendRequest.model_validate(body)
        at = pd.Timestamp.now(tz="UTC")
        timings: Timings = {}
        # Feature reads block: off the event loop, so other requests keep moving.
        user, fresh, degraded = await asyncio.to_thread(
            self.recommender.prepare, request.user_id, request.session_items, timings)
        retrieved, t = await self.retriever.retrieve.remote(request.user_id, fresh, at)
        timings |= t
        scored, t = await self.ranker.rank.remote(retrieved, user, at, DEPTH)
        timings |= t
        answer = await asyncio.to_thread(self.recommender.answer, request, uuid.uuid4().hex,
                                         scored, degraded, rules, variant, timings)
        return answer | {"timings": timings, "candidates": len(scored.items)}

    async def rank(self, body: dict[str, Any], variant: str | None) -> dict[str, Any]:
        request = RankRequest.model_validate(body)
        at = pd.Timestamp.now(tz="UTC")
        timings: Timings = {}
        user, fresh, degraded = await asyncio.to_thread(
            self.recommender.prepare, request.user_id, (), timings)
        columns, unknown = self.recommender.split_candidates(request)
        retrieved, t = await self.retriever.retrieve.remote(request.user_id, fresh, at)
        timings |= t
        scored, t = await self.ranker.rank.remote(retrieved, user, at, len(columns), columns)
        timings |= t
        answer = self.recommender.ranked(request, uuid.uuid4().hex, scored, unknown,
                                         degraded, variant)
        return answer | {"timings": timings, "candidates": len(columns)}

    async def similar(self, body: dict[str, Any], variant: str | None) -> dict[str, Any]:
        request = SimilarItemsRequest.model_validate(body)
        timings: Timings = {}
        answer = await asyncio.to_thread(self.recommender.similar, request,
                                         uuid.uuid4().hex, variant, timings)
        return answer | {"timings": timings, "candidates": len(answer["items"])}


def build(version_dir: Path, data_dir: Path, config: GraphConfig = GraphConfig(),
          store: StoreOptions = StoreOptions()) -> Any:
    """The bound Serve application of one version."""
    retriever = Retriever.options(  # type: ignore[attr-defined]
        **config.retriever.options()).bind(str(version_dir))
    ranker = Ranker.options(  # type: ignore[attr-defined]
        **config.ranker.options()).bind(str(version_dir), str(data_dir), store)
    return RecommenderIngress.options(  # type: ignore[attr-defined]
        **config.ingress.options()).bind(retriever, ranker, str(version_dir), str(data_dir),
                                         store)
