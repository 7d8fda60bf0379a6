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
why the loop cannot run here, and the demo skips it with that line. The services and
the waits on them are in recstack/demo/services.py, the HTTP traffic and the
simulated users in recstack/demo/traffic.py; this module runs the steps and says
what happens.
"""

from __future__ import annotations

import random
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pandas as pd

from contracts.settings import Settings
from recstack.cli.console import console, fail, progress_bar
from recstack.demo.services import (
    Services,
    drain,
    running,
    stream_counts,
    unavailable,
    wait_ready,
)
from recstack.demo.traffic import (
    K,
    Tally,
    event,
    favourite_categories,
    post_events,
    price_of,
    recommend,
    simulate,
    until_gone,
)
from recstack.processes import ServiceExited
from stores.redis_address import RedisAddress

if TYPE_CHECKING:
    from models.data.dataset import Dataset


# -- 6: the services -------------------------------------------------------------------


def _ready(services: Services, client: httpx.Client) -> float:
    """`wait_ready`, with a line per service as it gets ready."""
    with console.status("") as status:
        return wait_ready(
            services, client,
            on_wait=lambda waiting, elapsed: status.update(
                f"waiting for {', '.join(waiting)} ({elapsed:.0f} s; serve loads the Ray "
                "Serve graphs)"),
            on_ready=lambda name, elapsed: console.print(
                f"  {name} ready after {elapsed:.0f} s", highlight=False))


# -- 7: one user's loop --------------------------------------------------------------------


def _describe(items: list[dict[str, Any]], catalog: pd.DataFrame) -> str:
    """An answer's items, a line each: id, title, category, score and sources."""
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
    session = f"demo-{uuid.uuid4().hex[:12]}"
    post_events(client, services, [
        event(user, item, "click", before, session),
        event(user, item, "purchase", before, session, price_of(catalog, item))], tally)
    accepted = time.perf_counter()
    console.print(f"posted a click and a purchase of {item} (request_id "
                  f"{before['request_id']}) to the collector: 202", highlight=False)
    after, polls = until_gone(client, services, user, item, accepted, tally)
    seconds = time.perf_counter() - accepted
    console.print(f"next recommendation ({polls} request(s), {seconds * 1000:.0f} ms after "
                  f"the 202): {item} is gone, seen now", highlight=False)
    console.print(_describe(after["items"], catalog), highlight=False)
    return Freshness(item, seconds, polls)


# -- 8: simulated sessions -----------------------------------------------------------------


def _sessions(client: httpx.Client, services: Services, dataset: Dataset,
              catalog: pd.DataFrame, busy_user: str, sessions: int, seed: int,
              tally: Tally) -> None:
    """`sessions` users other than the busy one, drawn with `seed`, each visit
    simulated; what went through, in a line."""
    console.print(f"[bold yellow]a simulation:[/] {sessions} users each ask for {K} "
                  "recommendations and click, add to cart and buy some of them with "
                  f"probabilities from a seeded RNG (seed {seed}); the A/B result below "
                  "says nothing about real users")
    known = sorted(set(dataset.events["user_id"].astype(str)) - {busy_user})
    users = random.Random(seed).sample(known, min(sessions, len(known)))
    favourites = favourite_categories(
        dataset.events[dataset.events["user_id"].isin(users)], catalog)
    began = time.monotonic()
    with progress_bar("simulated sessions", len(users)) as advance:
        simulate(client, services, users, favourites, catalog, seed, tally,
                 advance=advance)
    actions = ", ".join(f"{count:,} {kind}" for kind, count in sorted(tally.by_type.items()))
    console.print(f"{tally.answers:,} answers ({tally.impressions:,} items shown: "
                  + ", ".join(f"{v} {c:,}" for v, c in sorted(tally.by_variant.items()))
                  + f"; {tally.cached} cached, {tally.degraded} degraded); events accepted "
                  f"by the collector: {tally.accepted:,} ({actions}); "
                  f"{time.monotonic() - began:.0f} s", highlight=False)


# -- 9: drain, stop, report ------------------------------------------------------------------


def _drained(services: Services, baseline: int, tally: Tally) -> None:
    """Until the consumer has filed every event that went through (`drain`)."""
    began = time.monotonic()
    with console.status("") as status:
        missing = drain(services, baseline + tally.impressions + tally.accepted,
                        on_wait=lambda lag: status.update(
                            f"waiting for the consumer: {lag if lag is not None else '?'} "
                            f"entries to go"))
    filed = tally.impressions + tally.accepted - missing
    console.print(f"the consumer has filed all {filed:,} events, impressions included "
                  f"({time.monotonic() - began:.1f} s after the last post)"
                  + (f"; {missing:,} impressions were not logged (see "
                     f"{services.serve.log})" if missing else ""), highlight=False)


# -- the steps -----------------------------------------------------------------------------


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
        waited = _ready(services, client)
        console.print(f"serving on {services.serve_url}, collecting on "
                      f"{services.collect_url}, consuming into {out}/events_stream/ "
                      f"(ready in {waited:.0f} s)", highlight=False)

        console.rule(f"{n + 1}/{total} the loop for one user: recommend, click and buy, "
                     "recommend again")
        freshness = one_user(client, services, busy_user, catalog, tally)

        console.rule(f"{n + 2}/{total} simulated sessions through the same services")
        _sessions(client, services, dataset, catalog, busy_user, sessions, seed, tally)

        console.rule(f"{n + 3}/{total} online report: drain the stream, stop, report")
        _drained(services, baseline, tally)
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
