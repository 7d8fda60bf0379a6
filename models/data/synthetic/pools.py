"""Which items a user's sessions choose among, in a catalog too big to score whole.

Sampling a session's views from the softmax over every item's utility costs one
utility per item per session: 8 million sessions over 100k items is 10^12. Up to
`pool` items the generator does exactly that. Above it, each user gets a pool of
`pool` items that holds most of their softmax mass, and sessions sample exactly
within it:

- the catalog is cut, inside each category, into buckets of at most `BUCKET` items
  that lie close together in the latent space (median splits along each part's main
  direction, so the buckets are balanced);
- a bucket's score for a user is `beta_u * max(<taste_u(start), c>, <taste_u(end), c>)
  + log sum_i exp(b_i)`, with `c` the mean of its item vectors (whose length shrinks
  as the bucket spreads): the log of its softmax mass, were every item at the centre;
- the user's pool is their best buckets (three quarters of `pool`), taking both ends
  of their drifting taste into account, and a uniform sample of the whole catalog
  (the last quarter) that stands for the rest: each sampled item outside the best
  buckets has its utility raised by log(items / sample), so the tail keeps its share
  of the softmax mass in expectation. Without it the pool alone over-concentrates
  views on the best-fitting items (BENCHMARKS.md, "Generator").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BUCKET = 32


@dataclass(frozen=True)
class Buckets:
    members: np.ndarray  # (buckets, BUCKET) item indices, -1 for padding
    of_item: np.ndarray  # (items,) each item's bucket
    centre: np.ndarray  # (buckets, DIMS) mean item vector
    log_mass: np.ndarray  # (buckets,) log sum of exp(popularity bias)


def _split(items: np.ndarray, vec: np.ndarray) -> list[np.ndarray]:
    """Balanced parts of at most BUCKET items, by median splits along the main direction."""
    parts, todo = [], [items]
    while todo:
        part = todo.pop()
        if len(part) <= BUCKET:
            parts.append(part)
            continue
        centred = vec[part] - vec[part].mean(axis=0)
        direction = np.linalg.svd(centred, full_matrices=False)[2][0]
        order = part[np.argsort(centred @ direction, kind="stable")]
        half = len(order) // 2
        todo += [order[half:], order[:half]]
    return parts


def buckets(item_category: np.ndarray, item_vec: np.ndarray, item_bias: np.ndarray
            ) -> Buckets:
    parts = [part for cat in np.unique(item_category)
             for part in _split(np.flatnonzero(item_category == cat), item_vec)]
    members = np.full((len(parts), BUCKET), -1, dtype=np.int64)
    of_item = np.zeros(len(item_vec), dtype=np.int64)
    for n, part in enumerate(parts):
        members[n, :len(part)] = np.sort(part)
        of_item[part] = n
    return Buckets(
        members=members, of_item=of_item,
        centre=np.stack([item_vec[part].mean(axis=0) for part in parts]),
        log_mass=np.array([np.log(np.exp(item_bias[part]).sum()) for part in parts]))


def user_pools(table: Buckets, rng: np.random.Generator, taste_start: np.ndarray,
               taste_end: np.ndarray, beta: np.ndarray, pool: int
               ) -> tuple[np.ndarray, np.ndarray]:
    """(users, pool) item indices (-1 for padding) and the log weight each item's
    utility gets: 0 in the best buckets, log(items / sample) for the catalog sample,
    -inf where the sample repeats an item of the best buckets."""
    users = len(beta)
    sample = pool // 4
    take = min(max(1, (pool - sample) // BUCKET), len(table.members))
    fit = np.maximum(taste_start @ table.centre.T, taste_end @ table.centre.T)
    score = beta[:, None] * fit + table.log_mass[None, :]
    best = np.argpartition(-score, take - 1, axis=1)[:, :take]
    best = np.sort(best, axis=1)  # bucket order, not score order: the pool is a set
    chosen = np.zeros((users, len(table.members)), dtype=bool)
    np.put_along_axis(chosen, best, True, axis=1)
    items = len(table.of_item)
    drawn = rng.integers(0, items, size=(users, sample))
    repeated = np.take_along_axis(chosen, table.of_item[drawn], axis=1)
    weight = np.where(repeated, -np.inf, np.log(items / sample))
    members = table.members[best].reshape(users, take * BUCKET)
    return (np.concatenate([members, drawn], axis=1),
            np.concatenate([np.zeros(members.shape), weight], axis=1))
