"""KServe's ModelServer in front of the graphs: three models, `recommender`,
`similar-items` and `ranker`, each a `kserve.ray.RayModel` whose calls go
through the Front (serving/front.py).

Requests are parsed here (serving/requests.py), so bad input is a 400 with a
clean reason before any Ray hop. `recommender` speaks V1 and V2 (BYTES `user_id`
and INT32 `k` in; BYTES `item_ids` and FP32 `scores` out, [users, k], padded with
"" and 0); the other two speak V1 JSON.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
from kserve.errors import InvalidInput
from kserve.model import InferenceVerb
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse
from kserve.ray import RayModel
from pydantic import BaseModel
from ray import serve

from contracts.settings import Settings, TelemetrySettings
from serving.cache import ResponseCache, key_prefix
from serving.config import ServeConfig
from serving.front import Deployer, Front
from serving.health import GraphHealth
from serving.http_server import Access, Health, build_app, configure_logging, run
from serving.requests import (
    RankRequest,
    RecommendRequest,
    SimilarItemsRequest,
    parse_v1,
    parse_v2_recommend,
)
from serving.telemetry import setup_telemetry, telemetry
from stores.registry import Registry

log = logging.getLogger("recstack.serving")
RECOMMENDER, SIMILAR_ITEMS, RANKER = "recommender", "similar-items", "ranker"
MODELS: dict[str, tuple[str, type[BaseModel]]] = {  # model -> (front endpoint, request)
    RECOMMENDER: ("recommend", RecommendRequest),
    SIMILAR_ITEMS: ("similar", SimilarItemsRequest),
    RANKER: ("rank", RankRequest),
}
_BYTES, _INT32, _FP32 = "BYTES", "INT32", "FP32"
INPUT_TYPES = {
    RECOMMENDER: [{"name": "user_id", "datatype": _BYTES, "shape": [-1]},
                  {"name": "k", "datatype": _INT32, "shape": [-1]}],
    SIMILAR_ITEMS: [{"name": "item_id", "datatype": _BYTES, "shape": [-1]}],
    RANKER: [{"name": "user_id", "datatype": _BYTES, "shape": [-1]},
             {"name": "candidates", "datatype": _BYTES, "shape": [-1, -1]}],
}
OUTPUT_TYPES = [{"name": "item_ids", "datatype": _BYTES, "shape": [-1, -1]},
                {"name": "scores", "datatype": _FP32, "shape": [-1, -1]}]


class FrontModel(RayModel):
    """One KServe model backed by the Front's graphs."""

    def __init__(self, name: str, front: Front) -> None:
        running = front.variants[0].running
        assert running is not None, "Front.start() first"
        super().__init__(name, handle=running.handle)
        self.front = front
        self.endpoint, self.request_type = MODELS[name]

    def load(self) -> bool:
        self.ready = True  # the Front deployed and waited for the graphs
        return True

    async def get_input_types(self) -> list[dict[str, Any]]:
        return INPUT_TYPES[self.name]

    async def get_output_types(self) -> list[dict[str, Any]]:
        return OUTPUT_TYPES

    async def __call__(self, body: Any, headers: dict[str, str] | None = None,
                       verb: InferenceVerb = InferenceVerb.PREDICT
                       ) -> tuple[Any, dict[str, str]]:
        if verb != InferenceVerb.PREDICT:
            raise InvalidInput(f"{self.name} supports predict and infer, not {verb.value}")
        v2 = isinstance(body, InferRequest)
        if v2 and self.name != RECOMMENDER:
            raise InvalidInput(f"{self.name} takes V1 JSON "
                               '({"instances": [...]}), not V2 tensors')
        requests: list[BaseModel] = list(parse_v2_recommend(body) if v2
                                          else parse_v1(body, self.request_type))
        answers = await self.front.answer(self.endpoint, requests, headers)
        return (_v2_response(body, answers) if v2 else {"predictions": answers}), {}


def _v2_response(request: InferRequest, answers: list[dict[str, Any]]) -> InferResponse:
    width = max((len(a["items"]) for a in answers), default=0)
    ids = [[i["item_id"] for i in a["items"]] + [""] * (width - len(a["items"]))
           for a in answers]
    scores = np.zeros((len(answers), width), dtype=np.float32)
    for n, answer in enumerate(answers):
        scores[n, :len(answer["items"])] = [i["score"] or 0.0 for i in answer["items"]]
    return InferResponse(
        model_name=RECOMMENDER, response_id=request.id or uuid.uuid4().hex,
        infer_outputs=[
            InferOutput("item_ids", [len(answers), width], _BYTES,
                        [item for row in ids for item in row]),
            InferOutput("scores", [len(answers), width], _FP32, scores.reshape(-1).tolist())])


def open_front(registry: Registry, config: ServeConfig, data_dir: Path | None,
               version: str | None, stage: str | None, settings: Settings) -> Front:
    """A started Front: every variant's graph deployed and running."""
    from serving.events.impressions import ImpressionLog
    from serving.events.stream import EventStream
    from stores.redis_address import RedisAddress

    cache, impressions = None, None
    address = RedisAddress.parse(settings.redis)
    if config.cache.enabled and settings.online_store != "sqlite":
        cache = ResponseCache.connect(address, key_prefix(settings.feast_project),
                                      config.cache.ttl_s)
    if config.impressions.enabled and settings.online_store != "sqlite":
        impressions = ImpressionLog(EventStream(address.async_client(),
                                                settings.feast_project))
    front = Front(registry, config, version, stage, cache,
                  Deployer(registry, data_dir, config, settings), impressions)
    front.start()
    return front


def serve_forever(registry: Registry, config: ServeConfig, data_dir: Path | None,
                  version: str | None, stage: str | None, host: str, port: int,
                  access: Access, settings: Settings, otel: TelemetrySettings,
                  ray_address: str | None = None) -> None:
    """Start Ray (local, or the cluster at `ray_address`), the graphs and the KServe
    routes on host:port (blocks). `settings` (handed to every replica), `otel` (this
    process's telemetry) and `ray_address` are what the entry point read."""
    import psutil

    from models.ray_runtime import ensure_ray

    configure_logging()
    began = time.monotonic()
    imports = time.time() - psutil.Process().create_time()  # python, kserve, ray, torch
    ensure_ray(ray_address)
    # KServe's routes are the front: Serve's own HTTP proxy (127.0.0.1:8000, a port a
    # second server on the machine, or anything else, may hold) is not started.
    serve.start(proxy_location="Disabled")
    ray_up = time.monotonic()
    setup_telemetry(otel)  # metrics registered before the first scrape
    front = open_front(registry, config, data_dir, version, stage, settings)
    log.info("start-up: %.1f s to import, %.1f s for Ray, %.1f s to deploy the graphs "
             "(their replicas load the bundles and connect to the store)", imports,
             ray_up - began, time.monotonic() - ray_up)
    stop = threading.Event()
    if config.watch_interval_s > 0:
        front.watch(stop)
    health = GraphHealth(front.graphs, config.health)
    health.watch(stop)
    models = [FrontModel(name, front) for name in MODELS]
    for model in models:
        model.load()
    try:
        run(build_app(models, Health(health.ready, health.live), access), host, port)
    finally:
        stop.set()
        telemetry().shutdown()
