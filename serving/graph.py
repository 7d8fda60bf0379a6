"""The Ray Serve graph of one model version: an ingress with `Retriever` and `Ranker`
deployments, served behind KServe's `RayModel` (serving/endpoints.py).

The ingress awaits, nothing else: the Retriever reads the user's
online row and retrieves every source's top list; the Ranker reads the cached item
rows, ranks, and applies the rules (serving/recommender.py), so the answer comes
back whole. `ranker` requests take the same path with the caller's candidates;
`similar-items` is the Ranker's alone (a few matrix-vector products). Every answer
carries the stage timings and the candidate count, for the KServe front's
telemetry (serving/front.py), which removes them.

With `graph.fused` (serve.yaml) there is no Retriever: the Ranker's replicas do the
first stage too (`find`), one hop fewer, for small installations that need not scale
retrieval and ranking apart (BENCHMARKS.md measures both shapes).

Why this split: the ingress had read the user's row and applied the rules itself,
each in a thread off its event loop, and held a third copy of the item rows,
renewed in the background; now it does what the no-op graph's ingress does
(BENCHMARKS.md, serving load test).

What crosses a hop is plain data, in one argument besides the Retriever's answer: a
tuple (`Query`, `Call`) of request bodies and rules as dicts, the request time as
integer nanoseconds, ids as strings; the retrieved lists as bytes
(`Retrieved.__reduce__`). Ray pickles every argument and result on its own, with
cloudpickle, which runs a Python hook for each object that is not a builtin: a
pydantic request or model, or a pandas timestamp cost ~50 us each to serialize, the
retrieved arrays ~0.2 ms, and as much again to load (measured in process, in
BENCHMARKS.md's history; its serving load test has the hops now).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import pandas as pd
from feast import FeatureStore
from ray import serve
from ray.serve import Application
from ray.serve.deployment import Deployment
from ray.serve.handle import DeploymentHandle
from threadpoolctl import threadpool_limits

from contracts.settings import Settings
from models.bundle import load_bundle
from models.served import ServedModel
from models.timing import Timings
from serving.config import GraphConfig, StoreOptions
from serving.features import OnlineFeatureJoin, open_serving_store
from serving.recommender import Found, Recommender, find, version_of
from serving.requests import RankRequest, RecommendRequest, SimilarItemsRequest
from serving.rules import RuleConfig

# (user id, session items, request time in ns): what the Retriever is asked.
Query = tuple[str, list[str], int]
# (request body, request time in ns, rules or None, variant, request id): what the
# Ranker is asked besides the Retriever's answer.
Call = tuple[dict[str, Any], int, dict[str, Any] | None, str | None, str]


def use_threads(threads: int | None) -> None:
    """This replica's BLAS, OpenMP and torch thread counts (None: Ray's default, one)."""
    if threads is not None:
        import torch

        threadpool_limits(threads)
        torch.set_num_threads(threads)


class Retriever:
    """The user's online row (their real-time items among it), then every source's top
    list. The row is read here, not in the ingress: the next step needs it at once,
    and the ingress then only awaits, like the no-op graph's."""

    def __init__(self, version_dir: str, data_dir: str | None, store: StoreOptions,
                 settings: Settings, threads: int | None = None,
                 ef_search: int | None = None) -> None:
        """`data_dir` None: features from the registry snapshot in the version."""
        use_threads(threads)
        bundle = load_bundle(Path(version_dir))
        self.scorer = ServedModel(bundle, ef_search=ef_search)
        bundle.release_events()
        # User rows only: no item rows are held here, so none are kept fresh.
        self.join = OnlineFeatureJoin(_store(version_dir, data_dir, store, settings),
                                      store.item_staleness_s)

    def retrieve(self, query: Query) -> tuple[Found, Timings]:
        return _find(self.join, self.scorer, query)

    def ready(self) -> bool:
        return True


def _store(version_dir: str, data_dir: str | None, store: StoreOptions, settings: Settings
           ) -> FeatureStore:
    return open_serving_store(None if data_dir is None else Path(data_dir), settings,
                              store.timeout_s, Path(version_dir))


def _at(at_ns: int) -> pd.Timestamp:
    """The request's time, sent between deployments as nanoseconds since the epoch."""
    return pd.Timestamp(at_ns, tz="UTC")


def _find(join: OnlineFeatureJoin, scorer: ServedModel, query: Query
          ) -> tuple[Found, Timings]:
    user_id, session_items, at_ns = query
    timings: Timings = {}
    return find(join, scorer, user_id, session_items, _at(at_ns), timings), timings


class Ranker:
    """Item features, the ranker and the rules: the answer itself. The rules run here,
    beside the item rows they read, so the ingress holds no catalog of its own."""

    def __init__(self, version_dir: str, data_dir: str | None, store: StoreOptions,
                 settings: Settings, threads: int | None = None, fused: bool = False,
                 ef_search: int | None = None) -> None:
        """`fused`: this Ranker retrieves too (no Retriever deployment); otherwise it
        builds no retrieval index."""
        use_threads(threads)
        self.recommender = Recommender(
            Path(version_dir), _store(version_dir, data_dir, store, settings),
            item_staleness_s=store.item_staleness_s, retrieves=fused, ef_search=ef_search)
        self.recommender.join.keep_fresh(self.recommender.bundle.item_ids)

    def recommend(self, retrieved: tuple[Found, Timings], call: Call) -> dict[str, Any]:
        """`call`'s body: a validated `RecommendRequest`'s fields; its rules: a
        RuleConfig's."""
        body, at_ns, rules, variant, request_id = call
        found, timings = retrieved[0], dict(retrieved[1])
        answer = self.recommender.recommend(
            RecommendRequest.model_validate(body), request_id, _at(at_ns), found,
            RuleConfig(**(rules or {})), variant, timings)
        return answer | {"timings": timings}

    def rank(self, retrieved: tuple[Found, Timings], call: Call) -> dict[str, Any]:
        body, at_ns, _, variant, request_id = call
        found, timings = retrieved[0], dict(retrieved[1])
        answer = self.recommender.rank(RankRequest.model_validate(body), request_id,
                                       _at(at_ns), found, variant, timings)
        return answer | {"timings": timings}

    def ready(self) -> bool:
        return True

    def find(self, query: Query) -> tuple[Found, Timings]:
        """The Retriever's work, in this replica (fused graphs)."""
        return _find(self.recommender.join, self.recommender.scorer, query)

    def recommend_fused(self, call: Call) -> dict[str, Any]:
        return self.recommend(self.find(_query(call)), call)

    def rank_fused(self, call: Call) -> dict[str, Any]:
        return self.rank(self.find(_query(call)), call)

    def similar(self, body: dict[str, Any], variant: str | None, request_id: str
                ) -> dict[str, Any]:
        timings: Timings = {}
        answer = self.recommender.similar(SimilarItemsRequest.model_validate(body),
                                          request_id, variant, timings)
        return answer | {"timings": timings}


def _query(call: Call) -> Query:
    """What the Retriever is asked for this call (a `ranker` body has no session)."""
    body, at_ns = call[0], call[1]
    return body["user_id"], list(body.get("session_items", [])), at_ns


class RecommenderIngress:
    """One version's entry point: `recommend`, `rank` and `similar`, one request each.
    It only awaits: the front validated each request (serving/requests.py) and hands
    its fields as a plain dict, which the Ranker turns back into the typed request,
    once; the work is in the Retriever and the Ranker. The
    Retriever's answer goes to the Ranker as a reference (Serve resolves a
    DeploymentResponse passed as an argument), not through this replica's Python."""

    def __init__(self, retriever: DeploymentHandle | None, ranker: DeploymentHandle,
                 version: str) -> None:
        """`retriever` None: a fused graph, whose Ranker retrieves too."""
        self.retriever, self.ranker, self.version = retriever, ranker, version

    async def ready(self) -> str:
        """The health probe (serving/health.py): this replica and one of each deployment
        behind it answer."""
        if self.retriever is not None:
            await self.retriever.ready.remote()
        await self.ranker.ready.remote()
        return self.version

    async def recommend(self, body: dict[str, Any], rules: dict[str, Any],
                        variant: str | None) -> dict[str, Any]:
        """`rules`: a RuleConfig's fields."""
        call: Call = (body, time.time_ns(), rules, variant, uuid.uuid4().hex)
        if self.retriever is None:
            return dict(await self.ranker.recommend_fused.remote(call))
        found = self.retriever.retrieve.remote(_query(call))
        return dict(await self.ranker.recommend.remote(found, call))

    async def rank(self, body: dict[str, Any], variant: str | None) -> dict[str, Any]:
        call: Call = (body, time.time_ns(), None, variant, uuid.uuid4().hex)
        if self.retriever is None:
            return dict(await self.ranker.rank_fused.remote(call))
        found = self.retriever.retrieve.remote(_query(call))
        return dict(await self.ranker.rank.remote(found, call))

    async def similar(self, body: dict[str, Any], variant: str | None) -> dict[str, Any]:
        return dict(await self.ranker.similar.remote(body, variant, uuid.uuid4().hex))


@dataclass(frozen=True)
class GraphArgs:
    """What one version's application is built from."""

    version_dir: Path
    settings: Settings  # the serving process's, read once at its entry point
    data_dir: Path | None = None  # None: its features from the version's registry snapshot
    graph: GraphConfig = field(default_factory=GraphConfig)
    store: StoreOptions = field(default_factory=StoreOptions)


def build_app(args: GraphArgs) -> Application:
    """The bound Serve application of one version, in Ray Serve's typed-builder style:
    each deployment made from its class here, with serve.yaml's options, and the
    handles injected into the ingress's constructor."""
    data = None if args.data_dir is None else str(args.data_dir)
    version, config = str(args.version_dir), args.graph
    retriever = None if config.fused else _deployment(Retriever).options(
        **config.retriever.options()).bind(version, data, args.store, args.settings,
                                           config.retriever.threads, config.ef_search)
    ranker = _deployment(Ranker).options(**config.ranker.options()).bind(
        version, data, args.store, args.settings, config.ranker.threads, config.fused,
        config.ef_search)
    return _deployment(RecommenderIngress).options(**config.ingress.options()).bind(
        retriever, ranker, version_of(args.version_dir))


def _deployment(cls: type) -> Deployment:
    """`serve.deployment(cls)`, typed: Ray annotates the decorator's return as its
    decorator-factory form whether or not a class is given."""
    return cast(Deployment, serve.deployment(cls))
