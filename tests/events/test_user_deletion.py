"""Deleting a user: `DELETE /v1/users/{id}` on the real collector (uvicorn on a real
socket), then the real consumer, against the test Redis and a real Feast repo. The
user's cached answers go at once, their online features with the consumer, their
events from every read at once and from the files at the next compaction; what they
send after the deletion is kept. Plus the parsing of `forget_user` stream entries."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
import pytest

from contracts.schemas import EVENTS_FILE, USERS_FILE
from contracts.settings import Settings
from models.data.dataset import read_dataset
from models.data.event_log import (
    compact,
    newest_mtime,
    read_tombstones,
    stream_parts,
    tombstone_dir,
)
from serving.api_keys import ApiKeys
from serving.cache import INVALIDATED, key_prefix, user_key
from serving.events.collector import CollectorSettings, create_app
from serving.events.realtime_sink import online_key
from serving.events.stream import stream_key
from serving.events.stream_entries import ForgetUser, PoisonMessage, parse_entry
from stores.feature_store import RedisAddress, online_features, open_store
from tests.events import test_consumer
from tests.events.test_collector import running
from tests.events.test_consumer import AFTER, consumer, record, redis_client, xadd

# test_consumer's fixtures: a project of its own in the test Redis, a materialized world.
settings = test_consumer.settings
world = test_consumer.world

KEY = "deletion-key"
USER, BYSTANDER = "u003", "u004"  # two of the test world's busiest users


def request(port: int, method: str, path: str, body: Any = None, key: str | None = KEY
            ) -> tuple[int, dict[str, str], Any]:
    headers = {"content-type": "application/json"}
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data, headers,
                                 method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as response:
            return response.status, dict(response.headers), json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), json.loads(exc.read())


def user_feature_values(data: Path, settings: Settings, user: str) -> dict[str, Any]:
    """Every feature of the user's online views, as `get_online_features` answers."""
    store = open_store(data, settings, announce=lambda _: None)
    values = online_features(store, "user_online", [{"user_id": user}])
    return {name: column[0] for name, column in values.items() if name != "user_id"}


def ids_on_disk(data: Path, user: str) -> set[str]:
    """The user's event ids in the files themselves: events.parquet and every part."""
    paths = [data / EVENTS_FILE, *sorted((data / "events_stream").glob("date=*/part-*.parquet"))]
    found = set()
    for path in paths:
        table = pq.read_table(path, columns=["event_id", "user_id"]).to_pandas()
        found |= set(table.loc[table["user_id"] == user, "event_id"])
    return found


def test_a_deleted_user_is_gone_online_at_once_and_offline_after_compaction(
        world: Path, settings: Settings) -> None:
    client = redis_client(settings)
    project, prefix = settings.feast_project, key_prefix(settings.feast_project)
    # Some streamed history for both users, on one day (two part files to compact).
    xadd(client, project, [record("before-1", USER, "i001"),
                           record("by-1", BYSTANDER, "i002")])
    xadd(client, project, [record("before-2", USER, "i003", at=AFTER + pd.Timedelta(1, "s"))])
    worker = consumer(world, settings)
    worker.run(until_idle=True)
    history = read_dataset(world).events
    old_ids = set(history.loc[history["user_id"] == USER, "event_id"])
    assert {"before-1", "before-2"} < old_ids and len(old_ids) > 2  # events.parquet too
    assert all(v is not None for v in user_feature_values(world, settings, USER).values())
    for someone in (USER, BYSTANDER):  # a cached answer each, as ResponseCache.put writes
        client.hset(user_key(prefix, someone), "answer",
                    json.dumps({"at": time.time() - 1, "answer": {"items": ["x"]}}))

    collector = CollectorSettings(redis=RedisAddress.parse(settings.redis), project=project,
                                  api_keys=ApiKeys([KEY]))
    with running(create_app(collector)) as port:
        assert request(port, "DELETE", f"/v1/users/{USER}", key=None)[0] == 401
        status, _, body = request(port, "DELETE", f"/v1/users/{USER}")
        assert status == 202, body
        assert body["user_id"] == USER and body["done_now"] and body["follows"]
        # The cache at once, before any consumer ran: only the invalidation mark is left.
        assert set(client.hgetall(user_key(prefix, USER))) == {INVALIDATED.encode()}
        assert client.hexists(user_key(prefix, BYSTANDER), "answer")
        last = client.xrevrange(stream_key(project), count=1)[0]
        assert last == (body["stream_id"].encode(), {b"forget_user": USER.encode()})

        worker.run(until_idle=True)
        assert worker.counters.forgotten == 1
        # Online: Feast's hash for the user is gone, every feature of theirs is null.
        assert not client.exists(online_key(open_store(world, settings,
                                                       announce=lambda _: None), USER))
        assert all(v is None for v in user_feature_values(world, settings, USER).values())
        assert user_feature_values(world, settings, BYSTANDER)["recent_items"]
        assert set(client.hgetall(user_key(prefix, USER))) == {INVALIDATED.encode()}
        # Offline: hidden from training at once (files not yet rewritten).
        dataset = read_dataset(world)
        assert USER not in set(dataset.events["user_id"]) | set(dataset.users["user_id"])
        assert "by-1" in set(dataset.events["event_id"])
        assert ids_on_disk(world, USER) == old_ids
        # A deletion is a change of the history: feature tables built before it are stale.
        tombstone = next(tombstone_dir(world).glob("*.json"))
        assert newest_mtime(world) == tombstone.stat().st_mtime

        # Sent after the deletion: new data, kept (a fresh state online, from it alone).
        after = record("after-1", USER, "i009", at=AFTER + pd.Timedelta(1, "h"))
        assert request(port, "POST", "/v1/events",
                       {k: after[k] for k in ("event_id", "user_id", "item_id",
                                              "event_type", "timestamp")})[0] == 202
        worker.run(until_idle=True)
    assert user_feature_values(world, settings, USER)["recent_items"] == ["i009"]
    assert user_feature_values(world, settings, USER)["events_total"] is None

    done = compact(world)
    assert done.days >= 1
    assert ids_on_disk(world, USER) == {"after-1"}  # the files hold nothing older
    assert USER not in set(pq.read_table(world / USERS_FILE)["user_id"].to_pylist())
    assert "by-1" in {i for p in stream_parts(world)
                      for i in pq.read_table(p, columns=["event_id"])["event_id"].to_pylist()}
    assert [t.compacted for t in read_tombstones(world)] == [True]
    dataset = read_dataset(world)
    assert dataset.events.loc[dataset.events["user_id"] == USER, "event_id"].tolist() == [
        "after-1"]
    assert USER in set(dataset.users["user_id"])  # a default row, for the new event
    assert compact(world).days == 0  # the tombstone is not applied twice


def test_a_deletion_applies_in_stream_order_and_a_redelivery_changes_nothing(
        world: Path, settings: Settings) -> None:
    client = redis_client(settings)
    # One batch: an event before the deletion, the deletion, an event after it.
    entries = xadd(client, settings.feast_project, [
        record("pre-1", USER, "i001"), {b"forget_user": USER.encode()},
        record("post-1", USER, "i002", at=AFTER + pd.Timedelta(1, "s"))])
    worker = consumer(world, settings)
    worker.run(until_idle=True)
    kept = read_dataset(world).events
    assert kept.loc[kept["user_id"] == USER, "event_id"].tolist() == ["post-1"]
    assert user_feature_values(world, settings, USER)["recent_items"] == ["i002"]
    # Redelivered whole, as after a crash before the acknowledgement: the deletion is
    # filed once (by its entry id), so the event sent after it stays.
    worker.process([(entry_id, fields) for entry_id, fields
                    in client.xrange(stream_key(settings.feast_project))
                    if entry_id in entries])
    assert len(read_tombstones(world)) == 1
    kept = read_dataset(world).events
    assert kept.loc[kept["user_id"] == USER, "event_id"].tolist() == ["post-1"]
    assert user_feature_values(world, settings, USER)["recent_items"] == ["i002"]


def test_deleting_needs_redis_and_is_in_the_openapi_spec(settings: Settings) -> None:
    from tests.redis_proxy import RedisProxy

    address = RedisAddress.parse(settings.redis)
    proxy = RedisProxy((address.host, address.port))  # never started: Redis unreachable
    down = CollectorSettings(redis=RedisAddress.parse(proxy.address(address.db)),
                             project=settings.feast_project, api_keys=ApiKeys([KEY]))
    with running(create_app(down)) as port:
        status, headers, body = request(port, "DELETE", "/v1/users/someone")
        assert status == 503 and "nothing was done" in body["detail"]
        assert {k.lower(): v for k, v in headers.items()}["retry-after"] == "2"
        too_long = request(port, "DELETE", "/v1/users/" + "x" * 257)
        assert too_long[0] == 400 and "user_id" in too_long[2]["detail"]
        # A newline in the id (Starlette's path converter stopped at it: a 404) is a 400.
        assert request(port, "DELETE", "/v1/users/a%0Ab")[0] == 400
        spec = request(port, "GET", "/openapi.json", key=None)[2]
    route = spec["paths"]["/v1/users/{user_id}"]["delete"]
    assert set(route["responses"]) >= {"202", "401", "503"}


@pytest.mark.parametrize(("fields", "reason"), [
    ({b"forget_user": b""}, "1 to 256 characters, got 0"),
    ({b"forget_user": b"x" * 257}, "got 257"),
    ({b"forget_user": b"\xff"}, "not UTF-8"),
    ({b"forget_user": b"u1", b"event": b"{}"}, "other fields too: event"),
])
def test_a_malformed_forget_entry_is_poison(fields: dict[bytes, bytes], reason: str) -> None:
    with pytest.raises(PoisonMessage, match=reason):
        parse_entry(fields)


def test_a_forget_entry_is_read_as_a_deletion() -> None:
    assert parse_entry({b"forget_user": "ü/1".encode()}) == ForgetUser("ü/1")
