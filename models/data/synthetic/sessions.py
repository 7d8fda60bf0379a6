"""Simulated browsing sessions: search -> view -> click -> add_to_cart -> purchase -> rating.

Each session samples the items a user looks at from a softmax over the world's
true utility at that moment (Gumbel top-k), so what users see and buy follows
their drifting taste, item popularity and novelty.

Every step is vectorised over a block of users' sessions and views (the caller,
models/data/synthetic/__init__.py, walks the blocks; models/data/synthetic/funnel.py
takes the views down the funnel). Above `pool` items a user's sessions choose among
the pool models/data/synthetic/pools.py gives them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.data.synthetic.pools import Buckets, buckets, user_pools
from models.data.synthetic.vocabulary import CATEGORIES, CATEGORY_PRICE, SEGMENTS
from models.data.synthetic.world import NOVELTY_BOOST, NOVELTY_DAYS, SECONDS_PER_DAY, World

# Sessions x pool items scored at once: bounds the memory of one step (float32).
_CELLS = 262_144
MEAN_EXTRA_VIEWS = 3.0
# Hour-of-day weights: quiet nights, a lunch bump, an evening peak.
_HOURS = np.array([1, 0.6, 0.4, 0.3, 0.3, 0.5, 1, 2, 3, 3.5, 3.5, 4, 5, 4.5, 4, 4, 4.5,
                   5.5, 7, 8, 8.5, 7, 4, 2], dtype=float)
_HOURS /= _HOURS.sum()


def query_words(world: World) -> list[str]:
    """Every search text, category by category, tag by tag, noun by noun: the index
    `_query_codes` gives a session's (category, tag, noun)."""
    words = []
    for category in world.categories:
        nouns, tags = CATEGORIES[category]
        words += [f"{tag} {noun}".lower() for tag in tags for noun in nouns]
    return words


def _query_codes(world: World, rng: np.random.Generator, category: np.ndarray) -> np.ndarray:
    """A random tag and noun of each session's category, as an index into query_words."""
    nouns = np.array([len(CATEGORIES[c][0]) for c in world.categories])
    tags = np.array([len(CATEGORIES[c][1]) for c in world.categories])
    first = np.cumsum(nouns * tags) - nouns * tags
    tag = rng.integers(0, tags[category])
    noun = rng.integers(0, nouns[category])
    return first[category] + tag * nouns[category] + noun


@dataclass(frozen=True)
class Catalog:
    """Per-item arrays the sessions read, and the buckets when pools are used."""

    vec: np.ndarray  # float32
    log_rel_price: np.ndarray
    segment: np.ndarray  # per user, index into SEGMENTS
    table: Buckets | None
    pool: int


def prepare_catalog(world: World, pool: int) -> Catalog:
    cat_price = np.array([CATEGORY_PRICE[c] for c in world.categories])
    names = list(SEGMENTS)
    segment = np.array([names.index(s) for s in world.user_segment], dtype=np.int64)
    table = (buckets(world.item_category, world.item_vec, world.item_bias)
             if len(world.item_ids) > pool else None)
    return Catalog(world.item_vec.astype(np.float32),
                   np.log(world.item_price / cat_price[world.item_category]), segment,
                   table, pool)


@dataclass
class Sessions:
    user: np.ndarray  # index into the block
    number: np.ndarray
    t: np.ndarray  # the session's start
    search: np.ndarray  # bool
    category: np.ndarray  # the searched category (meaningful where search)
    query: np.ndarray
    first_view_t: np.ndarray


def draw_sessions(world: World, catalog: Catalog, rng: np.random.Generator,
                  users: np.ndarray) -> Sessions:
    period = world.days * SECONDS_PER_DAY
    first = np.maximum(0.0, world.user_created_s[users])
    segment = catalog.segment[users]
    rate = np.array([SEGMENTS[s]["sessions_per_day"] for s in SEGMENTS])[segment]
    counts = rng.poisson(rate * (period - first) / SECONDS_PER_DAY
                         * rng.lognormal(0.0, 0.4, len(users)))
    owner = np.repeat(np.arange(len(users)), counts)
    low = first[owner] / SECONDS_PER_DAY
    day = np.floor(rng.uniform(low, world.days))
    hour = rng.choice(24, size=len(owner), p=_HOURS)
    t = day * SECONDS_PER_DAY + hour * 3600 + rng.uniform(0, 3600, len(owner))
    t = np.clip(t, first[owner], period - 1)
    order = np.lexsort((t, owner))
    owner, t = owner[order], t[order]
    starts = np.cumsum(counts) - counts
    number = np.arange(len(owner)) - starts[owner]

    taste = world.taste(users[owner], t)
    search_rate = np.array([SEGMENTS[s]["search"] for s in SEGMENTS])[segment[owner]]
    search = rng.random(len(owner)) < search_rate
    # Searches use the words of the category the user leans to right now.
    category = np.argmax(taste @ world.centres.T, axis=1)
    query = _query_codes(world, rng, category)
    delay = np.where(search, rng.uniform(2, 10, len(owner)), 0.0)
    return Sessions(owner, number, t, search, category, query, t + delay)


@dataclass(frozen=True)
class _Pools:
    """Per block user, the items their sessions choose among (one shared row when every
    session scores the whole catalog) and what the utility needs of them, in float32:
    `base` is the popularity bias plus the pool's log weight (-inf: never chosen), and
    `a0`, `d` the two parts of the affinity (taste(t) = unit(taste0 + f drift), so
    <taste(t), v> = (A0 + f D) / |taste0 + f drift|)."""

    items: np.ndarray
    base: np.ndarray
    created: np.ndarray
    category: np.ndarray
    a0: np.ndarray
    d: np.ndarray

    def rows(self, name: str, owner: np.ndarray) -> np.ndarray:
        column: np.ndarray = getattr(self, name)
        return column if len(column) == 1 else column[owner]


def _pools(world: World, catalog: Catalog, rng: np.random.Generator, users: np.ndarray
           ) -> _Pools:
    parts = np.stack([world.user_taste0[users], world.user_drift[users]], axis=2)
    if catalog.table is None:
        items = np.arange(len(world.item_ids))[None, :]
        weight = np.zeros(items.shape)
        both = np.matmul(catalog.vec[None, :, :], parts.astype(np.float32))
    else:
        items, weight = user_pools(catalog.table, rng, world.taste(users, 0.0),
                                   world.taste(users, world.days * SECONDS_PER_DAY),
                                   world.user_beta[users], catalog.pool)
        both = np.matmul(catalog.vec[np.maximum(items, 0)], parts.astype(np.float32))
    safe = np.maximum(items, 0)
    base = np.where(items < 0, -np.inf, world.item_bias[safe] + weight)
    return _Pools(items, base.astype(np.float32), world.item_created_s[safe].astype(np.float32),
                  world.item_category[safe], both[..., 0], both[..., 1])


def draw_views(world: World, catalog: Catalog, rng: np.random.Generator, users: np.ndarray,
               sessions: Sessions) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Each session's viewed items in the order seen: (session, rank, item, affinity)."""
    pools = _pools(world, catalog, rng, users)
    n_views = 1 + rng.poisson(MEAN_EXTRA_VIEWS, len(sessions.t))
    step = max(1, _CELLS // pools.items.shape[1])
    out: list[tuple[np.ndarray, ...]] = []
    for lo in range(0, len(sessions.t), step):
        rows = np.arange(lo, min(lo + step, len(sessions.t)))
        out.append(_sample(world, rng, users, sessions, rows, pools, n_views[rows]))
    parts = [np.concatenate(column) for column in zip(*out, strict=True)] if out else \
        [np.zeros(0, dtype=np.int64)] * 3 + [np.zeros(0)]
    return parts[0], parts[1], parts[2], parts[3]


def _sample(world: World, rng: np.random.Generator, users: np.ndarray, sessions: Sessions,
            rows: np.ndarray, pools: _Pools, n_views: np.ndarray) -> tuple[np.ndarray, ...]:
    """Gumbel top-k over the pool's utility, for the sessions in `rows`."""
    owner, t = sessions.user[rows], sessions.t[rows]
    frac = np.clip(t / (world.days * SECONDS_PER_DAY), 0.0, 1.0)
    taste0, drift = world.user_taste0[users[owner]], world.user_drift[users[owner]]
    norm = np.maximum(np.linalg.norm(taste0 + frac[:, None] * drift, axis=1), 1e-12)
    f32 = np.float32
    affinity = (pools.a0[owner] + frac[:, None].astype(f32) * pools.d[owner]) * \
        (1.0 / norm[:, None]).astype(f32)
    age = t[:, None].astype(f32) - pools.rows("created", owner)
    # world.utility_from_affinity, over each session's pool rather than the catalog.
    novelty = f32(NOVELTY_BOOST) * np.exp(
        np.maximum(age, 0) * f32(-1 / (NOVELTY_DAYS * SECONDS_PER_DAY)))
    utility = world.user_beta[users[owner], None].astype(f32) * affinity + \
        pools.rows("base", owner) + novelty
    utility[age < 0] = -np.inf
    searched = np.flatnonzero(sessions.search[rows])
    if len(searched):
        other = pools.rows("category", owner[searched]) != \
            sessions.category[rows[searched], None]
        utility[searched] = np.where(other, -np.inf, utility[searched])
    n_views = np.minimum(n_views, np.isfinite(utility).sum(axis=1))
    # Gumbel noise as -log(E), E ~ Exp(1): one logarithm per cell, not two.
    exponential = rng.standard_exponential(utility.shape, dtype=f32)
    perturbed = utility - np.log(np.maximum(exponential, f32(1e-30)))
    k = int(min(n_views.max(initial=0), perturbed.shape[1]))
    if k == 0:
        return (np.zeros(0, dtype=np.int64),) * 3 + (np.zeros(0),)
    top = np.argpartition(-perturbed, k - 1, axis=1)[:, :k]
    top = np.take_along_axis(top, np.argsort(-np.take_along_axis(perturbed, top, axis=1),
                                             axis=1, kind="stable"), axis=1)
    rank = np.broadcast_to(np.arange(k), top.shape)
    keep = rank < n_views[:, None]
    session = np.broadcast_to(rows[:, None], top.shape)[keep]
    items = np.broadcast_to(pools.rows("items", owner), top.shape[:1] + pools.items.shape[1:])
    chosen = np.take_along_axis(items, top, axis=1)[keep]
    seen = np.take_along_axis(affinity, top, axis=1)[keep].astype(np.float64)
    return session, rank[keep], chosen, seen
