"""Simulated browsing sessions: search -> view -> click -> add_to_cart -> purchase -> rating.

Each session samples the items a user looks at from a softmax over the world's
true utility at that moment (Gumbel top-k), so what users see and buy follows
their drifting taste, item popularity and novelty. The funnel probabilities
depend on how well the item fits the user (affinity), the item's quality and
its price against the user's price sensitivity.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from models.data.synthetic.vocabulary import CATEGORIES, CATEGORY_PRICE, DEVICES, SEGMENTS
from models.data.synthetic.world import SECONDS_PER_DAY, World

# Hour-of-day weights: quiet nights, a lunch bump, an evening peak.
_HOURS = np.array([1, 0.6, 0.4, 0.3, 0.3, 0.5, 1, 2, 3, 3.5, 3.5, 4, 5, 4.5, 4, 4, 4.5,
                   5.5, 7, 8, 8.5, 7, 4, 2], dtype=float)
_HOURS /= _HOURS.sum()


def _sigmoid(x: float) -> float:
    return float(1.0 / (1.0 + np.exp(-x)))


def _session_starts(world: World, rng: np.random.Generator, user: int) -> np.ndarray:
    period = world.days * SECONDS_PER_DAY
    first = max(0.0, float(world.user_created_s[user]))
    active_days = (period - first) / SECONDS_PER_DAY
    rate = SEGMENTS[world.user_segment[user]]["sessions_per_day"]
    n = rng.poisson(rate * active_days * rng.lognormal(0.0, 0.4))
    if n == 0:
        return np.zeros(0)
    day = np.floor(rng.uniform(first / SECONDS_PER_DAY, world.days, n))
    hour = rng.choice(24, size=n, p=_HOURS)
    t = day * SECONDS_PER_DAY + hour * 3600 + rng.uniform(0, 3600, n)
    return np.sort(np.clip(t, first, period - 1))


@dataclass
class _Log:
    """The events written so far, numbered in the order they happen."""

    rows: list[tuple[object, ...]] = field(default_factory=list)

    def add(self, visit: _Visit, item_id: str | None, event_type: str, value: float | None,
            t: float, page: str, query: str | None = None) -> None:
        self.rows.append((f"e{len(self.rows):09d}", visit.user_id, item_id, event_type, value,
                          t, visit.session_id, query, visit.device, page))


@dataclass(frozen=True)
class _Visit:
    user: int
    user_id: str
    session_id: str
    device: str


def simulate_events(world: World, rng: np.random.Generator,
                    progress: Callable[[int], None] | None = None) -> pd.DataFrame:
    """All events of all users over the period, in the raw events layout."""
    log = _Log()
    cat_price = np.array([CATEGORY_PRICE[c] for c in world.categories])
    log_rel_price = np.log(world.item_price / cat_price[world.item_category])
    for user in range(len(world.user_ids)):
        user_id = world.user_ids[user]
        device = DEVICES[world.user_device[user]]
        for s_no, t0 in enumerate(_session_starts(world, rng, user)):
            visit = _Visit(user, user_id, f"{user_id}-s{s_no}", device)
            _session(world, rng, log, visit, float(t0), log_rel_price)
        if progress is not None:
            progress(1)
    return _frame(world, log.rows)


def _session(world: World, rng: np.random.Generator, log: _Log, visit: _Visit, t: float,
             log_rel_price: np.ndarray) -> None:
    """One visit: maybe a search first, then the items viewed, each down the funnel."""
    user = visit.user
    taste = world.taste(np.array([user]), t)[0]
    affinity = taste @ world.item_vec.T
    utility = world.utility_from_affinity(np.array([user]), affinity[None, :], t)[0]
    page = "home"
    if rng.random() < SEGMENTS[world.user_segment[user]]["search"]:
        # Searches use the words of the category the user leans to right now.
        cat = int(np.argmax(world.centres @ taste))
        nouns, tags = CATEGORIES[world.categories[cat]]
        query = f"{tags[rng.integers(len(tags))]} {nouns[rng.integers(len(nouns))]}"
        log.add(visit, None, "search", None, t, "search", query.lower())
        t += rng.uniform(2, 10)
        utility = np.where(world.item_category == cat, utility, -np.inf)
        page = "search"
    n_views = 1 + rng.poisson(3.0)
    gumbel = utility + rng.gumbel(size=utility.shape)
    available = int(np.isfinite(utility).sum())
    if available == 0:
        return
    n_views = min(n_views, available)
    top = np.argpartition(-gumbel, n_views - 1)[:n_views]
    for item in top[np.argsort(-gumbel[top])]:
        price_penalty = world.user_price_sensitivity[user] * log_rel_price[item]
        t = _funnel(world, rng, log, visit, int(item), float(affinity[item]), price_penalty,
                    page, t)


def _funnel(world: World, rng: np.random.Generator, log: _Log, visit: _Visit, item: int,
            a: float, price_penalty: float, page: str, t: float) -> float:
    """View, then maybe click, add to cart, purchase and rate one item; the time after."""
    q = float(world.item_quality[item])
    dwell = round(float(rng.lognormal(2.6 + 1.2 * a + 0.2 * q, 0.6)), 1)
    item_id = world.item_ids[item]
    log.add(visit, item_id, "view", dwell, t, page)
    t += dwell + rng.uniform(1, 20)
    if rng.random() >= _sigmoid(-3.0 + 3.5 * a + 0.3 * q):
        return t
    log.add(visit, item_id, "click", None, t, page)
    t += rng.uniform(5, 60)
    if rng.random() < _sigmoid(-2.5 + 3.0 * a + 0.4 * q - 1.5 * price_penalty):
        log.add(visit, item_id, "add_to_cart", None, t, page)
        t += rng.uniform(10, 120)
        if rng.random() < _sigmoid(-0.3 + 1.0 * a + 0.3 * q - price_penalty):
            log.add(visit, item_id, "purchase", float(world.item_price[item]), t, "checkout")
            t += rng.uniform(30, 300)
            if rng.random() < 0.35:
                log.add(visit, item_id, "rating", _stars(a, q, rng), t + 60, "review")
    elif rng.random() < 0.03:
        log.add(visit, item_id, "rating", _stars(a, q, rng), t + 60, "review")
    return t


def _frame(world: World, rows: list[tuple[object, ...]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["event_id", "user_id", "item_id", "event_type",
                                        "value", "t", "session_id", "query", "device",
                                        "page"])
    period = world.days * SECONDS_PER_DAY
    frame["t"] = frame["t"].clip(upper=period - 1e-3)
    frame["timestamp"] = (world.start + pd.to_timedelta(frame.pop("t"), unit="s")).dt.floor("ms")
    frame["context"] = [json.dumps({"device": d, "page": p}, sort_keys=True)
                        for d, p in zip(frame.pop("device"), frame.pop("page"), strict=True)]
    return frame


def _stars(affinity: float, quality: float, rng: np.random.Generator) -> float:
    return float(min(5, max(1, round(3.0 + 2.2 * affinity + 0.6 * quality
                                     + float(rng.normal(0, 0.6))))))
