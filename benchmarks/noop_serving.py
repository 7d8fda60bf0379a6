"""The load test's floors: servers that do no work, behind the same KServe front
(serving/http_server.py, as `recstack serve` runs it).

    python benchmarks/noop_serving.py model --port 8081
        a KServe ModelServer with one model, `recommender`, that parses the V1
        request exactly as RecStack does and answers an empty list;
    python benchmarks/noop_serving.py graph --port 8082
        the same parsing in a `kserve.ray.RayModel` over a Ray Serve graph of
        RecStack's shape (ingress -> Retriever -> Ranker, one call each per
        request, one replica each), where every deployment returns at once;
    python benchmarks/noop_serving.py graph-fused --port 8083
        the fused shape (`graph.fused` in serve.yaml): ingress -> Ranker only.

The difference between RecStack and the graph floor is the work; between the
graph floor and the model floor, the Ray hops.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from typing import Any

MODEL = "recommender"


def _answer(request: Any) -> dict[str, Any]:
    return {"items": [], "request_id": "noop", "model_version": "noop", "variant": None,
            "degraded": False, "fallback": None, "cached": False}


def _run(model: Any, port: int) -> None:
    from serving.http_server import Access, Health, build_app, run

    run(build_app([model], Health(lambda: None, lambda: None), Access()), "127.0.0.1", port)


def serve_model(port: int) -> None:
    from kserve import Model

    from serving.requests import RecommendRequest, parse_v1

    class Noop(Model):
        def __init__(self) -> None:
            super().__init__(MODEL)
            self.ready = True

        async def predict(self, payload: Any, headers: Any = None) -> dict[str, Any]:
            return {"predictions": [_answer(r) for r in parse_v1(payload, RecommendRequest)]}

    _run(Noop(), port)


def serve_graph(port: int, fused: bool = False, ray_address: str | None = None) -> None:
    from kserve.model import InferenceVerb
    from kserve.ray import RayModel
    from ray import serve

    from models.ray_runtime import ensure_ray
    from serving.requests import RecommendRequest, parse_v1

    @serve.deployment(ray_actor_options={"num_cpus": 0})  # as RecStack's default
    class Retriever:
        def retrieve(self, *args: Any) -> tuple[dict[str, Any], dict[str, Any]]:
            return {}, {}

    @serve.deployment(ray_actor_options={"num_cpus": 0})  # as RecStack's default
    class Ranker:
        def rank(self, *args: Any) -> tuple[list[Any], dict[str, Any]]:
            return [], {}

    @serve.deployment(ray_actor_options={"num_cpus": 0})  # as RecStack's default
    class Ingress:
        def __init__(self, retriever: Any, ranker: Any) -> None:
            self.retriever, self.ranker = retriever, ranker

        def ready(self) -> bool:
            return True

        async def recommend(self, body: dict[str, Any], *args: Any) -> dict[str, Any]:
            if self.retriever is None:  # fused: the Ranker's one call
                await self.ranker.rank.remote(body["user_id"])
                return _answer(body)
            # Chained as RecStack's ingress chains them (serving/graph.py).
            await self.ranker.rank.remote(self.retriever.retrieve.remote(body["user_id"]))
            return _answer(body)

    class Front(RayModel):
        def load(self) -> bool:
            self.ready = True
            return True

        async def __call__(self, body: Any, headers: Any = None,
                           verb: InferenceVerb = InferenceVerb.PREDICT) -> Any:
            requests = parse_v1(body, RecommendRequest)
            answers = await asyncio.gather(*(self._handle.recommend.remote(r.model_dump())
                                             for r in requests))
            return {"predictions": list(answers)}, {}

    ensure_ray(ray_address)
    app = Ingress.bind(None if fused else Retriever.bind(),  # type: ignore[attr-defined]
                       Ranker.bind())  # type: ignore[attr-defined]
    handle = serve.run(app, name="noop", route_prefix=None)
    model = Front(MODEL, handle)
    model.load()
    _run(model, port)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kind", choices=["model", "graph", "graph-fused"])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    sys.argv = sys.argv[:1]  # kserve.model_server parses sys.argv when imported
    if args.kind == "model":
        serve_model(args.port)
    else:
        # As `recstack serve`: the cluster to join, if any, read here (serve_load's "auto").
        serve_graph(args.port, fused=args.kind == "graph-fused",
                    ray_address=os.environ.get("RAY_ADDRESS") or None)


if __name__ == "__main__":
    main()
