"""The stream consumer against the real test Redis and a real Feast repo: an event
changes the user's online row (as build.py would compute it) and invalidates their
cached answers; poison goes to the dead-letter stream; failing sinks are retried, never
skipped; and, with real SIGKILLs of a consumer process, nothing is lost or doubled."""

from __future__ import annotations

import functools
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
import pytest
import redis

from contracts.settings import Settings
from models.data.dataset import read_dataset
from models.data.event_log import read_stream_events, stream_parts
from models.features.build import user_realtime
from recstack.processes import Service
from serving.cache import INVALIDATED, key_prefix, user_key
from serving.events.consumer import (
    DEFAULT_GROUP,
    ConsumerConfig,
    StreamConsumer,
    build_consumer,
    dead_letter_key,
)
from serving.events.stream import stream_key
from stores.feature_store import (
    RedisAddress,
    online_features,
    open_store,
)
from tests.conftest import TEST_REDIS, applied_copy

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
AFTER = pd.Timestamp("2026-03-01T08:00:00Z")  # after the small world's last event
REALTIME = ("recent_items", "session_id", "session_event_count", "last_event_type",
            "last_event_ts")


@pytest.fixture()
def settings() -> Iterator[Settings]:
    """A project of its own in the test Redis (no flush: other tests share the db)."""
    address = RedisAddress.parse(TEST_REDIS)
    if not address.reachable():
        pytest.fail(f"no Redis at {address}: start one (`.ci/run` does) or set "
                    "RECSTACK_TEST_REDIS")
    project = f"recstack_consume_{uuid.uuid4().hex[:8]}"
    yield Settings(redis=TEST_REDIS, online_store="redis", feast_project=project)
    client = address.client()
    for key in client.scan_iter(match=f"*{project}*".encode(), count=1000):
        client.delete(key)


@pytest.fixture()
def world(small_world: Path, tmp_path: Path, settings: Settings) -> Path:
    """A copy of the small world, its features applied and materialized for `settings`."""
    return applied_copy(small_world, tmp_path / "world", settings)


def record(event_id: str, user: str, item: str | None, event_type: str = "view",
           at: pd.Timestamp = AFTER, session: str | None = "s-new", **fields: Any
           ) -> dict[str, Any]:
    """An event as the collector writes it (`Event.to_json`: context as JSON text)."""
    return {"event_id": event_id, "user_id": user, "item_id": item, "event_type": event_type,
            "value": None, "timestamp": at.isoformat(), "session_id": session, "query": None,
            "request_id": None, "context": None, **fields}


def xadd(client: redis.Redis, project: str, entries: list[dict[str, Any] | dict[bytes, bytes]]
         ) -> list[bytes]:
    pipe = client.pipeline(transaction=False)
    for entry in entries:
        fields = entry if isinstance(next(iter(entry)), bytes) else {
            "event": json.dumps(entry)}
        pipe.xadd(stream_key(project), fields)
    return list(pipe.execute())


def consumer(world: Path, settings: Settings, **config: Any) -> StreamConsumer:
    return build_consumer(world, ConsumerConfig(name="test", **config), settings,
                          announce=lambda _: None)


def redis_client(settings: Settings) -> redis.Redis:
    return RedisAddress.parse(settings.redis).client()


def expected_states(data: Path, users: list[str]) -> dict[str, dict[str, Any]]:
    """What build.py computes over the whole history: each user's last real-time row."""
    rows = user_realtime(read_dataset(data).events)
    last = rows.groupby("user_id").tail(1).set_index("user_id")
    return {user: {name: last.loc[user, name] for name in REALTIME} for user in users}


def assert_online_matches_history(data: Path, settings: Settings, users: list[str]) -> None:
    store = open_store(data, settings, announce=lambda _: None)
    online = online_features(store, "user_online", [{"user_id": u} for u in users])
    for n, (user, expected) in enumerate(expected_states(data, users).items()):
        got = {name: online[name][n] for name in REALTIME}
        assert got["recent_items"] == list(expected["recent_items"]), user
        assert {k: v for k, v in got.items() if k != "recent_items"} == {
            k: v for k, v in expected.items() if k != "recent_items"}, user


def test_an_event_updates_the_online_row_and_invalidates_the_cache(world: Path,
                                                                   settings: Settings) -> None:
    client = redis_client(settings)
    prefix = key_prefix(settings.feast_project)
    user, bystander = "u003", "u004"  # two of the test world's busiest users
    store = open_store(world, settings, announce=lambda _: None)
    before = online_features(store, "user_online", [{"user_id": user}])["recent_items"][0]
    assert before and "fresh-item" not in before
    cached_at = time.time() - 1
    for someone in (user, bystander):  # an answer each, cached as ResponseCache.put does
        client.hset(user_key(prefix, someone), "answer-field",
                    json.dumps({"at": cached_at, "answer": {"items": ["x"]}}))

    xadd(client, settings.feast_project, [
        record("fresh-1", user, "fresh-item"),
        # Impressions are not actions: not a recent item, no new state, no invalidation.
        record("shown-1", user, "shown-item", "impression", AFTER + pd.Timedelta(seconds=1)),
        record("shown-2", bystander, "shown-item", "impression"),
    ])
    done = consumer(world, settings).run(until_idle=True)
    assert (done.consumed, done.written, done.users, done.dead) == (3, 3, 1, 0)

    after = online_features(store, "user_online", [{"user_id": user}])
    assert after["recent_items"][0] == ["fresh-item", *before][:20]
    assert after["last_event_type"] == ["view"] and after["session_id"] == ["s-new"]
    assert_online_matches_history(world, settings, [user, bystander])

    invalidated = client.hgetall(user_key(prefix, user))
    assert set(invalidated) == {INVALIDATED.encode()}
    assert float(invalidated[INVALIDATED.encode()]) > cached_at
    assert client.hexists(user_key(prefix, bystander), "answer-field")
    assert set(read_stream_events(world)["event_id"].to_pylist()) == {
        "fresh-1", "shown-1", "shown-2"}


def test_poison_goes_to_the_dead_letter_stream_and_good_events_keep_flowing(
        world: Path, settings: Settings) -> None:
    client = redis_client(settings)
    project = settings.feast_project
    poison: list[tuple[dict[Any, Any], str]] = [
        ({b"event": b"{not json"}, "is not JSON"),
        ({b"event": json.dumps([1, 2]).encode()}, "not a JSON object"),
        ({b"something": b"else"}, "no `event` field"),
        ({b"event": json.dumps(record("bad-1", "u003", "i001", "rating")).encode()},
         "value: Field required for a rating event"),
        ({b"event": json.dumps({**record("bad-2", "u003", "i001"), "event_id": None}).encode()},
         "event_id: Field required"),
        ({b"event": json.dumps(record("bad-3", "u003", "i001", context="{oops")).encode()},
         "context: not JSON text"),
    ]
    ids = xadd(client, project, [record("good-1", "u003", "i001"),
                                 *[fields for fields, _ in poison],
                                 record("good-2", "u003", "i002", "purchase", value=12.5,
                                        context=json.dumps({"page": "cart"}))])
    worker = consumer(world, settings)
    done = worker.run(until_idle=True)
    assert (done.consumed, done.dead) == (2, len(poison))

    dead = client.xrange(dead_letter_key(project))
    assert [entry[b"source_id"] for _, entry in dead] == ids[1:-1]
    for (_, entry), (fields, reason) in zip(dead, poison, strict=True):
        assert reason in entry[b"reason"].decode()
        assert entry.get(b"event") == fields.get(b"event")  # verbatim, to re-send once fixed
    assert dead[2][1][b"entry.something"] == b"else"
    worker._dead_letter([(ids[1], poison[0][0], "moved again")])  # a retry after a crash
    assert client.xlen(dead_letter_key(project)) == len(poison)  # is no second letter
    assert client.xpending(stream_key(project), DEFAULT_GROUP)["pending"] == 0

    xadd(client, project, [record("good-3", "u003", "i003", at=AFTER + pd.Timedelta(hours=1))])
    assert worker.run(until_idle=True).consumed == 3
    streamed = read_stream_events(world)
    assert streamed["event_id"].to_pylist() == ["good-1", "good-2", "good-3"]
    assert streamed["context"].to_pylist()[1] == '{"page":"cart"}'
    assert_online_matches_history(world, settings, ["u003"])


def failing(times: int, error: Exception, action: Callable[..., Any]) -> Callable[..., Any]:
    calls = {"n": 0}

    def wrapped(*args: Any) -> Any:
        calls["n"] += 1
        if calls["n"] <= times:
            raise error
        return action(*args)
    return wrapped


def test_a_failing_sink_is_retried_and_nothing_is_acknowledged_before(
        world: Path, settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    client = redis_client(settings)
    project = settings.feast_project
    worker = consumer(world, settings, min_backoff_s=0.01)
    monkeypatch.setattr(worker.event_log, "append",
                        failing(1, OSError("disk full"), worker.event_log.append))
    monkeypatch.setattr(worker.online, "apply", failing(
        2, redis.ConnectionError("online store down"), worker.online.apply))
    xadd(client, project, [record(f"r{n}", "u004", f"i00{n}",
                                  at=AFTER + pd.Timedelta(seconds=n)) for n in range(3)])
    done = worker.run(until_idle=True)
    assert (done.consumed, done.written, done.retries) == (3, 3, 3)
    assert len(stream_parts(world)) == 1  # the retries wrote nothing twice
    assert client.xpending(stream_key(project), DEFAULT_GROUP)["pending"] == 0
    assert_online_matches_history(world, settings, ["u004"])


def test_stopping_while_a_sink_is_down_leaves_the_batch_pending(
        world: Path, settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    client = redis_client(settings)
    project = settings.feast_project
    worker = consumer(world, settings, min_backoff_s=0.01)

    def down(*_: Any) -> int:
        worker.stop.set()  # as SIGTERM would, while the store is unreachable
        raise redis.ConnectionError("online store down")
    monkeypatch.setattr(worker.online, "apply", down)
    xadd(client, project, [record("p1", "u005", "i001"), record("p2", "u005", "i002")])
    assert worker.run(until_idle=True).consumed == 0
    assert client.xpending(stream_key(project), DEFAULT_GROUP)["pending"] == 2
    # Restarted under the same name, it resumes its own pending entries first.
    assert consumer(world, settings).run(until_idle=True).consumed == 2
    assert client.xpending(stream_key(project), DEFAULT_GROUP)["pending"] == 0
    assert read_stream_events(world)["event_id"].to_pylist() == ["p1", "p2"]
    assert_online_matches_history(world, settings, ["u005"])


# -- a real kill -----------------------------------------------------------------------

def crash_events(world: Path, count: int, seed: int = 5) -> list[dict[str, Any]]:
    """A mixed stream: known and new users and items, sessions, searches, impressions,
    events sharing a timestamp, and some arriving late (older than their user's last)."""
    rng = random.Random(seed)
    known = read_dataset(world).events
    users = sorted(known["user_id"].unique())[:30] + [f"new-user-{n}" for n in range(8)]
    items = sorted(known["item_id"].dropna().unique())[:40] + [f"new-item-{n}" for n in range(8)]
    kinds = ["view", "click", "add_to_cart", "purchase", "search", "impression"]
    at, out = AFTER, []
    for n in range(count):
        at += pd.Timedelta(milliseconds=rng.choice([0, 0, 1, 400, 5000]))
        user = rng.choice(users)
        kind = rng.choices(kinds, weights=[50, 20, 8, 4, 6, 12])[0]
        when = at - pd.Timedelta(seconds=rng.randint(1, 3600)) if rng.random() < 0.03 else at
        session = rng.choice([None, f"{user}-s{n // 300}", f"{user}-s{n // 300}"])
        extra: dict[str, Any] = {"query": "red shoes"} if kind == "search" else {}
        if kind == "purchase":
            extra["value"] = 12.5
        out.append(record(f"c{n:05d}", user, None if kind == "search" else rng.choice(items),
                          kind, when, session, **extra))
    return out


def group_state(client: redis.Redis, project: str) -> tuple[int, int]:
    """(entries acknowledged by the group, entries not yet acknowledged)."""
    for group in client.xinfo_groups(stream_key(project)):
        if group["name"] == DEFAULT_GROUP.encode():
            pending, lag = int(group["pending"]), int(group["lag"] or 0)
            return int(group["entries-read"] or 0) - pending, lag + pending
    return 0, -1


def acked_at_least(bar: int, acked: int, _left: int) -> bool:
    return acked >= bar


def test_killed_consumer_resumes_with_nothing_lost_or_doubled(world: Path, settings: Settings,
                                                              tmp_path: Path) -> None:
    client = redis_client(settings)
    project = settings.feast_project
    events = crash_events(world, 3000)
    rng = random.Random(11)
    retried = [rng.choice(events) for _ in range(20)]  # at-least-once upstream, too
    poison: list[dict[Any, Any]] = [{b"event": b"{truncated"}, {b"event": b'{"event_id": "x"}'}]
    first = [*events[:1500], *poison[:1]]
    second = [*events[1500:], *retried, *poison[1:]]
    total = len(first) + len(second)
    env = {**os.environ, "RECSTACK_REDIS": settings.redis, "RECSTACK_ONLINE_STORE": "redis",
           "RECSTACK_FEAST_PROJECT": project}
    log = (tmp_path / "consumer.log").open("w")

    def start(name: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-m", "recstack", "consume", "--data", str(world), "--name", name,
             "--batch", "50", "--claim-idle", "1", "--compact-every", "0.03",
             "--progress-every", "1"], cwd=ROOT, env=env, stdout=log, stderr=log)

    def wait_until(proc: subprocess.Popen[bytes], done: Callable[[int, int], bool]) -> None:
        deadline = time.monotonic() + 90
        while not done(*group_state(client, project)):
            assert proc.poll() is None, (tmp_path / "consumer.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the consumer made no progress"
            time.sleep(0.01)

    xadd(client, project, first)
    # Killed three times mid-stream (the second time after more events arrive), once
    # restarted under another name so that the dead one's pending entries are claimed.
    for name, bar, more in (("c1", 300, second), ("c1", 1700, []), ("c2", 2600, [])):
        proc = start(name)
        wait_until(proc, functools.partial(acked_at_least, bar))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if more:
            xadd(client, project, more)
    proc = start("c2")
    wait_until(proc, lambda acked, left: acked == total and left == 0)
    proc.send_signal(signal.SIGTERM)  # stops cleanly
    assert proc.wait(timeout=30) == 0, (tmp_path / "consumer.log").read_text()[-3000:]

    on_disk = [i for p in stream_parts(world)
               for i in pq.read_table(p, columns=["event_id"])["event_id"].to_pylist()]
    assert len(on_disk) == len(set(on_disk)), "an event was written twice"
    assert set(on_disk) == {e["event_id"] for e in events}, "an event was lost"
    assert client.xpending(stream_key(project), DEFAULT_GROUP)["pending"] == 0
    assert client.xlen(dead_letter_key(project)) == len(poison)
    # The online state, built up across the kills, is what build.py computes from the
    # whole history, for every user who acted.
    acted = sorted({e["user_id"] for e in events if e["event_type"] != "impression"})
    assert_online_matches_history(world, settings, acted)


def test_the_cli_consumes_until_idle_and_names_a_missing_feature_repo(
        world: Path, settings: Settings, tmp_path: Path) -> None:
    import typer
    from typer.testing import CliRunner

    from recstack.cli.consume import consume

    app = typer.Typer()
    app.command(name="consume")(consume)
    app.command(name="other")(lambda: None)  # (two commands: typer keeps the name)
    env = {"RECSTACK_REDIS": settings.redis, "RECSTACK_FEAST_PROJECT": settings.feast_project,
           "RECSTACK_ONLINE_STORE": "redis"}
    xadd(redis_client(settings), settings.feast_project, [record("cli-1", "u006", "i001")])
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        ran = CliRunner().invoke(app, ["consume", "--data", str(world), "--until-idle"],
                                 env=env)
        assert ran.exit_code == 0, ran.output
        assert "consumed 1 events" in ran.output and "lag 0" in ran.output
        unapplied = tmp_path / "unapplied"
        shutil.copytree(world, unapplied, ignore=shutil.ignore_patterns("feature_store"))
        ran = CliRunner().invoke(app, ["consume", "--data", str(unapplied), "--until-idle"],
                                 env=env)
        assert ran.exit_code == 2 and "recstack features apply" in ran.output
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)


def test_a_stream_deleted_under_a_blocked_read_is_recreated(world: Path,
                                                           settings: Settings) -> None:
    """Deleting the stream (a flushed database) while the consumer blocks in XREADGROUP
    answers it with an UNBLOCKED error: it recreates the group and keeps consuming."""
    client = redis_client(settings)
    project = settings.feast_project
    worker = consumer(world, settings, block_ms=200)
    failures: list[BaseException] = []

    def run() -> None:
        try:
            worker.run()
        except BaseException as exc:
            failures.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()

    def consumed(n: int) -> None:
        deadline = time.monotonic() + 30
        while worker.counters.consumed < n:
            assert not failures, failures
            assert time.monotonic() < deadline, "the consumer made no progress"
            time.sleep(0.02)

    try:
        xadd(client, project, [record("gone-1", "u001", "i001")])
        consumed(1)
        time.sleep(0.3)  # blocked in XREADGROUP now
        client.delete(stream_key(project))
        time.sleep(0.5)
        xadd(client, project, [record("gone-2", "u001", "i002", at=AFTER + pd.Timedelta(1, "s"))])
        consumed(2)
    finally:
        worker.stop.set()
        thread.join(10)
    assert not failures and not thread.is_alive()
    assert {"gone-1", "gone-2"} <= set(read_stream_events(world)["event_id"].to_pylist())


def test_a_waiting_consumer_starts_once_the_first_run_has_put_the_data_in_place(
        small_world: Path, settings: Settings, tmp_path: Path) -> None:
    """On a fresh install the consumer pod starts before the first-run Job has written
    the data and applied the features: with --wait it waits instead of crash-looping."""
    data = tmp_path / "data"
    env = {"RECSTACK_REDIS": settings.redis, "RECSTACK_FEAST_PROJECT": settings.feast_project,
           "RECSTACK_ONLINE_STORE": "redis"}
    xadd(redis_client(settings), settings.feast_project, [record("wait-1", "u006", "i001")])
    waiting = Service("recstack consume", [
        sys.executable, "-m", "recstack", "consume", "--data", str(data), "--until-idle",
        "--wait", "120"], tmp_path / "consumer.log", env)
    try:
        deadline = time.monotonic() + 60
        while "waiting (up to 120 s) for the first run" not in " ".join(
                waiting.log_tail().split()):
            assert waiting.process.poll() is None, waiting.log_tail()
            assert time.monotonic() < deadline, waiting.log_tail()
            time.sleep(0.5)
        applied_copy(small_world, data, settings)  # what the first-run Job does
        assert waiting.process.wait(120) == 0, waiting.log_tail()
        said = " ".join(waiting.log_tail().split())
        assert "no events.parquet" in said and "consumed 1 events" in said, said
    finally:
        waiting.stop(10)


def test_a_consumer_that_waited_in_vain_says_why(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from recstack.cli import app

    ran = CliRunner().invoke(app, ["consume", "--data", str(tmp_path), "--wait", "0.1"])
    assert ran.exit_code == 2 and "not a data directory (no events.parquet)" in ran.output
