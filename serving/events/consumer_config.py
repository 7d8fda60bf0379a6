"""`ConsumerConfig`: how the stream consumer (serving/events/consumer.py) reads, each
field checked where it is built.

A module of its own, as stores/redis_address.py is: the consumer imports Feast, pandas
and torch (seconds), and `recstack consume` checks what the user typed before that.
"""

from __future__ import annotations

import os
import socket
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

DEFAULT_GROUP = "recstack-consumers"


def default_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    return value


class ConsumerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    group: Annotated[str, AfterValidator(_not_blank)] = DEFAULT_GROUP
    """The Redis Streams consumer group."""
    name: Annotated[str, AfterValidator(_not_blank)] = Field(default_factory=default_name)
    """This consumer's name in the group; the same name after a restart resumes its
    pending entries at once."""
    batch: int = Field(default=500, ge=1)
    """Entries per read while the consumer keeps up."""
    max_batch: int = Field(default=5000, ge=1)
    """Reads grow to this many entries while the consumer is behind (never below batch)."""
    block_ms: int = Field(default=1000, ge=1)
    """How long a read waits for new entries (Redis reads BLOCK 0 as forever)."""
    claim_idle_s: float = Field(default=60.0, gt=0)
    """Entries pending this long with another consumer are taken over (it died)."""
    compact_every_s: float = Field(default=600.0, ge=0)
    """0: never compact."""
    cache_ttl_s: float = Field(default=3600.0, gt=0)
    """How long an invalidation mark lives: at least the servers' cache TTL."""
    trim: bool = True
    min_backoff_s: float = Field(default=0.5, gt=0)
    max_backoff_s: float = Field(default=30.0, gt=0)
