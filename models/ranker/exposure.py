"""Trading some accuracy for wider exposure, with the trade chosen on held-out users.

Two levers, both applied after the ranker:

1. A blended score. Final score of a candidate = z(ranker score)
                                 + affinity x z(two-tower affinity)
                                 - popularity x the item's standardised log popularity,
   with z() standardising within each user's candidate list. The two-tower is
   trained with log-Q correction, so its affinity carries the user's taste with
   the popularity bias taken out; the penalty moves exposure toward the long tail.
2. Unique slots. The first `head` positions of each list follow that score; the
   positions after it, up to SLOTS, go to the user's best-scored items that no
   list shows yet (users visited in a fixed order; in the head of any list counts
   as shown). A slot near the bottom of a list costs little NDCG, and giving it to
   an item nobody else sees widens catalog coverage much faster than a stronger
   penalty does (measured on ml-latest-small; BENCHMARKS.md). Served one request
   at a time, the same rule is an exposure budget of one per item.

The setting (affinity, popularity, head) is chosen on calibration users (P2,
scored by rankers that did not train on them), against the product's two
targets. A setting clears the accuracy floor when, resampling the users
(paired bootstrap), the lower confidence bound of its NDCG@10 over the best
baseline's on the same users is at least `floor_ratio`: fewer users, wider
bounds, more caution. Among the settings that clear it, the most accurate one
whose catalog coverage@10 reaches the coverage target; when none reaches it,
the one with the widest coverage; when none clears the floor, the most
accurate. The test period is never used.

Affinity weights stop at 1: on ml-latest-small and on samples of it, heavier
weights scored better on calibration users than later on test users (the
calibration rankers, trained on half the users, lean on the affinity more
than the final ranker does).
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from models.evaluation import metrics

AFFINITY_WEIGHTS: tuple[float, ...] = (0.0, 0.5, 1.0)
POPULARITY_WEIGHTS: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0)
SLOTS = 10  # the list length exposure is judged at (coverage@10)
HEADS: tuple[int, ...] = (10, 9, 8, 7, 6, 5)  # 0 to 5 unique slots


@dataclass(frozen=True)
class Blend:
    affinity: float = 0.0
    popularity: float = 0.0
    head: int = SLOTS  # positions after it, up to SLOTS, are unique slots

    @property
    def unique_slots(self) -> int:
        return max(SLOTS - self.head, 0)


def popularity_z(popularity: np.ndarray) -> np.ndarray:
    """Standardised log(1 + interactions) per item, over the whole catalog."""
    logs = np.log1p(popularity.astype(np.float64))
    return ((logs - logs.mean()) / (logs.std() or 1.0)).astype(np.float32)


def standardise(scores: np.ndarray, users: np.ndarray) -> np.ndarray:
    """Scores as z-scores within each user's rows (sample standard deviation; 0 where a
    user's scores are all equal, and a lone row keeps its distance from itself, 0).
    Plain numpy: serving calls this once per request."""
    x = scores.astype(np.float64)
    if len(x) and (users == users[0]).all():  # one user (a served request): no grouping
        deviation = x - x.mean()
        spread1 = np.sqrt((deviation ** 2).sum() / (len(x) - 1)) if len(x) > 1 else 0.0
        return deviation / (spread1 if np.isfinite(spread1) and spread1 > 0 else 1.0)
    _, group = np.unique(users, return_inverse=True)
    counts = np.bincount(group)
    deviation = x - (np.bincount(group, weights=x) / counts)[group]
    with np.errstate(divide="ignore", invalid="ignore"):
        spread = np.sqrt(np.bincount(group, weights=deviation ** 2) / (counts - 1))
    spread = np.where(np.isfinite(spread) & (spread > 0), spread, 1.0)
    return deviation / spread[group]


def blend_scores(ranker: np.ndarray, affinity: np.ndarray, users: np.ndarray,
                 item_pop_z: np.ndarray, blend: Blend) -> np.ndarray:
    """`item_pop_z` is popularity_z of each row's item."""
    out = standardise(ranker, users) - blend.popularity * item_pop_z
    if blend.affinity:
        out = out + blend.affinity * standardise(affinity, users)
    return out.astype(np.float32)


def top_lists(users: np.ndarray, items: np.ndarray, scores: np.ndarray, order: np.ndarray,
              k: int) -> tuple[np.ndarray, np.ndarray]:
    """(len(order), k) item indices and their scores, best first, for the users in
    `order`; -1 / -inf pad users with fewer than k candidates."""
    by_score = np.lexsort((-scores, users))  # stable: ties keep their row order
    sorted_users = users[by_score]
    starts = np.flatnonzero(np.r_[True, sorted_users[1:] != sorted_users[:-1]])
    rank = np.arange(len(by_score)) - np.repeat(starts, np.diff(np.r_[starts, len(by_score)]))
    keep = by_score[rank < k]
    ids = np.full((len(order), k), -1, dtype=np.int64)
    values = np.full((len(order), k), -np.inf, dtype=np.float32)
    rows = pd.Index(order).get_indexer(users[keep])
    ids[rows, rank[rank < k]] = items[keep]
    values[rows, rank[rank < k]] = scores[keep]
    return ids, values


def visit_order(user_ids: np.ndarray) -> np.ndarray:
    """Positions of `user_ids` in the order unique slots are handed out: by a hash of the
    id, so that neither id order nor data order favours anyone, and reruns agree."""
    return np.argsort(user_hash(user_ids), kind="stable")


def user_hash(user_ids: np.ndarray) -> np.ndarray:
    return np.array([zlib.crc32(str(u).encode()) for u in user_ids], dtype=np.int64)


def spread(ids: np.ndarray, values: np.ndarray, head: int, k: int,
           visit: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Ranked lists (rows of `ids`/`values`, best first, -1 padded) with positions
    head..SLOTS given to each row's best items that no list shows yet, rows visited in
    `visit` order (default: row order); after SLOTS the rest follow in score order.
    Returns the first k positions; a shorter k is always a prefix of a longer one.
    The unique-slot items keep their own scores, so the scores of a spread list are
    not sorted: its order is the answer."""
    if head >= SLOTS:
        return ids[:, :k], values[:, :k]
    width = max(k, SLOTS)
    out_ids = np.full((len(ids), width), -1, dtype=np.int64)
    out_values = np.full((len(ids), width), -np.inf, dtype=np.float32)
    heads = ids[:, :head]
    shown = np.zeros(max(int(ids.max(initial=-1)) + 1, 1), dtype=bool)
    shown[heads[heads >= 0]] = True
    valid = ids >= 0
    kept = np.minimum(valid.sum(axis=1), head).tolist()  # head positions each row keeps
    # The positions past the head, per row: a plain range where a row's items are a
    # prefix (top_lists' rows always are), found by array otherwise.
    prefix = valid.sum(axis=1).tolist() if _prefixes(valid) else None
    # A few small operations per row, the set difference only over the positions the
    # list can still hold: calibration calls this for 105 settings, and np.isin over
    # every row's whole list cost ~60 us a row (now ~16; one branch for every row, by
    # array alone, ~33).
    for row in range(len(ids)) if visit is None else visit:
        ranked = ids[row]
        after = (np.arange(head, max(prefix[row], head)) if prefix is not None
                 else np.flatnonzero(valid[row, head:]) + head)
        fresh = after[np.flatnonzero(~shown[ranked[after]])[:SLOTS - head]]
        shown[ranked[fresh]] = True
        rest = after[:width + len(fresh)]
        if len(fresh):
            rest = rest[~np.isin(rest, fresh, assume_unique=True, kind="table")]
        order = np.concatenate([np.arange(kept[row]), fresh, rest])[:width]
        out_ids[row, :len(order)] = ranked[order]
        out_values[row, :len(order)] = values[row, order]
    return out_ids[:, :k], out_values[:, :k]


def _prefixes(valid: np.ndarray) -> bool:
    """Whether every row's valid entries come first."""
    return bool((valid[:, 1:] <= valid[:, :-1]).all()) if valid.shape[1] > 1 else True


def ranked_lists(users: np.ndarray, items: np.ndarray, scores: np.ndarray, order: np.ndarray,
                 k: int, head: int = SLOTS, visit: np.ndarray | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
    """top_lists, then `spread` over every user's whole candidate list."""
    depth = k if head >= SLOTS else int(np.bincount(users).max(initial=max(k, SLOTS)))
    ids, values = top_lists(users, items, scores, order, max(depth, k))
    return spread(ids, values, head, k, visit)


def ratio_lower_bound(ndcg: np.ndarray, baseline: np.ndarray, confidence: float,
                      resamples: int = 1000, seed: int = 0, batch: int = 100) -> np.ndarray:
    """Per setting, the one-sided `confidence` lower bound of mean NDCG over the
    baseline's mean NDCG, by a paired bootstrap over users. `ndcg` is (settings, users),
    `baseline` (users,). Resamples are drawn `batch` at a time to bound memory."""
    n = len(baseline)
    if n == 0:
        return np.zeros(len(ndcg))
    rng = np.random.default_rng(seed)
    ratios = []
    for start in range(0, resamples, batch):
        draws = rng.integers(0, n, (min(batch, resamples - start), n))
        counts = np.zeros((len(draws), n))
        np.add.at(counts, (np.arange(len(draws))[:, None], draws), 1.0)
        ratios.append((counts @ ndcg.T) / np.maximum(counts @ baseline, 1e-12)[:, None])
    return np.asarray(np.quantile(np.vstack(ratios), 1.0 - confidence, axis=0))


def calibrate(users: np.ndarray, items: np.ndarray, ranker: np.ndarray, affinity: np.ndarray,
              relevant: sp.csr_matrix, pop_z: np.ndarray, baseline: np.ndarray,
              floor_ratio: float, coverage_target: float,
              affinity_weights: Sequence[float] = AFFINITY_WEIGHTS,
              popularity_weights: Sequence[float] = POPULARITY_WEIGHTS,
              heads: Sequence[int] = HEADS, k: int = SLOTS,
              visit: np.ndarray | None = None, confidence: float = 0.95
              ) -> tuple[Blend, pd.DataFrame]:
    """Choose the blend on calibration users; returns it and the table of every setting
    tried. `relevant` is indexed by matrix row (user index); `baseline` is the best
    baseline's per-user NDCG@k (metrics.ndcg_per_user) over relevant[np.unique(users)];
    `visit` is the order in which unique slots are handed out, as positions in
    np.unique(users)."""
    order = np.unique(users)
    depth = int(np.bincount(users).max(initial=k))
    rows, per_user = [], []
    for a in affinity_weights:
        for w in popularity_weights:
            scores = blend_scores(ranker, affinity, users, pop_z[items], Blend(a, w))
            ids, values = top_lists(users, items, scores, order, max(depth, k))
            for head in heads:
                lists, _ = spread(ids, values, head, k, visit)
                per_user.append(metrics.ndcg_per_user(lists, relevant[order], k))
                rows.append({"affinity": a, "popularity": w, "head": head,
                             f"ndcg@{k}": float(per_user[-1].mean()),
                             f"coverage@{k}": metrics.catalog_coverage(lists,
                                                                       relevant.shape[1])})
    table = pd.DataFrame(rows)
    table["ratio"] = table[f"ndcg@{k}"] / max(float(baseline.mean()), 1e-12)
    table["ratio_low"] = ratio_lower_bound(np.stack(per_user), baseline, confidence)
    ndcg = table[f"ndcg@{k}"]
    cleared = table[table["ratio_low"] >= floor_ratio]
    if cleared.empty:
        chosen = table.loc[ndcg.idxmax()]
    elif (cleared[f"coverage@{k}"] >= coverage_target).any():
        wide = cleared[cleared[f"coverage@{k}"] >= coverage_target]
        chosen = wide.loc[wide[f"ndcg@{k}"].idxmax()]
    else:
        chosen = cleared.loc[cleared[f"coverage@{k}"].idxmax()]
    table["chosen"] = table.index == chosen.name
    return Blend(float(chosen["affinity"]), float(chosen["popularity"]),
                 int(chosen["head"])), table
