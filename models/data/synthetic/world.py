"""The latent world behind the synthetic data, and its saved ground truth.

A user's true preference for an item at time t is

    utility(u, i, t) = beta_u * <taste_u(t), v_i> + b_i + novelty_i(t)

where `v_i` is the item's unit latent vector (near its category's centre),
`b_i` its power-law popularity bias, `novelty_i(t)` a boost that fades over
`novelty_days` after the item arrives, and
`taste_u(t) = normalise(taste0_u + drift_u * (t - start) / days)` drifts from
the user's initial taste towards another category over the period. Sessions
sample items by a softmax over this utility among items already in the
catalog. `GroundTruth` reloads the parameters so tests can score a model
against the truth.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from contracts.schemas import GROUND_TRUTH_DIR
from models.data.synthetic.vocabulary import (
    ADJECTIVES,
    BRANDS,
    CATEGORIES,
    CATEGORY_PRICE,
    PHRASES,
    SEGMENTS,
)

DIMS = 16
NOVELTY_DAYS = 7.0
NOVELTY_BOOST = 1.0
SECONDS_PER_DAY = 86_400.0


def _unit(x: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(norm, 1e-12)


@dataclass
class World:
    start: pd.Timestamp
    days: int
    categories: list[str]
    centres: np.ndarray  # (categories, DIMS)
    item_ids: list[str]
    item_category: np.ndarray  # index into categories
    item_vec: np.ndarray  # (items, DIMS), unit
    item_bias: np.ndarray  # popularity bias b_i
    item_quality: np.ndarray
    item_price: np.ndarray
    item_created_s: np.ndarray  # seconds since start (negative: before the period)
    user_ids: list[str]
    user_segment: list[str]
    user_taste0: np.ndarray  # (users, DIMS), unit
    user_drift: np.ndarray  # (users, DIMS): drift vector reached at the end of the period
    user_beta: np.ndarray  # taste sharpness
    user_price_sensitivity: np.ndarray
    user_created_s: np.ndarray
    user_device: np.ndarray  # index into DEVICES

    def taste(self, users: np.ndarray, t_seconds: np.ndarray | float) -> np.ndarray:
        frac = np.clip(np.asarray(t_seconds, dtype=float) / (self.days * SECONDS_PER_DAY),
                       0.0, 1.0)
        frac = np.broadcast_to(frac, users.shape)[:, None]
        return _unit(self.user_taste0[users] + self.user_drift[users] * frac)

    def utility(self, users: np.ndarray, t_seconds: float) -> np.ndarray:
        """(len(users), items) true utility at one instant; unreleased items get -inf."""
        affinity = self.taste(users, t_seconds) @ self.item_vec.T
        return self.utility_from_affinity(users, affinity, t_seconds)

    def utility_from_affinity(self, users: np.ndarray, affinity: np.ndarray,
                              t_seconds: float) -> np.ndarray:
        age_days = (t_seconds - self.item_created_s) / SECONDS_PER_DAY
        novelty = NOVELTY_BOOST * np.exp(-np.clip(age_days, 0, None) / NOVELTY_DAYS)
        score = self.user_beta[users, None] * affinity + self.item_bias + novelty
        return np.where(age_days[None, :] >= 0, score, -np.inf)


def build_world(rng: np.random.Generator, n_users: int, n_items: int, days: int,
                start: pd.Timestamp) -> World:
    n_cat = int(np.clip(n_items // 25, 4, len(CATEGORIES)))
    categories = list(CATEGORIES)[:n_cat]
    centres = _unit(rng.normal(size=(n_cat, DIMS)))
    # Category sizes follow a Zipf-like curve: a few big departments, a long tail.
    cat_weight = 1.0 / np.arange(1, n_cat + 1) ** 0.8
    cat_weight /= cat_weight.sum()

    item_category = rng.choice(n_cat, size=n_items, p=cat_weight)
    item_vec = _unit(centres[item_category] + 0.45 * rng.normal(size=(n_items, DIMS)))
    # exp(b_i) is Pareto-distributed, which gives power-law exposure. Its scale is set
    # so that taste, not popularity, decides most choices (as in MovieLens, where
    # personalised models beat popularity by about 1.5x): a personalised model must
    # beat popularity against this ground truth, and a popularity-dominated world
    # would hide that.
    item_bias = np.minimum(rng.exponential(1 / 2.2, size=n_items), 3.0)
    item_quality = rng.normal(size=n_items)
    base_price = np.array([CATEGORY_PRICE[categories[c]] for c in item_category])
    item_price = np.round(base_price * rng.lognormal(0.0, 0.5, size=n_items), 2)
    # 70% of the catalog exists before the period; the rest keeps arriving.
    arrives = rng.random(n_items) < 0.3
    period_s = days * SECONDS_PER_DAY
    item_created_s = np.where(arrives, rng.uniform(0, period_s, n_items),
                              -rng.uniform(0, 365 * SECONDS_PER_DAY, n_items))

    seg_names = list(SEGMENTS)
    seg_share = np.array([SEGMENTS[s]["share"] for s in seg_names])
    seg_idx = rng.choice(len(seg_names), size=n_users, p=seg_share / seg_share.sum())
    n_fav = rng.integers(1, 4, size=n_users)
    taste0 = np.zeros((n_users, DIMS))
    for k in range(3):
        fav = rng.choice(n_cat, size=n_users, p=cat_weight)
        weight = np.where(k < n_fav, rng.uniform(0.5, 1.0, n_users), 0.0)
        taste0 += weight[:, None] * centres[fav]
    taste0 = _unit(taste0 + 0.35 * rng.normal(size=(n_users, DIMS)))
    drift_target = centres[rng.choice(n_cat, size=n_users, p=cat_weight)]
    drift_strength = rng.uniform(0.0, 0.8, n_users)
    user_drift = drift_strength[:, None] * _unit(drift_target - taste0)
    user_beta = rng.uniform(5.0, 9.0, n_users)
    price_sens = np.array([SEGMENTS[seg_names[s]]["price_sensitivity"] for s in seg_idx])
    price_sens = price_sens * rng.uniform(0.7, 1.3, n_users)
    joins = rng.random(n_users) < 0.25
    user_created_s = np.where(joins, rng.uniform(0, period_s * 0.9, n_users),
                              -rng.uniform(0, 730 * SECONDS_PER_DAY, n_users))
    user_device = rng.choice(3, size=n_users, p=[0.55, 0.35, 0.10])

    width = len(str(max(n_items, n_users)))
    return World(
        start=start, days=days, categories=categories, centres=centres,
        item_ids=[f"i{n:0{width}d}" for n in range(n_items)],
        item_category=item_category, item_vec=item_vec, item_bias=item_bias,
        item_quality=item_quality, item_price=item_price, item_created_s=item_created_s,
        user_ids=[f"u{n:0{width}d}" for n in range(n_users)],
        user_segment=[seg_names[s] for s in seg_idx], user_taste0=taste0,
        user_drift=user_drift, user_beta=user_beta, user_price_sensitivity=price_sens,
        user_created_s=user_created_s, user_device=user_device)


def _article(word: str) -> str:
    return "An" if word[0].lower() in "aeiou" else "A"


def catalog_text(world: World, rng: np.random.Generator) -> pd.DataFrame:
    """Titles, descriptions and tags that follow each item's category."""
    rows = []
    for n, item_id in enumerate(world.item_ids):
        category = world.categories[world.item_category[n]]
        nouns, tag_pool = CATEGORIES[category]
        noun = nouns[rng.integers(len(nouns))]
        adjective = ADJECTIVES[rng.integers(len(ADJECTIVES))]
        brand = BRANDS[rng.integers(len(BRANDS))]
        tags = list(rng.choice(tag_pool, size=int(rng.integers(2, 5)), replace=False))
        if world.item_bias[n] > 1.25:
            tags.append("bestseller")
        phrase = PHRASES[rng.integers(len(PHRASES))]
        rows.append({
            "item_id": item_id,
            "title": f"{brand} {adjective} {noun}",
            "description": (f"{_article(adjective)} {adjective.lower()} {noun.lower()} by "
                            f"{brand} from our "
                            f"{category} range: {', '.join(tags)}. {phrase}"),
            "category": category,
            "categories": [category],
            "tags": tags,
            "price": float(world.item_price[n]),
            "year": None,
            "available": True,
        })
    frame = pd.DataFrame(rows)
    frame["created_at"] = (world.start + pd.to_timedelta(world.item_created_s, unit="s")).floor("s")
    frame["year"] = frame["year"].astype("Int32")
    return frame


def save_ground_truth(world: World, out: Path, seed: int) -> None:
    gt = out / GROUND_TRUTH_DIR
    gt.mkdir(parents=True, exist_ok=True)
    vec = pa.list_(pa.float64())
    pq.write_table(pa.table({
        "item_id": world.item_ids,
        "category": [world.categories[c] for c in world.item_category],
        "vector": pa.array(world.item_vec.tolist(), vec),
        "popularity_bias": world.item_bias,
        "quality": world.item_quality,
        "created_offset_s": world.item_created_s,
    }), gt / "items.parquet")
    pq.write_table(pa.table({
        "user_id": world.user_ids,
        "segment": world.user_segment,
        "taste0": pa.array(world.user_taste0.tolist(), vec),
        "drift": pa.array(world.user_drift.tolist(), vec),
        "beta": world.user_beta,
        "price_sensitivity": world.user_price_sensitivity,
        "created_offset_s": world.user_created_s,
        "device": world.user_device,
    }), gt / "users.parquet")
    (gt / "world.json").write_text(json.dumps({
        "seed": seed, "start": world.start.isoformat(), "days": world.days, "dims": DIMS,
        "categories": world.categories, "centres": world.centres.tolist(),
        "novelty_days": NOVELTY_DAYS, "novelty_boost": NOVELTY_BOOST,
        "utility": "beta_u * <taste_u(t), v_i> + b_i + novelty_i(t); see "
                   "models/data/synthetic/world.py",
    }, indent=1, sort_keys=True))


class GroundTruth:
    """The saved world of a synthetic data directory, for scoring models against it."""

    def __init__(self, world: World) -> None:
        self.world = world
        self._user_index = {u: n for n, u in enumerate(world.user_ids)}

    @classmethod
    def load(cls, data_dir: Path) -> GroundTruth:
        gt = data_dir / GROUND_TRUTH_DIR
        if not (gt / "world.json").exists():
            raise FileNotFoundError(f"{gt} has no ground truth: only generated data has one")
        meta = json.loads((gt / "world.json").read_text())
        items = pq.read_table(gt / "items.parquet").to_pandas()
        users = pq.read_table(gt / "users.parquet").to_pandas()
        categories = list(meta["categories"])
        cat_index = {c: n for n, c in enumerate(categories)}
        world = World(
            start=pd.Timestamp(meta["start"]), days=int(meta["days"]), categories=categories,
            centres=np.array(meta["centres"]), item_ids=list(items["item_id"]),
            item_category=items["category"].map(cat_index).to_numpy(),
            item_vec=np.stack(items["vector"].to_numpy()),
            item_bias=items["popularity_bias"].to_numpy(),
            item_quality=items["quality"].to_numpy(), item_price=np.zeros(len(items)),
            item_created_s=items["created_offset_s"].to_numpy(),
            user_ids=list(users["user_id"]), user_segment=list(users["segment"]),
            user_taste0=np.stack(users["taste0"].to_numpy()),
            user_drift=np.stack(users["drift"].to_numpy()),
            user_beta=users["beta"].to_numpy(),
            user_price_sensitivity=users["price_sensitivity"].to_numpy(),
            user_created_s=users["created_offset_s"].to_numpy(),
            user_device=users["device"].to_numpy())
        return cls(world)

    def knows(self, user_id: str) -> bool:
        return user_id in self._user_index

    def preference(self, user_ids: list[str], at: pd.Timestamp) -> pd.DataFrame:
        """True utility of every item for each user at time `at` (users x items)."""
        idx = np.array([self._user_index[u] for u in user_ids])
        t = (pd.Timestamp(at) - self.world.start).total_seconds()
        return pd.DataFrame(self.world.utility(idx, t), index=user_ids,
                            columns=self.world.item_ids)

    def top_items(self, user_id: str, at: pd.Timestamp, k: int = 10) -> list[str]:
        row = self.preference([user_id], at).iloc[0]
        return list(row.nlargest(k).index)
