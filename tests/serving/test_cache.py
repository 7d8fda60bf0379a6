"""The response cache against the real test Redis: hits, per-parameter keys,
invalidation, the TTL, and a Redis that stops answering."""

from __future__ import annotations

import asyncio
import time

from contracts.settings import Settings
from serving.cache import ERROR, HIT, MISS, ResponseCache, invalidate, key_prefix
from stores.feature_store import RedisAddress
from tests.redis_proxy import RedisProxy

ANSWER = {"items": [{"item_id": "i1", "score": 1.0, "sources": ["ease"], "reasons": []}],
          "request_id": "r", "model_version": "v1", "variant": "a", "degraded": False}


def test_hits_misses_invalidation_and_ttl(redis_settings: Settings) -> None:
    now = [1000.0]
    address = RedisAddress.parse(redis_settings.redis)
    prefix = key_prefix(redis_settings.feast_project)

    async def run() -> None:
        cache = ResponseCache.connect(address, prefix, ttl_s=60)
        cache.clock = lambda: now[0]
        k10 = ResponseCache.field("v1", "a", {"k": 10})
        assert await cache.get("u1", k10) == (MISS, None)
        await cache.put("u1", k10, ANSWER, began=now[0])
        assert await cache.get("u1", k10) == (HIT, ANSWER)
        # Other parameters, another version or variant, another user: misses.
        for field in (ResponseCache.field("v1", "a", {"k": 5}),
                      ResponseCache.field("v2", "a", {"k": 10}),
                      ResponseCache.field("v1", "b", {"k": 10})):
            assert (await cache.get("u1", field))[0] == MISS
        assert (await cache.get("u2", k10))[0] == MISS
        # A new event of the user's (the consumer's sync call) forgets all their answers,
        invalidate(address.client(), prefix, "u1", ttl_s=60, now=now[0] + 1)
        assert (await cache.get("u1", k10))[0] == MISS
        # including one computed before the event and stored after it.
        await cache.put("u1", k10, ANSWER, began=now[0])
        assert (await cache.get("u1", k10))[0] == MISS
        now[0] += 2
        await cache.put("u1", k10, ANSWER, began=now[0])
        assert (await cache.get("u1", k10))[0] == HIT
        # An answer older than the TTL is a miss, and Redis expires the key itself.
        now[0] += 61
        assert (await cache.get("u1", k10))[0] == MISS
        assert 0 < address.client().ttl(f"{prefix}u1") <= 60
        await cache.client.aclose()

    asyncio.run(run())


def test_a_failing_redis_is_a_miss_and_is_left_alone_for_a_while(
        redis_settings: Settings) -> None:
    address = RedisAddress.parse(redis_settings.redis)
    proxy = RedisProxy((address.host, address.port))
    proxy.start()
    through = RedisAddress.parse(proxy.address(address.db))
    now = [0.0]

    async def run() -> None:
        cache = ResponseCache.connect(through, key_prefix("t"), ttl_s=60)
        cache.clock = lambda: now[0]
        field = ResponseCache.field("v1", None, {})
        await cache.put("u", field, ANSWER, began=now[0])
        assert (await cache.get("u", field))[0] == HIT
        proxy.stop()
        began = time.perf_counter()
        assert await cache.get("u", field) == (ERROR, None)
        assert time.perf_counter() - began < 0.5  # no retries with backoff
        await cache.put("u", field, ANSWER, began=now[0])  # skipped, no exception
        proxy.start()
        now[0] += 1.0  # still resting: not even tried
        assert (await cache.get("u", field))[0] == ERROR
        now[0] += 2.0
        assert (await cache.get("u", field))[0] == HIT
        await cache.client.aclose()

    try:
        asyncio.run(run())
    finally:
        proxy.stop()
