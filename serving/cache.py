"""The response cache: recommendations kept in Redis per user, for a TTL.

One Redis hash per user, `{prefix}{user_id}`; one field per (model version,
variant and its rules, request parameters), holding the answer and when the
request that computed it began. Why a hash: a user's new events must invalidate
every cached answer of theirs at once. `invalidate` (for the event consumer)
replaces the hash with one field, the invalidation time; an answer is a hit only
if its request began after that time and less than a TTL ago, so an answer
computed before the events and stored after them is still a miss. The hash
expires a TTL after its last write. The invalidation time comes from the
consumer's clock and `began` from the server's: clocks must agree to within
what staleness is acceptable (NTP).

The cache is an optimisation, never a dependency: when Redis fails, a lookup is a
miss (counted as an error), a write is skipped, and after a failure Redis is left
alone for `retry_after_s`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from collections.abc import Callable, Iterable
from typing import Any

import redis
import redis.asyncio as aredis
from redis.exceptions import RedisError

from stores.redis_address import RedisAddress

HIT, MISS, ERROR = "hit", "miss", "error"
INVALIDATED = "__invalidated_at"


def user_key(prefix: str, user_id: str) -> str:
    return f"{prefix}{user_id}"


def key_prefix(project: str) -> str:
    return f"recstack:{project}:recs:"


def invalidate(client: redis.Redis, prefix: str, user_id: str, ttl_s: float = 3600.0,
               now: float | None = None) -> None:
    """Forget every cached answer of this user (sync, for the event consumer).
    `ttl_s`: at least the servers' cache TTL."""
    invalidate_many(client, prefix, [user_id], ttl_s, now)


def invalidate_many(client: redis.Redis, prefix: str, user_ids: Iterable[str],
                    ttl_s: float = 3600.0, now: float | None = None) -> None:
    """`invalidate` for many users in one command: a Lua script doing what
    `queue_invalidation` queues, key by key, atomically as a MULTI would. The consumer's
    batches touch hundreds of users; three queued commands each cost it 14% of its
    time in client-side packing and parsing, the script a tenth of that."""
    keys = [user_key(prefix, user_id) for user_id in user_ids]
    if not keys:
        return
    at = time.time() if now is None else now
    client.register_script(_INVALIDATE)(keys=keys, args=[INVALIDATED, repr(at),
                                                         _expiry_s(ttl_s)])


_INVALIDATE = """
for _, key in ipairs(KEYS) do
  redis.call('DEL', key)
  redis.call('HSET', key, ARGV[1], ARGV[2])
  redis.call('EXPIRE', key, ARGV[3])
end
return #KEYS
"""


def _expiry_s(ttl_s: float) -> int:
    return max(1, int(ttl_s + 0.999))


def queue_invalidation(pipe: redis.client.Pipeline | aredis.client.Pipeline, prefix: str,
                       user_id: str, ttl_s: float, at: float) -> None:
    """Queue `invalidate`'s commands on a pipeline, sync or asyncio (queuing is sync in
    both): the collector's user deletion runs them in its own MULTI."""
    key = user_key(prefix, user_id)
    pipe.delete(key)
    pipe.hset(key, INVALIDATED, repr(at))
    pipe.expire(key, _expiry_s(ttl_s))


class ResponseCache:
    def __init__(self, client: aredis.Redis, prefix: str, ttl_s: float,
                 retry_after_s: float = 2.0, clock: Callable[[], float] = time.time) -> None:
        self.client, self.prefix, self.ttl_s = client, prefix, ttl_s
        self.retry_after_s, self.clock = retry_after_s, clock
        self._failed_at: float | None = None

    @classmethod
    def connect(cls, address: RedisAddress, prefix: str, ttl_s: float,
                timeout_s: float = 0.1) -> ResponseCache:
        return cls(address.async_client(timeout_s), prefix, ttl_s)

    @staticmethod
    def field(version: str, variant: str | None, params: dict[str, Any]) -> str:
        text = json.dumps([version, variant, params], sort_keys=True, separators=(",", ":"))
        return hashlib.sha1(text.encode()).hexdigest()

    async def get(self, user_id: str, field: str) -> tuple[str, dict[str, Any] | None]:
        """(HIT, answer), (MISS, None) or (ERROR, None)."""
        if self._resting():
            return ERROR, None
        key = user_key(self.prefix, user_id)
        try:
            raw, invalidated = await self.client.hmget(key, [field, INVALIDATED])
            if raw is None:
                result, answer = MISS, None
            else:
                entry = json.loads(raw)
                result, answer = HIT, entry["answer"]
                if (self.clock() - entry["at"] > self.ttl_s
                        or (invalidated is not None and entry["at"] <= float(invalidated))):
                    result, answer = MISS, None  # (left in place: the next put replaces it)
        except (RedisError, OSError):
            await self._failed()
            return ERROR, None
        self._failed_at = None
        return result, answer

    async def put(self, user_id: str, field: str, answer: dict[str, Any],
                  began: float) -> None:
        """Store an answer; `began`: when its request began (this cache's clock)."""
        if self._resting():
            return
        key = user_key(self.prefix, user_id)
        entry = json.dumps({"at": began, "answer": answer}, separators=(",", ":"))
        try:
            async with self.client.pipeline(transaction=False) as pipe:
                pipe.hset(key, field, entry)
                pipe.expire(key, max(1, int(self.ttl_s + 0.999)))
                await pipe.execute()
        except (RedisError, OSError):
            await self._failed()

    def now(self) -> float:
        return self.clock()

    async def _failed(self) -> None:
        """Rest, and drop idle pooled connections: after an outage they are all dead."""
        self._failed_at = self.clock()
        # (closing a dead connection may fail too; it is dropped either way)
        with contextlib.suppress(RedisError, OSError):
            await self.client.connection_pool.disconnect(inuse_connections=False)

    def _resting(self) -> bool:
        return (self._failed_at is not None
                and self.clock() - self._failed_at < self.retry_after_s)
