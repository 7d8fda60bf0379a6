"""The response cache: recommendations kept in Redis per user, for a TTL.

One Redis hash per user, `{prefix}{user_id}`; one field per (model version,
variant, request parameters), holding the answer and when it was stored. Why a
hash: a user's new events must invalidate every cached answer of theirs, and
`DEL` of one key does that in one step (`invalidate`, called by the event
consumer). A field older than the TTL is a miss, and the whole hash expires a TTL
after its last write.

The cache is an optimisation, never a dependency: when Redis fails, a lookup is a
miss (counted as an error), a write is skipped, and after a failure Redis is left
alone for `retry_after_s`.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from typing import Any

import redis
import redis.asyncio as aredis
from redis.exceptions import RedisError

from recstack.feature_store import RedisAddress

HIT, MISS, ERROR = "hit", "miss", "error"


def user_key(prefix: str, user_id: str) -> str:
    return f"{prefix}{user_id}"


def key_prefix(project: str) -> str:
    return f"recstack:{project}:recs:"


def invalidate(client: redis.Redis, prefix: str, user_id: str) -> None:
    """Forget every cached answer of this user (sync, for the event consumer)."""
    client.delete(user_key(prefix, user_id))


class ResponseCache:
    def __init__(self, client: aredis.Redis, prefix: str, ttl_s: float,
                 retry_after_s: float = 2.0, clock: Callable[[], float] = time.time) -> None:
        self.client, self.prefix, self.ttl_s = client, prefix, ttl_s
        self.retry_after_s, self.clock = retry_after_s, clock
        self._failed_at: float | None = None

    @classmethod
    def connect(cls, address: RedisAddress, prefix: str, ttl_s: float,
                timeout_s: float = 0.1) -> ResponseCache:
        client = aredis.Redis(host=address.host, port=address.port, db=address.db,
                              password=address.password, ssl=address.ssl,
                              socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
        return cls(client, prefix, ttl_s)

    @staticmethod
    def field(version: str, variant: str | None, params: dict[str, Any]) -> str:
        text = json.dumps([version, variant, params], sort_keys=True, separators=(",", ":"))
        return hashlib.sha1(text.encode()).hexdigest()

    async def get(self, user_id: str, field: str) -> tuple[str, dict[str, Any] | None]:
        """(HIT, answer), (MISS, None) or (ERROR, None)."""
        if self._resting():
            return ERROR, None
        try:
            raw = await self.client.hget(user_key(self.prefix, user_id), field)
        except (RedisError, OSError):
            self._failed_at = self.clock()
            return ERROR, None
        self._failed_at = None
        if raw is None:
            return MISS, None
        entry = json.loads(raw)
        if self.clock() - entry["at"] > self.ttl_s:
            return MISS, None
        return HIT, entry["answer"]

    async def put(self, user_id: str, field: str, answer: dict[str, Any]) -> None:
        if self._resting():
            return
        key = user_key(self.prefix, user_id)
        entry = json.dumps({"at": self.clock(), "answer": answer}, separators=(",", ":"))
        try:
            async with self.client.pipeline(transaction=False) as pipe:
                pipe.hset(key, field, entry)
                pipe.expire(key, max(1, int(self.ttl_s + 0.999)))
                await pipe.execute()
        except (RedisError, OSError):
            self._failed_at = self.clock()

    async def invalidate(self, user_id: str) -> None:
        await self.client.delete(user_key(self.prefix, user_id))

    def _resting(self) -> bool:
        return (self._failed_at is not None
                and self.clock() - self._failed_at < self.retry_after_s)
