"""The demo's traffic through its services (recstack/demo/services.py), over HTTP:
recommendations from serve, events posted to the collector that answer them (each
with the answer's request_id, so the online report attributes it), `Tally` of what
went through (what the drain waits for), one user's wait until an item they bought
is gone from their answer (`until_gone`), and simulated sessions (`simulate`):
clicks, carts and purchases drawn from a seeded RNG, so the A/B result means
nothing about real users."""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import pandas as pd

from recstack.demo.services import Services

RECOMMEND = "/v1/models/recommender:predict"
K = 10
POST_BATCH = 250  # events per POST to the collector (it takes up to 1,000)
FRESH_TIMEOUT_S = 30.0


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


def price_of(catalog: pd.DataFrame, item: str) -> float | None:
    """The item's price in the catalog (indexed by item_id), a purchase's value; None
    for an item it lacks or without a price."""
    price = catalog.loc[item, "price"] if item in catalog.index else None
    return None if price is None or pd.isna(price) else float(price)


def until_gone(client: httpx.Client, services: Services, user: str, item: str,
               since: float, tally: Tally, k: int = 5) -> tuple[dict[str, Any], int]:
    """Recommend to `user` until `item` is not in the answer: (that answer, requests
    made). RuntimeError when it is still there FRESH_TIMEOUT_S after `since` (a
    `time.perf_counter()`)."""
    polls = 0
    while True:
        after = recommend(client, services, user, k=k, tally=tally)
        polls += 1
        if item not in {str(i["item_id"]) for i in after["items"]}:
            return after, polls
        if time.perf_counter() - since > FRESH_TIMEOUT_S:
            raise RuntimeError(f"{item} still recommended to {user} {FRESH_TIMEOUT_S:.0f} s "
                               f"after the events were accepted; see "
                               f"{services.consume.log}")
        time.sleep(0.02)


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
                out.append(event(user, item, "purchase", answer, session,
                                 price_of(catalog, item)))
    return out


def simulate(client: httpx.Client, services: Services, users: list[str],
             favourites: dict[str, str], catalog: pd.DataFrame, seed: int, tally: Tally,
             threads: int = 4, advance: Callable[[int], None] = lambda n: None) -> None:
    """A session per user (a recommendation, then reactions), requests from `threads`
    clients at once; events posted in batches of POST_BATCH; `advance(1)` after each
    session. Each user's reactions come from an RNG of their own (seed and user id):
    the same whatever the order."""
    def visit(user: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        answer = recommend(client, services, user)
        return answer, session_events(user, answer, random.Random(f"{seed}:{user}"),
                                      favourites.get(user), catalog)

    pending: list[dict[str, Any]] = []
    with ThreadPoolExecutor(threads) as pool:
        for answer, reactions in pool.map(visit, users):
            tally.answer(answer)
            pending.extend(reactions)
            advance(1)
            if len(pending) >= POST_BATCH:
                post_events(client, services, pending, tally)
                pending = []
    if pending:
        post_events(client, services, pending, tally)
