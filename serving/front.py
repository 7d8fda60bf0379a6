"""The KServe side of `recstack serve`: variants, the response cache, hot swap,
telemetry, and the last-resort fallback, in front of one Serve graph per version.

- Variants (serving/config.py): a user is assigned by a hash of the experiment
  name and their id, so the assignment is sticky and the weights hold; the
  variant is echoed in every answer. Variants that serve the same version share
  its graph; their rules travel with each request.
- Cache (serving/cache.py): `recommender` answers are looked up before any Ray
  hop, keyed by user, version, variant and the request's parameters; degraded
  answers are never stored.
- Hot swap: `refresh` (run every `watch_interval_s` by a watcher thread) re-reads
  the stage pointers; a version that moved is deployed as a new Serve
  application beside the old one, traffic switches once it is running, and the
  old application is deleted when its in-flight requests are done.
- Impressions (serving/events/impressions.py): every `recommender` answer, cached or
  not, is logged to the events stream, item by item, without waiting.
- Fallback: if the graph itself fails (a replica died), the answer is the
  version's trending list marked degraded, not a 5xx (serving/trending.py). A
  request whose graph was retired under it is retried on the current one.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from ray import serve
from ray.serve.handle import DeploymentHandle

from contracts.settings import Settings
from serving.cache import ResponseCache
from serving.config import ServeConfig, VariantConfig
from serving.events.impressions import ImpressionLog
from serving.graph import GraphArgs, build_app
from serving.rules import RuleConfig
from serving.telemetry import telemetry
from serving.trending import Trending
from stores.registry import Registry

log = logging.getLogger("recstack.serving")
DRAIN_TIMEOUT_S = 30.0
SWITCH_GRACE_S = 1.0  # requests that picked the old graph just before a switch


@dataclass
class Running:
    """One version's graph, running as a Serve application."""

    version: str
    app: str
    handle: DeploymentHandle
    trending: Trending
    inflight: int = 0


@dataclass
class Variant:
    config: VariantConfig
    rules: RuleConfig
    running: Running | None = None
    # The rules as the graph takes them (plain data crosses Ray hops cheaply), and as
    # the cache key holds them: made once.
    rule_fields: dict[str, Any] = field(init=False)

    def __post_init__(self) -> None:
        self.rule_fields = self.rules.model_dump()


class Deployer:
    """Starts and stops one Serve application per version."""

    def __init__(self, registry: Registry, data_dir: Path | None, config: ServeConfig,
                 settings: Settings) -> None:
        """`data_dir` None: each version's features from the registry it carries."""
        self.registry, self.data_dir, self.config = registry, data_dir, config
        self.settings = settings

    def deploy(self, version: str) -> Running:
        local = Path(self.registry.fetch(version))
        app = f"recstack-{version}"
        handle = serve.run(build_app(GraphArgs(local, self.settings, self.data_dir,
                                               self.config.graph,
                                               self.config.store_options())),
                           name=app, route_prefix=None)
        return Running(version, app, handle, Trending.read(local))

    def delete(self, running: Running) -> None:
        serve.delete(running.app)


def assign(user_id: str, weights: list[float], experiment: str) -> int:
    """The variant index of a user: sticky, in proportion to the weights. (blake2b, not
    crc32: crc32 is linear, so two experiments' assignments would be correlated.)"""
    digest = hashlib.blake2b(f"{experiment}:{user_id}".encode(), digest_size=8).digest()
    point = int.from_bytes(digest, "big") / 2**64 * sum(weights)
    for n, weight in enumerate(weights):
        point -= weight
        if point < 0:
            return n
    return len(weights) - 1


class Front:
    def __init__(self, registry: Registry, config: ServeConfig, version: str | None,
                 stage: str | None, cache: ResponseCache | None, deployer: Deployer,
                 impressions: ImpressionLog | None = None) -> None:
        self.registry, self.config = registry, config
        self.default_version, self.default_stage = version, stage
        self.cache, self.deployer, self.impressions = cache, deployer, impressions
        self.variants = [Variant(v, config.rule_config(v)) for v in config.variants]
        self.weights = [v.weight for v in config.variants]
        self._main = max(range(len(self.variants)), key=lambda n: self.weights[n])
        self._lock = threading.Lock()  # one refresh at a time
        self.swaps: list[tuple[str, str, str]] = []  # (variant, old, new), for logs/tests

    # -- versions -----------------------------------------------------------------
    def start(self) -> None:
        with self._lock:
            if self.default_version is None and self.default_stage is None:
                # Neither given: the latest version now, pinned (only stages are followed).
                self.default_version = self.registry.latest().version
            for variant in self.variants:
                variant.running = self._running(self._resolve(variant.config))

    def refresh(self) -> None:
        """Follow moved stage pointers: deploy beside, switch, drain, delete."""
        with self._lock:
            wanted = [self._resolve(v.config) for v in self.variants]  # all, before any move
            retired: list[Running] = []
            try:
                for variant, version in zip(self.variants, wanted, strict=True):
                    old = variant.running
                    assert old is not None
                    if version == old.version:
                        continue
                    variant.running = self._running(version)
                    self.swaps.append((variant.config.name, old.version, version))
                    log.info("variant %s: now serving %s (was %s)", variant.config.name,
                             version, old.version)
                    retired.append(old)
            finally:  # whatever happened, graphs nobody serves any more are removed
                in_use = {v.running.app for v in self.variants if v.running is not None}
                for old in {r.app: r for r in retired if r.app not in in_use}.values():
                    self._drain(old)
                    self.deployer.delete(old)

    def watch(self, stop: threading.Event) -> threading.Thread:
        """A daemon thread that refreshes every watch_interval_s until `stop` is set."""
        def loop() -> None:
            while not stop.wait(self.config.watch_interval_s):
                try:
                    self.refresh()
                except Exception:  # a registry hiccup must not end the watcher
                    log.exception("refreshing the served versions failed")
        thread = threading.Thread(target=loop, name="recstack-watch", daemon=True)
        thread.start()
        return thread

    def graphs(self) -> list[tuple[str, DeploymentHandle]]:
        """(application, ingress handle) of every graph now served, for the health probe."""
        running = {v.running.app: v.running.handle for v in self.variants
                   if v.running is not None}
        return list(running.items())

    def _resolve(self, variant: VariantConfig) -> str:
        if variant.version is not None or variant.stage is not None:
            return self.registry.resolve(variant.version, variant.stage).version
        return self.registry.resolve(self.default_version, self.default_stage).version

    def _running(self, version: str) -> Running:
        for variant in self.variants:
            if variant.running is not None and variant.running.version == version:
                return variant.running
        return self.deployer.deploy(version)

    def _drain(self, running: Running, clock: Callable[[], float] = time.monotonic) -> None:
        time.sleep(SWITCH_GRACE_S)
        deadline = clock() + DRAIN_TIMEOUT_S
        while running.inflight and clock() < deadline:
            time.sleep(0.05)

    # -- requests -----------------------------------------------------------------
    def variant_for(self, user_id: str | None) -> Variant:
        if user_id is None:  # similar-items: no user, the heaviest variant
            return self.variants[self._main]
        return self.variants[assign(user_id, self.weights, self.config.experiment)]

    async def answer(self, endpoint: str, requests: list[BaseModel],
                     headers: dict[str, str] | None = None) -> list[dict[str, Any]]:
        parent = telemetry().parent(headers)
        if len(requests) == 1:  # in the caller's task, so that `_after` runs after the reply
            return [await self._one(endpoint, requests[0], parent)]
        return list(await asyncio.gather(*(self._one(endpoint, r, parent) for r in requests)))

    async def _one(self, endpoint: str, request: BaseModel, parent: Any) -> dict[str, Any]:
        start = time.time_ns()
        user_id = getattr(request, "user_id", None)
        variant = self.variant_for(user_id)
        running = variant.running
        assert running is not None, "Front.start() first"
        running.inflight += 1  # from here on, a swap waits for this request
        try:
            return await self._answer(endpoint, request, parent, variant, running, start)
        finally:
            running.inflight -= 1

    async def _answer(self, endpoint: str, request: BaseModel, parent: Any, variant: Variant,
                      running: Running, start: int) -> dict[str, Any]:
        user_id = getattr(request, "user_id", None)
        body = request.model_dump()
        cache_field, began = None, 0.0
        if endpoint == "recommend" and self.cache is not None:
            assert user_id is not None
            params = {k: v for k, v in body.items() if k != "user_id"}
            cache_field = ResponseCache.field(
                running.version, variant.config.name, params | {"rules": variant.rule_fields})
            began = self.cache.now()
            result, hit = await self.cache.get(user_id, cache_field)
            telemetry().cache_lookup(result)
            if hit is not None:
                answer = hit | {"request_id": uuid.uuid4().hex, "cached": True}
                self._after(endpoint, user_id, answer, {}, 0, start, True, parent)
                return answer
        try:
            raw = await self._call(endpoint, running, body, variant)
        except Exception:
            current = variant.running
            try:
                if current is None or current is running:
                    raise
                cache_field = None  # answered by another version than the key says
                current.inflight += 1
                try:
                    raw = await self._call(endpoint, current, body, variant)  # swapped
                finally:
                    current.inflight -= 1
            except Exception:  # the graph failed: the last-resort answer, not a 5xx
                log.exception("%s failed in version %s; answering with trending", endpoint,
                              running.version)
                raw = running.trending.last_resort(request, running.version,
                                                   variant.config.name)
        timings, candidates = raw.pop("timings", {}), raw.pop("candidates", 0)
        answer = raw | {"cached": False}
        if cache_field is not None and not answer["degraded"]:
            assert self.cache is not None and user_id is not None
            await self.cache.put(user_id, cache_field, raw, began)
        self._after(endpoint, user_id, answer, timings, candidates, start, False, parent)
        return answer

    def _after(self, endpoint: str, user_id: str | None, answer: dict[str, Any],
               timings: dict[str, Any], candidates: int, start: int, cached: bool,
               parent: Any) -> None:
        """The answer's metrics, spans and impressions, noted on the event loop's next
        turn: for a one-instance request, after the reply is written (KServe, FastAPI
        and uvicorn write it in the request's task without yielding), not before;
        recording cost each reply ~0.15 ms (ten OpenTelemetry records)."""
        end = time.time_ns()

        def record() -> None:
            telemetry().record(endpoint, answer, timings, candidates, start, end, cached,
                               parent)
            if endpoint == "recommend" and user_id is not None and self.impressions:
                self.impressions.log(user_id, answer)

        asyncio.get_running_loop().call_soon(record)

    async def _call(self, endpoint: str, running: Running, body: dict[str, Any],
                    variant: Variant) -> dict[str, Any]:
        handle, name = running.handle, variant.config.name
        if endpoint == "recommend":
            return dict(await handle.recommend.remote(body, variant.rule_fields, name))
        if endpoint == "rank":
            return dict(await handle.rank.remote(body, name))
        return dict(await handle.similar.remote(body, name))

