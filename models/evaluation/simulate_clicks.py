"""A world with known click probabilities, to check off-policy estimates against
the truth (tests/evaluation/test_off_policy.py, benchmarks/off_policy_coverage.py).

Users and items have latent vectors; p(user, item) is a logistic function of
their dot product, CTRs mostly between 2% and 15%. The serving (logging) model
ranks items by a noisy version of the truth, shows its top `shown` items and
explores the next `pool` of them: each logged request is a user (drawn by a
skewed activity) and one item drawn uniformly from that user's pool, clicked
with its true probability. A candidate ranks by another noisy version of the
truth and stores its top `listed` items per user, as a registry version stores
its recommendations. The candidate's true CTR on the exploration slot is exact:
the mean over requests' users (their activity) of sum_a pi1(a | user) p(user, a),
pi1 its highest-ranked pool item, uniform over the pool when it lists none.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class World:
    users: int = 400
    items: int = 400
    dim: int = 8
    shown: int = 10  # the logging model's list above the pool
    pool: int = 20  # explored uniformly
    listed: int = 30  # the candidate's stored list per user
    logging_noise: float = 1.0  # noise on the true logits, in their standard deviations
    candidate_noise: float = 0.7


@dataclass(frozen=True)
class Simulation:
    log: pd.DataFrame  # off_policy.exploration_log's columns
    target_lists: dict[str, list[str]]  # the candidate's ranked lists
    truth: float  # the candidate's true exploration-slot CTR
    logged_truth: float  # the uniform draw's true CTR


def simulate(impressions: int, seed: int, world: World = World()) -> Simulation:
    rng = np.random.default_rng(seed)
    logits = _true_logits(rng, world)
    clicks = 1.0 / (1.0 + np.exp(-logits))
    order = _top(logits, world.logging_noise, world.shown + world.pool, rng)
    pools = order[:, world.shown:]  # (users, pool) item columns
    listed = _top(logits, world.candidate_noise, world.listed, rng)
    pi1 = _candidate_policy(pools, listed, world.items)  # (users, pool)
    activity = rng.lognormal(0.0, 1.0, world.users)
    activity /= activity.sum()
    pool_clicks = np.take_along_axis(clicks, pools, axis=1)
    truth = float(activity @ (pi1 * pool_clicks).sum(axis=1))
    logged_truth = float(activity @ pool_clicks.mean(axis=1))
    names = np.array([f"i{i}" for i in range(world.items)], dtype=object)
    return Simulation(_log(rng, impressions, activity, pools, clicks, names),
                      {f"u{u}": row for u, row in enumerate(names[listed].tolist())},
                      truth, logged_truth)


def _true_logits(rng: np.random.Generator, world: World) -> np.ndarray:
    """Standardised user-item affinities on a logistic scale: sigmoid(-3.4) is 3.2%,
    two standard deviations either side 1% and 10%."""
    users = rng.normal(size=(world.users, world.dim))
    items = rng.normal(size=(world.items, world.dim))
    affinity = users @ items.T / np.sqrt(world.dim)
    return -3.4 + 0.6 * affinity


def _top(logits: np.ndarray, noise: float, k: int, rng: np.random.Generator) -> np.ndarray:
    """Each user's k best item columns, best first, by the logits plus Gaussian noise."""
    noisy = logits + noise * logits.std() * rng.normal(size=logits.shape)
    top = np.argpartition(-noisy, k - 1, axis=1)[:, :k]
    best = np.argsort(-np.take_along_axis(noisy, top, axis=1), axis=1, kind="stable")
    return np.take_along_axis(top, best, axis=1)


def _candidate_policy(pools: np.ndarray, listed: np.ndarray, items: int) -> np.ndarray:
    """pi1 over each user's pool: 1 on the candidate's best-listed pool item, else
    uniform when it lists none of them."""
    rank = np.full((len(pools), items), np.iinfo(np.int64).max)
    np.put_along_axis(rank, listed, np.arange(listed.shape[1])[None, :], axis=1)
    pool_rank = np.take_along_axis(rank, pools, axis=1)
    unlisted = (pool_rank == np.iinfo(np.int64).max).all(axis=1)
    pi1 = np.zeros(pools.shape)
    pi1[np.arange(len(pools)), pool_rank.argmin(axis=1)] = 1.0
    pi1[unlisted] = 1.0 / pools.shape[1]
    return pi1


def _log(rng: np.random.Generator, impressions: int, activity: np.ndarray,
         pools: np.ndarray, clicks: np.ndarray, names: np.ndarray) -> pd.DataFrame:
    """Logged exploration: a user by activity, an item uniform over their pool."""
    users = rng.choice(len(activity), size=impressions, p=activity)
    drawn = pools[users, rng.integers(pools.shape[1], size=impressions)]
    pool_ids = names[pools].tolist()
    return pd.DataFrame({
        "request_id": [f"r{n}" for n in range(impressions)],
        "user_id": [f"u{u}" for u in users],
        "item_id": names[drawn],
        "position": 5,
        "model_version": "logging",
        "propensity": 1.0 / pools.shape[1],
        "pool": [pool_ids[u] for u in users],
        "clicked": rng.random(impressions) < clicks[users, drawn]})
