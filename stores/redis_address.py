"""Where Redis is, in Feast's connection-string format, and a client for it.

Apart from stores.feature_store so that services that only talk to Redis (the
event collector) do not import Feast (6 s of a 7 s start).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis
import redis.asyncio as aredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff


@dataclass(frozen=True)
class RedisAddress:
    host: str
    port: int
    db: int = 0
    password: str | None = None
    ssl: bool = False

    @classmethod
    def parse(cls, connection_string: str) -> RedisAddress:
        """Feast's format: `host:port[,db=N][,password=...][,ssl=true]`."""
        first, *options = [p.strip() for p in connection_string.split(",") if p.strip()]
        host, _, port = first.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"RECSTACK_REDIS must look like host:port[,db=N], got "
                             f"{connection_string!r}")
        kwargs: dict[str, Any] = {}
        for option in options:
            key, _, value = option.partition("=")
            if key == "db":
                kwargs["db"] = int(value)
            elif key == "password":
                kwargs["password"] = value
            elif key == "ssl":
                kwargs["ssl"] = value.lower() == "true"
        return cls(host=host, port=int(port), **kwargs)

    def client(self, timeout: float = 2.0, read_timeout: float | None = None
               ) -> redis.Redis:
        """`read_timeout`: for blocking reads that must outlast `timeout`."""
        return redis.Redis(host=self.host, port=self.port, db=self.db, password=self.password,
                           ssl=self.ssl, socket_connect_timeout=timeout,
                           socket_timeout=timeout if read_timeout is None else read_timeout)

    def async_client(self, timeout: float = 1.0) -> aredis.Redis:
        """An asyncio client for request paths, failing fast: short socket timeouts and
        one immediate retry (a pooled connection reset by a Redis restart fails once),
        not redis-py's default retries with up to 10 s of backoff, which would hold a
        request for seconds while Redis is down."""
        return aredis.Redis(host=self.host, port=self.port, db=self.db,
                            password=self.password, ssl=self.ssl, socket_timeout=timeout,
                            socket_connect_timeout=timeout, retry=Retry(NoBackoff(), 1))

    def reachable(self, timeout: float = 0.5) -> bool:
        try:
            return bool(self.client(timeout).ping())
        except (redis.RedisError, OSError):
            return False

    def __str__(self) -> str:
        return f"{self.host}:{self.port} db {self.db}"
