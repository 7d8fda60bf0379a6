"""The events' Redis Stream, appended to at most once per `event_id`.

Stream `recstack:{project}:events`; each entry holds one event as JSON in its
`event` field (`serving.events.event.Event.to_json`, the `events` row). Idempotency
lives in Redis, not in the collector, so that any number of collector replicas
and any client retry agree: one Lua script per batch claims
`recstack:{project}:seen:{event_id}` with `SET NX EX` and appends the event only
when the claim is new. A script runs atomically, so no other writer sees a claim
without its entry. (All keys go through KEYS, but they hash to different slots:
on Redis Cluster the names would need a hash tag.)

A user deletion is an entry with a `forget_user` field instead (`EventStream.forget_user`),
appended in the same MULTI that invalidates the user's cached recommendations.

Memory: one seen-key (about 100 bytes) per event for the dedupe TTL (7 days by
default). The stream itself is never trimmed here: the consumer owns that.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import redis.asyncio as aredis

from serving.cache import key_prefix, queue_invalidation
from serving.events.event import Event

DEFAULT_DEDUPE_TTL_S = 7 * 24 * 3600

# KEYS[1]: the stream; KEYS[2..n]: one seen-key per event.
# ARGV[1]: the seen-keys' TTL in seconds; ARGV[2..n]: the events as JSON, in KEYS' order.
# Returns the 0-based positions of the events appended (the others were seen before).
APPEND_UNSEEN = """
local appended = {}
for i = 2, #KEYS do
  if redis.call('SET', KEYS[i], '1', 'NX', 'EX', ARGV[1]) then
    redis.call('XADD', KEYS[1], '*', 'event', ARGV[i])
    appended[#appended + 1] = i - 2
  end
end
return appended
"""


def stream_key(project: str) -> str:
    return f"recstack:{project}:events"


def seen_key(project: str, event_id: str) -> str:
    return f"recstack:{project}:seen:{event_id}"


@dataclass(frozen=True)
class Appended:
    accepted: int  # new entries in the stream
    duplicates: int  # events whose id was seen before (in this batch or earlier)


class EventStream:
    def __init__(self, client: aredis.Redis, project: str,
                 dedupe_ttl_s: int = DEFAULT_DEDUPE_TTL_S) -> None:
        self.client, self.project, self.dedupe_ttl_s = client, project, dedupe_ttl_s
        self.key = stream_key(project)
        self._append_unseen = client.register_script(APPEND_UNSEEN)  # EVALSHA, loads once

    async def append(self, events: Sequence[Event]) -> Appended:
        """Append the events not seen before; returns once Redis has acknowledged.
        Raises redis.RedisError (or OSError) when Redis fails: then an unknown part of
        the batch may be stored, which a retry with the same ids settles."""
        if not events:
            return Appended(0, 0)
        keys = [self.key, *(seen_key(self.project, str(e.event_id)) for e in events)]
        args: list[str | int] = [self.dedupe_ttl_s, *(e.to_json() for e in events)]
        appended = await self._append_unseen(keys=keys, args=args)
        return Appended(len(appended), len(events) - len(appended))

    async def forget_user(self, user_id: str, cache_ttl_s: float, now: float) -> str:
        """Invalidate the user's cached answers and append a `forget_user` entry, in one
        MULTI (both or neither); returns the entry's id. The invalidation mark, not a
        bare DEL: an answer computed before `now` and stored after it stays a miss.
        Raises redis.RedisError (or OSError) when Redis fails; a retry is harmless."""
        async with self.client.pipeline(transaction=True) as pipe:
            queue_invalidation(pipe, key_prefix(self.project), user_id, cache_ttl_s, now)
            pipe.xadd(self.key, {"forget_user": user_id})
            replies = await pipe.execute()
        entry_id: bytes = replies[-1]
        return entry_id.decode()

    async def ping(self) -> None:
        await self.client.ping()

    async def aclose(self) -> None:
        # types-redis predates aclose (redis-py >= 5), which replaces the deprecated close.
        await self.client.aclose()  # type: ignore[attr-defined]
