"""The collector over real HTTP (uvicorn on a free port) against the real test Redis:
202 only once events are in the stream, once per event_id, partial batches, limits,
API keys and their rotation, a Redis outage (503, nothing accepted), health routes."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
import uvicorn
from fastapi import FastAPI
from typer.testing import CliRunner

from contracts.settings import Settings
from recstack.cli import app as cli
from serving.api_keys import ApiKeys
from serving.events.collector import MAX_BATCH, CollectorSettings, create_app
from serving.events.stream import seen_key, stream_key
from stores.feature_store import RedisAddress
from tests.redis_proxy import RedisProxy

pytestmark = pytest.mark.integration

PROJECT = "recstack_events_test"
INLINE_KEY = "inline-key"
FILE_KEY = "file-key-1"


def event(n: int, **fields: Any) -> dict[str, Any]:
    return {"event_id": f"e{n}", "user_id": f"u{n % 3}", "item_id": f"i{n}",
            "event_type": "view", "value": 1.5, "timestamp": "2024-05-01T12:00:00Z",
            **fields}


@contextmanager
def running(app: FastAPI) -> Iterator[int]:
    """The app on uvicorn in a thread, on a socket bound before it starts (no port race)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = int(sock.getsockname()[1])
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: Any


def call(port: int, path: str, body: Any = None, raw: bytes | None = None,
         key: str | None = INLINE_KEY, header: str = "bearer") -> Reply:
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    headers = {"content-type": "application/json"}
    if key is not None:
        headers.update({"Authorization": f"Bearer {key}"} if header == "bearer"
                       else {"X-API-Key": key})
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data, headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            status, text, got = response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as exc:
        status, text, got = exc.code, exc.read(), dict(exc.headers)
    return Reply(status, {k.lower(): v for k, v in got.items()}, json.loads(text))


def stored(client: redis.Redis) -> list[dict[str, Any]]:
    return [json.loads(fields[b"event"]) for _, fields in client.xrange(stream_key(PROJECT))]


@dataclass
class Collector:
    port: int
    redis: redis.Redis
    keys_file: Path

    def post(self, body: Any, **kwargs: Any) -> Reply:
        return call(self.port, "/v1/events", body, **kwargs)


@pytest.fixture()
def redis_address(redis_settings: Settings) -> RedisAddress:
    return RedisAddress.parse(redis_settings.redis)  # the fixture flushed the test db


@pytest.fixture()
def collector(redis_address: RedisAddress, tmp_path: Path) -> Iterator[Collector]:
    keys_file = tmp_path / "api-keys"
    keys_file.write_text(f"# rotated by the secret store\n\n{FILE_KEY}\n")
    settings = CollectorSettings(redis=redis_address, project=PROJECT,
                                 api_keys=ApiKeys([INLINE_KEY], keys_file))
    with running(create_app(settings)) as port:
        yield Collector(port, redis_address.client(), keys_file)


def test_single_event_and_batch_are_stored_once(collector: Collector) -> None:
    one = collector.post(event(0))
    assert (one.status, one.body) == (202, {"accepted": 1, "duplicates": 0, "rejected": []})
    batch = {"events": [event(n) for n in range(1, 4)]}
    assert collector.post(batch).body == {"accepted": 3, "duplicates": 0, "rejected": []}
    assert [e["event_id"] for e in stored(collector.redis)] == ["e0", "e1", "e2", "e3"]
    assert stored(collector.redis)[0] == {
        "event_id": "e0", "user_id": "u0", "item_id": "i0", "event_type": "view",
        "value": 1.5, "timestamp": "2024-05-01T12:00:00.000000+00:00", "session_id": None,
        "query": None, "request_id": None, "context": None}
    assert 0 < collector.redis.ttl(seen_key(PROJECT, "e0")) <= 7 * 24 * 3600

    # A retry adds nothing, and says so; a repeat inside one batch counts as a duplicate.
    again = collector.post(batch)
    assert (again.status, again.body) == (202, {"accepted": 0, "duplicates": 3,
                                                "rejected": []})
    twice = collector.post({"events": [event(4), event(4), event(1)]})
    assert twice.body == {"accepted": 1, "duplicates": 2, "rejected": []}
    # Without an event_id, the id derived from the content dedupes a retry too.
    anonymous = {k: v for k, v in event(5).items() if k != "event_id"}
    assert collector.post(anonymous).body["accepted"] == 1
    assert collector.post(anonymous).body == {"accepted": 0, "duplicates": 1, "rejected": []}
    ids = [e["event_id"] for e in stored(collector.redis)]
    assert len(ids) == len(set(ids)) == 6


def test_a_mixed_batch_keeps_the_valid_events_and_names_each_bad_one(
        collector: Collector) -> None:
    batch = [event(0), event(1, value=-1), event(2), event(3, colour="red"),
             {"user_id": "u", "event_type": "search"}, "not an event", event(4, item_id=None)]
    reply = collector.post({"events": batch})
    assert reply.status == 202
    assert reply.body["accepted"] == 2 and reply.body["duplicates"] == 0
    assert reply.body["rejected"] == [
        {"index": 1, "reason": "events[1].value: Input should be greater than or equal to 0"},
        {"index": 3, "reason": "events[3].colour: Extra inputs are not permitted"},
        {"index": 4, "reason": "events[4].query: Field required for a search event "
                               "(the search text)"},
        {"index": 5, "reason": "events[5]: Input should be a valid dictionary or instance "
                               "of Event"},
        {"index": 6, "reason": "events[6].item_id: Field required for a view event (only "
                               "search events may omit it)"},
    ]
    assert [e["event_id"] for e in stored(collector.redis)] == ["e0", "e2"]
    # A batch with nothing valid is still answered per event (202, accepted 0); a lone
    # bad event is a 400, named bare.
    none = collector.post({"events": [event(7, value=-1)]})
    assert none.status == 202 and none.body["accepted"] == 0
    assert none.body["rejected"][0]["index"] == 0
    # An offset near year 1 overflowed converting to UTC: a 500 (issue 17).
    edge = collector.post(event(9, timestamp="0001-01-01T00:00:00+01:00"))
    assert edge.status == 400
    assert edge.body["rejected"][0]["reason"].startswith("timestamp: Input should be between")
    lone = collector.post(event(8, event_type="fly"))
    assert lone.status == 400
    assert lone.body["rejected"][0]["reason"].startswith("event_type: Input should be 'view'")
    assert len(stored(collector.redis)) == 2


def test_batch_limits_and_malformed_bodies_are_4xx(collector: Collector) -> None:
    too_many = collector.post({"events": [event(n) for n in range(MAX_BATCH + 1)]})
    assert too_many.status == 400 and "at most 1000" in too_many.body["detail"]
    assert collector.post({"events": [event(n) for n in range(MAX_BATCH)]}).status == 202
    cases: list[tuple[bytes, str]] = [
        (b"{not json", "body is not valid JSON: unexpected character, expected a string key"),
        (b"", "empty body"),
        (b"[1, 2]", "body should be an event object or {\"events\": [...]}, got an array"),
        (b"3", "got a number"),
        (json.dumps({"events": {}}).encode(), "events: should be an array"),
        (json.dumps({"events": []}).encode(), "events: empty"),
        (json.dumps({"events": [event(0)], "more": 1}).encode(),
         "unexpected field(s) beside events: more"),
        (b'{"user_id": "u", "item_id": "i", "event_type": "view", "value": NaN}',
         "body is not valid JSON"),
        (b'{"user_id": "u\\ud800", "item_id": "i", "event_type": "view"}',
         "no low surrogate"),
        (b'{"\\udfff": 1}', "body is not valid JSON"),
        (b"\xff\xfe{", "body is not valid JSON"),
        (b"[" * 100_000, "body is not valid JSON"),  # nested too deep for the parser
    ]
    for raw, expected in cases:
        reply = collector.post(None, raw=raw)
        assert reply.status == 400, (raw[:20], reply)
        assert expected in reply.body["detail"], (raw[:20], reply.body)
    assert len(stored(collector.redis)) == MAX_BATCH


def test_api_keys_bearer_header_and_rotation(collector: Collector) -> None:
    for key in (None, "wrong"):
        reply = collector.post(event(0), key=key)
        assert reply.status == 401, reply
        assert reply.headers["www-authenticate"].startswith("Bearer")
    assert collector.post(event(1), key=INLINE_KEY, header="bearer").status == 202
    assert collector.post(event(2), key=FILE_KEY, header="x-api-key").status == 202
    assert call(collector.port, "/healthz", key=None).status == 200  # probes need no key

    # Rotated in place, then the Kubernetes way: a symlink swapped to a new file.
    collector.keys_file.write_text("file-key-2-longer\n")
    assert collector.post(event(3), key=FILE_KEY).status == 401
    assert collector.post(event(3), key="file-key-2-longer").status == 202
    (collector.keys_file.parent / "v3").write_text("file-key-3\n")
    link = collector.keys_file.parent / "link"
    link.symlink_to("v3")
    os.replace(link, collector.keys_file)
    assert collector.post(event(4), key="file-key-2-longer").status == 401
    assert collector.post(event(4), key="file-key-3", header="x-api-key").status == 202
    assert collector.post(event(5), key=INLINE_KEY).status == 202  # the env key stays
    assert [e["event_id"] for e in stored(collector.redis)] == ["e1", "e2", "e3", "e4", "e5"]


def test_redis_outage_is_503_with_retry_after_and_accepts_nothing(
        redis_address: RedisAddress) -> None:
    proxy = RedisProxy((redis_address.host, redis_address.port))
    proxy.start()
    through = RedisAddress.parse(proxy.address(redis_address.db))
    settings = CollectorSettings(redis=through, project=PROJECT, api_keys=ApiKeys([INLINE_KEY]))
    direct = redis_address.client()
    try:
        with running(create_app(settings)) as port:
            assert call(port, "/readyz").status == 200
            assert call(port, "/v1/events", event(0)).status == 202
            proxy.stop()
            began = time.monotonic()
            down = call(port, "/v1/events", {"events": [event(1), event(2)]})
            assert time.monotonic() - began < 2.5  # short timeouts, no backoff
            assert down.status == 503, down
            assert down.headers["retry-after"] == "2"
            assert "nothing was accepted" in down.body["detail"]
            assert "accepted" not in down.body
            assert call(port, "/readyz").status == 503
            assert call(port, "/healthz").status == 200
            assert [e["event_id"] for e in stored(direct)] == ["e0"]
            proxy.start()
            back = call(port, "/v1/events", {"events": [event(1), event(2)]})
            assert back.body == {"accepted": 2, "duplicates": 0, "rejected": []}
            assert call(port, "/readyz").status == 200
    finally:
        proxy.stop()
    assert [e["event_id"] for e in stored(direct)] == ["e0", "e1", "e2"]


def test_openapi_spec_and_insecure_mode(redis_address: RedisAddress) -> None:
    settings = CollectorSettings(redis=redis_address, project=PROJECT, api_keys=None)
    with running(create_app(settings)) as port:
        spec = call(port, "/openapi.json", key=None).body
        post = spec["paths"]["/v1/events"]["post"]
        body = post["requestBody"]["content"]["application/json"]["schema"]["oneOf"]
        assert body[1]["properties"]["events"]["maxItems"] == MAX_BATCH
        assert set(post["responses"]) >= {"202", "400", "401", "413", "503"}
        assert call(port, "/v1/events", event(0), key=None).status == 202  # no key needed


def test_keys_are_required_to_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`recstack collect` reads the environment once and hands the collector its
    settings; a missing or bad one is exit code 2 and one line, before any port opens."""
    from serving.events import collector

    built: list[CollectorSettings] = []
    monkeypatch.setattr(collector, "create_app", built.append)
    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: None)
    unset = {"RECSTACK_API_KEYS": "", "RECSTACK_API_KEYS_FILE": "",
             "RECSTACK_EVENTS_DEDUPE_TTL_S": "", "COLUMNS": "200"}

    def collect(*args: str, **env: str) -> Any:
        built.clear()
        return CliRunner().invoke(cli, ["collect", *args], env={**unset, **env})

    def refused(message: str, *args: str, **env: str) -> None:
        result = collect(*args, **env)
        assert result.exit_code == 2, result.output
        assert result.stderr.startswith(f"error: {message}"), result.stderr
        assert result.stderr.count("\n") == 1 and not built, result.stderr

    refused("no API keys: set RECSTACK_API_KEYS")
    assert "--insecure-no-auth" in collect().stderr
    refused(f"RECSTACK_API_KEYS_FILE={tmp_path / 'missing'}: cannot read it",
            RECSTACK_API_KEYS_FILE=str(tmp_path / "missing"))
    (tmp_path / "empty").write_text("# no keys yet\n")
    refused("RECSTACK_API_KEYS / RECSTACK_API_KEYS_FILE hold no key",
            RECSTACK_API_KEYS_FILE=str(tmp_path / "empty"))
    refused("RECSTACK_EVENTS_DEDUPE_TTL_S: Input should be greater than or equal to 1",
            RECSTACK_API_KEYS="a", RECSTACK_EVENTS_DEDUPE_TTL_S="0")
    refused("RECSTACK_EVENTS_DEDUPE_TTL_S: Input should be a valid integer",
            RECSTACK_API_KEYS="a", RECSTACK_EVENTS_DEDUPE_TTL_S="a week")
    refused("RECSTACK_REDIS must look like host:port", RECSTACK_API_KEYS="a",
            RECSTACK_REDIS="localhost")

    insecure = collect("--insecure-no-auth")
    assert insecure.exit_code == 0 and built[0].api_keys is None, insecure.output
    assert "anyone who reaches this port can write events" in insecure.stderr
    started = collect(RECSTACK_API_KEYS=" a, b ,", RECSTACK_FEAST_PROJECT="p",
                      RECSTACK_EVENTS_DEDUPE_TTL_S="60")
    assert started.exit_code == 0, started.output
    settings = built[0]
    assert settings.project == "p" and settings.dedupe_ttl_s == 60
    assert settings.api_keys is not None and settings.api_keys.accepts("b")
    assert not settings.api_keys.accepts("")
    assert collect(RECSTACK_API_KEYS="a").exit_code == 0
    assert built[0].dedupe_ttl_s == 7 * 24 * 3600  # unset: the stream's default
    both = collect("--insecure-no-auth", RECSTACK_API_KEYS="a")
    assert both.exit_code == 0 and built[0].api_keys is not None
    assert "--insecure-no-auth ignored" in both.stderr
