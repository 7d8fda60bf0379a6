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


def simulate_events(world: World, rng: np.random.Generator,
                    progress: Callable[[int], None] | None = None) -> pd.DataFrame:
    """All events of all users over the period, in the raw events layout."""
    rows: list[tuple[object, ...]] = []
    seq = 0
    cat_price = np.array([CATEGORY_PRICE[c] for c in world.categories])
    log_rel_price = np.log(world.item_price / cat_price[world.item_category])

    for user in range(len(world.user_ids)):
        user_id = world.user_ids[user]
        segment = SEGMENTS[world.user_segment[user]]
        device = DEVICES[world.user_device[user]]
        for s_no, t0 in enumerate(_session_starts(world, rng, user)):
            session_id = f"{user_id}-s{s_no}"
            t = float(t0)
            taste = world.taste(np.array([user]), t)[0]
            affinity = taste @ world.item_vec.T
            utility = world.utility_from_affinity(np.array([user]), affinity[None, :], t)[0]
            page = "home"
            if rng.random() < segment["search"]:
                # Searches use the words of the category the user leans to right now.
                cat = int(np.argmax(world.centres @ taste))
                nouns, tags = CATEGORIES[world.categories[cat]]
                query = f"{tags[rng.integers(len(tags))]} {nouns[rng.integers(len(nouns))]}"
                rows.append((f"e{seq:09d}", user_id, None, "search", None, t, session_id,
                             query.lower(), device, "search"))
                seq += 1
                t += rng.uniform(2, 10)
                utility = np.where(world.item_category == cat, utility, -np.inf)
                page = "search"
            n_views = 1 + rng.poisson(3.0)
            gumbel = utility + rng.gumbel(size=utility.shape)
            available = int(np.isfinite(utility).sum())
            if available == 0:
                continue
            n_views = min(n_views, available)
            top = np.argpartition(-gumbel, n_views - 1)[:n_views]
            viewed = top[np.argsort(-gumbel[top])]
            for item in viewed:
                a = float(affinity[item])
                q = float(world.item_quality[item])
                dwell = round(float(rng.lognormal(2.6 + 1.2 * a + 0.2 * q, 0.6)), 1)
                item_id = world.item_ids[item]
                rows.append((f"e{seq:09d}", user_id, item_id, "view", dwell, t, session_id,
                             None, device, page))
                seq += 1
                t += dwell + rng.uniform(1, 20)
                if rng.random() >= _sigmoid(-3.0 + 3.5 * a + 0.3 * q):
                    continue
                rows.append((f"e{seq:09d}", user_id, item_id, "click", None, t, session_id,
                             None, device, page))
                seq += 1
                t += rng.uniform(5, 60)
                price_penalty = world.user_price_sensitivity[user] * log_rel_price[item]
                if rng.random() < _sigmoid(-2.5 + 3.0 * a + 0.4 * q - 1.5 * price_penalty):
                    rows.append((f"e{seq:09d}", user_id, item_id, "add_to_cart", None, t,
                                 session_id, None, device, page))
                    seq += 1
                    t += rng.uniform(10, 120)
                    if rng.random() < _sigmoid(-0.3 + 1.0 * a + 0.3 * q - price_penalty):
                        rows.append((f"e{seq:09d}", user_id, item_id, "purchase",
                                     float(world.item_price[item]), t, session_id, None,
                                     device, "checkout"))
                        seq += 1
                        t += rng.uniform(30, 300)
                        if rng.random() < 0.35:
                            rows.append(_rating(seq, user_id, item_id, a, q, t, session_id,
                                                device, rng))
                            seq += 1
                elif rng.random() < 0.03:
                    rows.append(_rating(seq, user_id, item_id, a, q, t, session_id, device,
                                        rng))
                    seq += 1
        if progress is not None:
            progress(1)

    frame = pd.DataFrame(rows, columns=["event_id", "user_id", "item_id", "event_type",
                                        "value", "t", "session_id", "query", "device",
                                        "page"])
    period = world.days * SECONDS_PER_DAY
    frame["t"] = frame["t"].clip(upper=period - 1e-3)
    frame["timestamp"] = (world.start + pd.to_timedelta(frame.pop("t"), unit="s")).dt.floor("ms")
    frame["context"] = [json.dumps({"device": d, "page": p}, sort_keys=True)
                        for d, p in zip(frame.pop("device"), frame.pop("page"), strict=True)]
    return frame


def _rating(seq: int, user_id: str, item_id: str, affinity: float, quality: float, t: float,
            session_id: str, device: str, rng: np.random.Generator) -> tuple[object, ...]:
    stars = float(min(5, max(1, round(3.0 + 2.2 * affinity + 0.6 * quality
                                      + float(rng.normal(0, 0.6))))))
    return (f"e{seq:09d}", user_id, item_id, "rating", stars, t + 60, session_id, None,
            device, "review")
