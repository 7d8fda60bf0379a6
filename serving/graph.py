"""The Ray Serve graph behind KServe: a `recommender` ingress with
`Retriever` and `Ranker` deployments, bridged to KServe's ModelServer with
`kserve.ray.RayModel` (REFERENCE.md: KServe + Ray Serve).

KServe's side (`RecommenderModel`, a RayModel) parses V1 and V2 requests
(serving/requests.py) and answers bad ones with a 400 itself; the ingress reads the
user's online row, asks the Retriever for every source's top list and the Ranker
for the ranked candidates, and applies the rules (serving/recommender.py).
Replica counts come from `GraphConfig`.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from kserve.errors import InvalidInput
from kserve.model import InferenceVerb
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse
from kserve.ray import RayModel
from ray import serve
from ray.serve.handle import DeploymentHandle

from models.bundle import load_bundle
from serving.features import OnlineFeatureJoin
from serving.online_scoring import OnlineScorer, Retrieved, Scored
from serving.recommender import DEPTH, Recommender
from serving.requests import RecommendRequest, parse_v1, parse_v2_recommend
from serving.rules import RuleConfig

MODEL_NAME = "recommender"


@dataclass(frozen=True)
class GraphConfig:
    retriever_replicas: int = 1
    ranker_replicas: int = 1
    ingress_replicas: int = 1
    cpus_per_replica: float = 0.0  # 0: no reservation, replicas share the machine


def _open_store(data_dir: str) -> Any:
    from recstack.feature_store import open_store

    return open_store(Path(data_dir))


@serve.deployment
class Retriever:
    def __init__(self, version_dir: str) -> None:
        self.scorer = OnlineScorer(load_bundle(Path(version_dir)))

    def retrieve(self, user_id: str, fresh: list[str], at: pd.Timestamp) -> Retrieved:
        return self.scorer.retrieve(user_id, fresh, at)


@serve.deployment
class Ranker:
    def __init__(self, version_dir: str, data_dir: str) -> None:
        self.scorer = OnlineScorer(load_bundle(Path(version_dir)))
        self.join = OnlineFeatureJoin(_open_store(data_dir))

    def rank(self, retrieved: Retrieved, user: dict[str, Any], at: pd.Timestamp, k: int
             ) -> Scored:
        return self.scorer.rank(retrieved, user, self.join, at, k)


@serve.deployment(name=MODEL_NAME)
class RecommenderIngress:
    """Prepares each request, calls the Retriever and the Ranker, applies the rules."""

    def __init__(self, retriever: DeploymentHandle, ranker: DeploymentHandle,
                 version_dir: str, data_dir: str, rules: RuleConfig,
                 variant: str | None = None) -> None:
        self.retriever, self.ranker = retriever, ranker
        self.recommender = Recommender(Path(version_dir), _open_store(data_dir), rules,
                                       variant, score_locally=False)

    def load(self) -> bool:
        return True

    def get_input_types(self) -> list[dict[str, Any]]:
        return [{"name": "user_id", "datatype": "BYTES", "shape": [-1]},
                {"name": "k", "datatype": "INT32", "shape": [-1]}]

    def get_output_types(self) -> list[dict[str, Any]]:
        return [{"name": "item_ids", "datatype": "BYTES", "shape": [-1, -1]},
                {"name": "scores", "datatype": "FP32", "shape": [-1, -1]}]

    async def recommend(self, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return list(await asyncio.gather(
            *(self._one(RecommendRequest.model_validate(r)) for r in requests)))

    async def _one(self, request: RecommendRequest) -> dict[str, Any]:
        at = pd.Timestamp.now(tz="UTC")
        # Feature reads block: off the event loop, so other requests keep moving.
        user, fresh = await asyncio.to_thread(self.recommender.prepare, request)
        retrieved = await self.retriever.retrieve.remote(request.user_id, fresh, at)
        scored = await self.ranker.rank.remote(retrieved, user, at, DEPTH)
        return await asyncio.to_thread(self.recommender.answer, request, uuid.uuid4().hex,
                                       scored)


class RecommenderModel(RayModel):
    """KServe's side of the bridge: requests are checked here, so bad input is a 400
    with a clean reason before any Ray hop; valid ones go to the graph's ingress."""

    async def __call__(self, body: Any, headers: dict[str, str] | None = None,
                       verb: InferenceVerb = InferenceVerb.PREDICT
                       ) -> tuple[Any, dict[str, str]]:
        if verb != InferenceVerb.PREDICT:
            raise InvalidInput(f"{MODEL_NAME} supports predict and infer, not {verb.value}")
        v2 = isinstance(body, InferRequest)
        requests = parse_v2_recommend(body) if v2 else parse_v1(body, RecommendRequest)
        answers = await self._handle.recommend.remote([r.model_dump() for r in requests])
        return (_v2_response(body, answers) if v2 else {"predictions": answers}), {}


def _v2_response(request: InferRequest, answers: list[dict[str, Any]]) -> InferResponse:
    """BYTES item_ids and FP32 scores, [users, k] ("" / 0 pad shorter lists)."""
    width = max((len(a["items"]) for a in answers), default=0)
    ids = [[i["item_id"] for i in a["items"]] + [""] * (width - len(a["items"]))
           for a in answers]
    scores = np.zeros((len(answers), width), dtype=np.float32)
    for n, answer in enumerate(answers):
        scores[n, :len(answer["items"])] = [i["score"] for i in answer["items"]]
    return InferResponse(
        model_name=MODEL_NAME, response_id=request.id or uuid.uuid4().hex,
        infer_outputs=[
            InferOutput("item_ids", [len(answers), width], "BYTES",
                        [item for row in ids for item in row]),
            InferOutput("scores", [len(answers), width], "FP32",
                        scores.reshape(-1).tolist())])


def build(version_dir: Path, data_dir: Path, config: GraphConfig = GraphConfig(),
          rules: RuleConfig | None = None) -> Any:
    """The bound Serve application."""
    options = {"ray_actor_options": {"num_cpus": config.cpus_per_replica}}
    retriever = Retriever.options(num_replicas=config.retriever_replicas,  # type: ignore[attr-defined]
                                  **options).bind(str(version_dir))
    ranker = Ranker.options(num_replicas=config.ranker_replicas,  # type: ignore[attr-defined]
                            **options).bind(str(version_dir), str(data_dir))
    ingress = RecommenderIngress.options(  # type: ignore[attr-defined]
        num_replicas=config.ingress_replicas, **options)
    return ingress.bind(retriever, ranker, str(version_dir), str(data_dir),
                        rules or RuleConfig())


def serve_forever(version_dir: Path, data_dir: Path, port: int,
                  config: GraphConfig = GraphConfig()) -> None:
    """Start local Ray, run the graph and KServe's ModelServer on `port` (blocks)."""
    from kserve import ModelServer

    from models.ray_runtime import ensure_ray

    ensure_ray()
    handle = serve.run(build(version_dir, data_dir, config), name=MODEL_NAME,
                       route_prefix=None)
    model = RecommenderModel(name=MODEL_NAME, handle=handle)
    model.load()
    ModelServer(http_port=port, enable_grpc=False, workers=1).start([model])
