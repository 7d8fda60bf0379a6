"""The online sink keeps the states it pushed and folds the next events onto them
without reading the row back, only while the row stored is still the one it wrote:
against the real test Redis and a real Feast repo, another consumer of the group, a
materialization and a vanished row each make it read (or recompute) again, so the
online state stays what build.py computes from the whole history. Plus the read size
that grows while the consumer is behind, and what its config refuses."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import redis

from contracts.settings import Settings
from models.data.event_log import EventLog
from models.features.build import build_features
from serving.events.consumer import ConsumerConfig, StreamConsumer, build_consumer, next_count
from serving.events.event import Event
from serving.events.realtime_sink import online_key
from serving.events.stream_entries import events_table
from stores.feature_store import apply_definitions, materialize_all, open_store
from tests.events import test_consumer
from tests.events.test_consumer import (
    AFTER,
    assert_online_matches_history,
    record,
    redis_client,
    xadd,
)

settings = test_consumer.settings
world = test_consumer.world

USER = "u010"


def named(world: Path, settings: Settings, name: str) -> StreamConsumer:
    return build_consumer(world, ConsumerConfig(name=name, min_backoff_s=0.01), settings,
                          announce=lambda _: None)


def send(settings: Settings, event_id: str, item: str, seconds: int) -> None:
    xadd(redis_client(settings), settings.feast_project,
         [record(event_id, USER, item, at=AFTER + pd.Timedelta(seconds=seconds))])


def recent_items(world: Path, settings: Settings) -> list[str]:
    from stores.feature_store import online_features

    store = open_store(world, settings, announce=lambda _: None)
    items: list[str] = online_features(store, "user_online",
                                       [{"user_id": USER}])["recent_items"][0]
    return items


def test_the_pushed_state_is_used_until_another_consumer_writes_the_row(
        world: Path, settings: Settings) -> None:
    first = named(world, settings, "first")
    send(settings, "h1", "i001", 1)
    first.run(until_idle=True)
    read = first.online.rows_read
    send(settings, "h2", "i002", 2)
    first.run(until_idle=True)
    assert first.online.rows_read == read  # folded onto what it pushed: no read

    # Another consumer of the group (one that took over entries, say) writes the row.
    second = named(world, settings, "second")
    send(settings, "h3", "i003", 3)
    second.run(until_idle=True)
    assert second.counters.users == 1

    send(settings, "h4", "i004", 4)
    first.run(until_idle=True)
    assert first.online.rows_read == read + 1  # the stamp changed: read, not assumed
    assert recent_items(world, settings)[:4] == ["i004", "i003", "i002", "i001"]
    assert_online_matches_history(world, settings, [USER])


def test_a_materialized_row_is_read_and_a_vanished_one_recomputed(
        world: Path, settings: Settings) -> None:
    worker = named(world, settings, "worker")
    send(settings, "m1", "i001", 1)
    worker.run(until_idle=True)

    # Events written by someone else, then the features rebuilt and materialized: the
    # row now holds an event this consumer never saw, under a newer stamp.
    other = Event.model_validate(record("elsewhere-1", USER, "i077",
                                        at=AFTER + pd.Timedelta(seconds=2)))
    EventLog(world).append(events_table([other]))
    build_features(world)
    store = open_store(world, settings, announce=lambda _: None)
    materialize_all(store, apply_definitions(store, world), engine="direct")
    assert recent_items(world, settings)[0] == "i077"

    send(settings, "m2", "i002", 3)
    worker.run(until_idle=True)
    assert recent_items(world, settings)[:3] == ["i002", "i077", "i001"]
    assert_online_matches_history(world, settings, [USER])

    # The row gone (a flushed store): rebuilt from the history, not from memory alone.
    redis_client(settings).delete(online_key(store, USER))
    recomputed = worker.online.recomputed
    send(settings, "m3", "i003", 4)
    worker.run(until_idle=True)
    assert worker.online.recomputed == recomputed + 1
    assert_online_matches_history(world, settings, [USER])


def test_a_failed_write_forgets_the_pushed_states(world: Path, settings: Settings,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    worker = named(world, settings, "worker")
    send(settings, "f1", "i001", 1)
    worker.run(until_idle=True)

    def stamp() -> int | None:
        return worker.online.rows.stamps([USER])[0]
    assert worker.online.pushed.current(USER, stamp()) is not None

    original = worker.online.rows.write

    def write_then_fail(states: dict[str, Any], stamps: list[int]) -> None:
        original(states, stamps)  # the rows land, then the connection drops
        raise redis.ConnectionError("online store down")
    monkeypatch.setattr(worker.online.rows, "write", write_then_fail)
    f2 = record("f2", USER, "i002", at=AFTER + pd.Timedelta(seconds=2))
    with pytest.raises(redis.ConnectionError):
        worker.online.apply([Event.model_validate(f2)], {USER}, set())
    assert worker.online.pushed.current(USER, stamp()) is None  # not trusted: read again

    monkeypatch.undo()
    xadd(redis_client(settings), settings.feast_project, [f2])  # delivered, retried
    worker.run(until_idle=True)
    assert recent_items(world, settings)[:2] == ["i002", "i001"]
    assert_online_matches_history(world, settings, [USER])


def test_reads_grow_while_behind_and_shrink_when_caught_up() -> None:
    config = ConsumerConfig(name="x", batch=100, max_batch=350)
    assert next_count(100, 100, config) == 200
    assert next_count(200, 200, config) == 350
    assert next_count(350, 350, config) == 350
    assert next_count(350, 20, config) == 100
    assert next_count(100, 0, ConsumerConfig(name="x", batch=100, max_batch=10)) == 100


def test_the_config_refuses_what_the_consumer_cannot_run_with() -> None:
    from pydantic import ValidationError

    default = ConsumerConfig()
    assert default.group == "recstack-consumers" and default.name.endswith(f"-{os.getpid()}")
    for bad, message in [({"group": " "}, "must not be empty"), ({"name": ""}, "must not be empty"),
                         ({"batch": 0}, "greater than or equal to 1"),
                         ({"block_ms": 0}, "greater than or equal to 1"),
                         ({"claim_idle_s": 0}, "greater than 0"),
                         ({"compact_every_s": -1}, "greater than or equal to 0"),
                         ({"min_backoff_s": 0}, "greater than 0"),
                         ({"batchsize": 10}, "Extra inputs are not permitted")]:
        with pytest.raises(ValidationError, match=message):
            ConsumerConfig(**bad)
    assert ConsumerConfig(compact_every_s=0).compact_every_s == 0  # never compact
    with pytest.raises(ValidationError, match="frozen"):
        default.batch = 10  # type: ignore[misc]
