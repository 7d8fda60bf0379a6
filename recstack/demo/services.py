"""The demo's services: `recstack serve` (two A/B variants), `recstack collect` and
`recstack consume` as child processes on the demo's data directory (logs in
OUT/logs/), waited for until each is ready (`wait_ready`), and the events stream
waited on until the consumer has filed what went through (`drain`).

Every one needs Redis (the collector appends to a Redis Stream): `unavailable` says
why they cannot run with the given settings.
"""

from __future__ import annotations

import secrets
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from redis import Redis, RedisError

from contracts.settings import Settings
from recstack.processes import Service, free_port
from serving.events.consumer_config import DEFAULT_GROUP  # `recstack consume`'s
from stores.redis_address import RedisAddress

# Two variants of the rules, half the users each; stage pointers are not re-read
# (nothing is promoted during the demo).
SERVE_YAML = """\
# The demo's serve.yaml (recstack demo writes it): an A/B test of the diversity rule.
experiment: demo
variants:
  - {name: control, weight: 0.5}
  - {name: diverse, weight: 0.5, rules: {diversity_weight: 0.6}}
watch_interval_s: 0
"""
READY_TIMEOUT_S = 600.0  # Ray Serve's graphs load in about a minute on 2 cores
DRAIN_TIMEOUT_S = 120.0
QUIET_S = 10.0  # no new entries for this long: nothing more is coming


def unavailable(settings: Settings) -> str | None:
    """Why the services cannot run with these settings, or None when they can."""
    address = RedisAddress.parse(settings.redis)
    if settings.online_store == "sqlite":
        return ("RECSTACK_ONLINE_STORE=sqlite, and the services read features from and "
                "write events to Redis; unset it (with a Redis at RECSTACK_REDIS) to run them")
    if not address.reachable():
        return (f"no Redis at {address} (RECSTACK_REDIS), and the event collector needs "
                "Redis Streams; start Redis or set RECSTACK_REDIS=host:port[,db=N], then "
                "rerun the demo to run them")
    return None


@dataclass
class Services:
    serve: Service
    collect: Service
    consume: Service
    serve_url: str
    collect_url: str
    api_key: str
    consumer_name: str
    settings: Settings

    def all(self) -> list[Service]:
        return [self.serve, self.collect, self.consume]

    def stop(self) -> None:
        """The server first (no impressions after it), the consumer last."""
        for service in self.all():
            service.stop()


def start_services(out: Path, registry: Path, settings: Settings) -> Services:
    """Start serve, collect and consume on OUT (logs in OUT/logs/), with a fresh API
    key; returns at once (see `wait_ready`)."""
    config = out / "serve.yaml"
    config.write_text(SERVE_YAML)
    api_key = secrets.token_urlsafe(24)
    env = {"RECSTACK_API_KEYS": api_key, "PYTHONUNBUFFERED": "1"}
    serve_port, collect_port = free_port(), free_port()
    consumer_name = f"demo-{uuid.uuid4().hex[:8]}"
    cli = [sys.executable, "-m", "recstack"]
    logs = out / "logs"
    serve = Service("serve", [*cli, "serve", "--registry", str(registry), "--stage", "dev",
                              "--data", str(out), "--port", str(serve_port),
                              "--config", str(config)],
                    logs / "serve.log", env, uses_ray=True)
    collect = Service("collect", [*cli, "collect", "--port", str(collect_port)],
                      logs / "collect.log", env)
    consume = Service("consume", [*cli, "consume", "--data", str(out), "--name",
                                  consumer_name, "--progress-every", "10"],
                      logs / "consume.log", env)
    return Services(serve, collect, consume, f"http://127.0.0.1:{serve_port}",
                    f"http://127.0.0.1:{collect_port}", api_key, consumer_name, settings)


@contextmanager
def running(out: Path, registry: Path, settings: Settings) -> Iterator[Services]:
    """The services, started (`start_services`) and stopped on the way out."""
    services = start_services(out, registry, settings)
    try:
        yield services
    finally:
        services.stop()


def _http_ok(client: httpx.Client, url: str) -> bool:
    try:
        return client.get(url, timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False


def _consumer_joined(redis: Redis, project: str, name: str) -> bool:
    """The consumer has read from the stream as `name` (it is in its group)."""
    from serving.events.stream import stream_key

    try:
        consumers = redis.xinfo_consumers(stream_key(project), DEFAULT_GROUP)
    except RedisError:  # no stream or no group yet
        return False
    return any(c["name"] in (name, name.encode()) for c in consumers)


def _nothing(*_: object) -> None:
    pass


def wait_ready(services: Services, client: httpx.Client, timeout: float = READY_TIMEOUT_S,
               on_wait: Callable[[list[str], float], None] = _nothing,
               on_ready: Callable[[str, float], None] = _nothing) -> float:
    """Until serve and collect answer their readiness routes and the consumer has
    joined its group; `on_wait(names, seconds)` before each look with the services
    still waited for, `on_ready(name, seconds)` as each gets ready. Returns the seconds
    waited."""
    redis = RedisAddress.parse(services.settings.redis).client()
    checks: dict[str, Callable[[], bool]] = {
        "collect": lambda: _http_ok(client, f"{services.collect_url}/readyz"),
        "consume": lambda: _consumer_joined(redis, services.settings.feast_project,
                                            services.consumer_name),
        "serve": lambda: _http_ok(client, f"{services.serve_url}/v2/health/ready"),
    }
    began = time.monotonic()
    waiting = dict(checks)
    while waiting:
        elapsed = time.monotonic() - began
        on_wait(list(waiting), elapsed)
        for service in services.all():
            service.check()
        for name, ready in list(waiting.items()):
            if ready():
                del waiting[name]
                on_ready(name, elapsed)
        if time.monotonic() - began > timeout:
            raise TimeoutError(f"{', '.join(waiting)} not ready in {timeout:.0f} s; "
                               f"see the logs in {services.serve.log.parent}")
        if waiting:
            time.sleep(0.5)
    return time.monotonic() - began


def stream_counts(redis: Redis, project: str) -> tuple[int, int | None]:
    """(entries ever added to the events stream, entries the consumer group has not yet
    acknowledged; None before the group exists)."""
    from serving.events.consumer import group_progress
    from serving.events.stream import stream_key

    try:
        added = int(redis.xinfo_stream(stream_key(project))["entries-added"])
    except RedisError:  # no stream yet
        return 0, None
    progress = group_progress(redis, project, DEFAULT_GROUP)
    return added, None if progress is None else progress.left


def drain(services: Services, expected: int, timeout: float = DRAIN_TIMEOUT_S,
          on_wait: Callable[[int | None], None] = _nothing) -> int:
    """Until the stream holds `expected` entries ever added (impressions are written
    just after their answers) and the consumer has acknowledged all of them;
    `on_wait(lag)` between looks. Returns how many were never written: impressions
    that serve failed to log (it logs a warning); given up on after nothing new came
    for QUIET_S with the lag at 0."""
    redis = RedisAddress.parse(services.settings.redis).client()
    began = changed = time.monotonic()
    last = -1
    while True:
        added, lag = stream_counts(redis, services.settings.feast_project)
        now = time.monotonic()
        if added != last:
            last, changed = added, now
        if lag == 0 and (added >= expected or now - changed > QUIET_S):
            return max(0, expected - added)
        services.consume.check()
        if now - began > timeout:
            raise TimeoutError(f"the consumer has not drained the stream in "
                               f"{timeout:.0f} s (lag {lag}); see {services.consume.log}")
        on_wait(lag)
        time.sleep(0.2)
