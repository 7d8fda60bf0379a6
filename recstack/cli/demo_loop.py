"""`recstack demo`, steps 6 to 9: the real-time loop on the demo's trained version.

6. `recstack serve` (two A/B variants), `recstack collect` and `recstack consume`
   as child processes (logs in OUT/logs/), waited for until each is ready;
7. one busy user: recommendations over HTTP, a click and a purchase on the first
   item posted to the collector with the answer's request_id, and the time until the
   item is gone from their next recommendation (the consumer pushed their real-time
   features and invalidated their cached answers: the item is now seen);
8. simulated sessions through the same HTTP services: clicks, carts and purchases
   drawn from a seeded RNG, so the A/B result means nothing about real users;
9. the consumer drains the stream, the services stop, and `recstack report online`
   writes OUT/online-report.html.

Every step needs Redis (the collector appends to a Redis Stream): `unavailable` says
why the loop cannot run here, and the demo skips it with that line.
"""

from __future__ import annotations

import random
import secrets
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
from redis import Redis, RedisError

from contracts.settings import Settings
from recstack.cli.console import console, fail, progress_bar
from recstack.processes import Service, ServiceExited, free_port
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
RECOMMEND = "/v1/models/recommender:predict"
GROUP = "recstack-consumers"  # serving.events.consumer.DEFAULT_GROUP, `recstack consume`'s default
K = 10
POST_BATCH = 250  # events per POST to the collector (it takes up to 1,000)
READY_TIMEOUT_S = 600.0  # Ray Serve's graphs load in about a minute on 2 cores
FRESH_TIMEOUT_S = 30.0
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


@dataclass
class Tally:
    """What went through the services, so that the drain knows what to wait for."""
    answers: int = 0
    impressions: int = 0  # items in recommender answers: each is logged to the stream
    accepted: int = 0  # events the collector accepted
    by_type: dict[str, int] = field(default_factory=dict)
    by_variant: dict[str, int] = field(default_factory=dict)
    cached: int = 0
    degraded: int = 0

    def answer(self, answer: dict[str, Any]) -> None:
        self.answers += 1
        self.impressions += len(answer["items"])
        variant = str(answer.get("variant"))
        self.by_variant[variant] = self.by_variant.get(variant, 0) + len(answer["items"])
        self.cached += bool(answer.get("cached"))
        self.degraded += bool(answer.get("degraded"))


# -- the services ---------------------------------------------------------------------


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


def _http_ok(client: httpx.Client, url: str) -> bool:
    try:
        return client.get(url, timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False


def _consumer_joined(redis: Redis, project: str, name: str) -> bool:
    """The consumer has read from the stream as `name` (it is in its group)."""
    from serving.events.stream import stream_key

    try:
        consumers = redis.xinfo_consumers(stream_key(project), GROUP)
    except RedisError:  # no stream or no group yet
        return False
    return any(c["name"] in (name, name.encode()) for c in consumers)


def wait_ready(services: Services, client: httpx.Client,
               timeout: float = READY_TIMEOUT_S) -> float:
    """Until serve and collect answer their readiness routes and the consumer has
    joined its group; a line per service as it gets ready. Returns the seconds waited."""
    redis = RedisAddress.parse(services.settings.redis).client()
    checks: dict[str, Callable[[], bool]] = {
        "collect": lambda: _http_ok(client, f"{services.collect_url}/readyz"),
        "consume": lambda: _consumer_joined(redis, services.settings.feast_project,
                                            services.consumer_name),
        "serve": lambda: _http_ok(client, f"{services.serve_url}/v2/health/ready"),
    }
    began = time.monotonic()
    waiting = dict(checks)
    with console.status("") as status:
        while waiting:
            elapsed = time.monotonic() - began
            status.update(f"waiting for {', '.join(waiting)} ({elapsed:.0f} s; serve loads "
                          "the Ray Serve graphs)")
            for service in services.all():
                service.check()
            for name, ready in list(waiting.items()):
                if ready():
                    del waiting[name]
                    console.print(f"  {name} ready after {elapsed:.0f} s", highlight=False)
            if time.monotonic() - began > timeout:
                raise TimeoutError(f"{', '.join(waiting)} not ready in {timeout:.0f} s; "
                                   f"see the logs in {services.serve.log.parent}")
            if waiting:
                time.sleep(0.5)
    return time.monotonic() - began


# -- HTTP --------------------------------------------------------------------------------


def recommend(client: httpx.Client, services: Services, user: str, k: int = K,
              tally: Tally | None = None) -> dict[str, Any]:
    response = client.post(f"{services.serve_url}{RECOMMEND}",
                           json={"instances": [{"user_id": user, "k": k}]}, timeout=30.0)
    response.raise_for_status()
    answer: dict[str, Any] = response.json()["predictions"][0]
    if tally is not None:
        tally.answer(answer)
    return answer


def post_events(client: httpx.Client, services: Services, events: list[dict[str, Any]],
                tally: Tally) -> None:
    response = client.post(f"{services.collect_url}/v1/events", json={"events": events},
                           headers={"Authorization": f"Bearer {services.api_key}"},
                           timeout=30.0)
    if response.status_code != 202:
        raise RuntimeError(f"the collector answered {response.status_code}: {response.text}")
    body = response.json()
    if body["rejected"]:
        raise RuntimeError(f"the collector rejected events: {body['rejected'][:3]}")
    tally.accepted += int(body["accepted"])
    for event in events:
        tally.by_type[event["event_type"]] = tally.by_type.get(event["event_type"], 0) + 1


def event(user: str, item: str, event_type: str, answer: dict[str, Any], session: str,
          value: float | None = None) -> dict[str, Any]:
    """An event that answers a recommendation: it carries the answer's request_id, so
    the online report attributes it to the impression of `item`."""
    return {"event_id": f"demo-{uuid.uuid4().hex}", "user_id": user, "item_id": item,
            "event_type": event_type, "value": value,
            "timestamp": datetime.now(UTC).isoformat(), "session_id": session,
            "request_id": answer["request_id"]}


# -- 7: one user's loop --------------------------------------------------------------------


def _describe(items: list[dict[str, Any]], catalog: pd.DataFrame) -> str:
    rows = []
    for position, item in enumerate(items, start=1):
        item_id = str(item["item_id"])
        title, category = (catalog.loc[item_id, ["title", "category"]]
                           if item_id in catalog.index else ("?", "?"))
        rows.append(f"  {position}. {item_id}  {title} ({category}), score "
                    f"{item['score']:.2f}, {'+'.join(item['sources'])}")
    return "\n".join(rows)


@dataclass(frozen=True)
class Freshness:
    item: str
    seconds: float  # from the collector's 202 to the first answer without the item
    polls: int


def one_user(client: httpx.Client, services: Services, user: str, catalog: pd.DataFrame,
             tally: Tally) -> Freshness:
    """Recommend, click and buy the first item, and wait until it is gone."""
    before = recommend(client, services, user, k=5, tally=tally)
    if not before["items"]:
        raise RuntimeError(f"no recommendations for {user}")
    item = str(before["items"][0]["item_id"])
    console.print(f"{user} (variant {before['variant']}, model {before['model_version']}), "
                  f"request {before['request_id']}:", highlight=False)
    console.print(_describe(before["items"], catalog), highlight=False)
    price = catalog.loc[item, "price"] if item in catalog.index else None
    session = f"demo-{uuid.uuid4().hex[:12]}"
    post_events(client, services, [
        event(user, item, "click", before, session),
        event(user, item, "purchase", before, session,
              None if price is None or pd.isna(price) else float(price))], tally)
    accepted = time.perf_counter()
    console.print(f"posted a click and a purchase of {item} (request_id "
                  f"{before['request_id']}) to the collector: 202", highlight=False)
    polls = 0
    while True:
        after = recommend(client, services, user, k=5, tally=tally)
        polls += 1
        if item not in {str(i["item_id"]) for i in after["items"]}:
            break
        if time.perf_counter() - accepted > FRESH_TIMEOUT_S:
            raise RuntimeError(f"{item} still recommended to {user} {FRESH_TIMEOUT_S:.0f} s "
                               f"after the events were accepted; see "
                               f"{services.consume.log}")
        time.sleep(0.02)
    seconds = time.perf_counter() - accepted
    console.print(f"next recommendation ({polls} request(s), {seconds * 1000:.0f} ms after "
                  f"the 202): {item} is gone, seen now", highlight=False)
    console.print(_describe(after["items"], catalog), highlight=False)
    return Freshness(item, seconds, polls)


# -- 8: simulated sessions -----------------------------------------------------------------


def favourite_categories(events: pd.DataFrame, catalog: pd.DataFrame) -> dict[str, str]:
    acted = events[events["event_type"] != "impression"][["user_id", "item_id"]]
    acted = acted.join(catalog["category"], on="item_id").dropna(subset=["category"])
    return {str(u): str(c) for u, c in
            acted.groupby("user_id")["category"].agg(lambda s: s.mode().iat[0]).items()}


def session_events(user: str, answer: dict[str, Any], rng: random.Random,
                   favourite: str | None, catalog: pd.DataFrame) -> list[dict[str, Any]]:
    """One simulated visit's reactions to an answer: a click with a probability that
    falls with the position and rises for the user's favourite category; a click leads
    to the cart (40%), the cart to a purchase (50%) at the item's price."""
    session = f"sim-{uuid.UUID(int=rng.getrandbits(128)).hex[:12]}"
    out = []
    for position, shown in enumerate(answer["items"], start=1):
        item = str(shown["item_id"])
        category = catalog.loc[item, "category"] if item in catalog.index else None
        p_click = 0.25 / position**0.5 * (1.6 if category == favourite else 0.7)
        if rng.random() >= p_click:
            continue
        out.append(event(user, item, "click", answer, session))
        if rng.random() < 0.4:
            out.append(event(user, item, "add_to_cart", answer, session))
            if rng.random() < 0.5:
                price = catalog.loc[item, "price"] if item in catalog.index else None
                out.append(event(user, item, "purchase", answer, session,
                                 None if price is None or pd.isna(price) else float(price)))
    return out


def simulate(client: httpx.Client, services: Services, users: list[str],
             favourites: dict[str, str], catalog: pd.DataFrame, seed: int, tally: Tally,
             threads: int = 4) -> None:
    """A session per user (a recommendation, then reactions), requests from `threads`
    clients at once; events posted in batches of POST_BATCH. Each user's reactions
    come from an RNG of their own (seed and user id): the same whatever the order."""
    def visit(user: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        answer = recommend(client, services, user)
        return answer, session_events(user, answer, random.Random(f"{seed}:{user}"),
                                      favourites.get(user), catalog)

    pending: list[dict[str, Any]] = []
    with progress_bar("simulated sessions", len(users)) as advance, \
            ThreadPoolExecutor(threads) as pool:
        for answer, reactions in pool.map(visit, users):
            tally.answer(answer)
            pending.extend(reactions)
            advance(1)
            if len(pending) >= POST_BATCH:
                post_events(client, services, pending, tally)
                pending = []
    if pending:
        post_events(client, services, pending, tally)


# -- 9: drain, stop, report ------------------------------------------------------------------


def stream_counts(redis: Redis, project: str) -> tuple[int, int | None]:
    """(entries ever added to the events stream, entries the consumer group has not yet
    acknowledged; None before the group exists)."""
    from serving.events.consumer import group_progress
    from serving.events.stream import stream_key

    try:
        added = int(redis.xinfo_stream(stream_key(project))["entries-added"])
    except RedisError:  # no stream yet
        return 0, None
    progress = group_progress(redis, project, GROUP)
    return added, None if progress is None else progress.left


def drain(services: Services, expected: int, timeout: float = DRAIN_TIMEOUT_S) -> int:
    """Until the stream holds `expected` entries ever added (impressions are written
    just after their answers) and the consumer has acknowledged all of them. Returns
    how many were never written: impressions that serve failed to log (it logs a
    warning); given up on after nothing new came for QUIET_S with the lag at 0."""
    redis = RedisAddress.parse(services.settings.redis).client()
    began = changed = time.monotonic()
    last = -1
    with console.status("") as status:
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
            status.update(f"waiting for the consumer: {lag if lag is not None else '?'} "
                          f"entries to go")
            time.sleep(0.2)


# -- the steps -----------------------------------------------------------------------------


@contextmanager
def running(out: Path, registry: Path, settings: Settings) -> Iterator[Services]:
    services = start_services(out, registry, settings)
    try:
        yield services
    finally:
        services.stop()


@dataclass(frozen=True)
class LoopResult:
    freshness: Freshness
    tally: Tally
    report: Path


def run_loop(out: Path, registry: Path, busy_user: str, sessions: int, seed: int,
             settings: Settings, first_step: int = 6, total: int = 9) -> LoopResult:
    """Steps 6-9 on the demo's data directory OUT (applied, with features in Redis) and
    its registry (a version at stage dev)."""
    from models.data.dataset import read_dataset
    from recstack.cli.report import online

    n = first_step
    console.rule(f"{n}/{total} serving: recstack serve (A/B: control and diverse), "
                 "collect, consume")
    baseline, _ = stream_counts(RedisAddress.parse(settings.redis).client(),
                                settings.feast_project)
    dataset = read_dataset(out)
    catalog = dataset.items.set_index("item_id")
    tally = Tally()
    with httpx.Client() as client, running(out, registry, settings) as services:
        console.print(f"logs in {services.serve.log.parent}/; collector API key (generated "
                      f"for this run) in RECSTACK_API_KEYS", highlight=False)
        waited = wait_ready(services, client)
        console.print(f"serving on {services.serve_url}, collecting on "
                      f"{services.collect_url}, consuming into {out}/events_stream/ "
                      f"(ready in {waited:.0f} s)", highlight=False)

        console.rule(f"{n + 1}/{total} the loop for one user: recommend, click and buy, "
                     "recommend again")
        freshness = one_user(client, services, busy_user, catalog, tally)

        console.rule(f"{n + 2}/{total} simulated sessions through the same services")
        console.print(f"[bold yellow]a simulation:[/] {sessions} users each ask for {K} "
                      "recommendations and click, add to cart and buy some of them with "
                      f"probabilities from a seeded RNG (seed {seed}); the A/B result below "
                      "says nothing about real users")
        known = sorted(set(dataset.events["user_id"].astype(str)) - {busy_user})
        users = random.Random(seed).sample(known, min(sessions, len(known)))
        favourites = favourite_categories(
            dataset.events[dataset.events["user_id"].isin(users)], catalog)
        began = time.monotonic()
        simulate(client, services, users, favourites, catalog, seed, tally)
        actions = ", ".join(f"{count:,} {kind}" for kind, count in sorted(tally.by_type.items()))
        console.print(f"{tally.answers:,} answers ({tally.impressions:,} items shown: "
                      + ", ".join(f"{v} {c:,}" for v, c in sorted(tally.by_variant.items()))
                      + f"; {tally.cached} cached, {tally.degraded} degraded); events accepted "
                      f"by the collector: {tally.accepted:,} ({actions}); "
                      f"{time.monotonic() - began:.0f} s", highlight=False)

        console.rule(f"{n + 3}/{total} online report: drain the stream, stop, report")
        began = time.monotonic()
        missing = drain(services, baseline + tally.impressions + tally.accepted)
        filed = tally.impressions + tally.accepted - missing
        console.print(f"the consumer has filed all {filed:,} events, impressions included "
                      f"({time.monotonic() - began:.1f} s after the last post)"
                      + (f"; {missing:,} impressions were not logged (see "
                         f"{services.serve.log})" if missing else ""), highlight=False)
        began = time.monotonic()
    console.print(f"stopped serve, collect and consume ({time.monotonic() - began:.0f} s)",
                  highlight=False)
    report = out / "online-report.html"
    online(data=out, since=None, out=report)
    return LoopResult(freshness, tally, report)


def run_or_skip(out: Path, registry: Path, busy_user: str, sessions: int, seed: int,
                settings: Settings, first_step: int = 6, total: int = 9
                ) -> LoopResult | None:
    """The loop, or one line saying why it is skipped (no Redis). `settings` are
    the ones the services inherit: the demo read them from this environment."""
    why = unavailable(settings)
    if why is not None:
        console.print(f"[bold yellow]{first_step}-{total}/{total} serving, events and the "
                      f"online report skipped:[/] {why}", soft_wrap=True)
        return None
    try:
        return run_loop(out, registry, busy_user, sessions, seed, settings, first_step, total)
    except (ServiceExited, TimeoutError, RuntimeError, httpx.HTTPError) as exc:
        fail(f"{type(exc).__name__}: {exc}")
